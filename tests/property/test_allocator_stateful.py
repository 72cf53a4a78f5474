"""Stateful property test of the allocator core (style.md, Tests: tests/property).

A hypothesis ``RuleBasedStateMachine`` allocates with a mix of gfp masks, orders and
CPUs, frees, splits and frees sub-pages, takes and drops speculative references,
freezes and unfreezes refcounts, probes random pfns and drains the pcp lists. After
every step :func:`simcore.mm.invariants.check_invariants` walks the real lists: free +
pcp + allocated == managed, no overlap or misalignment, complete merging, counters
equal to the lists. Teardown frees everything and checks the memory came back whole.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.constants import MIGRATE_TYPES, MigrateType
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_NOWAIT
from simcore.mm.invariants import check_invariants
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.zone import Zone

_NORETRY = GFP.NORETRY
"""On the blocking masks: the bare allocator has nothing to reclaim and no process to
OOM-kill, so a plain GFP_KERNEL request that cannot be met would end in a kernel panic
(behaviour 48); with __GFP_NORETRY it fails after one round instead."""
GFPS = (
    int(GFP_KERNEL | _NORETRY), int(GFP_HIGHUSER_MOVABLE | _NORETRY), int(GFP_ATOMIC),
    int(GFP_NOWAIT), int(GFP_KERNEL | GFP.RECLAIMABLE | _NORETRY),
    int(GFP_NOWAIT | GFP.RECLAIMABLE), int(GFP_ATOMIC | GFP.RECLAIMABLE),
    int(GFP_KERNEL | GFP.DMA | _NORETRY),
)
MAX_ORDER = 10
CPUS = 2
HIGHATOMIC = int(MigrateType.HIGHATOMIC)


class AllocatorMachine(RuleBasedStateMachine):
    """Live allocations: ``order[pfn]``, ``refs[pfn]`` (expected refcount), compound set."""

    def __init__(self) -> None:
        super().__init__()
        # 32 MiB: ZONE_DMA [1, 4096) and ZONE_DMA32 [4096, 8192), small enough for
        # bursts to reach the watermarks, the slow path and the highatomic reserve.
        cfg = MachineConfig(nodes=(NodeConfig(memory_pages=32 << 8, cpus=CPUS),),
                            max_order=MAX_ORDER)
        self.mm = PageAllocator(cfg, SysctlConfig())
        self.order: dict[int, int] = {}
        self.refs: dict[int, int] = {}
        self.compound: set[int] = set()
        self.frozen: dict[int, int] = {}

    # -- helpers ------------------------------------------------------------------------
    def _live(self) -> list[int]:
        return sorted(p for p in self.order if p not in self.frozen)

    def _forget(self, pfn: int) -> None:
        del self.order[pfn]
        del self.refs[pfn]
        self.compound.discard(pfn)

    # -- rules --------------------------------------------------------------------------
    @rule(gfp=st.sampled_from(GFPS), comp=st.booleans(),
          order=st.integers(0, MAX_ORDER) | st.integers(0, 3),
          cpu=st.integers(0, CPUS - 1))
    def alloc(self, gfp: int, comp: bool, order: int, cpu: int) -> None:
        if comp:
            gfp |= int(GFP.COMP)
        pfn = self.mm.alloc_pages(gfp, order, 0, cpu)
        if pfn < 0:
            return
        assert pfn & ((1 << order) - 1) == 0
        assert pfn not in self.order
        assert self.mm.pages.ref[pfn] == 1
        self.order[pfn] = order
        self.refs[pfn] = 1
        if comp and order:
            self.compound.add(pfn)

    @rule(gfp=st.sampled_from(GFPS), comp=st.booleans(), order=st.integers(0, 6),
          count=st.integers(1, 48), cpu=st.integers(0, CPUS - 1))
    def alloc_burst(self, gfp: int, comp: bool, order: int, count: int, cpu: int) -> None:
        """Many allocations at once: memory pressure, fallbacks, the slow path."""
        for _ in range(count):
            self.alloc(gfp, comp, order, cpu)

    @precondition(lambda self: self._live())
    @rule(data=st.data(), cpu=st.integers(0, CPUS - 1))
    def free(self, data: st.DataObject, cpu: int) -> None:
        pfn = data.draw(st.sampled_from(self._live()))
        order = self.order[pfn]
        assert self.mm.free_pages(pfn, order, cpu)
        self.refs[pfn] -= 1
        if not self.refs[pfn]:
            self._forget(pfn)
        elif pfn not in self.compound and order:
            self.order[pfn] = 0  # __free_pages freed the tail pieces (behaviour 41)

    @precondition(lambda self: any(
        self.order[p] and p not in self.compound and self.refs[p] == 1 for p in self._live()))
    @rule(data=st.data(), cpu=st.integers(0, CPUS - 1), free_all=st.booleans())
    def split_and_free(self, data: st.DataObject, cpu: int, free_all: bool) -> None:
        candidates = [p for p in self._live()
                      if self.order[p] and p not in self.compound and self.refs[p] == 1]
        pfn = data.draw(st.sampled_from(candidates))
        order = self.order[pfn]
        assert self.mm.split_page(pfn, order)
        self._forget(pfn)
        subpages = list(range(pfn, pfn + (1 << order)))
        for p in subpages:
            self.order[p] = 0
            self.refs[p] = 1
        victims = data.draw(st.permutations(subpages)) if free_all else \
            data.draw(st.lists(st.sampled_from(subpages), unique=True, max_size=8))
        for p in victims:
            assert self.mm.free_pages(p, 0, cpu)
            self._forget(p)

    @precondition(lambda self: self._live())
    @rule(data=st.data())
    def get_ref(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(self._live()))
        assert self.mm.get_page_unless_zero(pfn)
        self.refs[pfn] += 1

    @precondition(lambda self: any(self.refs[p] > 1 for p in self._live()))
    @rule(data=st.data(), cpu=st.integers(0, CPUS - 1))
    def put_ref(self, data: st.DataObject, cpu: int) -> None:
        pfn = data.draw(st.sampled_from([p for p in self._live() if self.refs[p] > 1]))
        self.mm.put_page(pfn, cpu)
        self.refs[pfn] -= 1

    @precondition(lambda self: any(
        self.refs[p] == 1 and (self.order[p] == 0 or p in self.compound)
        for p in self._live()))
    @rule(data=st.data(), cpu=st.integers(0, CPUS - 1))
    def put_last_ref(self, data: st.DataObject, cpu: int) -> None:
        pfn = data.draw(st.sampled_from([
            p for p in self._live()
            if self.refs[p] == 1 and (self.order[p] == 0 or p in self.compound)]))
        self.mm.put_page(pfn, cpu)  # order-0 page or compound destructor frees it
        self._forget(pfn)

    @precondition(lambda self: self._live())
    @rule(data=st.data(), wrong=st.booleans())
    def freeze(self, data: st.DataObject, wrong: bool) -> None:
        pfn = data.draw(st.sampled_from(self._live()))
        count = self.refs[pfn]
        if wrong:
            assert not self.mm.page_ref_freeze(pfn, count + 1)
            assert self.mm.pages.ref[pfn] == count
            return
        assert self.mm.page_ref_freeze(pfn, count)
        assert not self.mm.get_page_unless_zero(pfn)
        self.frozen[pfn] = count

    @precondition(lambda self: self.frozen)
    @rule(data=st.data())
    def unfreeze(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.frozen)))
        self.mm.page_ref_unfreeze(pfn, self.frozen.pop(pfn))

    @rule(data=st.data())
    def probe_random_pfn(self, data: st.DataObject) -> None:
        """A pfn walker: get_page_unless_zero succeeds exactly on live, unfrozen heads."""
        idx = data.draw(st.integers(0, len(self.mm.zones) - 1))
        first, end = self.mm.managed_ranges[idx][0]
        pfn = data.draw(st.integers(first, end - 1))
        got = self.mm.get_page_unless_zero(pfn)
        assert got == (pfn in self.order and pfn not in self.frozen)
        if got:
            self.mm.put_page(pfn, 0)

    @rule()
    def drain(self) -> None:
        self.mm.drain_all_pages()

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def consistent(self) -> None:
        check_invariants(self.mm, self.order, frozen=self.frozen)
        assert self.mm.vm["bad_page"] == 0

    def teardown(self) -> None:
        mm = self.mm
        for pfn, count in list(self.frozen.items()):
            mm.page_ref_unfreeze(pfn, count)
        self.frozen.clear()
        for pfn in list(self.order):
            while self.refs[pfn] > 1:
                mm.put_page(pfn, 0)
                self.refs[pfn] -= 1
            assert mm.free_pages(pfn, self.order[pfn], 0)
            self._forget(pfn)
        mm.drain_all_pages()
        check_invariants(mm, {})
        for zone, managed in zip(mm.zones, mm.managed_ranges, strict=True):
            assert zone.nr_free_pages == zone.managed_pages
            first, end = managed[0]
            top = zone.max_order
            if first % (1 << top) or (end - first) % (1 << top):
                continue
            pb = range(first >> zone.pageblock_order, end >> zone.pageblock_order)
            orders = [o for o, _ in _blocks(zone).values()]
            if any(mm.pageblock_mt[i] == HIGHATOMIC for i in pb):
                # highatomic pageblocks refuse to merge with other types (behaviour 10)
                assert min(orders) >= zone.pageblock_order
            else:
                assert set(orders) == {top}


def _blocks(zone: Zone) -> dict[int, tuple[int, int]]:
    out = {}
    for order in range(zone.max_order + 1):
        for mt in range(MIGRATE_TYPES):
            for pfn in zone.free_area.iter_list(order, mt):
                out[pfn] = (order, mt)
    return out


TestAllocatorStateful = AllocatorMachine.TestCase
