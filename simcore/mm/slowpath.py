"""The part of ``__alloc_pages_slowpath()`` modelled so far, and ``__alloc_pages()``'s exits.

Mirrors mm/page_alloc.c (6.1): the ``WARN_ON_ONCE_GFP`` order check and the failure
exit of ``__alloc_pages()`` (its fast path is
:meth:`simcore.mm.page_alloc.PageAllocator.alloc_pages`), and these slow-path stages:
dropping ``__GFP_ATOMIC`` for blocking callers, ``gfp_to_alloc_flags()`` (MIN
watermark, ALLOC_HIGH/ALLOC_HARDER), ``wake_all_kswapds()``, the retry with reserve
flags (``__GFP_MEMALLOC``), and the ``__GFP_NOFAIL`` last resort.

SIMPLIFICATION: direct reclaim, direct compaction, the retry heuristics
(``should_reclaim_retry``/``should_compact_retry``) and the OOM killer are not modelled
yet, so a blocking request that fails at the MIN watermark fails here as well. They
will spend simulated time, which is why :meth:`simcore.sim.machine.Machine.alloc_pages` is
a SimPy generator around this synchronous core.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.formats import trace_schema as ts
from simcore.mm.constants import (
    ALLOC_HARDER,
    ALLOC_KSWAPD,
    ALLOC_NO_WATERMARKS,
    ALLOC_WMARK_MIN,
)
from simcore.mm.gfp import (
    GFP,
    format_gfp,
    gfp_pfmemalloc_flags,
    gfp_to_alloc_flags,
    reserve_alloc_flags,
)

if TYPE_CHECKING:
    from simcore.mm.page_alloc import AllocContext, PageAllocator

GFP_ATOMIC_BIT = int(GFP.ATOMIC)
GFP_DIRECT_RECLAIM = int(GFP.DIRECT_RECLAIM)
GFP_NOFAIL = int(GFP.NOFAIL)
GFP_NOWARN = int(GFP.NOWARN)


def alloc_failed(
    mm: PageAllocator, gfp: int, order: int, nid: int, ac: AllocContext
) -> int:
    """Account and trace an allocation that found no page on the fast and slow paths."""
    reason = "no zone" if not ac.zonelist else "below watermark; reclaim not modelled"
    return _fail(mm, gfp, order, nid, ac.migratetype, reason, ac.nodemask)


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


def _fail(
    mm: PageAllocator, gfp: int, order: int, nid: int, mt: int, why: str,
    nodemask: frozenset[int] | None = None,
) -> int:
    mm.vm.add("pgalloc_fail", 1)
    if mm.tracing:
        mm.tracer.mm_page_alloc(None, -1, order, gfp, mt, ts.PATH_FAILURE, nid)
        if gfp & GFP_NOWARN:
            reason = f"{why}; warn_alloc suppressed by __GFP_NOWARN"
        else:
            reason = f"{why}; {warn_alloc_text(mm.current_comm, gfp, order, nodemask)}"
        mm.tracer.mm_page_alloc_fail(nid, order, gfp, mt, reason)
    return -1


def alloc_pages_slowpath(
    mm: PageAllocator, gfp: int, order: int, ac: AllocContext, cpu: int
) -> int:
    """The modelled stages of ``__alloc_pages_slowpath()`` (see the module docstring)."""
    if not ac.zonelist:
        return -1
    if gfp & GFP_ATOMIC_BIT and gfp & GFP_DIRECT_RECLAIM:
        gfp &= ~GFP_ATOMIC_BIT
    alloc_flags = int(gfp_to_alloc_flags(gfp))
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(mm, order, gfp, ac)
    pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
    if pfn >= 0:
        return pfn
    # retry: label
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(mm, order, gfp, ac)
    reserve = int(gfp_pfmemalloc_flags(gfp))
    if reserve:
        alloc_flags = int(reserve_alloc_flags(gfp, reserve, alloc_flags))
        pfn = mm.get_page_from_freelist(gfp, order, alloc_flags, ac, cpu)
        if pfn >= 0:
            return pfn
    if not gfp & GFP_DIRECT_RECLAIM or not gfp & GFP_NOFAIL:
        return -1
    # nopage: __GFP_NOFAIL may dip into reserves rather than fail.
    pfn = mm.get_page_from_freelist(gfp, order, ALLOC_WMARK_MIN | ALLOC_HARDER, ac, cpu)
    if pfn < 0:
        pfn = mm.get_page_from_freelist(gfp, order, ALLOC_NO_WATERMARKS, ac, cpu)
    return pfn


def wake_all_kswapds(mm: PageAllocator, order: int, gfp: int, ac: AllocContext) -> None:
    """``wake_all_kswapds()``: one wakeup_kswapd() per node, for its first managed zone."""
    seen: set[int] = set()
    for zone in ac.zonelist:
        if zone.managed_pages and zone.nid not in seen:
            seen.add(zone.nid)
            mm.wakeup_kswapd(zone, gfp, order, ac.highest_zoneidx)
