"""Migratetype fallback, pageblock stealing and the high-order atomic reserve.

Mirrors mm/page_alloc.c (6.1): ``__rmqueue_fallback()``, ``find_suitable_fallback()``,
``can_steal_fallback()``, ``steal_suitable_fallback()``, ``boost_watermark()``,
``move_freepages_block()``, ``change_pageblock_range()``,
``reserve_highatomic_pageblock()`` and ``unreserve_highatomic_pageblock()``.

Pure code: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np

from simcore.mm.constants import (
    ALLOC_KSWAPD,
    ALLOC_NOFRAGMENT,
    FALLBACKS,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    MT_HIGHATOMIC,
    MT_MOVABLE,
    MT_RECLAIMABLE,
    MT_UNMOVABLE,
)
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_BUDDY, PG_MOVABLE_OWNER
from simcore.mm.vmstat import VMSTAT_INDEX

if TYPE_CHECKING:
    from simcore.mm.zone import Zone

_VM_EXTFRAG_STEAL = VMSTAT_INDEX["extfrag_steal"]
_VM_EXTFRAG_FRAGMENTING = VMSTAT_INDEX["extfrag_fragmenting"]
_VM_EXTFRAG_CLAIMED = VMSTAT_INDEX["extfrag_pageblock_claimed"]


def can_steal_fallback(order: int, start_mt: int, pageblock_order: int) -> bool:
    """``can_steal_fallback()``: may the whole pageblock's free pages be taken?"""
    if order >= pageblock_order:
        return True
    return order >= pageblock_order // 2 or start_mt in (MT_RECLAIMABLE, MT_UNMOVABLE)


def find_suitable_fallback(
    zone: Zone, order: int, mt: int, only_stealable: bool
) -> tuple[int, bool]:
    """``find_suitable_fallback()``: the first non-empty fallback list at ``order``.

    Returns ``(fallback_mt, can_steal)``, with ``fallback_mt == -1`` if none.
    """
    fa = zone.free_area
    if not fa.nr_free[order]:
        return -1, False
    can_steal = False
    for fallback_mt in FALLBACKS[mt]:
        if not fa.count[order * MIGRATE_TYPES + fallback_mt]:
            continue
        if can_steal_fallback(order, mt, zone.pageblock_order):
            can_steal = True
        if not only_stealable or can_steal:
            return fallback_mt, can_steal
    return -1, can_steal


def rmqueue_fallback(zone: Zone, order: int, start_mt: int, alloc_flags: int) -> bool:
    """Steal a free block from another migratetype: mirrors __rmqueue_fallback().

    Scans from the largest order down (the largest block approximates the pageblock
    with the most free pages); a MOVABLE request that may not steal the whole block
    takes the smallest suitable block instead. Returns True if a block was moved to
    ``start_mt``'s lists, so that __rmqueue_smallest() can be retried.
    """
    if start_mt not in FALLBACKS:
        return False
    min_order = order
    if order < zone.pageblock_order and alloc_flags & ALLOC_NOFRAGMENT:
        min_order = zone.pageblock_order
    found = -1
    current_order = zone.max_order
    can_steal = False
    while current_order >= min_order:
        found, can_steal = find_suitable_fallback(zone, current_order, start_mt, False)
        if found != -1:
            break
        current_order -= 1
    if found == -1:
        return False
    if not can_steal and start_mt == MT_MOVABLE and current_order > order:
        for current_order in range(order, zone.max_order + 1):
            found, can_steal = find_suitable_fallback(zone, current_order, start_mt, False)
            if found != -1:
                break
    pfn = zone.free_area.head(current_order, found)
    steal_suitable_fallback(zone, pfn, alloc_flags, start_mt, can_steal)
    zone.fell_back = True
    change_ownership = zone.get_pageblock_migratetype(pfn) == start_mt
    v = zone.vm.v
    v[_VM_EXTFRAG_STEAL] += 1
    if current_order < zone.pageblock_order:
        v[_VM_EXTFRAG_FRAGMENTING] += 1
    if change_ownership:
        v[_VM_EXTFRAG_CLAIMED] += 1
    if zone.tracing:
        zone.tracer.mm_page_alloc_extfrag(
            zone, pfn, order, current_order, start_mt, found, change_ownership
        )
    return True


def boost_watermark(zone: Zone) -> bool:
    """``boost_watermark()``: raise ``watermark_boost`` by one pageblock, capped."""
    factor = zone.watermark_boost_factor
    pageblock_nr_pages = 1 << zone.pageblock_order
    if not factor or pageblock_nr_pages * 4 > zone.managed_pages:
        return False
    max_boost = zone.watermark[2] * factor // 10000
    if not max_boost:
        return False
    max_boost = max(pageblock_nr_pages, max_boost)
    zone.watermark_boost = min(zone.watermark_boost + pageblock_nr_pages, max_boost)
    return True


def steal_suitable_fallback(
    zone: Zone, pfn: int, alloc_flags: int, start_type: int, whole_block: bool
) -> None:
    """Move a fallback block (and maybe its pageblock) to ``start_type``.

    Mirrors steal_suitable_fallback(): whole pageblocks are relabelled; smaller blocks
    boost the watermark, move every free page of the pageblock and claim the pageblock
    when at least half of it is free or "alike".
    """
    fa = zone.free_area
    info = zone.pages.info[pfn]
    current_order = info & ORDER_MASK
    list_mt = info >> MT_SHIFT
    old_block_type = zone.get_pageblock_migratetype(pfn)
    if old_block_type == MT_HIGHATOMIC or current_order >= zone.pageblock_order:
        if old_block_type != MT_HIGHATOMIC:
            change_pageblock_range(zone, pfn, current_order, start_type)
        fa.move_tail(pfn, current_order, list_mt, start_type)
        return
    if boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
        zone.boosted_watermark = True
    if not whole_block:
        fa.move_tail(pfn, current_order, list_mt, start_type)
        return
    free_pages, movable_pages = move_freepages_block(zone, pfn, start_type)
    if start_type == MT_MOVABLE:
        alike_pages = movable_pages
    elif old_block_type == MT_MOVABLE:
        alike_pages = (1 << zone.pageblock_order) - (free_pages + movable_pages)
    else:
        alike_pages = 0
    if not free_pages:
        fa.move_tail(pfn, current_order, list_mt, start_type)
        return
    if free_pages + alike_pages >= 1 << (zone.pageblock_order - 1):
        zone.set_pageblock_migratetype(pfn, start_type)
        if free_pages < 1 << zone.pageblock_order:  # its allocations are now foreign
            zone.pb_claims.append(pfn)


def change_pageblock_range(zone: Zone, pfn: int, start_order: int, mt: int) -> None:
    """``change_pageblock_range()``: relabel every pageblock of an order>=9 block."""
    for i in range(1 << (start_order - zone.pageblock_order)):
        zone.set_pageblock_migratetype(pfn + (i << zone.pageblock_order), mt)


def move_freepages_block(zone: Zone, pfn: int, mt: int) -> tuple[int, int]:
    """Move every free block of ``pfn``'s pageblock to the tail of ``mt``'s lists.

    Mirrors move_freepages_block(). Returns ``(pages_moved, movable_pages)`` where
    movable pages are allocated pages whose owner can migrate them (``PageLRU`` or
    ``__PageMovable`` in the kernel). Moves nothing if the pageblock's end lies
    outside the zone.
    """
    nr = 1 << zone.pageblock_order
    start = pfn & ~(nr - 1)
    end = start + nr - 1
    if not zone.spans(start):
        start = pfn
    if not zone.spans(end):
        return 0, 0
    flags_np = zone.pages.flags_np
    window = flags_np[start : end + 1]
    heads = np.flatnonzero(window & PG_BUDDY)
    movable = int(np.count_nonzero(window & PG_MOVABLE_OWNER))
    fa = zone.free_area
    info = zone.pages.info
    moved = 0
    for off in heads.tolist():
        head = start + off
        hinfo = info[head]
        order = hinfo & ORDER_MASK
        fa.move_tail(head, order, hinfo >> MT_SHIFT, mt)
        moved += 1 << order
    return moved, movable


def reserve_highatomic_pageblock(zone: Zone, pfn: int) -> None:
    """Turn ``pfn``'s pageblock into MIGRATE_HIGHATOMIC, within the ~1% cap.

    Mirrors reserve_highatomic_pageblock(), called after an order>0 ALLOC_HARDER
    allocation succeeds.
    """
    max_managed = zone.managed_pages // 100 + (1 << zone.pageblock_order)
    if zone.nr_reserved_highatomic >= max_managed:
        return
    mt = zone.get_pageblock_migratetype(pfn)
    if mt < MIGRATE_PCPTYPES:
        zone.nr_reserved_highatomic += 1 << zone.pageblock_order
        zone.set_pageblock_migratetype(pfn, MT_HIGHATOMIC)
        zone.pb_claims.append(pfn)
        move_freepages_block(zone, pfn, MT_HIGHATOMIC)


def unreserve_highatomic_pageblock(zones: Iterable[Zone], mt: int, force: bool) -> bool:
    """Give one highatomic pageblock back to ``mt``: unreserve_highatomic_pageblock()."""
    for zone in zones:
        pageblock_nr_pages = 1 << zone.pageblock_order
        if not force and zone.nr_reserved_highatomic <= pageblock_nr_pages:
            continue
        for order in range(zone.max_order + 1):
            pfn = zone.free_area.head(order, MT_HIGHATOMIC)
            if pfn < 0:
                continue
            if zone.get_pageblock_migratetype(pfn) == MT_HIGHATOMIC:
                zone.nr_reserved_highatomic -= min(
                    pageblock_nr_pages, zone.nr_reserved_highatomic
                )
            zone.set_pageblock_migratetype(pfn, mt)
            zone.highatomic_unreserved += 1
            zone.pb_claims.append(pfn)
            moved, _ = move_freepages_block(zone, pfn, mt)
            if moved:
                return True
    return False
