"""Contiguous ranges: ``alloc_contig_pages()``, ``alloc_contig_range()``, ``free_contig_range()``.

Mirrors ``CONFIG_CONTIG_ALLOC`` in mm/page_alloc.c of 6.1, which hugetlb uses for
gigantic (1 GiB) pages:

- ``alloc_contig_pages(nr_pages, gfp, nid, nodemask)`` walks the zonelist of ``nid``
  (``__GFP_THISNODE`` keeps it on the node) up to ``gfp_zone()``, and in each zone every
  ``nr_pages``-aligned range that lies wholly in the zone (``zone_spans_last_pfn()``)
  with no hole or reserved page (``pfn_range_valid_contig()``), and tries
  ``alloc_contig_range()`` on it; the first range that succeeds is the allocation;
- ``alloc_contig_range()`` isolates the range's pageblocks
  (:func:`~simcore.mm.page_isolation.start_isolate_page_range`, which refuses a
  pageblock holding an unmovable page), drains the pcp lists, migrates the movable
  allocations out with compaction's machinery (``__alloc_contig_migrate_range()``:
  ``isolate_migratepages_range()`` in batches of ``COMPACT_CLUSTER_MAX``, then
  ``migrate_pages()`` to pages from ``alloc_migration_target()``, ``GFP_USER |
  __GFP_MOVABLE | __GFP_RETRY_MAYFAIL`` on the zone's node), checks that every page of the
  range is now a free buddy block (``test_pages_isolated()``), takes them off the free
  lists as order-0 pages of refcount 1 (``isolate_freepages_range()``), and gives the
  pageblocks back to MIGRATE_MOVABLE (``undo_isolate_page_range()``), success or not;
- ``free_contig_range()`` frees each page of a range with ``__free_page()``.

The work happens at once; the functions return its cost (the pages the isolation check
and the migrate scanner looked at, ``compact_scan`` each; ``compact_migrate`` per page
moved; the stalls of the target allocations) for the timed layer to spend after it, as
for compaction.

SIMPLIFICATIONS: ranges must be aligned to ``MAX_ORDER_NR_PAGES`` (gigantic pages
are), so no free block crosses their ends (the kernel's ``outer_start`` handling is not
needed); allocations of order > 0 (THP, hugetlb pages, non-compound blocks) are never
migrated, so a range holding one fails (the kernel migrates THPs and in-use hugetlb
pages, and dissolves free hugetlb pages, with ``cc->alloc_contig``); clean page cache is
migrated rather than reclaimed (``reclaim_clean_pages_from_list()``); a page that fails
to migrate is put back at once instead of being retried up to five times; the target
pages are allocated before ``migrate_pages()`` (as many as pages isolated; the unused
ones are freed after), not one per page during it. No CMA areas.

Pure code: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.compaction import COMPACT_CLUSTER_MAX, MIGRATE_SYNC, CompactControl
from simcore.mm.constants import MT_MOVABLE, ZoneType
from simcore.mm.gfp import GFP, GFP_USER, gfp_zone
from simcore.mm.page_isolation import (
    start_isolate_page_range,
    test_pages_isolated,
    undo_isolate_page_range,
)
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_ALLOC, PG_RESERVED

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone

GFP_MIGRATE_TARGET = int(GFP_USER | GFP.MOVABLE | GFP.RETRY_MAYFAIL)
"""``__alloc_contig_migrate_range()``'s ``mtc.gfp_mask``."""
GFP_THISNODE = int(GFP.THISNODE)
GFP_HIGHMEM = int(GFP.HIGHMEM)


def pfn_range_valid_contig(mm: PageAllocator, zone: Zone, start_pfn: int, nr_pages: int) -> bool:
    """``pfn_range_valid_contig()``: every page online, in ``zone`` and not reserved."""
    end_pfn = start_pfn + nr_pages
    if not (zone.zone_start_pfn <= start_pfn and end_pfn <= zone.end_pfn):
        return False
    return not (mm.pages.flags_np[start_pfn:end_pfn] & PG_RESERVED).any()


def alloc_contig_pages(mm: PageAllocator, nr_pages: int, gfp: int, nid: int,
                       nodemask: frozenset[int] | None, cpu: int) -> tuple[int, int]:
    """``alloc_contig_pages()``: ``(first pfn or -1, cost_ns)``.

    On success every page of the range is an allocated order-0 page of refcount 1.
    """
    zonelist = mm.zonelist(nid, bool(gfp & GFP_THISNODE), int(gfp_zone(gfp)))
    cost_ns = 0
    for zone in zonelist:
        if nodemask is not None and zone.nid not in nodemask:
            continue
        pfn = -(-zone.zone_start_pfn // nr_pages) * nr_pages  # ALIGN()
        while zone.spans(pfn + nr_pages - 1):  # zone_spans_last_pfn()
            if pfn_range_valid_contig(mm, zone, pfn, nr_pages):
                ok, cost = alloc_contig_range(mm, zone, pfn, pfn + nr_pages, MT_MOVABLE, cpu)
                cost_ns += cost
                if ok:
                    return pfn, cost_ns
            pfn += nr_pages
    return -1, cost_ns


def alloc_contig_range(mm: PageAllocator, zone: Zone, start: int, end: int, mt: int,
                       cpu: int) -> tuple[bool, int]:
    """``alloc_contig_range(start, end, mt)`` in ``zone``: ``(allocated, cost_ns)``."""
    reclaim = mm.reclaim
    compaction = reclaim.compaction
    cost = reclaim.cost
    isolated, scanned = start_isolate_page_range(zone, reclaim.lruvecs[zone.nid], start, end,
                                                 mt)
    cost_ns = scanned * cost.compact_scan_ns
    if not isolated:
        return False, cost_ns
    mm.drain_all_pages(zone)
    cc = CompactControl(zone, -1, GFP_MIGRATE_TARGET, MIGRATE_SYNC, cpu,
                        ignore_skip_hint=True, no_set_skip_hint=True)
    cost_ns += alloc_contig_migrate_range(mm, cc, start, end)
    cost_ns += compaction.cost_ns(cc)
    ok = test_pages_isolated(zone, start, end)
    if ok:
        isolate_freepages_range(mm, zone, start, end)
    undo_isolate_page_range(zone, start, end, mt)
    return ok, cost_ns


def alloc_contig_migrate_range(mm: PageAllocator, cc: CompactControl, start: int,
                               end: int) -> int:
    """``__alloc_contig_migrate_range()``: migrate what can move out of the range.

    Returns the stall time of the target allocations (ns). A page that cannot move (an
    unexpected reference) stops the migration (the kernel's fifth try gives -EBUSY), and
    :func:`~simcore.mm.page_isolation.test_pages_isolated` then fails the range.
    SIMPLIFICATION: no time passes between the kernel's five tries (each a
    ``migrate_pages()`` of ten passes), so they would fail alike and are not repeated:
    ``pgmigrate_fail`` counts the page once, the kernel once per try.
    """
    compaction = mm.reclaim.compaction
    stall_ns = 0
    pfn = start
    while pfn < end:
        cc.nr_migratepages = 0
        pfn = isolate_migratepages_range(mm, cc, pfn, end)
        if not cc.migratepages:
            continue
        stall_ns += _migration_targets(mm, cc, len(cc.migratepages))
        cc.free_pfn = cc.zone.zone_start_pfn  # no free scanner: targets come from the buddy
        if compaction.migrate_pages(cc) != 0:  # -ENOMEM (no target page), or -EBUSY
            break
    compaction.release_freepages(cc)
    return stall_ns


def isolate_migratepages_range(mm: PageAllocator, cc: CompactControl, start: int,
                               end: int) -> int:
    """``isolate_migratepages_range()``: up to a batch of pages; returns where it stopped."""
    compaction = mm.reclaim.compaction
    zone = cc.zone
    step = 1 << zone.pageblock_order
    pfn = start
    block_end = (pfn & ~(step - 1)) + step
    while pfn < end:
        block_end = min(block_end, end)
        compaction._isolate_migratepages_block(cc, pfn, block_end)
        pfn = block_end
        block_end += step
        if len(cc.migratepages) >= COMPACT_CLUSTER_MAX:
            return cc.migrate_pfn
    return pfn


def _migration_targets(mm: PageAllocator, cc: CompactControl, nr: int) -> int:
    """``alloc_migration_target()`` ``nr`` times into ``cc.freepages``; the stall time.

    Order-0 pages preferring the zone's node, ``__GFP_HIGHMEM`` added for a source in
    ZONE_MOVABLE, each through the whole allocator (the slow path's stalls are returned).
    """
    zone = cc.zone
    gfp = GFP_MIGRATE_TARGET | (GFP_HIGHMEM if zone.zone_idx == ZoneType.MOVABLE else 0)
    stall_ns = 0
    for _ in range(nr):
        mm.last_request = None
        pfn = mm.alloc_pages(gfp, 0, zone.nid, cc.cpu)
        if mm.last_request is not None:
            stall_ns += mm.last_request.stall_ns
        if pfn < 0:
            break
        cc.freepages.append(pfn)
    return stall_ns


def isolate_freepages_range(mm: PageAllocator, zone: Zone, start: int, end: int) -> None:
    """``isolate_freepages_range()``: take the range's free blocks off the ISOLATE lists.

    Each page becomes an order-0 page of refcount 1 (``split_map_pages()``). NR_FREE_PAGES
    does not change: isolation already took these pages out of it.
    """
    pages = mm.pages
    info = pages.info
    pfn = start
    while pfn < end:
        order = info[pfn] & ORDER_MASK
        zone.free_area.remove(pfn, order, info[pfn] >> MT_SHIFT)
        pfn += 1 << order
    pages.ref_np[start:end] = 1
    # split_map_pages(): post_alloc_hook(page, order, __GFP_MOVABLE), so each page is a
    # MOVABLE order-0 allocation (page_owner's migratetype)
    pages.info_np[start:end] = MT_MOVABLE << MT_SHIFT
    pages.flags_np[start:end] = PG_ALLOC
    mm.vm.add("compact_isolated", end - start)


def free_contig_range(mm: PageAllocator, pfn: int, nr_pages: int, cpu: int) -> int:
    """``free_contig_range()``: ``__free_page()`` on every page.

    Returns the pages still in use (refcount not 1: another holder frees them later),
    which the kernel WARNs about.
    """
    ref = mm.pages.ref
    busy = 0
    for p in range(pfn, pfn + nr_pages):
        busy += ref[p] != 1
        mm.free_pages(p, 0, cpu)
    return busy
