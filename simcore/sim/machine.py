"""The root object: one simulated machine running in a SimPy environment.

``Machine`` holds the SimPy environment (integer nanoseconds), the RNG streams (one
``numpy.random.SeedSequence``, spawned once per workload), the pure
:class:`~simcore.mm.page_alloc.PageAllocator`, the tracer and the per-caller counters.
Nothing lives at module level.

Allocations are returned as :class:`Allocation` handles that record their owner. A
handle is an object the allocator can update: when later work (compaction) moves a
movable allocation to new pfns, it rewrites ``handle.pfn`` and the reverse map, so
callers never hold raw pfns.

Deferred frees. A caller that knows when it will free a block hands the handle to
:meth:`Machine.defer_free` with its expiry instead of waking up (one SimPy event) to
free it. The machine keeps a heap of pending expiry times, each with its frees in the
order they were deferred, and applies the due ones, in that order, at the start of
every allocator call (:meth:`~Machine.alloc_now`, :meth:`~Machine.free`,
:meth:`~Machine.split`) and whenever someone is about to look at the allocator's state
(snapshots, the end of the run), through :meth:`Machine.apply_pending_frees`. So the
allocator sees the same sequence of operations as with one SimPy event per free, and
while a deferred free is applied :meth:`Machine.trace_now` (the tracer's clock) and
:attr:`Machine.now_ns` read its expiry, not ``env.now``.

Equal timestamps: a deferred free with expiry ``t`` is applied before any allocator
call or snapshot at ``t``; deferred frees with the same expiry are applied in the
order they were deferred (machine-wide).
"""

from __future__ import annotations

import heapq
import operator
from collections import Counter
from collections.abc import Generator
from functools import partial
from typing import Any

import numpy as np
import simpy

from simcore.config.types import (
    CostConfig,
    ExperimentConfig,
    LimitsConfig,
    MachineConfig,
    SysctlConfig,
)
from simcore.formats import trace_schema as ts
from simcore.mm import compaction as compaction_mod
from simcore.mm import kswapd, slowpath
from simcore.mm.constants import NEED_SLOWPATH
from simcore.mm.gfp import GFP, format_gfp
from simcore.mm.lru import KIND_ANON
from simcore.mm.oom_kill import KernelPanic, OomCandidate
from simcore.mm.page_alloc import AllocContext, PageAllocator
from simcore.mm.pages import MT_SHIFT
from simcore.mm.slowpath import SlowRequest
from simcore.mm.tracepoints import NullTracer, Tracer
from simcore.mm.vmstat import VMSTAT_INDEX
from simcore.sim import misuse
from simcore.sim.heldpages import HeldPages
from simcore.sim.pollution import first_foreign_pfn
from simcore.sim.pressure import LatencyStats, SpanRecorder, StallClock

GFP_NOFAIL = int(GFP.NOFAIL)
_VM_EXTFRAG_STEAL = VMSTAT_INDEX["extfrag_steal"]
_KILLED = -3
"""What ``Machine._fast_path`` returns for a caller the OOM killer has killed."""
LRU_DIRTY = 1
"""``lru_flags`` bit: the page-cache page is dirty (reclaim must write it first)."""
LRU_HOT = 2
"""``lru_flags`` bit: the owner keeps using the page (its working set): reclaim finds it
referenced at every scan and never frees it (``folio_check_references()``)."""
LRU_NONE = 4
"""``lru_flags`` bit: the block is on no LRU list although its owner's memory is
reclaimable (e.g. the page tables of a process whose anonymous memory is)."""


class Allocation:
    """A handle on one allocated block (the caller's ``struct page *``).

    Handles compare by identity. An extension type in the compiled build (see
    ``machine.pxd``), so its fields are C fields there.

    Attributes:
        pfn: Current first pfn; updated in place if the block is migrated.
        order: Block order.
        owner: The caller (workload instance name).
        gfp: The gfp_mask it was allocated with.
        cpu: The CPU that allocated it.
        alive: False once freed, reclaimed or killed.
        lru: Where reclaim keeps it (``simcore.mm.lru.KIND_*``), -1 if not reclaimable.
        gone: Reclaim or the OOM killer took it; its owner's free is then a no-op.
        swapped: Reclaim swapped it out; its owner's free releases the swap slots.
    """

    __slots__ = ("pfn", "order", "owner", "gfp", "cpu", "alive", "lru", "gone", "swapped")

    def __init__(
        self, pfn: int, order: int, owner: str, gfp: int, cpu: int, alive: bool = True,
        lru: int = -1,
    ) -> None:
        self.pfn = pfn
        self.order = order
        self.owner = owner
        self.gfp = gfp
        self.cpu = cpu
        self.alive = alive
        self.lru = lru
        self.gone = False
        self.swapped = False

    def __repr__(self) -> str:
        return (f"Allocation(pfn={self.pfn:#x}, order={self.order}, owner={self.owner!r}, "
                f"gfp={self.gfp:#x}, cpu={self.cpu}, alive={self.alive})")


ORDER_SLOTS = 64
"""Orders counted per caller (a request's order is below 64: the config allows 16 at most)."""


class Owner:
    """One caller's memory, as ``oom_badness()`` and the summary see it.

    An extension type in the compiled build (``machine.pxd``): the allocation path
    updates its counts.

    Attributes:
        name: The caller (workload instance) name.
        lru: The kind of memory it allocates (``simcore.mm.lru.KIND_*``), or -1 for
            memory reclaim cannot take back.
        oom_score_adj: ``/proc/<pid>/oom_score_adj`` (-1000 = never killed).
        killable: False for kernel memory (slab, thread stacks): the OOM killer skips it.
        pages: Pages it holds now.
        swap_pages: Its pages in swap.
        killed_ns: When the OOM killer killed it (-1: alive).
        stall_ns: Time it spent stalled in the slow path.
        exited: The caller has finished (no longer an OOM candidate).
        idx: Its number, in registration order (the pageblock attribution's id).
        requests: Allocation requests it made (each page of a bulk call counts).
        extfrag: Fallback steals (``mm_page_alloc_extfrag``) made in its allocations.
        polluted: Pageblocks it was the first to pollute (see :mod:`simcore.sim.pollution`).
        requests_by_order: Its requests per order (index: the order).
        failures_by_order: Its failed requests per order.
        first_failure_ns: When its first request failed (-1: none has).
    """

    __slots__ = ("name", "lru", "oom_score_adj", "killable", "pages", "swap_pages",
                 "killed_ns", "stall_ns", "exited", "idx", "requests", "extfrag", "polluted",
                 "requests_by_order", "failures_by_order", "first_failure_ns")

    def __init__(self, name: str, lru: int = -1, oom_score_adj: int = 0,
                 killable: bool = True) -> None:
        self.name = name
        self.lru = lru
        self.oom_score_adj = oom_score_adj
        self.killable = killable
        self.pages = 0
        self.swap_pages = 0
        self.killed_ns = -1
        self.stall_ns = 0
        self.exited = False
        self.idx = -1
        self.requests = 0
        self.extfrag = 0
        self.polluted = 0
        self.requests_by_order = np.zeros(ORDER_SLOTS, dtype=np.int64)
        self.failures_by_order = np.zeros(ORDER_SLOTS, dtype=np.int64)
        self.first_failure_ns = -1


class CallerStats:
    """Per-run request accounting for ``summary.json``."""

    __slots__ = ("alloc_requests", "pages_allocated", "pages_freed", "free_requests",
                 "failures_by_order", "failures_by_caller", "pages_reclaimed",
                 "pages_oom_killed")

    def __init__(self) -> None:
        self.alloc_requests = 0
        self.pages_allocated = 0
        self.pages_freed = 0
        self.free_requests = 0
        self.pages_reclaimed = 0
        self.pages_oom_killed = 0
        self.failures_by_order: Counter[int] = Counter()
        self.failures_by_caller: Counter[str] = Counter()


class Machine:
    """A simulated machine: SimPy environment + page allocator + RNG streams."""

    def __init__(
        self,
        machine: MachineConfig,
        sysctl: SysctlConfig,
        seed: int,
        tracer: Tracer | None = None,
        mm: PageAllocator | None = None,
        cost: CostConfig | None = None,
        limits: LimitsConfig | None = None,
    ) -> None:
        self.env = simpy.Environment(initial_time=0)
        self.tracer = tracer if tracer is not None else NullTracer()
        if mm is None:
            mm = PageAllocator(machine, sysctl, self.tracer, cost=cost)
        self.mm = mm
        self.seed_sequence = np.random.SeedSequence(seed)
        self.stats = CallerStats()
        self.owner_of: dict[int, Allocation] = {}
        """Reverse map: head pfn -> live handle (what compaction and reclaim use).

        Handles whose deferred free is due but not yet applied are still in it: call
        :meth:`apply_pending_frees` before reading it."""
        self.slow_requests: dict[int, SlowRequest] = {}
        """The requests stalled in the slow path now (``id`` -> request): a block direct
        compaction captured for one is the request's while it stalls."""
        self.extra_refs: dict[int, int] = {}
        """pfn -> references held on it besides its owner's (speculative walkers'
        ``get_page_unless_zero()``): what the invariant audit expects on top of the
        owner's reference (:mod:`simcore.sim.audit`)."""
        self.held: HeldPages | None = None
        """Order-0 pages held by owners without a handle each (a snapshot's memory, see
        :mod:`simcore.sim.initial_state`); None until someone holds any."""
        self._pending: list[int] = []
        """Deferred frees: a heap of the distinct expiry times (ns) still pending."""
        self._pending_at: dict[int, list[Allocation]] = {}
        """Deferred frees: expiry -> the handles due then, in the order they were deferred."""
        self._nr_pending = 0
        self._stamp_ns = -1
        """The expiry of the deferred free being applied; -1 outside one."""
        self.limits = limits if limits is not None else LimitsConfig()
        self.owners: dict[str, Owner] = {}
        """Callers by name, in the order they first allocated or registered."""
        self.spans = SpanRecorder()
        self.latency = LatencyStats()
        self.stalls = StallClock()
        self.nofail_stalls: list[dict[str, Any]] = []
        """``__GFP_NOFAIL`` requests stalled longer than ``limits.nofail_stall_ns``."""
        self.in_slowpath: dict[int, tuple[str, int, str, int, bool]] = {}
        """Requests stalled in the slow path now: id -> (caller, since, gfp, order, NOFAIL)."""
        self.extras: dict[str, Any] = {}
        self._owner_list: list[Owner] = []
        """Callers by :attr:`Owner.idx`."""
        self.pb_polluter = np.full(len(self.mm.pageblock_mt), -1, dtype=np.int32)
        """Per pageblock: the :attr:`Owner.idx` of the caller charged with polluting it,
        -1 if none (see :mod:`simcore.sim.pollution`)."""
        self._polluter = self.pb_polluter.data  # typed views (C arrays when compiled)
        self._pb_mt = self.mm.pageblock_mt
        self._pb_order = self.mm.pageblock_order
        self._steals_seen = 0
        """``extfrag_steal`` when the allocator context last changed."""
        """State the callers share (e.g. the per-CPU thread-stack caches)."""
        self._context = ""
        """Who runs the allocator now (a caller, or kswapdN): the spans' caller."""
        reclaim = self.mm.reclaim
        reclaim.release = self._reclaimed
        reclaim.span = self._span
        reclaim.oom_candidates = self._oom_candidates
        reclaim.oom_kill = self._oom_kill
        self._kswapd_wait: list[Any] = [None] * len(self.mm.nodes)
        for st in reclaim.kswapd:
            st.wake = partial(self._wake_kswapd, st.nid)
            st.thread = True
            self.env.process(self._kswapd(st.nid))
        compaction = reclaim.compaction
        compaction.moved = self._moved
        compaction.span = self._span
        self._kcompactd_wait: list[Any] = [None] * len(self.mm.nodes)
        for kst in compaction.kcompactd:
            kst.wake = partial(self._wake_kcompactd, kst.nid)
            kst.thread = True
            self.env.process(self._kcompactd(kst.nid))

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, tracer: Tracer | None = None) -> Machine:
        """Build the machine an experiment describes."""
        return cls(cfg.machine, cfg.sysctl, cfg.seed, tracer, cost=cfg.cost, limits=cfg.limits)

    @property
    def now_ns(self) -> int:
        """Simulated time in integer nanoseconds (see :meth:`trace_now`)."""
        return self.trace_now()

    def trace_now(self) -> int:
        """The time of the allocator operation in progress, in ns: the tracer's clock.

        ``env.now``, except while a deferred free is applied: then its expiry.
        """
        stamp = self._stamp_ns
        return stamp if stamp >= 0 else int(self.env.now)

    @property
    def nr_cpus(self) -> int:
        """CPUs of all nodes."""
        return self.mm.nr_cpus

    def spawn_rngs(self, n: int) -> list[np.random.Generator]:
        """``n`` independent RNG streams, spawned from the run's seed in a fixed order."""
        return [np.random.default_rng(s) for s in self.seed_sequence.spawn(n)]

    def cpu_node(self, cpu: int) -> int:
        """``cpu_to_node()``."""
        return self.mm.cpu_to_node[cpu]

    # -- owners -------------------------------------------------------------------------
    def register_owner(self, name: str, lru: int = -1, oom_score_adj: int = 0,
                       killable: bool = True) -> Owner:
        """Declare a caller: what its memory is and how the OOM killer treats it.

        A caller that allocates without registering is a process (killable,
        ``oom_score_adj`` 0) whose memory reclaim cannot take back.
        """
        owner = Owner(name, lru, oom_score_adj, killable)
        old = self.owners.get(name)
        if old is not None:
            owner.idx = old.idx
            self._owner_list[old.idx] = owner
        else:
            owner.idx = len(self._owner_list)
            self._owner_list.append(owner)
        self.owners[name] = owner
        return owner

    def oom_killed(self, name: str) -> bool:
        """Whether the OOM killer has killed the caller ``name``."""
        owner = self.owners.get(name)
        return owner is not None and owner.killed_ns >= 0

    def _owner(self, name: str) -> Owner:
        owner = self.owners.get(name)
        if owner is None:
            owner = self.register_owner(name)
        return owner

    # -- the caller-facing API ----------------------------------------------------------
    def alloc(
        self, owner: str, gfp: int, order: int, cpu: int, nid: int | None = None,
        lru_flags: int = 0,
    ) -> Generator[Any, Any, Allocation | None]:
        """``alloc_pages_node(nid, gfp, order)`` issued by ``owner`` on ``cpu``.

        A SimPy sub-generator (``handle = yield from machine.alloc(...)``). The fast path
        takes no simulated time; the slow path's stalls (direct reclaim, its throttling,
        compaction, the OOM kill) advance the caller's clock, so a blocking request may
        return later than it was issued. Returns None on failure, and at once for a
        caller the OOM killer has killed. ``lru_flags`` (:data:`LRU_DIRTY`,
        :data:`LRU_HOT`, :data:`LRU_NONE`) describe a reclaimable allocation's page.
        """
        who, nid, pfn = self._fast_path(owner, gfp, order, cpu, nid)
        if pfn == _KILLED:
            return None
        if pfn == NEED_SLOWPATH:
            mm, ac, req = self.mm, self._last_ac(), SlowRequest()
            steps = slowpath.alloc_pages_slowpath(mm, gfp, order, ac, cpu, req)
            env = self.env
            self.in_slowpath[id(req)] = (owner, int(env.now), format_gfp(gfp), order,
                                         bool(gfp & GFP_NOFAIL))
            self.slow_requests[id(req)] = req
            try:
                ns = next(steps)
                while True:
                    req.stall_ns += ns
                    if ns:
                        self.stalls.enter(int(env.now))
                        try:
                            yield env.timeout(ns)
                        finally:
                            self.stalls.leave(int(env.now))
                        who.stall_ns += ns
                        self.apply_pending_frees()
                        self._enter(owner, cpu)
                    ns = next(steps)
            except StopIteration as done:
                pfn = done.value
            except KernelPanic as panic:
                panic.time_ns = int(env.now)
                panic.args = (panic.reason, panic.time_ns)  # SimPy rebuilds it from args
                raise
            finally:
                del self.in_slowpath[id(req)]
                del self.slow_requests[id(req)]
            pfn = self._slow_done(who, pfn, gfp, order, nid, ac, req)
            if who.killed_ns >= 0:  # killed while it stalled: the page goes as it exits
                if pfn >= 0:
                    mm.free_pages(pfn, order, cpu)
                self.stats.alloc_requests += 1
                return None
        return self._account(who, pfn, gfp, order, cpu, lru_flags)

    def alloc_bulk(
        self, owner: str, gfp: int, nr_pages: int, cpu: int, nid: int | None = None,
    ) -> Generator[Any, Any, list[Allocation]]:
        """``alloc_pages_bulk_array_node()`` into an empty array: up to ``nr_pages`` pages.

        With ``nid`` None it is ``alloc_pages_bulk_array_mempolicy()``: under the default
        policy, the calling CPU's node.
        The bulk path (:meth:`PageAllocator.alloc_pages_bulk`) takes pages from one
        zone's pcp list without tracing them and without stalling; where the kernel falls
        back to one ordinary ``__alloc_pages()``, this makes that call (:meth:`alloc`,
        traced, with its slow path). Returns the handles, one per order-0 page (possibly
        fewer than asked for, or none).
        """
        who = self._owner(owner)
        if who.killed_ns >= 0:
            return []
        self.apply_pending_frees()
        mm = self.mm
        if nid is None:
            nid = mm.cpu_to_node[cpu]
        self._enter(owner, cpu)
        pfns = mm.alloc_pages_bulk(gfp, nid, nr_pages, cpu, None)
        if pfns is None:
            handle = yield from self.alloc(owner, gfp, 0, cpu, nid)
            return [] if handle is None else [handle]
        handles: list[Allocation] = []
        for pfn in pfns:
            handle = self._account(who, pfn, gfp, 0, cpu, 0)
            if handle is not None:
                handles.append(handle)
        return handles

    def alloc_now(
        self, owner: str, gfp: int, order: int, cpu: int, nid: int | None = None,
        lru_flags: int = 0,
    ) -> Allocation | None:
        """:meth:`alloc` with no clock: the slow path's stalls are latency only.

        For requests that cannot block (they never stall) and for tests.
        """
        who, nid, pfn = self._fast_path(owner, gfp, order, cpu, nid)
        if pfn == _KILLED:
            return None
        if pfn == NEED_SLOWPATH:
            mm, ac, req = self.mm, self._last_ac(), SlowRequest()
            pfn = slowpath.run_to_end(
                slowpath.alloc_pages_slowpath(mm, gfp, order, ac, cpu, req), req)
            who.stall_ns += req.stall_ns
            pfn = self._slow_done(who, pfn, gfp, order, nid, ac, req)
        return self._account(who, pfn, gfp, order, cpu, lru_flags)

    def _fast_path(self, owner: str, gfp: int, order: int, cpu: int,
                   nid: int | None) -> tuple[Owner, int, int]:
        """Catch up on due frees and try the fast path.

        Returns ``(owner, nid, pfn)``, the pfn being NEED_SLOWPATH when the slow path
        must run, and ``_KILLED`` for a caller the OOM killer has killed.
        """
        who = self._owner(owner)
        if who.killed_ns >= 0:
            return who, -1, _KILLED
        self.apply_pending_frees()  # returns at once when nothing is due
        mm = self.mm
        if nid is None:
            nid = mm.cpu_to_node[cpu]
        self._enter(owner, cpu)
        return who, nid, mm.alloc_pages_fast(gfp, order, nid, cpu, None)

    def _last_ac(self) -> AllocContext:
        ac = self.mm.last_ac
        assert ac is not None
        return ac

    def _enter(self, owner: str, cpu: int) -> None:
        """Make ``owner`` on ``cpu`` the context of the allocator calls that follow."""
        self.charge_context()
        self.tracer.set_context(owner, cpu)
        self.mm.current_comm = owner
        self._context = owner

    def charge_context(self) -> None:
        """Charge the steals and pageblock claims made since the context last changed.

        The steals happened inside allocator calls of the current context (a stall in
        the slow path re-enters it), so its caller gets them (``extfrag``). A pageblock
        that a claim or the highatomic reserve relabelled while it held allocations is
        charged to the caller of its first foreign allocation, in pfn order (the page
        ``pagetypeinfo_showmixedcount_print()`` stops at), unless one is charged already.
        """
        steals = self.mm.vm.v[_VM_EXTFRAG_STEAL]
        claims = self.mm.pb_claims
        if steals == self._steals_seen and not claims:
            return
        who = self.owners.get(self._context)
        if who is not None:
            who.extfrag += steals - self._steals_seen
        self._steals_seen = steals
        for pfn in claims:
            first = first_foreign_pfn(self.mm, pfn)
            handle = self.owner_of.get(first) if first >= 0 else None
            if handle is not None:
                self._pollute(self.owners[handle.owner], pfn)
        claims.clear()

    def _pollute(self, who: Owner, pfn: int) -> None:
        """Charge ``pfn``'s pageblock to ``who`` unless a first polluter is already charged."""
        if self._polluter[pfn >> self._pb_order] < 0:
            self._charge(who, pfn)

    def _charge(self, who: Owner, pfn: int) -> None:
        """Charge ``pfn``'s pageblock to ``who``, with a ``pageblock_polluted`` instant."""
        blk = pfn >> self._pb_order
        self._polluter[blk] = who.idx
        who.polluted += 1
        now = self.trace_now()
        first = blk << self._pb_order
        zone = self.mm.page_zone(pfn)
        self.spans.add(ts.SPAN_PAGEBLOCK_POLLUTED, zone.nid, who.name, now, now,
                       1 << self._pb_order, f"pfn={first} zone={zone.name}")

    def _slow_done(self, who: Owner, pfn: int, gfp: int, order: int, nid: int,
                   ac: Any, req: SlowRequest) -> int:
        """Trace and record a request that went through the slow path."""
        mm = self.mm
        pfn = mm.alloc_pages_done(pfn, gfp, order, nid, req.ac or ac, req.stage,
                                  req.stall_ns, req.fail_reason())
        latency = req.stall_ns + (mm.path_cost[mm.served_path()] if pfn >= 0 else 0)
        self.latency.add(req.stage, latency)
        if gfp & GFP_NOFAIL and req.stall_ns > self.limits.nofail_stall_ns:
            self.nofail_stalls.append({"caller": who.name, "time_ns": int(self.env.now),
                                       "stall_ns": req.stall_ns, "order": order,
                                       "gfp": format_gfp(gfp)})
        return pfn

    def _account(self, who: Owner, pfn: int, gfp: int, order: int, cpu: int,
                 lru_flags: int) -> Allocation | None:
        stats = self.stats
        stats.alloc_requests += 1
        who.requests += 1
        who.requests_by_order[order] += 1
        if pfn < 0:
            stats.failures_by_order[order] += 1
            stats.failures_by_caller[who.name] += 1
            who.failures_by_order[order] += 1
            if who.first_failure_ns < 0:
                who.first_failure_ns = int(self.env.now)
            return None
        pages = 1 << order
        stats.pages_allocated += pages
        who.pages += pages
        lru = -1 if lru_flags & LRU_NONE else who.lru
        handle = Allocation(pfn, order, who.name, gfp, cpu, True, lru)
        self.owner_of[pfn] = handle
        blk = pfn >> self._pb_order
        if self._polluter[blk] < 0 and (
                self.mm.pages.info[pfn] >> MT_SHIFT) != (self._pb_mt[blk] & 0x7):
            self._charge(who, pfn)  # the first foreign allocation in the block
        if lru >= 0:
            self.mm.reclaim.lru_add(pfn, order, who.lru, bool(lru_flags & LRU_DIRTY),
                                    bool(lru_flags & LRU_HOT))
        return handle

    def free(self, handle: Allocation, cpu: int | None = None) -> None:
        """``__free_pages(page, order)`` by the handle's owner (on ``cpu``).

        A handle reclaim or the OOM killer took is already gone: freeing it only
        releases its swap slots, if it was swapped out. Freeing a handle already freed is
        a double free, passed on as the kernel would see it
        (:func:`simcore.sim.misuse.free_again`): the run goes on.
        """
        if handle is None:  # e.g. a failed alloc() (the compiled build must not read it)
            raise TypeError("free() of None: the allocation it came from failed")
        if self._stamp_ns < 0:  # not one of the frees apply_pending_frees() is applying
            self.apply_pending_frees()
        if handle.gone:
            if handle.swapped:
                handle.swapped = False
                pages = 1 << handle.order
                self.mm.reclaim.swap_free(pages)
                owner = self.owners[handle.owner]
                owner.swap_pages -= min(pages, owner.swap_pages)
            return
        if not handle.alive:  # a double free
            misuse.free_again(self, handle, cpu)
            return
        cpu = handle.cpu if cpu is None else cpu
        self.tracer.set_context(handle.owner, cpu)
        handle.alive = False
        self.owner_of.pop(handle.pfn, None)
        self.stats.free_requests += 1
        if handle.lru >= 0:
            self.mm.reclaim.lru_del(handle.pfn)
        pages = 1 << handle.order
        self.owners[handle.owner].pages -= pages
        if self.mm.free_pages(handle.pfn, handle.order, cpu):
            self.stats.pages_freed += pages

    def split(self, handle: Allocation) -> list[Allocation]:
        """``split_page()``: one order-0 handle per page, each freed on its own.

        A split the kernel would get wrong (a compound page, a handle already freed) is
        refused with a ``sim_warning`` (:func:`simcore.mm.page_misuse.split_page_misuse`)
        and returns ``[handle]``. SIMPLIFICATION: reclaimable (LRU) allocations are not
        split.
        """
        self.apply_pending_frees()
        if handle.lru >= 0:
            raise ValueError(f"{handle.owner}: split_page() of a reclaimable allocation")
        self.tracer.set_context(handle.owner, handle.cpu)
        if not self.mm.split_page(handle.pfn, handle.order):
            return [handle]
        self.owner_of.pop(handle.pfn, None)
        handle.alive = False
        parts = [
            Allocation(handle.pfn + i, 0, handle.owner, handle.gfp, handle.cpu)
            for i in range(1 << handle.order)
        ]
        for part in parts:
            self.owner_of[part.pfn] = part
        return parts

    def put_page(self, handle: Allocation, index: int = 0, cpu: int | None = None) -> None:
        """``put_page(page + index)`` by the handle's owner: it drops its reference.

        On a compound page's first page or any tail (``page_folio()`` is the head) and on
        an order-0 page this is :meth:`free` (legal). On page ``index`` > 0 of a
        non-compound block it drops that page's own count, which is 0: it goes to -1, the
        kernel reports nothing, the handle stays live and its later free reports "nonzero
        _refcount" and leaks the block. On the first page of a non-compound order>0 block
        it frees that page only (``__folio_put_small()``) and the rest leaks. On a handle
        already freed it is a double free (:mod:`simcore.sim.misuse`).

        Raises:
            ValueError: ``index`` is not a page of the block.
        """
        if not 0 <= index < 1 << handle.order:
            raise ValueError(f"{handle.owner}: put_page() of page {index} of an order-"
                             f"{handle.order} block")
        if self._stamp_ns < 0:
            self.apply_pending_frees()
        misuse.put_page(self, handle, index, cpu)

    def touch(self, handle: Allocation) -> None:
        """The handle's owner reads or writes its block's memory.

        No page state changes. After the block was freed this is a use after free, which
        a kernel without KASAN or debug_pagealloc does not detect: a ``sim_warning``
        (:func:`simcore.sim.misuse.use_after_free`). A handle reclaim or the OOM killer
        took is not misuse (SIMPLIFICATION: no refault is modelled).
        """
        if self._stamp_ns < 0:
            self.apply_pending_frees()
        if not handle.alive and not handle.gone:
            misuse.use_after_free(self, handle)

    # -- reclaim and the OOM killer -----------------------------------------------------
    def _reclaimed(self, pfn: int, order: int, cpu: int, kind: int) -> None:
        """Reclaim freed the block at ``pfn``: its owner loses it (``release``)."""
        handle = self.owner_of.pop(pfn, None)
        if handle is None:  # a page held without a handle (self.held)
            held = self.held
            assert held is not None, f"reclaim freed pfn {pfn:#x}, which nobody holds"
            owner = self._owner_list[held.pop(pfn)]
        else:
            handle.alive = False
            handle.gone = True
            owner = self.owners[handle.owner]
        pages = 1 << order
        owner.pages -= pages
        if kind == KIND_ANON:
            if handle is not None:
                handle.swapped = True
            owner.swap_pages += pages
        self.stats.pages_reclaimed += pages
        self.mm.free_pages(pfn, order, cpu)

    def _oom_candidates(self) -> list[OomCandidate]:
        """Live processes: not killed, not exited (``for_each_process``)."""
        return [OomCandidate(o.name, o.pages, o.swap_pages, o.oom_score_adj, o.killable)
                for o in self.owners.values() if o.killed_ns < 0 and not o.exited]

    def owner_exit(self, name: str) -> None:
        """The caller ``name`` has finished: the OOM killer no longer considers it.

        SIMPLIFICATION: what it still holds stays allocated (as page cache outlives the
        process that read it); a workload frees its own memory before it ends.
        """
        self._owner(name).exited = True

    def _oom_kill(self, victim: str) -> int:
        """Kill ``victim``: free every page it holds and its swap. Returns the pages."""
        owner = self.owners[victim]
        owner.killed_ns = int(self.env.now)
        freed = 0
        reclaim = self.mm.reclaim
        for handle in [h for h in self.owner_of.values() if h.owner == victim]:
            del self.owner_of[handle.pfn]
            handle.alive = False
            handle.gone = True
            if handle.lru >= 0:
                reclaim.lru_del(handle.pfn)
            self.mm.free_pages(handle.pfn, handle.order, handle.cpu)
            freed += 1 << handle.order
        if self.held is not None:
            freed += self._oom_kill_held(owner)
        owner.pages = 0
        reclaim.swap_free(owner.swap_pages)
        owner.swap_pages = 0
        self.stats.pages_oom_killed += freed
        return freed

    def _oom_kill_held(self, owner: Owner) -> int:
        """Free the pages ``owner`` holds without handles; returns how many."""
        assert self.held is not None
        pfns = self.held.pfns_of(owner.idx)
        reclaim = self.mm.reclaim
        for pfn in pfns.tolist():
            self.held.pop(pfn)
            reclaim.lru_del(pfn)
            self.mm.free_pages(pfn, 0, 0)
        return len(pfns)

    def _span(self, name: str, nid: int, pages: int, duration_ns: int, detail: str,
              ago_ns: int = 0) -> None:
        start = self.trace_now() - ago_ns
        self.spans.add(name, nid, self._context, start, start + duration_ns, pages, detail)

    # -- kswapd -------------------------------------------------------------------------
    def _wake_kswapd(self, nid: int) -> None:
        """``wake_up_interruptible(&pgdat->kswapd_wait)``."""
        event = self._kswapd_wait[nid]
        if event is not None and not event.triggered:
            event.succeed()

    def _kswapd(self, nid: int) -> Generator[Any, Any, None]:
        """The SimPy process of node ``nid``'s kswapd (:func:`simcore.mm.kswapd.kswapd`)."""
        env = self.env
        name = f"kswapd{nid}"
        cpus = self.mm.nodes[nid].cpus
        cpu = cpus[0] if cpus else 0
        nap_ns = self.mm.reclaim.cost.jiffy_ns * self.mm.reclaim.cost.hz // 10
        steps = kswapd.kswapd(self.mm.reclaim, nid)
        answer: bool | None = None
        while True:
            self.apply_pending_frees()
            self._enter(name, cpu)
            step = steps.send(answer)
            answer = None
            if step == kswapd.NAP:
                woken = self._kswapd_wait[nid] = env.event()
                yield woken | env.timeout(nap_ns)
                answer = woken.triggered
                self._kswapd_wait[nid] = None
            elif step == kswapd.SLEEP:
                woken = self._kswapd_wait[nid] = env.event()
                yield woken
                self._kswapd_wait[nid] = None
            else:
                assert isinstance(step, int)
                yield env.timeout(step)

    # -- compaction ---------------------------------------------------------------------
    def _moved(self, old_pfn: int, new_pfn: int) -> None:
        """Compaction migrated the block at ``old_pfn``: its handle follows it (rmap)."""
        handle = self.owner_of.pop(old_pfn, None)
        if handle is None:  # a page held without a handle (self.held)
            held = self.held
            assert held is not None, f"compaction moved pfn {old_pfn:#x}, which nobody holds"
            held.move(old_pfn, new_pfn)
            return
        handle.pfn = new_pfn
        self.owner_of[new_pfn] = handle

    def _wake_kcompactd(self, nid: int) -> None:
        """``wake_up_interruptible(&pgdat->kcompactd_wait)``."""
        event = self._kcompactd_wait[nid]
        if event is not None and not event.triggered:
            event.succeed()

    def _kcompactd(self, nid: int) -> Generator[Any, Any, None]:
        """The SimPy process of node ``nid``'s kcompactd: mirrors ``kcompactd()``.

        It sleeps until woken with work (``kcompactd_max_order > 0``), or for
        ``HPAGE_FRAG_CHECK_INTERVAL_MSEC`` when ``compaction_proactiveness`` is set;
        woken, it runs ``kcompactd_do_work()``; timed out, proactive compaction if the
        node's fragmentation score is above the high mark, backing off 64 times as
        long when a pass did not lower it. Each pass's work is done at its start and
        its cost spent after.
        """
        env = self.env
        compaction = self.mm.reclaim.compaction
        st = compaction.kcompactd[nid]
        name = f"kcompactd{nid}"
        cpus = self.mm.nodes[nid].cpus
        cpu = cpus[0] if cpus else 0
        period = compaction_mod.HPAGE_FRAG_CHECK_INTERVAL_MSEC * 1_000_000
        timeout = period
        while True:
            if st.max_order <= 0 and not st.proactive_trigger:  # wait_event_..._timeout()
                st.waiting = True
                woken = self._kcompactd_wait[nid] = env.event()
                if compaction.proactiveness:
                    yield woken | env.timeout(timeout)
                else:
                    yield woken
                self._kcompactd_wait[nid] = None
                st.waiting = False
            self.apply_pending_frees()
            self._enter(name, cpu)
            if st.max_order > 0 and not st.proactive_trigger:
                self._span(ts.SPAN_KCOMPACTD_WAKE, nid, 0, 0,
                           f"order={st.max_order} highest_zoneidx={st.highest_zoneidx}")
                cost = compaction.kcompactd_do_work(nid, cpu)
                if cost:
                    yield env.timeout(cost)
                timeout = period
                continue
            timeout = period
            if compaction.should_proactive_compact_node(nid):
                prev_score = compaction.fragmentation_score_node(nid)
                cost = compaction.proactive_compact_node(nid, cpu)
                if compaction.fragmentation_score_node(nid) >= prev_score:
                    timeout = period << compaction_mod.COMPACT_MAX_DEFER_SHIFT
                if cost:
                    yield env.timeout(cost)
            st.proactive_trigger = False

    # -- deferred frees -----------------------------------------------------------------
    def defer_free(self, handle: Allocation, expiry_ns: int) -> None:
        """Free ``handle`` at ``expiry_ns`` without a SimPy event.

        The free (on the CPU that allocated the block) is applied by the first
        :meth:`apply_pending_frees` at or after that time, stamped with ``expiry_ns``.
        The caller must not free or split the handle itself after this.

        Raises:
            TypeError: ``expiry_ns`` is not an integer (simulated time is integer ns).
            ValueError: ``expiry_ns`` is in the past.
        """
        if handle is None:
            raise TypeError("defer_free() of None: the allocation it came from failed")
        try:
            expiry_ns = operator.index(expiry_ns)
        except TypeError:
            raise TypeError(f"{handle.owner}: expiry {expiry_ns!r} is not integer ns") from None
        if expiry_ns < self.env.now:
            raise ValueError(f"{handle.owner}: free of pfn {handle.pfn:#x} deferred to "
                             f"{expiry_ns} ns, before now ({self.env.now} ns)")
        due = self._pending_at.get(expiry_ns)
        if due is None:
            self._pending_at[expiry_ns] = [handle]
            heapq.heappush(self._pending, expiry_ns)
        else:
            due.append(handle)
        self._nr_pending += 1

    @property
    def pending_frees(self) -> int:
        """Deferred frees not applied yet."""
        return self._nr_pending

    def apply_pending_frees(self) -> None:
        """Apply, in expiry order, every deferred free whose expiry is <= ``env.now``.

        Each free runs as :meth:`free` would have at its expiry: its trace events carry
        the expiry as their time.
        """
        pending = self._pending
        now = self.env.now
        if not pending or pending[0] > now:
            return
        try:
            while pending and pending[0] <= now:
                expiry = pending[0]
                due = self._pending_at[expiry]
                self._stamp_ns = expiry
                done = 0
                try:
                    while done < len(due):  # in deferral order
                        handle = due[done]
                        done += 1
                        self._nr_pending -= 1
                        self.free(handle)
                finally:  # a free that raises leaves the frees after it pending
                    del due[:done]
                heapq.heappop(pending)
                del self._pending_at[expiry]
        finally:
            self._stamp_ns = -1
