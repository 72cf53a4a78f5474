"""The compaction interface the slow path, reclaim and kswapd call.

Compaction itself (mm/compaction.c: the scanners, migration, deferral, kcompactd) is
the next issue. Until it lands:

- ``compaction_suitable()``, ``__compaction_suitable()`` and
  ``compaction_zonelist_suitable()`` are the kernel's (6.1): watermark arithmetic and
  the fragmentation index against ``vm.extfrag_threshold``. Reclaim uses them to decide
  when to stop (``compaction_ready()``, ``should_continue_reclaim()``), and the slow
  path's retry logic uses them, so reclaim stops where the kernel's would.
- ``try_to_compact_pages()`` answers as a kernel whose compaction finds nothing to
  migrate. Where the kernel would not compact (order 0, no ``__GFP_IO``, or no zone
  CONTINUE) it reports that result, usually SKIPPED. Where it would, the run ends
  COMPLETE: no page moves, and it costs no time. The allocator counts it as
  ``compact_stall`` and ``compact_fail``, and ``should_compact_retry()`` escalates the
  priority as it does after any failed run. There is no deferral.
- ``wakeup_kcompactd()`` only counts the calls that would wake kcompactd
  (``kcompactd_node_suitable()``; simulator-only ``kcompactd_wakeup``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from simcore.mm.constants import ALLOC_WMARK_MASK, PAGE_ALLOC_COSTLY_ORDER
from simcore.mm.fragmentation import fragmentation_index
from simcore.mm.gfp import GFP

if TYPE_CHECKING:
    from simcore.mm.vmstat import VmStat
    from simcore.mm.zone import Zone

COMPACT_NOT_SUITABLE_ZONE = "not_suitable_zone"
COMPACT_SKIPPED = "skipped"
COMPACT_DEFERRED = "deferred"
COMPACT_CONTINUE = "continue"
COMPACT_COMPLETE = "complete"
COMPACT_PARTIAL_SKIPPED = "partial_skipped"
COMPACT_CONTENDED = "contended"
COMPACT_SUCCESS = "success"
RESULT_ORDER = (COMPACT_NOT_SUITABLE_ZONE, COMPACT_SKIPPED, COMPACT_DEFERRED, "no_suitable_page",
                COMPACT_CONTINUE, COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED, COMPACT_CONTENDED,
                COMPACT_SUCCESS)
"""``enum compact_result`` in value order (try_to_compact_pages() keeps the max)."""
WMARK_MIN, WMARK_LOW = 0, 1
ALLOC_CMA = 0x80
GFP_IO = int(GFP.IO)


def compact_gap(order: int) -> int:
    """``compact_gap()``: twice the request, the free pages compaction needs."""
    return 2 << order


class Compaction:
    """Compaction as seen from reclaim and the allocator (nothing is migrated yet).

    Attributes:
        extfrag_threshold: ``vm.extfrag_threshold``.
        reclaimable: ``zone_reclaimable_pages()`` (reclaim sets it).
        kcompactd_wakeups: ``wakeup_kcompactd()`` calls that would wake kcompactd.
    """

    def __init__(self, extfrag_threshold: int = 500, vm: VmStat | None = None) -> None:
        self.extfrag_threshold = extfrag_threshold
        self.reclaimable: Callable[[Zone], int] = lambda zone: 0
        self.kcompactd_wakeups = 0
        self.vm = vm

    def __suitable(self, zone: Zone, order: int, alloc_flags: int, highest_zoneidx: int,
                   wmark_target: int) -> str:
        """``__compaction_suitable()``."""
        if zone.watermark_ok(order, zone.wmark_pages(alloc_flags & ALLOC_WMARK_MASK),
                             highest_zoneidx, alloc_flags, zone.nr_free_pages):
            return COMPACT_SUCCESS
        mark = zone.wmark_pages(WMARK_LOW if order > PAGE_ALLOC_COSTLY_ORDER else WMARK_MIN)
        mark += compact_gap(order)
        if not zone.watermark_ok(0, mark, highest_zoneidx, ALLOC_CMA, wmark_target):
            return COMPACT_SKIPPED
        return COMPACT_CONTINUE

    def suitable(self, zone: Zone, order: int, highest_zoneidx: int,
                 alloc_flags: int = 0) -> str:
        """``compaction_suitable()``: SUCCESS, CONTINUE or SKIPPED.

        A costly order whose fragmentation index is in ``0..extfrag_threshold`` (the
        failure would be for lack of memory) is not suitable: SKIPPED.
        """
        result = self.__suitable(zone, order, alloc_flags, highest_zoneidx,
                                 zone.nr_free_pages)
        if result == COMPACT_CONTINUE and order > PAGE_ALLOC_COSTLY_ORDER:
            index = fragmentation_index(list(zone.free_area.nr_free), order)
            if 0 <= index <= self.extfrag_threshold:
                result = COMPACT_SKIPPED
        return result

    def zonelist_suitable(self, zonelist: tuple[Zone, ...], order: int, alloc_flags: int,
                          highest_zoneidx: int) -> bool:
        """``compaction_zonelist_suitable()``: could compaction run after reclaim?

        True if some zone would be CONTINUE with ``reclaimable / order`` more free pages.
        """
        for zone in zonelist:
            available = self.reclaimable(zone) // order + zone.nr_free_pages
            if self.__suitable(zone, order, alloc_flags, highest_zoneidx,
                               available) == COMPACT_CONTINUE:
                return True
        return False

    def try_to_compact_pages(self, gfp: int, order: int, alloc_flags: int,
                             zonelist: tuple[Zone, ...], highest_zoneidx: int,
                             priority: int) -> tuple[str, int]:
        """``try_to_compact_pages()``: ``(result, cost_ns)``; see the module docstring."""
        if not order or not gfp & GFP_IO:
            return COMPACT_SKIPPED, 0
        best = COMPACT_SKIPPED
        for zone in zonelist:
            status = self.suitable(zone, order, highest_zoneidx, alloc_flags)
            if status == COMPACT_CONTINUE:
                status = COMPACT_COMPLETE  # the scanners met; nothing was migrated
            if RESULT_ORDER.index(status) > RESULT_ORDER.index(best):
                best = status
        return best, 0

    def wakeup_kcompactd(self, node_zones: Sequence[Zone | None], order: int,
                         highest_zoneidx: int) -> bool:
        """``wakeup_kcompactd()``: would it wake the node's kcompactd?

        Not for order 0, and only if ``kcompactd_node_suitable()``: some managed zone up
        to ``highest_zoneidx`` is CONTINUE for ``order``. (kcompactd is not modelled, so
        it is always asleep and its accumulated ``kcompactd_max_order`` is this order.)
        """
        if not order:
            return False
        if not any(z is not None and z.managed_pages
                   and self.suitable(z, order, highest_zoneidx) == COMPACT_CONTINUE
                   for z in node_zones[: highest_zoneidx + 1]):
            return False
        self.kcompactd_wakeups += 1
        if self.vm is not None:
            self.vm.add("kcompactd_wakeup", 1)
        return True
