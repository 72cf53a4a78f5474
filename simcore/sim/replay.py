"""Replay an imported ftrace's allocations and frees against the model.

An imported trace (:func:`simcore.formats.ftrace.import_trace`) lists the host's
``mm_page_alloc`` and ``mm_page_free`` events in time order. :class:`Replay` issues them
to a :class:`~simcore.sim.machine.Machine` at the same times (the clock starts at the
first event) as a SimPy process, in one of two placements:

``model``
    The model chooses each block, from the event's order, gfp_mask and CPU, through the
    whole allocator (:meth:`Machine.alloc_now`: fast path, then the slow path with its
    stalls counted as latency, so the trace's pace is kept). A host allocation that failed
    (``pfn=0x0``) is made too; if the model succeeds it is freed at once and counted. A
    freed host pfn maps to the simulated block it was allocated as (a free of part of a
    block, after ``split_page()``, frees the same part of the simulated block).
``real``
    Each allocation takes its host pfn (:mod:`simcore.mm.take_page`), so the model's
    state mirrors the host's, movable pages included. Every disagreement is counted: a
    pfn the model has busy, one in no zone of the model, one in a zone the request's
    gfp_mask does not allow.

Frees of blocks the replay did not allocate were allocated before the trace began, by
the bulk allocator (``__alloc_pages_bulk()`` emits no ``mm_page_alloc`` except on its
fallback to one ``__alloc_pages()``), or are compaction's: migration targets, which
``isolate_freepages()`` takes off the free lists with no event, and free pages it
isolated and gives back (``release_freepages()``). Under ``real`` such a free is applied
at its host pfn when the model has that pfn allocated (by a host owner of a ``from_proc``
initial state, :mod:`simcore.sim.initial_state`), and counted either way; under
``model`` it is applied where a host owner holds that pfn in the model, and otherwise
counted and skipped. With the host's compaction runs
(:func:`compaction_runs`), frees inside them are migrations (:meth:`Replay._migrate`).

Every replayed block belongs to the owner named after the host task's ``comm``, which
the OOM killer never picks and reclaim never takes (the host's own reclaim is in the
trace, as the frees it made).

Where a snapshot has no ``iomem``, the model guesses where each zone's reserved
(memblock) pages lie (:func:`simcore.mm.topology.split_reserved`). When the host
allocates a pfn the model guessed reserved, ``real`` moves the reservation: the least
recently freed free block of that size in the zone becomes reserved instead, so managed
and free pages are unchanged and the host's pfn is placed (``reserved_moved``).

SIMPLIFICATIONS: the host's per-task CPU is used as is (the machine must have that many
CPUs); a free of part of a compound block (after a ``split_huge_page()``, which has no
event) is counted and skipped; hugetlb pool pages are recognised by
:func:`is_hugetlb_page`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simcore.errors import TraceError
from simcore.formats.trace_table import ALLOC, FREE, read_batches
from simcore.mm.constants import MT_MOVABLE
from simcore.mm.gfp import GFP, gfp_migratetype, gfp_zone
from simcore.mm.lru import KIND_ANON, KIND_FILE
from simcore.mm.pages import (
    ORDER_MASK,
    PG_ALLOC,
    PG_HEAD,
    PG_RESERVED,
    PG_TAIL,
)
from simcore.mm.take_page import take_block_off_pcp
from simcore.sim.machine import Allocation, Machine
from simcore.sim.replay_moves import HostMoves

if TYPE_CHECKING:
    pass

PLACEMENTS = ("model", "real")
REPLAY_KEY = "replay"
"""Where the replay's counts live in :attr:`Machine.extras` (and ``summary.json``)."""
_ALLOC, _FREE = ALLOC, FREE
GFP_ZERO = int(GFP.ZERO)
Event = tuple[int, str, int, str, int, int, int, bool]
"""line, event, cpu, comm, pfn, order, gfp, inside a compaction run."""
HUGETLB_GFP = int(GFP.RETRY_MAYFAIL | GFP.COMP)
"""Bits every hugetlb pool allocation has (alloc_buddy_huge_page())."""


def is_hugetlb_page(gfp: int, order: int, pageblock_order: int) -> bool:
    """Whether a traced allocation is a 2 MiB hugetlb pool page (not a THP).

    Its order is ``pageblock_order`` and its gfp_mask has ``__GFP_RETRY_MAYFAIL |
    __GFP_COMP``, as alloc_buddy_huge_page() asks while it tries hard.
    SIMPLIFICATION: after a node failed once in a resize, alloc_buddy_huge_page() asks it
    with ``__GFP_NORETRY`` instead (``node_alloc_noretry``); such pages are missed. On one
    node the resize stops at that failure, so none follow it.
    """
    return order == pageblock_order and gfp & HUGETLB_GFP == HUGETLB_GFP





@dataclass
class ReplayCounts:
    """What a replay did and where the model disagreed with the host."""

    placement: str = "model"
    allocs: int = 0
    """``mm_page_alloc`` events replayed (successful and failed on the host)."""
    host_failed: int = 0
    """Allocations that failed on the host (``pfn=0x0``)."""
    model_failed: int = 0
    """``model``: allocations that succeeded on the host but failed in the model."""
    model_ok_host_failed: int = 0
    """``model``: allocations that failed on the host but succeeded in the model."""
    frees: int = 0
    """``mm_page_free`` events replayed."""
    frees_unmatched_skipped: int = 0
    """``model``: frees of blocks the replay did not allocate, skipped."""
    frees_unmatched_applied: int = 0
    """Frees of blocks the replay did not allocate, applied at the host pfn (``model``:
    only where a host owner of the initial state holds it)."""
    frees_unmatched_free: int = 0
    """``real``: frees of blocks the replay did not allocate that the model has free."""
    frees_unmatched_reserved: int = 0
    """``real``: frees of pages the model holds reserved (e.g. init memory)."""
    partial_frees: int = 0
    """Frees of part of an allocated block (after ``split_page()``)."""
    compound_partial_frees: int = 0
    """Frees of part of a compound block: the kernel never does this; skipped."""
    pfn_busy: int = 0
    """``real``: allocations at a pfn the model has allocated or reserved: skipped."""
    pfn_no_zone: int = 0
    """``real``: allocations at a pfn in no zone of the model (a hole): skipped."""
    pfn_other_zone: int = 0
    """``real``: allocations at a pfn in a zone the gfp_mask does not allow (placed)."""
    held_moved: int = 0
    """``real``: pages of the host's owners (a ``from_proc`` initial state) the model had
    placed where the host allocates: each moved to a free page of its type."""
    unseen_moved: int = 0
    """``real``: replayed order-0 blocks the model still had where the host allocates
    (they moved on the host without an event): each moved to a free page of its type."""
    reserved_moved: int = 0
    """``real``: allocations at a pfn the model had guessed reserved (memblock): the
    reservation moved to another free block of the zone (see the module docstring)."""
    pcp_drains: int = 0
    """``real``: pcp drains forced because a block lay partly on pcp lists."""
    migrations: int = 0
    """Frees inside a compaction run of their task that moved a replayed block (see
    :meth:`Replay._migrate`)."""
    migrated_freed: int = 0
    """``model``: frees of unknown blocks taken as the later free of a migrated block."""
    reused_unfreed: int = 0
    """``model``: a host pfn allocated again with no free traced in between (the
    earlier block is freed then)."""
    trace_start_ns: int = -1
    """The trace time of the first replayed event: the run's time 0."""
    stopped_at_line: int = -1
    """The trace line the replay stopped before (-1: it ran to the end)."""

    def as_dict(self) -> dict[str, Any]:
        """The counts as ``summary.json``'s ``replay`` section."""
        return asdict(self)


class Replay(HostMoves):
    """One replay of a trace against ``machine`` (see the module docstring)."""

    def __init__(self, machine: Machine, trace: Path, placement: str = "model",
                 stop_before_line: int = -1,
                 compaction_runs: dict[int, list[tuple[int, int]]] | None = None) -> None:
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        self.machine = machine
        self.mm = machine.mm
        self.trace = trace
        self.real = placement == "real"
        self.stop_before_line = stop_before_line
        self.counts = ReplayCounts(placement=placement)
        self.live: dict[int, Allocation] = {}
        """Host head pfn -> the handle of the block replayed for it."""
        self.compaction_runs = compaction_runs or {}
        """Task pid -> its compaction runs ``(begin_ns, end_ns)``, sorted (see
        :func:`compaction_runs`); frees inside one are migrations."""
        self.free_cursor: dict[int, int] = {}
        """Zone start pfn -> where the free scanner stopped (``compact_cached_free_pfn``)."""
        self.migrated: deque[Allocation] = deque()
        """``model``: blocks a host migration moved to a place the trace does not show."""
        self.skipped: set[int] = set()
        """``real``: host head pfns whose allocation was skipped (their free is too)."""
        self.t0_ns = -1
        self.final = True
        """Whether an event that cannot apply now is counted (else it waits)."""
        self.present = np.zeros(self.mm.pages.nr_pages, dtype=bool)
        """Per pfn: present in a zone of the model (holes are False)."""
        for zone in self.mm.zones:
            for lo, hi in zone.present_ranges:
                self.present[lo:hi] = True
        machine.extras[REPLAY_KEY] = self

    def first_time_ns(self) -> int:
        """The trace time of the first replayed event (simulated time 0); -1 if none."""
        if self.t0_ns < 0:
            for cols in read_batches(self.trace):
                if cols["time_ns"]:
                    self.t0_ns = self.counts.trace_start_ns = cols["time_ns"][0]
                    break
        return self.t0_ns

    # -- the SimPy process ------------------------------------------------------------
    def process(self) -> Generator[Any, Any, None]:
        """Issue every event at its trace time (relative to the first one).

        Under ``real`` placement the model's proactive compaction is off while the trace
        plays (the host's own compaction is in the trace), and back on after.
        """
        compaction = self.mm.reclaim.compaction
        proactiveness = compaction.proactiveness
        if self.real:
            compaction.proactiveness = 0
        try:
            yield from self._play()
        finally:
            compaction.proactiveness = proactiveness

    def _play(self) -> Generator[Any, Any, None]:
        env = self.machine.env
        group: list[Event] = []
        group_t = -1
        for cols in read_batches(self.trace):
            for i, line in enumerate(cols["line"]):
                if 0 <= self.stop_before_line <= line:
                    self.counts.stopped_at_line = line
                    self.run_group(group)
                    return
                t = cols["time_ns"][i]
                if t != group_t:
                    self.run_group(group)
                    group = []
                    group_t = t
                    if self.t0_ns < 0:
                        self.t0_ns = self.counts.trace_start_ns = t
                    due = t - self.t0_ns
                    if due > env.now:
                        yield env.timeout(due - env.now)
                group.append((line, cols["event"][i], cols["cpu"][i], cols["comm"][i],
                              cols["pfn"][i], cols["order"][i], cols["gfp"][i],
                              self._migrating(cols["pid"][i], t)))
        self.run_group(group)

    def run_group(self, group: list[Event]) -> None:
        """Replay the events of one timestamp.

        The trace clock's resolution is coarse (a microsecond, often several hundred
        events), and ftrace orders events of the same timestamp by CPU, not as they
        happened: a page can be allocated on CPU 0 "before" CPU 1 frees it. An event
        that cannot apply yet (an allocation of a pfn still held, a free of a block not
        yet allocated) waits until the group's other events have run, and is retried
        while that makes progress; what still cannot apply is counted as a disagreement.
        """
        self.final = False
        pending = [ev for ev in group if not self.event(*ev)]
        while pending:
            rest = [ev for ev in pending if not self.event(*ev, retry=True)]
            if len(rest) == len(pending):
                self.final = True
                for ev in rest:
                    self.event(*ev, retry=True)
                return
            pending = rest

    def event(self, line: int, event: str, cpu: int, comm: str, pfn: int, order: int,
              gfp: int, migrating: bool = False, retry: bool = False) -> bool:
        """Replay one event now; False if it must wait (see :meth:`run_group`).

        ``migrating``: the free is inside a compaction run of its task (a migration's
        source page, or an isolated free page given back).
        """
        if cpu >= self.machine.nr_cpus:
            raise TraceError(str(self.trace), line, f"a CPU of the machine (0-"
                             f"{self.machine.nr_cpus - 1})", f"CPU {cpu}")
        owner = self._owner(comm)
        if event == _ALLOC:
            if not retry:
                self.counts.allocs += 1
                self.counts.host_failed += pfn == 0
            if self.real:
                return self._alloc_real(owner, pfn, order, gfp, cpu)
            return self._alloc_model(owner, pfn, order, gfp, cpu)
        if not retry:
            self.counts.frees += 1
        if migrating and self._migrate(pfn, order, cpu):
            return True
        return self._free(pfn, order, cpu)

    def _owner(self, comm: str) -> str:
        name = comm or "<idle>"
        if name not in self.machine.owners:
            self.machine.register_owner(name, oom_score_adj=-1000, killable=False)
        return name

    # -- allocations ------------------------------------------------------------------
    def _alloc_model(self, owner: str, pfn: int, order: int, gfp: int, cpu: int) -> bool:
        if pfn and pfn in self.live and not self.final:
            return False  # the host reuses a block whose free is later in this group
        handle = self.machine.alloc_now(owner, gfp, order, cpu)
        if pfn == 0:  # failed on the host
            if handle is not None:
                self.counts.model_ok_host_failed += 1
                self.machine.free(handle, cpu)
            return True
        if handle is None:
            self.counts.model_failed += 1
            return True
        old = self.live.pop(pfn, None)
        if old is not None and old.alive:  # its free was never traced
            self.counts.reused_unfreed += 1
            self.machine.free(old)
        self.live[pfn] = handle
        return True

    def _alloc_real(self, owner: str, pfn: int, order: int, gfp: int, cpu: int) -> bool:
        counts = self.counts
        if pfn == 0:
            return True
        mm = self.mm
        nr = 1 << order
        if not self._in_model(pfn, nr):
            counts.pfn_no_zone += 1
            self.skipped.add(pfn)
            return True
        zone = mm.page_zone(pfn)
        self.machine.apply_pending_frees()
        self.machine._enter(owner, cpu)
        from_pcp = take_block_off_pcp(zone, pfn, order)
        if not from_pcp and not self._take(zone, pfn, order):
            if not self.final:
                return False
            counts.pfn_busy += 1
            self.skipped.add(pfn)
            return True
        if zone.zone_idx > gfp_zone(gfp):
            counts.pfn_other_zone += 1
        mt = gfp_migratetype(gfp)
        mm.prep_new_page(pfn, order, gfp, mt)
        if mm.tracing:
            mm.tracer.mm_page_alloc(zone, pfn, order, gfp, mt, "pcp" if from_pcp else "buddy",
                                    zone.nid, "fast", 0)
        handle = self.machine._account(self.machine._owner(owner), pfn, gfp, order, cpu, 0)
        if handle is not None:
            self.skipped.discard(pfn)
            self.live[pfn] = handle
        return True

    def hand_over_to_reclaim(self) -> int:
        """Put the replayed MOVABLE blocks on the LRU lists, oldest first; returns them.

        While the replay runs, the host's own reclaim is in the trace (as its frees), so
        the model must not reclaim the replayed blocks as well. Once the state is rebuilt
        and the model is to act on its own (a huge-page request), the host's page cache
        and anonymous memory become reclaimable as on the host. A zeroed block
        (``__GFP_ZERO``: alloc_zeroed_user_highpage_movable(), the anonymous fault's page)
        is anonymous memory, any other MOVABLE block page cache, except
        hugetlb pool pages (:func:`is_hugetlb_page`), which are on no LRU list.
        SIMPLIFICATION: anonymous pages that are not zeroed at allocation (copy-on-write
        copies, THPs cleared by clear_huge_page(), shmem) count as page cache.
        """
        reclaim = self.mm.reclaim
        moved = 0
        pb_order = self.mm.pageblock_order
        for handle in self.live.values():
            if handle.alive and handle.lru < 0 and gfp_migratetype(handle.gfp) == MT_MOVABLE \
                    and not is_hugetlb_page(handle.gfp, handle.order, pb_order):
                handle.lru = KIND_ANON if handle.gfp & GFP_ZERO else KIND_FILE
                reclaim.lru_add(handle.pfn, handle.order, handle.lru)
                moved += 1
        return moved

    def _in_model(self, pfn: int, nr: int) -> bool:
        """Whether every page of ``[pfn, pfn + nr)`` is present in a zone of the model."""
        present = self.present
        return 0 < pfn and pfn + nr <= present.size and bool(present[pfn:pfn + nr].all())

    # -- frees ------------------------------------------------------------------------
    def _free(self, pfn: int, order: int, cpu: int) -> bool:
        handle, head = self._live_block(pfn, order)
        if handle is not None:
            self._free_part(handle, pfn - head, order, cpu, head)
            return True
        if self.real and self._skipped_free(pfn):
            return True
        if not self.final:
            return False  # its allocation may be later in this group
        if not self.real:
            if self._free_held_block(pfn, order, cpu):
                return True
            if self.migrated and not order:  # a migrated page's later free, perhaps
                self.counts.migrated_freed += 1
                self.machine.free(self.migrated.popleft(), cpu)
                return True
            self.counts.frees_unmatched_skipped += 1
            return True
        self._free_unmatched(pfn, order, cpu)
        return True

    def _live_block(self, pfn: int, order: int) -> tuple[Allocation | None, int]:
        """The live replayed block holding ``[pfn, pfn + 2**order)`` and its host head."""
        live = self.live
        for o in range(order, self.mm.max_order + 1):
            head = pfn & ~((1 << o) - 1)
            handle = live.get(head)
            if handle is not None and handle.alive and handle.order >= o:
                return handle, head
        return None, -1

    def _skipped_free(self, pfn: int) -> bool:
        if pfn in self.skipped:
            self.skipped.discard(pfn)
            return True
        return False

    def _free_part(self, handle: Allocation, offset: int, order: int, cpu: int,
                   head: int) -> None:
        """Free ``2**order`` pages at ``offset`` into ``handle``'s block."""
        machine = self.machine
        if offset == 0 and order == handle.order:
            del self.live[head]
            machine.free(handle, cpu)
            return
        self.counts.partial_frees += 1
        parts = self._split(handle)
        if parts is None:
            return
        del self.live[head]
        for i, part in enumerate(parts):
            if offset <= i < offset + (1 << order):
                machine.free(part, cpu)
            else:
                self.live[head + i] = part

    def _split(self, handle: Allocation) -> list[Allocation] | None:
        """``split_page()`` of a handle's block into order-0 handles (None: compound)."""
        mm = self.mm
        if mm.pages.flags[handle.pfn] & (PG_HEAD | PG_TAIL):
            self.counts.compound_partial_frees += 1
            return None
        machine = self.machine
        if handle.lru < 0:
            return machine.split(handle)
        reclaim = mm.reclaim  # an LRU block: split it on the LRU lists as well
        reclaim.lru_del(handle.pfn)
        handle.lru, lru = -1, handle.lru
        parts = machine.split(handle)
        for part in parts:
            part.lru = lru
            reclaim.lru_add(part.pfn, 0, lru)
        return parts

    def _free_unmatched(self, pfn: int, order: int, cpu: int) -> None:
        """``real``: a free of a block allocated before the trace, or by the bulk path."""
        counts = self.counts
        mm = self.mm
        nr = 1 << order
        if not self._in_model(pfn, nr):
            counts.frees_unmatched_free += 1
            return
        if mm.pages.flags[pfn] & PG_RESERVED:
            counts.frees_unmatched_reserved += 1
            return
        if self._free_held_block(pfn, order, cpu):
            return
        head = self._allocated_head(pfn)
        if head < 0:
            counts.frees_unmatched_free += 1
            return
        counts.frees_unmatched_applied += 1
        handle = self.machine.owner_of.get(head)
        if handle is not None and handle.alive:
            if head == pfn and handle.order == order:
                self.machine.free(handle, cpu)
                return
            parts = self._split(handle)
            for part in parts[pfn - head:pfn - head + nr] if parts else ():
                self.machine.free(part, cpu)
            return
        horder = mm.pages.info[head] & ORDER_MASK  # a block with no handle (kernel memory)
        if head == pfn and horder == order:
            mm.free_pages(pfn, order, cpu)
        elif mm.split_page(head, horder):
            for p in range(pfn, pfn + nr):
                mm.free_pages(p, 0, cpu)

    def _free_held_block(self, pfn: int, order: int, cpu: int) -> bool:
        """Free the pages of ``[pfn, pfn + 2**order)`` a host owner holds, if any.

        The host freed a block it had before the trace, and the model holds pages there
        for a host owner of a ``from_proc`` initial state (under ``model`` placement
        only by chance: the initial state places owners where pagetypeinfo's counts
        allow, not where the host had them). A block held whole is freed once, at its
        order, as ``free_the_page()`` frees it (a pcp list for orders 0-3 and
        pageblock_order, else the buddy lists); a block held in part gives back the
        pages held.
        """
        nr = 1 << order
        if not self._in_model(pfn, nr):
            return False
        held = self._held_mask(pfn, nr)
        if not held.any():
            return False
        self.counts.frees_unmatched_applied += 1
        if order and held.all():
            for p in range(pfn, pfn + nr):
                self._release_held(p)
            pages = self.mm.pages
            pages.ref_np[pfn + 1:pfn + nr] = 0
            pages.flags_np[pfn + 1:pfn + nr] = 0
            pages.info[pfn] = (pages.info[pfn] & ~ORDER_MASK) | order
            pages.flags[pfn] = PG_ALLOC
            pages.ref[pfn] = 1
            self.mm.free_pages(pfn, order, cpu)
            return True
        for i in np.flatnonzero(held).tolist():
            self._free_held(pfn + i, cpu)
        return True

    def _release_held(self, p: int) -> None:
        """Page ``p`` leaves its host owner and its LRU or slab list."""
        machine = self.machine
        held = machine.held
        assert held is not None
        machine._owner_list[held.pop(p)].pages -= 1
        self.mm.reclaim.lru_del(p)

    def _free_held(self, p: int, cpu: int) -> None:
        """The host freed page ``p``, which a host owner holds in the model."""
        self._release_held(p)
        self.mm.free_pages(p, 0, cpu)

    def _allocated_head(self, pfn: int) -> int:
        """The head pfn of the allocated block holding ``pfn`` (-1: not allocated)."""
        pages = self.mm.pages
        for o in range(self.mm.max_order + 1):
            head = pfn & ~((1 << o) - 1)
            if pages.flags[head] & PG_ALLOC and pages.ref[head] and (
                    pages.info[head] & ORDER_MASK) >= o:
                return head
        return -1

