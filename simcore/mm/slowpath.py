"""``__alloc_pages_slowpath()``, as a generator that says how long the caller stalls.

Mirrors mm/page_alloc.c (6.1) step by step, with each step named after its kernel
function: dropping ``__GFP_ATOMIC`` for blocking callers, ``gfp_to_alloc_flags()``,
``wake_all_kswapds()``, the attempt at the MIN watermark, the initial direct compaction
for costly orders (and non-movable order > 0), the ``retry:`` label with reserve flags
(``__gfp_pfmemalloc_flags()``) and the nodemask reset, ``__alloc_pages_direct_reclaim()``
(with ``unreserve_highatomic_pageblock()`` and ``drain_all_pages()``),
``__alloc_pages_direct_compact()``, ``should_reclaim_retry()``,
``should_compact_retry()``, ``__alloc_pages_may_oom()`` and the ``nopage:`` handling of
``__GFP_NOFAIL``; and ``__alloc_pages()``'s exits (``WARN_ON_ONCE_GFP`` of the order,
``warn_alloc()``).

The pure core has no clock. :func:`alloc_pages_slowpath` is a generator: it yields the
ns the caller spends in a step that sleeps or works (direct reclaim and its
``reclaim_throttle()``, compaction, the OOM kill, the OOM-lock sleep) and returns the pfn
(or -1). :meth:`simcore.sim.machine.Machine.alloc` turns each yield into a SimPy
timeout; :meth:`simcore.mm.page_alloc.PageAllocator.alloc_pages` runs it to the end at
once. A request that cannot block never yields. The step that produced the page is
recorded in :attr:`SlowRequest.stage` (the trace's ``stage`` column): the deepest step
the request went through.

SIMPLIFICATIONS: no cpusets (so no restart for a changed cpuset or zonelist), no
``PF_MEMALLOC`` callers, no ``__GFP_ACCOUNT`` charging. When the OOM killer chooses the
caller whose request is running, that request returns NULL at once; the kernel lets the
dying task retry with ALLOC_OOM reserves (and stops it looping there), and whatever it
gets is freed when it exits. A request of a caller killed by someone else while it
stalled gets its page freed at once (the machine does that).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from simcore.formats import trace_schema as ts
from simcore.mm import oom_kill
from simcore.mm.compaction import (
    COMPACT_COMPLETE,
    COMPACT_DEFERRED,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
)
from simcore.mm.constants import (
    ALLOC_CPUSET,
    ALLOC_HARDER,
    ALLOC_KSWAPD,
    ALLOC_NO_WATERMARKS,
    ALLOC_WMARK_HIGH,
    ALLOC_WMARK_MIN,
    MT_MOVABLE,
    PAGE_ALLOC_COSTLY_ORDER,
    ZoneType,
)
from simcore.mm.fallback import unreserve_highatomic_pageblock
from simcore.mm.gfp import (
    GFP,
    format_gfp,
    gfp_pfmemalloc_flags,
    gfp_to_alloc_flags,
    reserve_alloc_flags,
)
from simcore.mm.vmscan import MAX_RECLAIM_RETRIES

if TYPE_CHECKING:
    from simcore.mm.page_alloc import AllocContext, PageAllocator

GFP_ATOMIC_BIT = int(GFP.ATOMIC)
GFP_DIRECT_RECLAIM = int(GFP.DIRECT_RECLAIM)
GFP_NOFAIL = int(GFP.NOFAIL)
GFP_NOWARN = int(GFP.NOWARN)
GFP_NORETRY = int(GFP.NORETRY)
GFP_RETRY_MAYFAIL = int(GFP.RETRY_MAYFAIL)
GFP_THISNODE = int(GFP.THISNODE)
GFP_HARDWALL = int(GFP.HARDWALL)
MAX_COMPACT_RETRIES = 16
COMPACT_PRIO_SYNC_FULL, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_ASYNC = 0, 1, 2
"""``enum compact_priority``: lower is stronger."""
_ESCALATE = (COMPACT_COMPLETE, COMPACT_DEFERRED, "contended", "partial_skipped")
"""compaction_failed() and compaction_withdrawn() results: escalate the priority."""
MIN_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_FULL
MIN_COMPACT_COSTLY_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
DEF_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_LIGHT
INIT_COMPACT_PRIORITY = COMPACT_PRIO_ASYNC

_DEPTH = {ts.STAGE_SLOW_RETRY: 0, ts.STAGE_SLOW_RECLAIM: 1, ts.STAGE_SLOW_COMPACTION: 2,
          ts.STAGE_SLOW_OOM: 3, ts.STAGE_FAIL: 4}
SlowpathSteps = Generator[int, None, int]
"""Yields ns of stall; returns the pfn or -1."""


class SlowRequest:
    """What one trip through the slow path did (for the trace and the summary).

    Attributes:
        stage: ``ts.STAGE_*``: the deepest step the request went through (retry <
            reclaim < compaction < oom), or ``fail``.
        stall_ns: Time the caller spent sleeping or working in the slow path.
        reclaim_rounds: Direct reclaim calls.
        reclaimed: Pages direct reclaim freed.
        oom_victims: Owners the OOM killer chose for this request.
        nofail_warned: ``WARN_ON_ONCE_GFP`` for a ``__GFP_NOFAIL`` request that cannot
            reclaim directly (it fails).
        captured: The block direct compaction captured for this request while the
            caller spends the compaction's time (``capture_control.page``), -1 if none:
            the request owns it then (the invariant audit counts it as allocated).
        order: The request's order.
    """

    __slots__ = ("stage", "stall_ns", "reclaim_rounds", "reclaimed", "oom_victims",
                 "nofail_warned", "ac", "killed_self", "captured", "order")

    def __init__(self) -> None:
        self.stage = ts.STAGE_SLOW_RETRY
        self.stall_ns = 0
        self.reclaim_rounds = 0
        self.reclaimed = 0
        self.oom_victims: list[str] = []
        self.nofail_warned = False
        self.killed_self = False
        """The OOM killer chose the caller making this request."""
        self.captured = -1
        self.order = 0
        self.ac: AllocContext | None = None
        """The context the slow path ended with (the retry may drop the nodemask, and
        warn_alloc() prints the one left)."""

    def reach(self, stage: str) -> None:
        """The request went through ``stage``: keep the deepest."""
        if _DEPTH[stage] > _DEPTH[self.stage]:
            self.stage = stage

    def fail_reason(self) -> str:
        """Why the request failed, for the ``mm_page_alloc_fail`` event ("" if it did not)."""
        if self.stage != ts.STAGE_FAIL:
            return ""
        if self.nofail_warned:
            return ("__GFP_NOFAIL without __GFP_DIRECT_RECLAIM: "
                    "WARN_ON_ONCE_GFP(!can_direct_reclaim), fails")
        if not self.reclaim_rounds:
            return "below the MIN watermark; may not reclaim directly"
        return (f"gave up after {self.reclaim_rounds} direct reclaim rounds "
                f"({self.reclaimed} pages reclaimed)")


def run_to_end(steps: SlowpathSteps, req: SlowRequest) -> int:
    """Run the slow path with no clock: every stall is added to ``req.stall_ns`` at once."""
    try:
        while True:
            req.stall_ns += next(steps)
    except StopIteration as done:
        return int(done.value)


# -- __alloc_pages() exits ---------------------------------------------------------------
def warn_alloc_text(comm: str, gfp: int, order: int, nodemask: frozenset[int] | None) -> str:
    """The first line ``warn_alloc()`` prints for a failed allocation (6.1 format).

    SIMPLIFICATION: the 1-per-10-s ratelimit and the stack/show_mem dump are not
    modelled; the line is recorded with every failure event instead.
    """
    nodes = "(null)" if nodemask is None else ",".join(str(n) for n in sorted(nodemask))
    return (f"{comm}: page allocation failure: order:{order}, "
            f"mode:{gfp:#x}({format_gfp(gfp)}), nodemask={nodes}")


def warn_order(mm: PageAllocator, gfp: int, order: int, nid: int) -> int:
    """``if (WARN_ON_ONCE_GFP(order >= MAX_ORDER, gfp)) return NULL;`` in __alloc_pages().

    The kernel returns before ``trace_mm_page_alloc`` and before the slow path, so there
    is no ``mm_page_alloc`` event, no warn_alloc() line and no vmstat event. The macro
    (mm/internal.h) prints one WARNING per boot for this call site, and none for a
    ``__GFP_NOWARN`` request. The model records every such request as the
    simulator-only ``alloc_order_warn`` event and counter; ``reason`` says whether the
    kernel printed the WARNING. Returns -1.
    """
    mm.vm.add("alloc_order_warn", 1)
    printed = not gfp & GFP_NOWARN and not mm.order_warned
    if printed:
        mm.order_warned = True
    if mm.tracing:
        limit = f"order:{order} >= MAX_ORDER ({mm.max_order + 1}): NULL"
        if printed:
            why = "WARN_ON_ONCE_GFP printed a WARNING (once per boot)"
        elif gfp & GFP_NOWARN:
            why = "WARN_ON_ONCE_GFP suppressed by __GFP_NOWARN"
        else:
            why = "WARN_ON_ONCE_GFP already warned once, silent"
        mm.tracer.alloc_order_warn(nid, order, gfp, f"{limit}; {why}")
    return -1


def alloc_failed(mm: PageAllocator, gfp: int, order: int, nid: int, ac: AllocContext,
                 why: str, latency_ns: int) -> int:
    """Account and trace a request that returns NULL.

    The kernel's order: ``warn_alloc()`` at the ``fail:`` label (the simulator's
    ``mm_page_alloc_fail`` event), then ``trace_mm_page_alloc()`` with a NULL page in
    ``__alloc_pages()``. Returns -1.
    """
    mm.vm.add("pgalloc_fail", 1)
    if mm.tracing:
        if gfp & GFP_NOWARN:
            reason = f"{why}; warn_alloc suppressed by __GFP_NOWARN"
        else:
            reason = f"{why}; {warn_alloc_text(mm.current_comm, gfp, order, ac.nodemask)}"
        mm.tracer.mm_page_alloc_fail(nid, order, gfp, ac.migratetype, reason)
        mm.tracer.mm_page_alloc(None, -1, order, gfp, ac.migratetype, ts.PATH_FAILURE, nid,
                                ts.STAGE_FAIL, latency_ns)
    return -1


# -- the steps --------------------------------------------------------------------------
def wake_all_kswapds(mm: PageAllocator, order: int, gfp: int, ac: AllocContext) -> None:
    """``wake_all_kswapds()``: one wakeup_kswapd() per node, for its first managed zone."""
    last_nid = -1
    for zone in ac.zonelist:
        if zone.managed_pages and zone.nid != last_nid:
            last_nid = zone.nid
            mm.wakeup_kswapd(zone, gfp, order, ac.highest_zoneidx)


def direct_compact(mm: PageAllocator, gfp: int, order: int, alloc_flags: int,
                   ac: AllocContext, priority: int, cpu: int,
                   req: SlowRequest) -> Generator[int, None, tuple[int, str]]:
    """``__alloc_pages_direct_compact()``: returns ``(pfn, compact_result)``.

    Order 0 never compacts. The compaction's time is spent (yielded) before the free
    lists are tried. A SKIPPED result counts nothing; any other counts
    ``compact_stall`` and then ``compact_success`` or ``compact_fail``. A block the
    compaction captured is used directly (``prep_new_page()``; no ``pgalloc`` count, as
    in the kernel); otherwise the free lists are tried. On success the block's zone has
    its deferral reset (``compaction_defer_reset(zone, order, true)``).
    """
    if not order:
        return -1, COMPACT_SKIPPED
    compaction = mm.reclaim.compaction
    result, cost, pfn = compaction.try_to_compact_pages(
        gfp, order, alloc_flags, ac.zonelist, ac.highest_zoneidx, priority, cpu)
    if cost:
        req.captured, req.order = pfn, order
        yield cost
        req.captured = -1
    if result == COMPACT_SKIPPED:
        return -1, result
    req.reach(ts.STAGE_SLOW_COMPACTION)
    mm.vm.add("compact_stall", 1)
    if pfn >= 0:
        mm.alloc_captured(pfn, gfp, order, ac.migratetype)
    else:
        pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
    if pfn >= 0:
        zone = mm.page_zone(pfn)
        zone.compact_blockskip_flush = False
        compaction.compaction_defer_reset(zone, order, True)
        mm.vm.add("compact_success", 1)
    else:
        mm.vm.add("compact_fail", 1)
    return pfn, result


def direct_reclaim(mm: PageAllocator, gfp: int, order: int, alloc_flags: int,
                   ac: AllocContext, cpu: int,
                   req: SlowRequest) -> Generator[int, None, tuple[int, int]]:
    """``__alloc_pages_direct_reclaim()``: returns ``(pfn, did_some_progress)``.

    ``try_to_free_pages()``, whose time the caller spends (yielded) before it looks at
    the free lists again: pages freed meanwhile may go to other callers first. With
    progress, try the free lists; if that fails give back a highatomic pageblock
    (``unreserve_highatomic_pageblock(force=false)``), drain every pcp list and try once
    more.
    """
    req.reach(ts.STAGE_SLOW_RECLAIM)
    sc = mm.reclaim.try_to_free_pages(ac.zonelist, order, gfp, cpu, mm.current_comm)
    req.reclaim_rounds += 1
    req.reclaimed += sc.nr_reclaimed
    yield sc.cost_ns + sc.throttled_ns
    progress = sc.nr_reclaimed
    if not progress:
        return -1, 0
    pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
    if pfn < 0:
        unreserve_highatomic_pageblock(ac.zonelist, ac.migratetype, False)
        mm.drain_all_pages()
        pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
    return pfn, progress


def should_reclaim_retry(mm: PageAllocator, order: int, ac: AllocContext, alloc_flags: int,
                         did_some_progress: bool, no_progress_loops: int) -> tuple[bool, int]:
    """``should_reclaim_retry()``: ``(retry, no_progress_loops)``.

    Costly orders always count as no progress. After MAX_RECLAIM_RETRIES loops without
    progress, the answer is whether a highatomic pageblock could be given back
    (``force=true``). Otherwise retry while some zone would pass its MIN watermark if
    everything reclaimable were reclaimed.
    """
    if did_some_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
        no_progress_loops = 0
    else:
        no_progress_loops += 1
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return unreserve_highatomic_pageblock(ac.zonelist, ac.migratetype, True), \
            no_progress_loops
    reclaim = mm.reclaim
    for zone in ac.zonelist:
        available = reclaim.zone_reclaimable_pages(zone) + zone.nr_free_pages
        if zone.watermark_ok(order, zone.wmark_pages(0), ac.highest_zoneidx, alloc_flags,
                             available):
            return True, no_progress_loops
    return False, no_progress_loops


def should_compact_retry(mm: PageAllocator, ac: AllocContext, order: int, alloc_flags: int,
                         result: str, priority: int, retries: int) -> tuple[bool, int, int]:
    """``should_compact_retry()`` (CONFIG_COMPACTION): ``(retry, priority, retries)``.

    SKIPPED (compaction needs reclaim) retries while some zone would be suitable;
    COMPLETE and the withdrawn results escalate the priority; anything else retries
    up to MAX_COMPACT_RETRIES (a quarter for costly orders) successes.
    """
    if not order:
        return False, priority, retries
    if result == COMPACT_SUCCESS:
        retries += 1
    if result == COMPACT_SKIPPED:  # compaction_needs_reclaim()
        suitable = mm.reclaim.compaction.zonelist_suitable(ac.zonelist, order, alloc_flags,
                                                           ac.highest_zoneidx)
        return suitable, priority, retries
    if result not in _ESCALATE:
        max_retries = MAX_COMPACT_RETRIES
        if order > PAGE_ALLOC_COSTLY_ORDER:
            max_retries //= 4
        if retries <= max_retries:
            return True, priority, retries
    min_priority = (MIN_COMPACT_COSTLY_PRIORITY if order > PAGE_ALLOC_COSTLY_ORDER
                    else MIN_COMPACT_PRIORITY)
    if priority > min_priority:
        return True, priority - 1, 0
    return False, priority, retries


def may_oom(mm: PageAllocator, gfp: int, order: int, ac: AllocContext, cpu: int,
            req: SlowRequest) -> SlowpathSteps:
    """``__alloc_pages_may_oom()``: returns a pfn or -1.

    Leaves ``did_some_progress`` in ``mm.reclaim.oom_progress``.

    With the OOM lock held by another caller: report progress and sleep one jiffy. Else
    one attempt at the HIGH watermark, then the cases that skip the killer (costly
    orders, ``__GFP_RETRY_MAYFAIL``/``__GFP_THISNODE``, ``highest_zoneidx <
    ZONE_NORMAL``), then ``out_of_memory()``. A ``__GFP_NOFAIL`` request then tries with
    ``ALLOC_NO_WATERMARKS``.
    """
    reclaim = mm.reclaim
    reclaim.oom_progress = False
    req.reach(ts.STAGE_SLOW_OOM)
    if reclaim.oom_lock_held:
        reclaim.oom_progress = True
        yield reclaim.cost.jiffy_ns
        return -1
    pfn = mm.get_page_from_freelist((gfp | GFP_HARDWALL) & ~GFP_DIRECT_RECLAIM, order,
                                    ALLOC_WMARK_HIGH | ALLOC_CPUSET, ac, cpu)
    if pfn >= 0:
        return pfn
    if order > PAGE_ALLOC_COSTLY_ORDER or gfp & (GFP_RETRY_MAYFAIL | GFP_THISNODE):
        return -1
    if ac.highest_zoneidx < ZoneType.NORMAL:
        return -1
    reclaim.oom_lock_held = True
    try:
        progress, victim, pages = oom_kill.out_of_memory(
            gfp, order, mm.managed_pages + reclaim.swap_pages, reclaim.oom_candidates(),
            reclaim.oom_kill)
        if victim is not None:
            req.oom_victims.append(victim)
            req.killed_self = victim == mm.current_comm
            mm.vm.add("oom_kill", 1)
            reclaim.span("oom_kill", ac.preferred_nid, pages, reclaim.cost.oom_kill_ns,
                         f"victim={victim} order={order} gfp={format_gfp(gfp)}")
            yield reclaim.cost.oom_kill_ns
    finally:
        reclaim.oom_lock_held = False
    if progress or gfp & GFP_NOFAIL:
        reclaim.oom_progress = True
        if gfp & GFP_NOFAIL:
            pfn = mm.get_page_from_freelist(gfp, order, ALLOC_NO_WATERMARKS, ac, cpu)
    return pfn


# -- the slow path -----------------------------------------------------------------------
def alloc_pages_slowpath(mm: PageAllocator, gfp: int, order: int, ac: AllocContext, cpu: int,
                         req: SlowRequest) -> SlowpathSteps:
    """``__alloc_pages_slowpath()`` (see the module docstring). Returns a pfn or -1."""
    can_direct_reclaim = bool(gfp & GFP_DIRECT_RECLAIM)
    costly_order = order > PAGE_ALLOC_COSTLY_ORDER
    if gfp & GFP_ATOMIC_BIT and can_direct_reclaim:
        gfp &= ~GFP_ATOMIC_BIT
    req.ac = ac
    if not ac.zonelist:
        req.stage = ts.STAGE_FAIL
        return -1
    nopage = False
    # restart:
    compaction_retries = 0
    no_progress_loops = 0
    compact_priority = DEF_COMPACT_PRIORITY
    compact_result = COMPACT_SKIPPED
    alloc_flags = int(gfp_to_alloc_flags(gfp))
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(mm, order, gfp, ac)
    pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
    if pfn >= 0:
        return pfn
    if (can_direct_reclaim and (costly_order or order > 0 and ac.migratetype != MT_MOVABLE)
            and not gfp_pfmemalloc_flags(gfp)):
        pfn, compact_result = yield from direct_compact(mm, gfp, order, alloc_flags, ac,
                                                        INIT_COMPACT_PRIORITY, cpu, req)
        if pfn >= 0:
            return pfn
        if costly_order and gfp & GFP_NORETRY:
            if compact_result in (COMPACT_SKIPPED, COMPACT_DEFERRED):
                nopage = True
            else:
                compact_priority = INIT_COMPACT_PRIORITY
    while True:
        while not nopage:  # retry:
            if alloc_flags & ALLOC_KSWAPD:
                wake_all_kswapds(mm, order, gfp, ac)
            reserve_flags = int(gfp_pfmemalloc_flags(gfp))
            if reserve_flags:
                alloc_flags = int(reserve_alloc_flags(gfp, reserve_flags, alloc_flags))
            if (not alloc_flags & ALLOC_CPUSET or reserve_flags) and ac.nodemask is not None:
                ac = mm.prepare_alloc_pages(gfp, ac.preferred_nid, None)  # nodemask = NULL
                req.ac = ac
            pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
            if pfn >= 0:
                return pfn
            if not can_direct_reclaim:
                break
            pfn, progress = yield from direct_reclaim(mm, gfp, order, alloc_flags, ac, cpu,
                                                      req)
            if pfn >= 0:
                return pfn
            pfn, compact_result = yield from direct_compact(mm, gfp, order, alloc_flags, ac,
                                                            compact_priority, cpu, req)
            if pfn >= 0:
                return pfn
            if gfp & GFP_NORETRY:
                break
            if costly_order and not gfp & GFP_RETRY_MAYFAIL:
                break
            retry, no_progress_loops = should_reclaim_retry(
                mm, order, ac, alloc_flags, progress > 0, no_progress_loops)
            if retry:
                continue
            if progress > 0:
                retry, compact_priority, compaction_retries = should_compact_retry(
                    mm, ac, order, alloc_flags, compact_result, compact_priority,
                    compaction_retries)
                if retry:
                    continue
            pfn = yield from may_oom(mm, gfp, order, ac, cpu, req)
            if pfn >= 0:
                return pfn
            if req.killed_self:  # tsk_is_oom_victim(current): see the module docstring
                return _nopage(mm, req)
            if mm.reclaim.oom_progress:
                no_progress_loops = 0
                continue
            break
        # nopage:
        nopage = False
        if not gfp & GFP_NOFAIL:
            return _nopage(mm, req)
        if not can_direct_reclaim:  # WARN_ON_ONCE_GFP(!can_direct_reclaim): fail
            req.nofail_warned = True
            return _nopage(mm, req)
        # __alloc_pages_cpuset_fallback(ALLOC_HARDER), then cond_resched(); goto retry.
        pfn = mm.get_page_from_freelist(gfp, order, ALLOC_HARDER, ac, cpu)
        if pfn >= 0:
            return pfn


def _nopage(mm: PageAllocator, req: SlowRequest) -> int:
    req.stage = ts.STAGE_FAIL
    return -1


assert ALLOC_WMARK_MIN == 0 and ALLOC_NO_WATERMARKS
