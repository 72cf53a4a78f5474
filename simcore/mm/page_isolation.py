"""Pageblock isolation: labelling a pageblock MIGRATE_ISOLATE and back.

Mirrors the accounting of ``set_migratetype_isolate()`` and
``unset_migratetype_isolate()`` in mm/page_isolation.c (6.1): the pageblock label,
``zone->nr_isolate_pageblock``, moving the pageblock's free blocks between free lists,
and NR_FREE_PAGES (free pages on the ISOLATE lists are not counted free). While a zone
has isolated pageblocks, free_pcppages_bulk() re-reads each page's pageblock type
(:meth:`simcore.mm.pcp.PerCpuPages.free_bulk`).

For ``alloc_contig_range()`` (:mod:`simcore.mm.contig`) the range helpers mirror
``has_unmovable_pages()``, ``start_isolate_page_range()``,
``undo_isolate_page_range()`` and ``test_pages_isolated()``.

SIMPLIFICATION: :func:`set_migratetype_isolate` alone does not check for unmovable
pages (its callers decide the pageblock may be isolated); :func:`start_isolate_page_range`
does, and takes only ranges aligned to the largest buddy block (``MAX_ORDER_NR_PAGES``),
so no free block crosses its ends and ``isolate_single_pageblock()``'s splitting is
never needed. Callers drain the pcp lists themselves, as start_isolate_page_range()'s
callers do.

Pure code: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simcore.mm.constants import MT_ISOLATE, ZoneType
from simcore.mm.fallback import move_freepages_block
from simcore.mm.pages import (
    MT_SHIFT,
    ORDER_MASK,
    PG_BUDDY,
    PG_HEAD,
    PG_MOVABLE_OWNER,
    PG_RESERVED,
    PG_TAIL,
)

if TYPE_CHECKING:
    from simcore.mm.lru import Lruvec
    from simcore.mm.zone import Zone

_LRU_LISTS = range(4)
"""``PageLRU()``: the anon and file lists (the lruvec's slab list is not an LRU)."""


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


# -- ranges, for alloc_contig_range() --------------------------------------------------------
def has_unmovable_pages(zone: Zone, lruvec: Lruvec, start_pfn: int, end_pfn: int) -> int:
    """The first unmovable page of ``[start_pfn, end_pfn)``, or -1: has_unmovable_pages().

    Reserved pages (holes, memblock) are unmovable everywhere; in ZONE_MOVABLE nothing
    else is. A compound page (THP, hugetlb) is movable if its owner can migrate it; a
    page with refcount 0 (free, on a pcp list, a tail) is skipped; any other page is
    movable only on an LRU list or as a ``__PageMovable`` allocation.

    SIMPLIFICATION: the kernel counts a hugetlb page movable whenever its size can
    migrate (1 GiB ones too, which alloc_contig_range() then fails to move); the model
    asks the page's own movability.
    """
    pages = zone.pages
    flags = pages.flags_np[start_pfn:end_pfn]
    reserved = np.flatnonzero(flags & PG_RESERVED)
    bad = [int(reserved[0])] if reserved.size else []
    if zone.zone_idx != ZoneType.MOVABLE:
        compound = (flags & (PG_HEAD | PG_TAIL)) != 0
        stuck = compound & ((flags & PG_MOVABLE_OWNER) == 0)
        held = (~compound & (pages.ref_np[start_pfn:end_pfn] > 0)
                & ((flags & PG_MOVABLE_OWNER) == 0))
        bad += [int(i) for i in np.flatnonzero(stuck)[:1]]
        for off in np.flatnonzero(held).tolist():
            if lruvec.on_list(start_pfn + off) not in _LRU_LISTS:
                bad.append(off)
                break
    return start_pfn + min(bad) if bad else -1


def start_isolate_page_range(zone: Zone, lruvec: Lruvec, start_pfn: int, end_pfn: int,
                             mt: int) -> tuple[bool, int]:
    """Isolate every pageblock of the range: start_isolate_page_range().

    The first and the last pageblock, then the ones between, as the kernel does; each
    is checked with :func:`has_unmovable_pages` first. A pageblock holding an unmovable
    page, or isolated already, fails the whole range (the kernel's -EBUSY): the
    pageblocks isolated until then go back to ``mt``, whatever they were before, as in
    the kernel. Returns ``(isolated, pages looked at)``. The range must be aligned to
    ``1 << zone.max_order`` pages.
    """
    nr = 1 << zone.max_order
    if start_pfn & (nr - 1) or end_pfn & (nr - 1) or end_pfn <= start_pfn:
        raise ValueError(f"isolation range [{start_pfn:#x}, {end_pfn:#x}) is not aligned "
                         f"to {nr} pages")
    step = 1 << zone.pageblock_order
    blocks = list(range(start_pfn, end_pfn, step))
    order = [blocks[0], *blocks[-1:][: len(blocks) - 1], *blocks[1:-1]]
    done: list[int] = []
    scanned = 0
    for pfn in order:
        unmovable = has_unmovable_pages(zone, lruvec, pfn, pfn + step)
        scanned += step if unmovable < 0 else unmovable - pfn + 1
        if unmovable >= 0 or not set_migratetype_isolate(zone, pfn):
            for isolated in sorted(done):  # undo_isolate_page_range(), then the last
                unset_migratetype_isolate(zone, isolated, mt)
            return False, scanned
        done.append(pfn)
    return True, scanned


def undo_isolate_page_range(zone: Zone, start_pfn: int, end_pfn: int, mt: int) -> None:
    """Give every isolated pageblock of the range back to ``mt``: undo_isolate_page_range()."""
    for pfn in range(start_pfn, end_pfn, 1 << zone.pageblock_order):
        unset_migratetype_isolate(zone, pfn, mt)


def test_pages_isolated(zone: Zone, start_pfn: int, end_pfn: int) -> bool:
    """Every pageblock isolated and every page a free buddy block: test_pages_isolated()."""
    step = 1 << zone.pageblock_order
    if any(not is_migrate_isolate_page(zone, pfn) for pfn in range(start_pfn, end_pfn, step)):
        return False
    flags = zone.pages.flags
    info = zone.pages.info
    pfn = start_pfn
    while pfn < end_pfn:  # __test_page_isolated_in_pageblock()
        if not flags[pfn] & PG_BUDDY:
            return False
        pfn += 1 << (info[pfn] & ORDER_MASK)
    return True
