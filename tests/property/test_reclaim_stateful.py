"""Hypothesis state machine: callers allocate and free while reclaim, drop_caches and the
OOM killer take memory back.

After every step: every managed page is free (buddy or pcp) or held by exactly one live
handle (conservation, no overlap, complete merging, consistent counters, via
``check_invariants``); the LRU lists hold exactly the live reclaimable blocks, with
per-zone counts and dirty counts that match their entries; each owner's page and swap
counts match its handles; swap in use is the owners' swap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT
from simcore.mm.invariants import check_invariants
from simcore.mm.lru import (
    DIRTY,
    KIND_ANON,
    KIND_FILE,
    KIND_SLAB,
    NR_LRU_LISTS,
    SLAB,
    entry_pages,
    entry_zone,
)
from simcore.mm.oom_kill import KernelPanic
from simcore.mm.pages import PG_ALLOC
from simcore.sim.machine import LRU_DIRTY, LRU_HOT, Allocation, Machine

OWNERS = {"cache": KIND_FILE, "heap": KIND_ANON, "dentry": KIND_SLAB, "kernel": -1}
GFPS = (int(GFP_KERNEL), int(GFP_HIGHUSER_MOVABLE), int(GFP_NOWAIT), int(GFP_ATOMIC),
        int(GFP_KERNEL | GFP.NORETRY))
"""__GFP_RETRY_MAYFAIL is left to the unit tests: with a hot working set it retries as
long as each round frees a page, which is faithful but slow to run here."""
CPUS = 2


class ReclaimMachine(RuleBasedStateMachine):
    """A 32 MiB machine with 4 MiB of swap; the handles are the model's own."""

    def __init__(self) -> None:
        super().__init__()
        cfg = MachineConfig(nodes=(NodeConfig(memory_pages=32 << 8, cpus=CPUS),),
                            swap_pages=1024)
        self.m = Machine(cfg, SysctlConfig(), seed=3)
        for name, kind in OWNERS.items():
            # "kernel" is never killed, so the OOM killer always has the others to pick
            self.m.register_owner(name, lru=kind, oom_score_adj=-1000 if kind < 0 else 0)
        self.handles: list[Allocation] = []
        self.panicked = False

    def _timed(self, body: Generator[Any, Any, Any]) -> None:
        proc = self.m.env.process(body)
        try:
            self.m.env.run(until=proc)
        except KernelPanic:
            self.panicked = True

    # -- rules --------------------------------------------------------------------------
    @precondition(lambda self: not self.panicked)
    @rule(owner=st.sampled_from(sorted(OWNERS)), gfp=st.sampled_from(GFPS),
          order=st.integers(0, 3), count=st.integers(1, 250),
          dirty=st.booleans(), hot=st.booleans(), cpu=st.integers(0, CPUS - 1))
    def allocate(self, owner: str, gfp: int, order: int, count: int, dirty: bool,
                 hot: bool, cpu: int) -> None:
        flags = (LRU_DIRTY if dirty and OWNERS[owner] == KIND_FILE else 0) | (
            LRU_HOT if hot and OWNERS[owner] >= 0 else 0)

        def body() -> Generator[Any, Any, None]:
            for _ in range(count):
                handle = yield from self.m.alloc(owner, gfp, order, cpu, lru_flags=flags)
                if handle is not None:
                    self.handles.append(handle)

        self._timed(body())
        vm = self.m.mm.vm
        for name in ("pgsteal_direct", "pgsteal_kswapd", "pswpout", "oom_kill",
                     "slabs_scanned", "compact_stall"):
            if vm[name]:
                event(f"{name} > 0")
        if self.panicked:
            event("kernel panic")

    @precondition(lambda self: not self.panicked)
    @rule(owner=st.sampled_from(sorted(OWNERS)), hot=st.booleans())
    def fill(self, owner: str, hot: bool) -> None:
        """Take free memory down to the MIN watermark without reclaiming (gfp 0)."""
        flags = LRU_HOT if hot and OWNERS[owner] >= 0 else 0
        while (h := self.m.alloc_now(owner, 0, 0, 0, lru_flags=flags)) is not None:
            self.handles.append(h)

    @precondition(lambda self: self.handles)
    @rule(data=st.data())
    def free_some(self, data: st.DataObject) -> None:
        picks = data.draw(st.lists(st.sampled_from(self.handles), unique_by=id, max_size=64))
        for handle in picks:  # reclaimed or killed handles are no-ops (or release swap)
            self.m.free(handle)
            self.handles.remove(handle)

    @precondition(lambda self: not self.panicked)
    @rule(owner=st.sampled_from(["cache", "heap"]), count=st.integers(256, 4000),
          keep=st.integers(2, 8))
    def fragment(self, owner: str, count: int, keep: int) -> None:
        """Movable order-0 pages, of which every ``keep``-th stays: migration material."""
        gfp = int(GFP.MOVABLE | GFP.HIGHMEM)  # no reclaim bits
        got = []
        for i in range(count):
            h = self.m.alloc_now(owner, gfp, 0, i % CPUS)
            if h is None:
                break
            got.append(h)
        for i, h in enumerate(got):
            if i % keep:
                self.m.free(h)
            else:
                self.handles.append(h)

    @precondition(lambda self: not self.panicked)
    @rule(order=st.sampled_from([-1, 4, 9]), cpu=st.integers(0, CPUS - 1))
    def compact(self, order: int, cpu: int) -> None:
        """Compaction migrates movable pages (handles and LRU entries follow them):
        ``compact_memory`` (order -1) or a direct compaction at ``order``."""
        c = self.m.mm.reclaim.compaction
        if order < 0:
            c.compact_node(0, cpu)
        else:
            zones = tuple(z for z in self.m.mm.zones if z.managed_pages)
            _, _, pfn = c.try_to_compact_pages(int(GFP_HIGHUSER_MOVABLE), order, 0,
                                               zones[::-1], 1, 1, cpu)
            if pfn >= 0:  # a captured block is the caller's: give it back
                event("captured")
                zone = self.m.mm.page_zone(pfn)
                zone.free_one_page(pfn, order, zone.get_pageblock_migratetype(pfn))
        if self.m.mm.vm["pgmigrate_success"]:
            event("pgmigrate_success > 0")

    @rule(what=st.sampled_from([1, 2, 3]))
    def drop_caches(self, what: int) -> None:
        self.m.mm.reclaim.drop_caches(what, 0)

    @rule(ms=st.integers(1, 300))
    def let_kswapd_run(self, ms: int) -> None:
        self.m.env.run(until=self.m.env.now + ms * 1_000_000)

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def pages_are_conserved(self) -> None:
        self.m.apply_pending_frees()
        live = {h.pfn: h.order for h in self.m.owner_of.values()}
        check_invariants(self.m.mm, live)

    @invariant()
    def lru_lists_hold_exactly_the_live_reclaimable_blocks(self) -> None:
        m = self.m
        lv = m.mm.reclaim.lruvecs[0]
        nz = lv.nr_zone_types
        on_lists: set[int] = set()
        counts = [[0] * NR_LRU_LISTS for _ in range(nz)]
        dirty = [0] * nz
        slab = [0] * nz
        for where in range(NR_LRU_LISTS + 1):
            entries = lv.entries(where)
            assert len(entries) == lv.nr_entries[where]
            for pfn, packed in entries:
                assert pfn not in on_lists
                on_lists.add(pfn)
                assert lv.on_list(pfn) == where
                assert m.mm.pages.flags[pfn] & PG_ALLOC  # never a free block
                if where == SLAB:
                    slab[entry_zone(packed)] += entry_pages(packed)
                    continue
                counts[entry_zone(packed)][where] += entry_pages(packed)
                if packed & DIRTY:
                    dirty[entry_zone(packed)] += entry_pages(packed)
        live_lru = {h.pfn for h in m.owner_of.values() if h.lru >= 0}
        assert on_lists == live_lru
        assert not any(lv.on_list(h.pfn) >= 0 for h in m.owner_of.values() if h.lru < 0)
        assert counts == lv.nr_zone_np.reshape(nz, NR_LRU_LISTS).tolist()
        assert dirty == list(lv.nr_dirty_zone)
        assert slab == list(lv.nr_slab_zone)

    @invariant()
    def owner_accounts_match_handles(self) -> None:
        m = self.m
        pages: Counter[str] = Counter()
        for h in m.owner_of.values():
            pages[h.owner] += 1 << h.order
        for name, owner in m.owners.items():
            assert owner.pages == pages[name], name
        swapped: Counter[str] = Counter()
        for h in self.handles:
            if h.swapped:
                swapped[h.owner] += 1 << h.order
        for name, owner in m.owners.items():
            if owner.killed_ns < 0:
                assert owner.swap_pages == swapped[name], name
        assert m.mm.reclaim.swap_used == sum(o.swap_pages for o in m.owners.values())
        assert m.mm.reclaim.swap_used <= m.mm.reclaim.swap_pages


TestReclaim = ReclaimMachine.TestCase
TestReclaim.settings = settings(settings(), max_examples=40, stateful_step_count=30)
"""Fewer, shorter examples than the suite's profile: each step may run hundreds of
requests through the slow path; these still reach direct reclaim, kswapd, swap-out,
the OOM killer and the occasional panic."""
