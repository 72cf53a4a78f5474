"""Pageblock isolation: labelling a pageblock MIGRATE_ISOLATE and back.

Mirrors the accounting of ``set_migratetype_isolate()`` and
``unset_migratetype_isolate()`` in mm/page_isolation.c (6.1): the pageblock label,
``zone->nr_isolate_pageblock``, moving the pageblock's free blocks between free lists,
and NR_FREE_PAGES (free pages on the ISOLATE lists are not counted free). While a zone
has isolated pageblocks, free_pcppages_bulk() re-reads each page's pageblock type
(:meth:`simcore.mm.pcp.PerCpuPages.free_bulk`).

These are the helpers tests and, later, compaction and alloc_contig_range() use.

SIMPLIFICATION: one pageblock at a time; ``has_unmovable_pages()`` is not checked (the
caller decides the pageblock may be isolated), and free blocks crossing the range
boundaries are not split first (``isolate_single_pageblock()``). Callers drain the pcp
lists themselves, as start_isolate_page_range()'s callers do.

Pure code: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.constants import MT_ISOLATE
from simcore.mm.fallback import move_freepages_block
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_BUDDY

if TYPE_CHECKING:
    from simcore.mm.zone import Zone


def is_migrate_isolate_page(zone: Zone, pfn: int) -> bool:
    """``is_migrate_isolate_page()``: is ``pfn``'s pageblock labelled ISOLATE?"""
    return zone.get_pageblock_migratetype(pfn) == MT_ISOLATE


def set_migratetype_isolate(zone: Zone, pfn: int) -> bool:
    """Isolate ``pfn``'s pageblock: mirrors set_migratetype_isolate().

    Labels the pageblock ISOLATE, counts it in ``nr_isolate_pageblock``, moves its free
    blocks to the ISOLATE lists and takes them out of NR_FREE_PAGES. Returns False
    (the kernel's -EBUSY) if the pageblock is already isolated.
    """
    if is_migrate_isolate_page(zone, pfn):
        return False
    zone.set_pageblock_migratetype(pfn, MT_ISOLATE)
    zone.nr_isolate_pageblock += 1
    moved, _ = move_freepages_block(zone, pfn, MT_ISOLATE)
    zone.nr_free_pages -= moved
    return True


def unset_migratetype_isolate(zone: Zone, pfn: int, mt: int) -> None:
    """Give ``pfn``'s isolated pageblock back to ``mt``: unset_migratetype_isolate().

    A free block of pageblock order or more at the pageblock start, whose buddy is a
    free block outside an isolated pageblock, is taken off the lists and freed again
    (``__isolate_free_page()`` + ``__putback_isolated_page()``) so that it merges;
    otherwise the free blocks move to ``mt``'s lists. Either way they count as free
    again. Does nothing if the pageblock is not isolated.
    """
    pfn &= ~((1 << zone.pageblock_order) - 1)
    if not is_migrate_isolate_page(zone, pfn):
        return
    order = _isolated_mergeable_order(zone, pfn)
    if order < 0:
        moved, _ = move_freepages_block(zone, pfn, mt)
        zone.nr_free_pages += moved
    else:
        zone.free_area.remove(pfn, order, zone.pages.info[pfn] >> MT_SHIFT)
    zone.set_pageblock_migratetype(pfn, mt)
    if order >= 0:
        zone.free_one_page(pfn, order, mt, to_tail=True)
    zone.nr_isolate_pageblock -= 1


def _isolated_mergeable_order(zone: Zone, pfn: int) -> int:
    """The order of the free block at ``pfn`` if its buddy could merge with it, else -1.

    The buddy must be a free block of the same order (``find_buddy_page_pfn()``) in a
    pageblock that is not isolated; orders below pageblock_order or at the top order
    never qualify.
    """
    pages = zone.pages
    if not pages.flags[pfn] & PG_BUDDY:
        return -1
    order = pages.info[pfn] & ORDER_MASK
    if not zone.pageblock_order <= order < zone.max_order:
        return -1
    buddy = pfn ^ (1 << order)
    if not zone.spans(buddy) or not pages.flags[buddy] & PG_BUDDY:
        return -1
    if pages.info[buddy] & ORDER_MASK != order or is_migrate_isolate_page(zone, buddy):
        return -1
    return order
