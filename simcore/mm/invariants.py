"""Consistency checks of the allocator state, for tests and debugging.

Walks the actual free lists (``zone->free_area``) and per-CPU lists, independently of
the counters, and checks what mm/page_alloc.c (6.1) relies on without checking:

* every listed free block is aligned to its order, lies in its zone's managed range,
  has ``PageBuddy`` set on its head only, carries ``order | mt << 4`` in its info byte
  and refcount 0 on every page (``page_is_buddy()``, ``page_expected_state()``), or a
  negative one in a zone where a caller's put went below 0 (``Zone.refcount_underflows``,
  :mod:`simcore.mm.page_misuse`: the kernel keeps it until a check finds the page);
* free, pcp and (if given) allocated blocks never overlap, and together cover every
  managed page exactly once, apart from pages leaked by ``bad_page()``;
* merging is complete (``__free_one_page()``): no two free buddies of equal order
  remain unmerged unless the merge is forbidden (order >= pageblock_order with
  differing pageblock types, one of them not ``migratetype_is_mergeable()``);
* the counters match the lists: ``nr_free[order]``, the per-list counts,
  NR_FREE_PAGES (every free list but the ISOLATE ones, as ``__free_one_page()`` and
  ``set_migratetype_isolate()`` account), ``nr_isolate_pageblock`` (the zone's
  pageblocks labelled ISOLATE) and ``pcp->count``.

SIMPLIFICATION: merging completeness compares the *current* pageblock types. After
``unreserve_highatomic_pageblock()`` relabels a HIGHATOMIC pageblock, two buddies the
kernel refused to merge may legitimately sit side by side with equal types: in a zone
that has unreserved a pageblock (``zone.highatomic_unreserved``), merging is not
checked at orders >= pageblock_order.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

import numpy as np

from simcore.mm.constants import (
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    MT_ISOLATE,
    MT_MOVABLE,
    MigrateType,
)
from simcore.mm.pages import MT_SHIFT, PG_ALLOC, PG_BUDDY, PG_PCP, PG_RESERVED
from simcore.mm.pcp import NR_LOWORDER_PCP_LISTS, NR_PCP_LISTS

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.pages import PageArray
    from simcore.mm.zone import Zone


class InvariantError(AssertionError):
    """The allocator state violates an invariant; the message names the pfn and rule."""


Block = tuple[int, int, str]
"""``(pfn, nr_pages, description)`` of one free, pcp or allocated block."""


def _fail(msg: str) -> None:
    raise InvariantError(msg)


def managed_mask(mm: PageAllocator, zone: Zone | None = None) -> np.ndarray:
    """Per pfn: managed by ``zone`` (or by any zone), i.e. handed to the buddy allocator.

    A page is managed when it lies in a zone and is not ``PG_RESERVED`` (holes and
    memblock reservations are; a replay at real pfns may move a reservation).
    """
    mask = (mm.pages.flags_np & PG_RESERVED) == 0
    inside = np.zeros(mm.pages.nr_pages, dtype=bool)
    for z in mm.zones:
        if zone is None or z is zone:
            inside[z.zone_start_pfn:z.end_pfn] = True
    return mask & inside


def _managed(mask: np.ndarray, pfn: int, nr: int) -> bool:
    return pfn >= 0 and pfn + nr <= mask.size and bool(mask[pfn : pfn + nr].all())


def check_invariants(
    mm: PageAllocator,
    allocated: Mapping[int, int] | None = None,
    frozen: Collection[int] = (),
    check_merging: bool = True,
) -> None:
    """Raise :class:`InvariantError` if the allocator state is inconsistent.

    Args:
        mm: The allocator.
        allocated: pfn -> order of every live allocation the caller tracks (after
            ``split_page()`` each sub-page is its own order-0 entry). When given,
            free + pcp + allocated pages must cover every managed page exactly once,
            except the pages leaked by bad frees (``vm["bad_page_leaked_pages"]`` and
            ``vm["free_order_leaked_pages"]``).
        frozen: Allocated heads whose refcount was frozen to 0 (``page_ref_freeze()``).
        check_merging: Check that buddy merging is complete (see the module notes).
    """
    blocks: list[Block] = []
    for zone in mm.zones:
        free = _check_free_lists(mm, zone)
        if check_merging:
            _check_merging(zone, free)
        blocks += [(pfn, 1 << order, f"free order-{order} block in {zone}")
                   for pfn, (order, _) in free.items()]
        blocks += _check_pcp_lists(mm, zone)
    alloc_pfns, alloc_sizes = _check_allocated(mm, allocated or {}, frozen)
    _check_coverage(mm, blocks, alloc_pfns, alloc_sizes, allocated is not None)


def _check_free_lists(mm: PageAllocator, zone: Zone) -> dict[int, tuple[int, int]]:
    """Walk every free list; return ``{pfn: (order, mt)}`` of the listed blocks."""
    fa = zone.free_area
    pages = mm.pages
    mask = managed_mask(mm, zone)
    free: dict[int, tuple[int, int]] = {}
    free_pages = 0
    for order in range(zone.max_order + 1):
        nr_free = 0
        for mt in range(MIGRATE_TYPES):
            n = 0
            for pfn in fa.iter_list(order, mt):
                where = f"{zone} free_area[{order}].free_list[{mt}] block {pfn:#x}"
                if pfn in free:
                    _fail(f"{where}: listed twice")
                if pfn & ((1 << order) - 1):
                    _fail(f"{where}: not aligned to order {order}")
                if not _managed(mask, pfn, 1 << order):
                    _fail(f"{where}: not wholly in the zone's managed pages")
                _check_free_pages(pages, pfn, order, where, zone.refcount_underflows > 0)
                if pages.info[pfn] != order | (mt << MT_SHIFT):
                    _fail(f"{where}: info byte {pages.info[pfn]:#x} says order "
                          f"{pages.order_of(pfn)} mt {pages.mt_of(pfn)}")
                free[pfn] = (order, mt)
                n += 1
            if fa.count_of(order, mt) != n:
                _fail(f"{zone} free_area[{order}] count[{mt}] is {fa.count_of(order, mt)}, "
                      f"list holds {n} blocks")
            nr_free += n
            if mt != MT_ISOLATE:
                free_pages += n << order
        if fa.nr_free[order] != nr_free:
            _fail(f"{zone} free_area[{order}].nr_free is {fa.nr_free[order]}, "
                  f"lists hold {nr_free} blocks")
    if zone.nr_free_pages != free_pages:
        _fail(f"{zone} NR_FREE_PAGES is {zone.nr_free_pages}, free lists other than "
              f"ISOLATE hold {free_pages}")
    _check_isolate_count(zone)
    heads = np.flatnonzero(pages.flags_np[zone.zone_start_pfn : zone.end_pfn] & PG_BUDDY)
    stray = set((heads + zone.zone_start_pfn).tolist()) - set(free)
    if stray:
        _fail(f"{zone} pfn {min(stray):#x} has PG_BUDDY but is on no free list")
    return free


def _check_isolate_count(zone: Zone) -> None:
    """``nr_isolate_pageblock`` equals the zone's pageblocks labelled ISOLATE."""
    first = zone.zone_start_pfn >> zone.pageblock_order
    last = (zone.end_pfn - 1) >> zone.pageblock_order
    labels = np.frombuffer(zone.pageblock_mt, dtype=np.uint8)[first : last + 1] & 0x7
    isolated = int(np.count_nonzero(labels == MT_ISOLATE))
    if zone.nr_isolate_pageblock != isolated:
        _fail(f"{zone} nr_isolate_pageblock is {zone.nr_isolate_pageblock}, "
              f"{isolated} pageblocks are labelled ISOLATE")


def _check_free_pages(pages: PageArray, pfn: int, order: int, where: str,
                      negative_ok: bool = False) -> None:
    """A free (buddy or pcp) block: refcount 0 everywhere, no allocator flags inside.

    With ``negative_ok`` (the zone recorded a caller's put below 0) a negative count is
    accepted, as the kernel keeps it until a check finds the page.
    """
    nr = 1 << order
    refs = pages.ref_np[pfn : pfn + nr]
    wrong = refs > 0 if negative_ok else refs != 0
    if wrong.any():
        bad = pfn + int(np.flatnonzero(wrong)[0])
        _fail(f"{where}: pfn {bad:#x} has refcount {pages.ref[bad]} (free pages have 0)")
    if pages.flags[pfn] & (PG_ALLOC | PG_RESERVED):
        _fail(f"{where}: head flags {pages.flags[pfn]:#x} include PG_ALLOC/PG_RESERVED")
    if order:
        inner = pages.flags_np[pfn + 1 : pfn + nr] & (PG_BUDDY | PG_PCP | PG_ALLOC | PG_RESERVED)
        if inner.any():
            bad = pfn + 1 + int(np.flatnonzero(inner)[0])
            _fail(f"{where}: inner pfn {bad:#x} has flags {pages.flags[bad]:#x}")


def _check_merging(zone: Zone, free: Mapping[int, tuple[int, int]]) -> None:
    """No two free buddies of equal order unless __free_one_page() refuses the merge."""
    pb_order = zone.pageblock_order
    for pfn, (order, _) in free.items():
        if order >= zone.max_order:
            continue
        buddy = pfn ^ (1 << order)
        if buddy < pfn or buddy not in free or free[buddy][0] != order:
            continue
        if order >= pb_order:
            if zone.highatomic_unreserved:
                continue
            mt_a = zone.get_pageblock_migratetype(pfn)
            mt_b = zone.get_pageblock_migratetype(buddy)
            if mt_a != mt_b and (mt_a >= MIGRATE_PCPTYPES or mt_b >= MIGRATE_PCPTYPES):
                continue
        _fail(f"{zone} free order-{order} blocks {pfn:#x} and {buddy:#x} are buddies "
              f"but were not merged")


def _check_pcp_lists(mm: PageAllocator, zone: Zone) -> list[Block]:
    """Walk every CPU's pcp lists of ``zone``; return their blocks."""
    pages = mm.pages
    mask = managed_mask(mm, zone)
    blocks: list[Block] = []
    seen: set[int] = set()
    for pcp in zone.per_cpu_pageset:
        count = 0
        for pindex in range(NR_PCP_LISTS):
            lst = pcp.entries(pindex)
            order = pcp.pindex_to_order(pindex)
            for entry in lst:
                pfn, cached_mt = entry >> 3, entry & 7
                where = f"{zone} cpu{pcp.cpu} pcp list {pindex} block {pfn:#x}"
                if pfn in seen:
                    _fail(f"{where}: on a pcp list twice")
                seen.add(pfn)
                if pfn & ((1 << order) - 1) or not _managed(mask, pfn, 1 << order):
                    _fail(f"{where}: misaligned for order {order} or not wholly in the "
                          "zone's managed pages")
                if pages.flags[pfn] & (PG_BUDDY | PG_PCP) != PG_PCP:
                    _fail(f"{where}: head flags {pages.flags[pfn]:#x} (want PG_PCP only)")
                _check_free_pages(pages, pfn, order, where, zone.refcount_underflows > 0)
                _check_pcp_mt(pindex, cached_mt, where)
                blocks.append((pfn, 1 << order, where))
                count += 1 << order
        if pcp.count != count:
            _fail(f"{zone} cpu{pcp.cpu} pcp->count is {pcp.count}, lists hold {count} pages")
    heads = np.flatnonzero(pages.flags_np[zone.zone_start_pfn : zone.end_pfn] & PG_PCP)
    stray = set((heads + zone.zone_start_pfn).tolist()) - seen
    if stray:
        _fail(f"{zone} pfn {min(stray):#x} has PG_PCP but is on no pcp list")
    return blocks


def _check_pcp_mt(pindex: int, cached_mt: int, where: str) -> None:
    """The cached migratetype fits the list (HIGHATOMIC/CMA pages use MOVABLE's)."""
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return
    list_mt = pindex % MIGRATE_PCPTYPES
    if cached_mt == list_mt:
        return
    if list_mt == MT_MOVABLE and cached_mt in (MigrateType.HIGHATOMIC, MigrateType.CMA):
        return
    _fail(f"{where}: cached migratetype {cached_mt} on the list of migratetype {list_mt}")


def _check_allocated(
    mm: PageAllocator, allocated: Mapping[int, int], frozen: Collection[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Allocated heads: not free, refcount >= 1 (0 if frozen), tails refcount 0.

    In a zone that recorded a caller's put below 0 (``refcount_underflows``) a frozen
    head and the tails may be negative (the owner's put while frozen, a ``put_page()``
    on an inner page), as the kernel keeps them until the block's free reports them.
    Vectorized over the blocks (a run holds up to millions); the message names the
    lowest bad block. Returns the blocks' first pfns and sizes.
    """
    pages = mm.pages
    pfns = np.fromiter(allocated.keys(), dtype=np.int64, count=len(allocated))
    orders = np.fromiter(allocated.values(), dtype=np.int64, count=len(allocated))
    sizes = np.left_shift(np.int64(1), orders)
    if not pfns.size:
        return pfns, sizes
    is_frozen = np.isin(pfns, np.fromiter(frozen, dtype=np.int64, count=len(frozen)))
    negative_ok = _negative_ok(mm, pfns)
    refs = pages.ref_np[pfns]
    bad = ((pfns & (sizes - 1)) != 0) | ((pages.flags_np[pfns] & (PG_BUDDY | PG_PCP)) != 0)
    bad |= np.where(is_frozen, (refs > 0) | ((refs < 0) & ~negative_ok), refs < 1)
    for k in np.flatnonzero(orders > 0).tolist():
        pfn, nr = int(pfns[k]), int(sizes[k])
        tails = pages.ref_np[pfn + 1 : pfn + nr]
        if (tails > 0 if negative_ok[k] else tails != 0).any():
            bad[k] = True
    if bad.any():
        k = int(np.flatnonzero(bad)[np.argmin(pfns[bad])])
        _explain_allocated(pages, int(pfns[k]), int(orders[k]), bool(is_frozen[k]))
    return pfns, sizes


def _negative_ok(mm: PageAllocator, pfns: np.ndarray) -> np.ndarray:
    """Per pfn: its zone recorded a caller's put below 0 (``Zone.refcount_underflows``)."""
    ok = np.zeros(pfns.size, dtype=bool)
    for zone in mm.zones:
        if zone.refcount_underflows:
            ok |= (pfns >= zone.zone_start_pfn) & (pfns < zone.end_pfn)
    return ok


def _explain_allocated(pages: PageArray, pfn: int, order: int, frozen: bool) -> None:
    where = f"allocated order-{order} block {pfn:#x}"
    if pfn & ((1 << order) - 1):
        _fail(f"{where}: not aligned to its order")
    if pages.flags[pfn] & (PG_BUDDY | PG_PCP):
        _fail(f"{where}: head flags {pages.flags[pfn]:#x} say it is free")
    ref = pages.ref[pfn]
    if frozen and ref > 0:
        _fail(f"{where}: frozen but refcount is {ref}")
    if frozen and ref < 0:
        _fail(f"{where}: frozen but refcount is {ref} (and its zone recorded no put below 0)")
    if not frozen and ref < 1:
        _fail(f"{where}: head refcount is {ref}")
    _fail(f"{where}: a tail page has a non-zero refcount")


def _check_coverage(mm: PageAllocator, blocks: list[Block], alloc_pfns: np.ndarray,
                    alloc_sizes: np.ndarray, complete: bool) -> None:
    """No overlaps; with ``complete``, managed pages are covered except leaked ones."""
    nr_pages = mm.pages.nr_pages
    starts = np.concatenate([np.fromiter((b[0] for b in blocks), np.int64, len(blocks)),
                             alloc_pfns])
    ends = starts + np.concatenate([np.fromiter((b[1] for b in blocks), np.int64,
                                                len(blocks)), alloc_sizes])
    diff = np.zeros(nr_pages + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, ends, -1)
    cover = np.cumsum(diff[:-1])
    over = np.flatnonzero(cover > 1)
    if over.size:
        pfn = int(over[0])
        owners = [d for p, n, d in blocks if p <= pfn < p + n]
        owners += [f"allocated block {int(p):#x} of {int(n)} pages"
                   for p, n in zip(alloc_pfns, alloc_sizes, strict=True) if p <= pfn < p + n]
        _fail(f"pfn {pfn:#x} is covered by {len(owners)} blocks: " + "; ".join(owners))
    managed = managed_mask(mm)
    outside = np.flatnonzero(cover.astype(bool) & ~managed)
    if outside.size:
        _fail(f"pfn {int(outside[0]):#x} is in a block but not managed by any zone")
    if not complete:
        return
    missing = np.flatnonzero(managed & (cover == 0))
    leaked = mm.vm["bad_page_leaked_pages"] + mm.vm["free_order_leaked_pages"]
    if missing.size != leaked:
        where = f", first {int(missing[0]):#x}" if missing.size else ""
        _fail(f"{missing.size} managed pages are neither free, on a pcp list nor "
              f"allocated{where}; {leaked} pages were leaked by bad frees")
