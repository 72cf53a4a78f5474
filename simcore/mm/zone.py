"""``struct zone``: free lists, watermarks and the buddy mechanics of one zone.

Mirrors ``struct zone`` (include/linux/mmzone.h) and, from mm/page_alloc.c (6.1):
``__free_one_page()``, ``buddy_merge_likely()``, ``expand()``,
``__rmqueue_smallest()``, ``__rmqueue()``, ``rmqueue_bulk()``,
``__zone_watermark_unusable_free()``, ``__zone_watermark_ok()`` and
``zone_watermark_fast()``. Stealing from other migratetypes lives in
:mod:`simcore.mm.fallback`.

This module is pure: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm import page_misuse
from simcore.mm.constants import (
    ALLOC_HARDER,
    ALLOC_HIGH,
    ALLOC_OOM,
    ALLOC_WMARK_MASK,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    MT_HIGHATOMIC,
    MT_ISOLATE,
    MT_MOVABLE,
    ZONE_NAMES,
)
from simcore.mm.fallback import rmqueue_fallback
from simcore.mm.freelist import FreeArea, PageLists
from simcore.mm.gfp import GFP
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_BUDDY, PageArray
from simcore.mm.vmstat import VMSTAT_INDEX

if TYPE_CHECKING:
    from simcore.mm.pcp import PerCpuPages
    from simcore.mm.tracepoints import Tracer
    from simcore.mm.vmstat import VmStat

GFP_ATOMIC_BIT = int(GFP.ATOMIC)  # __GFP_ATOMIC


def populated_zone(zone: Zone) -> bool:
    """``populated_zone()``: the zone has present pages (managed or not)."""
    return zone.present_pages > 0


def managed_zone(zone: Zone) -> bool:
    """``managed_zone()``: the zone has pages the buddy allocator manages."""
    return zone.managed_pages > 0


def migratetype_is_mergeable(mt: int) -> bool:
    """``migratetype_is_mergeable()``: UNMOVABLE, MOVABLE and RECLAIMABLE only."""
    return mt < MIGRATE_PCPTYPES


class Zone:
    """One zone of one node, with the ``/proc/zoneinfo`` attribute names."""

    def __init__(
        self,
        *,
        nid: int,
        zone_idx: int,
        zone_start_pfn: int,
        spanned_pages: int,
        present_pages: int,
        managed_pages: int,
        pages: PageArray,
        pageblock_mt: bytearray,
        pageblock_order: int,
        max_order: int,
        tracer: Tracer,
    ) -> None:
        self.nid = nid
        self.zone_idx = zone_idx
        self.name = ZONE_NAMES[zone_idx]
        self.zone_start_pfn = zone_start_pfn
        self.spanned_pages = spanned_pages
        self.present_pages = present_pages
        self.managed_pages = managed_pages
        self.end_pfn = zone_start_pfn + spanned_pages
        self.managed_start_pfn = self.end_pfn - managed_pages
        """First managed pfn; the allocator sets it from the zone's span."""
        self.present_ranges: tuple[tuple[int, int], ...] = ((zone_start_pfn, self.end_pfn),)
        """The pfn ranges of the span that hold memory (the rest are holes); the
        allocator sets them from the zone's span."""
        self.pages = pages
        self.pageblock_mt = pageblock_mt
        self.pageblock_order = pageblock_order
        self.max_order = max_order
        self.tracer = tracer
        self.tracing = bool(tracer.enabled)
        """``tracer.enabled``, read once (the tracepoint static key)."""
        self.vm: VmStat = None  # type: ignore[assignment]
        """The machine's vmstat event counters (shared, set by the allocator)."""
        self.pgalloc_idx = VMSTAT_INDEX[f"pgalloc_{self.name.lower()}"]
        self.lists = PageLists(pages)
        """The ``page->buddy_list``/``pcp_list`` storage of this zone's free lists and pcp lists."""
        self.free_area = FreeArea(max_order, pages, self.lists)
        self.nr_free_pages = 0
        """NR_FREE_PAGES: pages on the buddy free lists (pcp pages excluded)."""
        self.watermark = [0, 0, 0, 0]
        """``_watermark[WMARK_MIN, WMARK_LOW, WMARK_HIGH, WMARK_PROMO]`` (no boost)."""
        self.watermark_boost = 0
        self.watermark_boost_factor = 15000
        """sysctl ``vm.watermark_boost_factor`` (copied here for boost_watermark())."""
        self.lowmem_reserve = [0, 0, 0, 0]
        self.nr_reserved_highatomic = 0
        self.highatomic_unreserved = 0
        """Pageblocks ``unreserve_highatomic_pageblock()`` gave back (buddies on either side
        of one may stay unmerged: see :mod:`simcore.mm.invariants`)."""
        self.nr_isolate_pageblock = 0
        """``zone->nr_isolate_pageblock``: pageblocks labelled MIGRATE_ISOLATE, kept by
        :mod:`simcore.mm.page_isolation`; ``has_isolate_pageblock()`` tests it."""
        self.boosted_watermark = False
        """``ZONE_BOOSTED_WATERMARK``."""
        self.reclaim_active = False
        """``ZONE_RECLAIM_ACTIVE``: kswapd is reclaiming this node."""
        self.per_cpu_pageset: list[PerCpuPages] = []
        self.pcp_high = 0
        self.pcp_batch = 1
        self.fell_back = False
        """Set by __rmqueue_fallback(); read and cleared by the allocator for the
        trace ``path`` column."""
        # -- compaction state (struct zone, CONFIG_COMPACTION): zeroed, as at boot ----
        self.compact_cached_free_pfn = 0
        self.compact_cached_migrate_pfn = [0, 0]
        """``compact_cached_migrate_pfn[ASYNC, SYNC]``: where the migrate scanner resumes."""
        self.compact_init_migrate_pfn = 0
        self.compact_init_free_pfn = 0
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = 0
        self.compact_blockskip_flush = False
        self.capture_order = -1
        """The order a direct compactor of this zone captures (``capture_control``:
        ``cc->order``), or -1 when none is compacting it."""
        self.capture_mt = 0
        """The capturing compactor's ``cc->migratetype``."""
        self.captured_pfn = -1
        """The block a capture took (``capc->page``), or -1."""
        self.refcount_underflows = 0
        """Caller puts that took a page's ``_refcount`` below 0 in this zone (a double free,
        a free of a frozen page: :mod:`simcore.mm.page_misuse`). Simulator bookkeeping:
        while it is 0 (every run without misuse) the checks that find such a page
        (``check_new_pages()``, ``bulkfree_pcp_prepare()``) are skipped, as they would
        find nothing; the kernel always runs them."""
        self.pb_claims: list[int] = []
        """Pageblocks whose migratetype a steal or the highatomic reserve changed while
        they held allocations (shared by all zones, set by the allocator): the machine
        charges them to the caller in whose allocation it happened (simulator-only
        attribution, see :mod:`simcore.sim.pollution`)."""

    def __repr__(self) -> str:
        return f"<Zone node{self.nid} {self.name} [{self.zone_start_pfn:#x}, {self.end_pfn:#x})>"

    # -- pageblocks ---------------------------------------------------------------------
    def get_pageblock_migratetype(self, pfn: int) -> int:
        """``get_pageblock_migratetype()``."""
        return self.pageblock_mt[pfn >> self.pageblock_order] & 0x7

    def set_pageblock_migratetype(self, pfn: int, mt: int) -> None:
        """``set_pageblock_migratetype()`` (keeps the skip bit)."""
        idx = pfn >> self.pageblock_order
        self.pageblock_mt[idx] = (self.pageblock_mt[idx] & 0x80) | mt

    def spans(self, pfn: int) -> bool:
        """``zone_spans_pfn()``."""
        return self.zone_start_pfn <= pfn < self.end_pfn

    def wmark_pages(self, idx: int) -> int:
        """``wmark_pages()``: the watermark plus the current boost."""
        return self.watermark[idx] + self.watermark_boost

    # -- freeing ------------------------------------------------------------------------
    def free_one_page(self, pfn: int, order: int, mt: int, to_tail: bool = False) -> None:
        """Put a block on the free lists, merging buddies: mirrors __free_one_page().

        A direct compactor of this zone takes the block as soon as the merge reaches its
        order (``compaction_capture()``; :attr:`capture_order`).
        SIMPLIFICATION: no page shuffling, no guard pages.
        """
        if mt != MT_ISOLATE:
            self.nr_free_pages += 1 << order
        flags = self.pages.flags
        info = self.pages.info
        fa = self.free_area
        start, end = self.zone_start_pfn, self.end_pfn
        pb_order = self.pageblock_order
        buddy_pfn = 0
        while order < self.max_order:
            if order == self.capture_order and self.compaction_capture(pfn, mt):
                if mt != MT_ISOLATE:
                    self.nr_free_pages -= 1 << order
                return
            buddy_pfn = pfn ^ (1 << order)
            if not (start <= buddy_pfn < end) or not flags[buddy_pfn] & PG_BUDDY:
                break
            binfo = info[buddy_pfn]
            if binfo & ORDER_MASK != order:
                break
            if order >= pb_order:
                buddy_mt = self.get_pageblock_migratetype(buddy_pfn)
                if buddy_mt != mt and (
                    not migratetype_is_mergeable(mt) or not migratetype_is_mergeable(buddy_mt)
                ):
                    break
            fa.remove(buddy_pfn, order, binfo >> MT_SHIFT)
            pfn &= buddy_pfn
            order += 1
        if not to_tail:
            to_tail = self.buddy_merge_likely(pfn, buddy_pfn, order)
        fa.add(pfn, order, mt, to_tail)

    def compaction_capture(self, pfn: int, mt: int) -> bool:
        """``compaction_capture()``: take a block of the compactor's order, once.

        Not ISOLATE (or CMA) blocks, and (as 6.1 has it) no MOVABLE block below pageblock
        order, whatever the compactor's migratetype.
        """
        if self.captured_pfn >= 0 or mt == MT_ISOLATE:
            return False
        if self.capture_order < self.pageblock_order and mt == MT_MOVABLE:
            return False
        self.captured_pfn = pfn
        return True

    def buddy_merge_likely(self, pfn: int, buddy_pfn: int, order: int) -> bool:
        """``buddy_merge_likely()``: is the order+1 buddy of the merged block free?"""
        if order >= self.max_order - 1:
            return False
        higher = buddy_pfn & pfn
        hbuddy = higher ^ (1 << (order + 1))
        if not self.zone_start_pfn <= hbuddy < self.end_pfn:
            return False
        return bool(self.pages.flags[hbuddy] & PG_BUDDY) and (
            self.pages.info[hbuddy] & ORDER_MASK
        ) == order + 1

    # -- allocation from the free lists -------------------------------------------------
    def expand(self, pfn: int, low: int, high: int, mt: int) -> None:
        """Return the upper halves of a split block to the list heads: mirrors expand()."""
        fa = self.free_area
        while high > low:
            high -= 1
            fa.add(pfn + (1 << high), high, mt, False)

    def rmqueue_smallest(self, order: int, mt: int) -> int:
        """Take the head block of the smallest order >= ``order``: __rmqueue_smallest().

        Returns the pfn, or -1. The caller accounts NR_FREE_PAGES.
        """
        fa = self.free_area
        for current_order in range(order, self.max_order + 1):
            pfn = fa.head(current_order, mt)
            if pfn < 0:
                continue
            fa.remove(pfn, current_order, mt)
            self.expand(pfn, order, current_order, mt)
            self.pages.info[pfn] = order | (mt << MT_SHIFT)  # set_pcppage_migratetype()
            if self.tracing:
                refill = (order <= 3 or order == self.pageblock_order) and mt < MIGRATE_PCPTYPES
                self.tracer.mm_page_alloc_zone_locked(self, pfn, order, mt, refill)
            return pfn
        return -1

    def rmqueue(self, order: int, mt: int, alloc_flags: int) -> int:
        """Take a block, stealing from other migratetypes if needed: mirrors __rmqueue().

        SIMPLIFICATION: no CMA area is modelled (no CMA pageblocks exist, even with
        ``machine.cma``), so the CMA balancing and CMA fallback steps never apply.
        """
        while True:
            pfn = self.rmqueue_smallest(order, mt)
            if pfn >= 0:
                return pfn
            if not rmqueue_fallback(self, order, mt, alloc_flags):
                return -1

    def rmqueue_bulk(self, order: int, count: int, mt: int, alloc_flags: int) -> list[int]:
        """Take ``count`` blocks for a pcp refill, in the order taken: rmqueue_bulk().

        A block that fails ``check_pcp_refill()`` (a page a caller's put left with a
        negative refcount) is reported and leaked, and still leaves NR_FREE_PAGES.
        """
        out: list[int] = []
        leaked = 0
        for _ in range(count):
            pfn = self.rmqueue(order, mt, alloc_flags)
            if pfn < 0:
                break
            if self.refcount_underflows and page_misuse.check_new_pages(self, pfn, order):
                leaked += 1
                continue
            out.append(pfn)
        self.nr_free_pages -= (len(out) + leaked) << order
        return out

    # -- watermarks ---------------------------------------------------------------------
    def watermark_unusable_free(self, order: int, alloc_flags: int) -> int:
        """``__zone_watermark_unusable_free()`` (no CMA pages exist)."""
        unusable = (1 << order) - 1
        if not alloc_flags & (ALLOC_HARDER | ALLOC_OOM):
            unusable += self.nr_reserved_highatomic
        return unusable

    def watermark_ok(
        self, order: int, mark: int, highest_zoneidx: int, alloc_flags: int, free_pages: int
    ) -> bool:
        """``__zone_watermark_ok()``: order-0 headroom, then one suitable free block."""
        free_pages -= self.watermark_unusable_free(order, alloc_flags)
        min_ = mark
        if alloc_flags & ALLOC_HIGH:
            min_ -= min_ // 2
        harder = alloc_flags & (ALLOC_HARDER | ALLOC_OOM)
        if harder:
            min_ -= min_ // 2 if alloc_flags & ALLOC_OOM else min_ // 4
        lowmem = self.lowmem_reserve[highest_zoneidx]
        if free_pages <= min_ + lowmem:
            return False
        if not order:
            return True
        nr_free = self.free_area.nr_free
        count = self.free_area.count
        for o in range(order, self.max_order + 1):
            if not nr_free[o]:
                continue
            base = o * MIGRATE_TYPES
            if count[base] or count[base + 1] or count[base + 2]:  # the PCPTYPES
                return True
            if harder and count[base + MT_HIGHATOMIC]:
                return True
        return False

    def watermark_fast(
        self, order: int, mark: int, highest_zoneidx: int, alloc_flags: int, gfp: int
    ) -> bool:
        """``zone_watermark_fast()``, including the boosted GFP_ATOMIC retry."""
        free_pages = self.nr_free_pages
        if not order:
            reserved = self.watermark_unusable_free(0, alloc_flags)
            usable = free_pages - min(free_pages, reserved)
            lowmem = self.lowmem_reserve[highest_zoneidx]
            if usable > mark + lowmem:
                return True
        if self.watermark_ok(order, mark, highest_zoneidx, alloc_flags, free_pages):
            return True
        if (
            not order
            and gfp & GFP_ATOMIC_BIT
            and self.watermark_boost
            and (alloc_flags & ALLOC_WMARK_MASK) == 0
        ):
            return self.watermark_ok(
                order, self.watermark[0], highest_zoneidx, alloc_flags, free_pages
            )
        return False

    @property
    def pcp_pages(self) -> int:
        """Pages held on this zone's per-CPU lists (all CPUs)."""
        return sum(p.count for p in self.per_cpu_pageset)
