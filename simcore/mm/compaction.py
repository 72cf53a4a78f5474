"""Memory compaction: the two scanners, migration, deferral, capture and kcompactd.

Mirrors mm/compaction.c of 6.1:

- suitability: ``__compaction_suitable()``, ``compaction_suitable()`` (fragmentation
  index against ``vm.extfrag_threshold``), ``compaction_zonelist_suitable()``;
- ``compact_zone()``: the migrate scanner (``isolate_migratepages()`` →
  ``isolate_migratepages_block()``) walks up from the zone start (or its cached
  position), the free scanner (``isolate_freepages()`` → ``isolate_freepages_block()``)
  walks down from the zone's last pageblock, ``migrate_pages()`` moves each isolated
  page to a page the free scanner isolated (``compaction_alloc()``), and
  ``__compact_finished()`` decides when to stop;
- the pageblock skip bits (``PG_migrate_skip``: bit 7 of the pageblock's migratetype
  byte) and their reset (``__reset_isolation_suitable()``), and the cached scanner
  positions;
- deferral (``defer_compaction()``, ``compaction_deferred()``,
  ``compaction_defer_reset()``, ``compaction_restarting()``);
- direct compaction (``try_to_compact_pages()`` → ``compact_zone_order()``), with page
  capture (``capture_control``: :meth:`simcore.mm.zone.Zone.compaction_capture`);
- kcompactd (``wakeup_kcompactd()``, ``kcompactd_do_work()``, the ``kcompactd()`` loop)
  and proactive compaction (``fragmentation_score_*()``,
  ``should_proactive_compact_node()``, ``proactive_compact_node()``), and
  ``/proc/sys/vm/compact_memory`` (``compact_node()``).

What migrates: an allocated order-0 page whose owner can move it: a page on an LRU list
(anon or page cache), or a MOVABLE allocation that is on no list (a ``__PageMovable``
page such as zsmalloc's). Everything else is unmovable: slab, kernel allocations, pages
on per-CPU lists, reserved pages. Migration moves the page's state to the new pfn, puts
it back on its LRU list, frees the old page, and tells the owner (``moved``), whose
handle then names the new pfn.

SIMPLIFICATIONS (also in the README):

- No ``fast_find_migrateblock()``/``fast_isolate_freepages()``: both scanners walk
  linearly. In the kernel the fast searches pick a migration source block (and set its
  skip bit) and isolate targets straight from the free lists, sparing the linear walk.
- An allocation of order > 0 is never migrated, as 6.1 skips compound pages (THP,
  hugetlb); a non-compound order > 0 allocation is treated the same way.
- Migration is synchronous and never fails for writeback or locking; it fails only when
  the page has an unexpected reference (``folio_ref_freeze()`` in
  ``folio_migrate_mapping()``): the model's ``pgmigrate_fail``. Anonymous pages with an
  extra reference are not isolated at all, as in the kernel.
- No ``too_many_isolated()`` throttle, no lock contention and no ``need_resched()``
  stop: ``COMPACT_CONTENDED`` only comes from running out of targets before the
  scanners meet (-ENOMEM), as in the kernel.
- The work happens at once and its time (:class:`~simcore.config.types.CostConfig`
  ``compact_scan``/``compact_migrate`` per page) is spent after it, as for reclaim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from simcore.mm.constants import (
    ALLOC_WMARK_MASK,
    MIGRATE_PCPTYPES,
    MT_ISOLATE,
    MT_MOVABLE,
    PAGE_ALLOC_COSTLY_ORDER,
)
from simcore.mm.fallback import find_suitable_fallback
from simcore.mm.fragmentation import (
    extfrag_for_order,
    fragmentation_index,
    fragmentation_score_weighted,
)
from simcore.mm.gfp import GFP, gfp_migratetype
from simcore.mm.gfp import GFP_KERNEL as GFP_KERNEL_MASK
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_ALLOC, PG_BUDDY, PG_HEAD, PG_MOVABLE_OWNER

if TYPE_CHECKING:
    from simcore.config.types import CostConfig
    from simcore.mm.lru import Lruvec
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.vmstat import VmStat
    from simcore.mm.zone import Zone

COMPACT_NOT_SUITABLE_ZONE = "not_suitable_zone"
COMPACT_SKIPPED = "skipped"
COMPACT_DEFERRED = "deferred"
COMPACT_NO_SUITABLE_PAGE = "no_suitable_page"
COMPACT_CONTINUE = "continue"
COMPACT_COMPLETE = "complete"
COMPACT_PARTIAL_SKIPPED = "partial_skipped"
COMPACT_CONTENDED = "contended"
COMPACT_SUCCESS = "success"
RESULT_ORDER = (COMPACT_NOT_SUITABLE_ZONE, COMPACT_SKIPPED, COMPACT_DEFERRED,
                COMPACT_NO_SUITABLE_PAGE, COMPACT_CONTINUE, COMPACT_COMPLETE,
                COMPACT_PARTIAL_SKIPPED, COMPACT_CONTENDED, COMPACT_SUCCESS)
"""``enum compact_result`` in value order (try_to_compact_pages() keeps the max)."""
_RANK = {name: i for i, name in enumerate(RESULT_ORDER)}

MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC = 0, 1, 2
"""``enum migrate_mode``."""
MODE_NAMES = ("async", "sync_light", "sync")
COMPACT_PRIO_SYNC_FULL, COMPACT_PRIO_SYNC_LIGHT, COMPACT_PRIO_ASYNC = 0, 1, 2
"""``enum compact_priority``: lower is stronger."""
MIN_COMPACT_PRIORITY = COMPACT_PRIO_SYNC_FULL
COMPACT_CLUSTER_MAX = 32
"""``SWAP_CLUSTER_MAX``: pages isolated per migration batch."""
COMPACT_MAX_DEFER_SHIFT = 6
HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500
"""kcompactd's proactive-compaction period."""
COMPACTION_HPAGE_ORDER = 9
"""``HPAGE_PMD_ORDER`` on x86_64: the order proactive compaction scores."""
WMARK_MIN, WMARK_LOW = 0, 1
ALLOC_CMA = 0x80
GFP_IO = int(GFP.IO)
GFP_FS = int(GFP.FS)
GFP_KERNEL = int(GFP_KERNEL_MASK)
PB_SKIP = 0x80
"""``PB_migrate_skip``, kept in the pageblock's migratetype byte."""
_LRU_FILE_LISTS = (2, 3)
"""LRU_INACTIVE_FILE, LRU_ACTIVE_FILE (page-cache pages need ``__GFP_FS``)."""
_LRU_SLAB = 4
"""simcore.mm.lru.SLAB: this where-code and those above it (SLAB_IN_USE) are the lruvec's
reclaimable-slab lists (never migrated: slab pages are neither PageLRU nor movable)."""


def compact_gap(order: int) -> int:
    """``compact_gap()``: twice the request, the free pages compaction needs."""
    return 2 << order


def status_name(result: str) -> str:
    """The tracepoints' name of a result: ``COMPACT_SUCCESS`` ..."""
    return "COMPACT_" + result.upper()


class CompactControl:
    """``struct compact_control``: one compaction of one zone.

    Attributes:
        order: Requested order (-1: ``compact_memory``, the whole zone).
        gfp: The requester's gfp mask; migratetype: ``gfp_migratetype()`` of it.
        mode: ``MIGRATE_ASYNC``, ``MIGRATE_SYNC_LIGHT`` or ``MIGRATE_SYNC``.
        migrate_pfn, free_pfn: Where the two scanners are.
        migratepages: Isolated pages to migrate (the list head is the end).
        freepages: Isolated order-0 free pages, migration targets (head is the end).
        total_migrate_scanned, total_free_scanned: Pages each scanner looked at.
        nr_migrated, nr_failed: Pages ``migrate_pages()`` moved, and could not.
    """

    __slots__ = ("order", "gfp", "migratetype", "mode", "alloc_flags", "highest_zoneidx",
                 "zone", "direct_compaction", "whole_zone", "ignore_skip_hint",
                 "ignore_block_suitable", "proactive_compaction", "no_set_skip_hint",
                 "migrate_pfn", "free_pfn",
                 "migratepages", "nr_migratepages", "freepages", "total_migrate_scanned",
                 "total_free_scanned",
                 "nr_migrated", "nr_failed", "rescan", "cpu")

    def __init__(self, zone: Zone, order: int, gfp: int, mode: int, cpu: int, *,
                 alloc_flags: int = 0, highest_zoneidx: int = 0,
                 direct_compaction: bool = False, whole_zone: bool = False,
                 ignore_skip_hint: bool = False, ignore_block_suitable: bool = False,
                 proactive_compaction: bool = False, no_set_skip_hint: bool = False) -> None:
        self.zone = zone
        self.order = order
        self.gfp = gfp
        self.migratetype = gfp_migratetype(gfp)
        self.mode = mode
        self.alloc_flags = alloc_flags
        self.highest_zoneidx = highest_zoneidx
        self.direct_compaction = direct_compaction
        self.whole_zone = whole_zone
        self.ignore_skip_hint = ignore_skip_hint
        self.ignore_block_suitable = ignore_block_suitable
        self.proactive_compaction = proactive_compaction
        self.no_set_skip_hint = no_set_skip_hint
        """``cc->no_set_skip_hint``: isolation for alloc_contig_range(), not compaction:
        leave the cached scanner positions (and the free scanner's skip bits) alone."""
        self.migrate_pfn = 0
        self.free_pfn = 0
        self.migratepages: list[int] = []
        self.nr_migratepages = 0
        """``cc->nr_migratepages``: the batch being migrated (fixed during
        ``migrate_pages()``, which the free scanner sizes its work by)."""
        self.freepages: list[int] = []
        self.total_migrate_scanned = 0
        self.total_free_scanned = 0
        self.nr_migrated = 0
        self.nr_failed = 0
        self.rescan = False
        self.cpu = cpu


class KcompactdState:
    """A node's kcompactd fields of ``pg_data_t``.

    Attributes:
        max_order: ``kcompactd_max_order``: the largest order a waker asked for.
        highest_zoneidx: ``kcompactd_highest_zoneidx``.
        waiting: kcompactd sleeps on ``kcompactd_wait`` (a wakeup wakes it).
        wake: Wakes the kcompactd process (the timed layer sets it).
        thread: A kcompactd process runs (the timed layer).
    """

    __slots__ = ("nid", "max_order", "highest_zoneidx", "waiting", "wake", "thread",
                 "proactive_trigger")

    def __init__(self, nid: int, nr_zones: int) -> None:
        self.nid = nid
        self.max_order = 0
        self.highest_zoneidx = nr_zones - 1
        self.waiting = True
        self.wake: Callable[[], None] = _nothing
        self.thread = False
        self.proactive_trigger = False
        """``proactive_compact_trigger``: a ``compaction_proactiveness`` write asked for
        a proactive check now."""


class Compaction:
    """Compaction of one machine's zones.

    Attributes:
        mm: The allocator whose zones are compacted.
        extfrag_threshold: ``vm.extfrag_threshold``.
        proactiveness: ``vm.compaction_proactiveness``.
        reclaimable: ``zone_reclaimable_pages()`` (reclaim sets it).
        moved: ``moved(old_pfn, new_pfn)``: an owner's page was migrated (the machine
            updates the handle; the default does nothing).
        span: Receives compaction tracepoints (default: none).
        kcompactd: One :class:`KcompactdState` per node.
        kcompactd_wakeups: ``wakeup_kcompactd()`` calls that woke (or would wake) it.
    """

    def __init__(self, mm: PageAllocator, extfrag_threshold: int, proactiveness: int,
                 vm: VmStat, cost: CostConfig) -> None:
        self.mm = mm
        self.vm = vm
        self.cost = cost
        self.extfrag_threshold = extfrag_threshold
        self.proactiveness = proactiveness
        self.reclaimable: Callable[[Zone], int] = _no_pages
        self.moved: Callable[[int, int], None] = _no_move
        self.span: Callable[..., None] = _no_span
        self.kswapd_running: Callable[[int], bool] = _never
        self.kcompactd = [KcompactdState(node.nid, len(node.node_zones)) for node in mm.nodes]
        self.kcompactd_wakeups = 0

    # -- suitability --------------------------------------------------------------------
    def __suitable(self, zone: Zone, order: int, alloc_flags: int, highest_zoneidx: int,
                   wmark_target: int) -> str:
        """``__compaction_suitable()``."""
        if order < 0:  # is_via_compact_memory()
            return COMPACT_CONTINUE
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

    # -- deferral -----------------------------------------------------------------------
    def defer_compaction(self, zone: Zone, order: int) -> None:
        """``defer_compaction()``: skip the next ``2^shift - 1`` attempts at this order."""
        zone.compact_considered = 0
        zone.compact_defer_shift += 1
        if order < zone.compact_order_failed:
            zone.compact_order_failed = order
        if zone.compact_defer_shift > COMPACT_MAX_DEFER_SHIFT:
            zone.compact_defer_shift = COMPACT_MAX_DEFER_SHIFT
        self.span("mm_compaction_defer_compaction", zone.nid, 0, 0, _defer_detail(zone, order))

    def compaction_deferred(self, zone: Zone, order: int) -> bool:
        """``compaction_deferred()``: should this attempt be skipped?"""
        if order < zone.compact_order_failed:
            return False
        limit = 1 << zone.compact_defer_shift
        zone.compact_considered += 1
        if zone.compact_considered >= limit:
            zone.compact_considered = limit
            return False
        self.span("mm_compaction_deferred", zone.nid, 0, 0, _defer_detail(zone, order))
        return True

    @staticmethod
    def compaction_defer_reset(zone: Zone, order: int, alloc_success: bool) -> None:
        """``compaction_defer_reset()``: after a success (of an allocation, or expected)."""
        if alloc_success:
            zone.compact_considered = 0
            zone.compact_defer_shift = 0
        if order >= zone.compact_order_failed:
            zone.compact_order_failed = order + 1

    @staticmethod
    def compaction_restarting(zone: Zone, order: int) -> bool:
        """``compaction_restarting()``: compaction retried after the longest deferral."""
        if order < zone.compact_order_failed:
            return False
        return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
                and zone.compact_considered >= 1 << zone.compact_defer_shift)

    def _block_valid(self, zone: Zone, start_pfn: int, end_pfn: int) -> bool:
        """``pageblock_pfn_to_page()``: the range lies wholly in the zone and has pages.

        A pageblock of the span with no present memory (a hole, such as DMA32's PCI
        hole) has no struct pages and is skipped (:func:`~simcore.mm.topology.memmap_pageblocks`).
        """
        if not (zone.zone_start_pfn <= start_pfn and end_pfn <= zone.end_pfn):
            return False
        pb_zone = self.mm.pb_zone
        zones = self.mm.zones
        pb = zone.pageblock_order
        first, last = pb_zone[start_pfn >> pb], pb_zone[(end_pfn - 1) >> pb]
        return first != 255 and last != 255 and zones[first] is zone and zones[last] is zone

    # -- skip bits and cached positions -------------------------------------------------
    def _block_skip(self, zone: Zone, pfn: int) -> bool:
        return bool(zone.pageblock_mt[pfn >> zone.pageblock_order] & PB_SKIP)

    def _set_block_skip(self, zone: Zone, pfn: int) -> None:
        zone.pageblock_mt[pfn >> zone.pageblock_order] |= PB_SKIP

    def isolation_suitable(self, cc: CompactControl, pfn: int) -> bool:
        """``isolation_suitable()``: the block's skip bit is clear (or ignored)."""
        return cc.ignore_skip_hint or not self._block_skip(cc.zone, pfn)

    @staticmethod
    def reset_cached_positions(zone: Zone) -> None:
        """``reset_cached_positions()``: both scanners restart at the zone's ends."""
        zone.compact_cached_migrate_pfn[0] = zone.zone_start_pfn
        zone.compact_cached_migrate_pfn[1] = zone.zone_start_pfn
        zone.compact_cached_free_pfn = _pageblock_start(zone, zone.end_pfn - 1)

    def update_pageblock_skip(self, cc: CompactControl, pfn: int) -> None:
        """``update_pageblock_skip()``: nothing to isolate here: skip the block next time."""
        if cc.no_set_skip_hint:
            return
        self._set_block_skip(cc.zone, pfn)
        if pfn < cc.zone.compact_cached_free_pfn:
            cc.zone.compact_cached_free_pfn = pfn

    @staticmethod
    def update_cached_migrate(cc: CompactControl, pfn: int) -> None:
        """``update_cached_migrate()``: the migrate scanner resumes after this block."""
        if cc.no_set_skip_hint:
            return
        zone = cc.zone
        pfn = _pageblock_end(zone, pfn)
        if pfn > zone.compact_cached_migrate_pfn[0]:
            zone.compact_cached_migrate_pfn[0] = pfn
        if cc.mode != MIGRATE_ASYNC and pfn > zone.compact_cached_migrate_pfn[1]:
            zone.compact_cached_migrate_pfn[1] = pfn

    def _reset_isolation_pfn(self, zone: Zone, pfn: int, check_source: bool,
                             check_target: bool) -> bool:
        """``__reset_isolation_pfn()``: clear a block's skip bit if it holds a candidate.

        Samples every 8th page (``1 << PAGE_ALLOC_COSTLY_ORDER``) for a movable page
        (source) or a free block (target).
        """
        pages = self.mm.pages
        flags = pages.flags
        if not zone.spans(pfn):
            return False
        head = pages.compound_head(pfn, zone.max_order)
        if flags[head] & PG_HEAD and pages.info[head] & ORDER_MASK >= zone.pageblock_order:
            return False  # pageblock_skip_persistent()
        if check_source and check_target and not self._block_skip(zone, pfn):
            return True
        if not check_source and check_target and \
                zone.get_pageblock_migratetype(pfn) != MT_MOVABLE:
            return False
        start = max(_pageblock_start(zone, pfn), zone.zone_start_pfn)
        end = min(_pageblock_end(zone, start) - 1, zone.end_pfn - 1)
        lruvec = self.mm.reclaim.lruvecs[zone.nid]
        p = start
        while p <= end:
            f = flags[p]
            if check_source and f & PG_ALLOC and 0 <= lruvec.on_list(p) < _LRU_SLAB:
                zone.pageblock_mt[p >> zone.pageblock_order] &= 0xFF ^ PB_SKIP
                return True
            if check_target and f & PG_BUDDY:
                zone.pageblock_mt[p >> zone.pageblock_order] &= 0xFF ^ PB_SKIP
                return True
            p += 1 << PAGE_ALLOC_COSTLY_ORDER
        return False

    def reset_isolation_suitable_zone(self, zone: Zone) -> None:
        """``__reset_isolation_suitable()``: after a full compaction, clear skip hints.

        Walks the zone from both ends; the first block with a candidate becomes the
        scanners' new start.
        """
        if not zone.compact_blockskip_flush:
            return
        zone.compact_blockskip_flush = False
        nr = 1 << zone.pageblock_order
        migrate_pfn = zone.zone_start_pfn
        free_pfn = zone.end_pfn - 1
        reset_migrate = free_pfn
        reset_free = migrate_pfn
        source_set = free_set = False
        while migrate_pfn < free_pfn:
            if (self._reset_isolation_pfn(zone, migrate_pfn, True, source_set)
                    and migrate_pfn < reset_migrate):
                source_set = True
                reset_migrate = migrate_pfn
                zone.compact_init_migrate_pfn = reset_migrate
                zone.compact_cached_migrate_pfn[0] = reset_migrate
                zone.compact_cached_migrate_pfn[1] = reset_migrate
            if self._reset_isolation_pfn(zone, free_pfn, free_set, True) and free_pfn > reset_free:
                free_set = True
                reset_free = free_pfn
                zone.compact_init_free_pfn = reset_free
                zone.compact_cached_free_pfn = reset_free
            migrate_pfn += nr
            free_pfn -= nr
        if reset_migrate >= reset_free:
            zone.compact_cached_migrate_pfn[0] = migrate_pfn
            zone.compact_cached_migrate_pfn[1] = migrate_pfn
            zone.compact_cached_free_pfn = free_pfn

    def reset_isolation_suitable(self, nid: int) -> None:
        """``reset_isolation_suitable()``: kswapd going to sleep clears a node's hints."""
        for zone in self.mm.nodes[nid].node_zones:
            if zone is not None and zone.present_pages and zone.compact_blockskip_flush:
                self.reset_isolation_suitable_zone(zone)

    # -- the free scanner ---------------------------------------------------------------
    def _isolate_free_page(self, zone: Zone, pfn: int, order: int) -> int:
        """``__isolate_free_page()``: take a free block off its list; its pages, or 0.

        Refuses when the zone would drop below MIN + the block (``zone->_watermark``,
        without boost). A block of at least half a pageblock makes its pageblocks
        MOVABLE (unless ISOLATE, HIGHATOMIC or CMA).
        """
        pages = self.mm.pages
        mt = zone.get_pageblock_migratetype(pfn)
        if mt != MT_ISOLATE:
            mark = zone.watermark[WMARK_MIN] + (1 << order)
            if not zone.watermark_ok(0, mark, 0, ALLOC_CMA, zone.nr_free_pages):
                return 0
            zone.nr_free_pages -= 1 << order
        zone.free_area.remove(pfn, order, pages.info[pfn] >> MT_SHIFT)
        if order >= zone.pageblock_order - 1:
            nr = 1 << zone.pageblock_order
            for block in range(pfn, pfn + (1 << order), nr):
                if zone.get_pageblock_migratetype(block) < MIGRATE_PCPTYPES:
                    zone.set_pageblock_migratetype(block, MT_MOVABLE)
        return 1 << order

    def _isolate_freepages_block(self, cc: CompactControl, start_pfn: int, end_pfn: int,
                                 stride: int) -> tuple[int, int]:
        """``isolate_freepages_block()`` (not strict): ``(next_pfn, isolated)``.

        Every ``stride``-th page is looked at; free blocks are taken whole until there
        are as many free pages as pages to migrate. Compound pages are skipped whole.
        """
        pages = self.mm.pages
        flags = pages.flags
        info = pages.info
        zone = cc.zone
        nr_scanned = 0
        total_isolated = 0
        isolated_blocks: list[tuple[int, int]] = []
        blockpfn = start_pfn
        nr_migrate = cc.nr_migratepages
        while blockpfn < end_pfn:
            nr_scanned += 1
            f = flags[blockpfn]
            if f & PG_HEAD:
                blockpfn += (1 << (info[blockpfn] & ORDER_MASK)) - 1 + stride
                continue
            if not f & PG_BUDDY:
                blockpfn += stride
                continue
            order = info[blockpfn] & ORDER_MASK
            isolated = self._isolate_free_page(zone, blockpfn, order)
            if not isolated:
                break
            isolated_blocks.append((blockpfn, order))
            nr_scanned += isolated - 1
            total_isolated += isolated
            if nr_migrate <= len(cc.freepages) + total_isolated:
                blockpfn += isolated
                break
            blockpfn += isolated - 1 + stride
        if blockpfn > end_pfn:
            blockpfn = end_pfn
        # split_map_pages(): each block becomes order-0 pages (post_alloc_hook), put at
        # the list head in pfn order, so the head is the last page of the last block.
        ref = pages.ref
        for pfn, order in isolated_blocks:
            for p in range(pfn, pfn + (1 << order)):
                ref[p] = 1
                info[p] = 0
                flags[p] = 0
                cc.freepages.append(p)
        cc.total_free_scanned += nr_scanned
        if total_isolated:
            self.vm.add("compact_isolated", total_isolated)
        return blockpfn, total_isolated

    def suitable_migration_target(self, cc: CompactControl, pfn: int) -> bool:
        """``suitable_migration_target()``: a MOVABLE block without a huge free block."""
        pages = self.mm.pages
        if pages.flags[pfn] & PG_BUDDY and \
                pages.info[pfn] & ORDER_MASK >= cc.zone.pageblock_order:
            return False
        if cc.ignore_block_suitable:
            return True
        return cc.zone.get_pageblock_migratetype(pfn) == MT_MOVABLE

    def isolate_freepages(self, cc: CompactControl) -> None:
        """``isolate_freepages()``: walk down from ``free_pfn`` for migration targets."""
        zone = cc.zone
        nr = 1 << zone.pageblock_order
        isolate_start_pfn = cc.free_pfn
        block_start_pfn = _pageblock_start(zone, isolate_start_pfn)
        block_end_pfn = min(block_start_pfn + nr, zone.end_pfn)
        low_pfn = _pageblock_end(zone, cc.migrate_pfn)
        stride = COMPACT_CLUSTER_MAX if cc.mode == MIGRATE_ASYNC else 1
        while block_start_pfn >= low_pfn:
            if self._block_valid(zone, block_start_pfn, block_end_pfn) and \
                    self.suitable_migration_target(cc, block_start_pfn) and \
                    self.isolation_suitable(cc, block_start_pfn):
                isolate_start_pfn, nr_isolated = self._isolate_freepages_block(
                    cc, isolate_start_pfn, block_end_pfn, stride)
                if isolate_start_pfn == block_end_pfn:
                    self.update_pageblock_skip(cc, block_start_pfn)
                if len(cc.freepages) >= cc.nr_migratepages:
                    if isolate_start_pfn >= block_end_pfn:
                        isolate_start_pfn = block_start_pfn - nr
                    break
                if isolate_start_pfn < block_end_pfn:
                    break
                stride = 1 if nr_isolated else min(COMPACT_CLUSTER_MAX, stride << 1)
            block_end_pfn = block_start_pfn
            block_start_pfn -= nr
            isolate_start_pfn = block_start_pfn
        cc.free_pfn = isolate_start_pfn

    def release_freepages(self, cc: CompactControl) -> int:
        """``release_freepages()``: free the unused targets; returns the highest pfn."""
        high = 0
        mm = self.mm
        ref = mm.pages.ref
        for pfn in reversed(cc.freepages):  # from the list head
            high = max(high, pfn)
            ref[pfn] = 0
            mm.free_the_page(pfn, 0, cc.cpu)
        cc.freepages = []
        return high

    # -- the migrate scanner ------------------------------------------------------------
    def suitable_migration_source(self, cc: CompactControl, pfn: int) -> bool:
        """``suitable_migration_source()``: async direct compaction keeps to its type."""
        pages = self.mm.pages
        head = pages.compound_head(pfn, cc.zone.max_order)
        if pages.flags[head] & PG_HEAD and \
                pages.info[head] & ORDER_MASK >= cc.zone.pageblock_order:
            return False  # pageblock_skip_persistent()
        if cc.mode != MIGRATE_ASYNC or not cc.direct_compaction:
            return True
        block_mt = cc.zone.get_pageblock_migratetype(pfn)
        if cc.migratetype == MT_MOVABLE:
            return block_mt == MT_MOVABLE
        return block_mt == cc.migratetype

    def _isolate_migratepages_block(self, cc: CompactControl, low_pfn: int,
                                    end_pfn: int) -> None:
        """``isolate_migratepages_block()``: up to COMPACT_CLUSTER_MAX movable pages.

        Free blocks are stepped over whole; compound and order > 0 allocations too (not
        migrated). Async direct compaction gives up the rest of a ``cc->order``-aligned
        block at the first page it cannot isolate, and releases what it took there.
        """
        mm = self.mm
        pages = mm.pages
        flags = pages.flags
        info = pages.info
        ref = pages.ref
        zone = cc.zone
        lruvec = mm.reclaim.lruvecs[zone.nid]
        nr_scanned = 0
        nr_isolated = 0
        block_isolated: list[int] = []
        valid = False
        skip_updated = False
        cc.migrate_pfn = low_pfn
        skip_on_failure = cc.direct_compaction and cc.mode == MIGRATE_ASYNC
        next_skip_pfn = _block_end(low_pfn, cc.order) if skip_on_failure else 0
        nr_pb = 1 << zone.pageblock_order
        while low_pfn < end_pfn:
            if skip_on_failure and low_pfn >= next_skip_pfn:
                if nr_isolated:
                    break
                next_skip_pfn = _block_end(low_pfn, cc.order)
            nr_scanned += 1
            if not valid and not low_pfn & (nr_pb - 1):
                if not self.isolation_suitable(cc, low_pfn):
                    low_pfn = end_pfn
                    valid = False
                    break
                valid = True
            f = flags[low_pfn]
            if f & PG_BUDDY:
                order = info[low_pfn] & ORDER_MASK
                if order:
                    low_pfn += (1 << order) - 1
                low_pfn += 1
                continue
            failed = True
            if f & PG_ALLOC:
                order = info[low_pfn] & ORDER_MASK
                if order:
                    low_pfn += (1 << order) - 1  # compound (or multi-page): not migrated
                else:
                    where = lruvec.on_list(low_pfn)
                    if where >= _LRU_SLAB:  # a slab page, shrinkable or in use: not on an LRU
                        pass
                    elif where >= 0:
                        file = where in _LRU_FILE_LISTS
                        if (not file and ref[low_pfn] > 1) or (file and not cc.gfp & GFP_FS):
                            pass  # pinned anon page / page cache without __GFP_FS
                        else:
                            failed = False
                            if not skip_updated:  # test_and_set_skip() at the first LRU page
                                skip_updated = True
                                if not cc.ignore_skip_hint and not low_pfn & (nr_pb - 1):
                                    self._set_block_skip(zone, low_pfn)
                    elif f & PG_MOVABLE_OWNER:
                        failed = False  # __PageMovable(): isolate_movable_page()
            if not failed:
                cc.migratepages.append(low_pfn)
                block_isolated.append(low_pfn)
                nr_isolated += 1
                if len(cc.migratepages) >= COMPACT_CLUSTER_MAX and not cc.rescan:
                    low_pfn += 1
                    break
                low_pfn += 1
                continue
            # isolate_fail:
            if skip_on_failure:
                if nr_isolated:  # putback_movable_pages(): back to their LRU heads
                    del cc.migratepages[len(cc.migratepages) - len(block_isolated):]
                    for pfn in reversed(block_isolated):  # from the list head
                        _putback(lruvec, pfn)
                    block_isolated = []
                    nr_isolated = 0
                if low_pfn < next_skip_pfn:
                    low_pfn = next_skip_pfn - 1
                    next_skip_pfn += 1 << max(cc.order, 0)
            low_pfn += 1
        if low_pfn > end_pfn:
            low_pfn = end_pfn
        if low_pfn == end_pfn and (not nr_isolated or cc.rescan):
            if valid and not skip_updated:
                self._set_block_skip(zone, low_pfn - 1)
            self.update_cached_migrate(cc, low_pfn)
        cc.total_migrate_scanned += nr_scanned
        if nr_isolated:
            self.vm.add("compact_isolated", nr_isolated)
        cc.migrate_pfn = low_pfn

    def isolate_migratepages(self, cc: CompactControl) -> bool:
        """``isolate_migratepages()``: the next pageblock with pages to migrate.

        Returns whether any page was isolated (ISOLATE_SUCCESS).
        """
        zone = cc.zone
        nr = 1 << zone.pageblock_order
        low_pfn = cc.migrate_pfn
        block_start_pfn = max(_pageblock_start(zone, low_pfn), zone.zone_start_pfn)
        block_end_pfn = _pageblock_end(zone, low_pfn)
        while block_end_pfn <= cc.free_pfn:
            if self._block_valid(zone, block_start_pfn, block_end_pfn) and not (
                    not low_pfn & (nr - 1) and not self.isolation_suitable(cc, low_pfn)):
                if not self.suitable_migration_source(cc, block_start_pfn):
                    self.update_cached_migrate(cc, block_end_pfn)
                else:
                    self._isolate_migratepages_block(cc, low_pfn, block_end_pfn)
                    break
            cc.migrate_pfn = low_pfn = block_end_pfn
            block_start_pfn = block_end_pfn
            block_end_pfn += nr
        return bool(cc.migratepages)

    # -- migration ----------------------------------------------------------------------
    def migrate_pages(self, cc: CompactControl) -> int:
        """``migrate_pages()`` for the isolated pages, newest isolated first.

        Each page moves to a target from :meth:`compaction_alloc`; a page with an
        unexpected reference stays (``pgmigrate_fail``). Moved pages go back on their LRU
        list at its head (``putback_lru_page()``), the old pages are freed, and the owner
        learns the new pfn. Returns -1 (-ENOMEM) when the targets ran out (that page
        counts as failed), else the pages that failed. Pages not moved go back to the
        head of their LRU list (``putback_movable_pages()``).
        """
        mm = self.mm
        pages = mm.pages
        ref = pages.ref
        info = pages.info
        flags = pages.flags
        lruvec = mm.reclaim.lruvecs[cc.zone.nid]
        todo = cc.migratepages
        cc.nr_migratepages = len(todo)
        succeeded = failed = 0
        enomem = False
        putback: list[int] = []
        while todo:
            src = todo.pop()
            dst = self.compaction_alloc(cc)
            if dst < 0:
                failed += 1
                putback.append(src)
                putback.extend(reversed(todo))
                todo.clear()
                enomem = True
                break
            if ref[src] != 1:  # folio_ref_freeze(src, expected) fails
                cc.freepages.append(dst)  # compaction_free()
                failed += 1
                putback.append(src)
                continue
            where = lruvec.on_list(src)
            packed = lruvec.delete(src) if where >= 0 else -1
            ref[dst] = 1
            info[dst] = info[src]
            flags[dst] = flags[src]
            ref[src] = 0
            self.moved(src, dst)
            if where >= 0:
                lruvec.put(dst, where, packed)
            mm.free_the_page(src, 0, cc.cpu)
            succeeded += 1
        for pfn in putback:
            _putback(lruvec, pfn)
        cc.migratepages = []
        cc.nr_migratepages = 0
        cc.nr_migrated += succeeded
        cc.nr_failed += failed
        if succeeded:
            self.vm.add("pgmigrate_success", succeeded)
        if failed:
            self.vm.add("pgmigrate_fail", failed)
        return -1 if enomem else failed

    def compaction_alloc(self, cc: CompactControl) -> int:
        """``compaction_alloc()``: a target page, isolating more if none is left; -1."""
        if not cc.freepages:
            self.isolate_freepages(cc)
            if not cc.freepages:
                return -1
        return cc.freepages.pop()

    # -- compact_zone -------------------------------------------------------------------
    def fragmentation_score_zone(self, zone: Zone) -> int:
        """``fragmentation_score_zone()``: ``extfrag_for_order()`` at the huge-page order."""
        order = min(COMPACTION_HPAGE_ORDER, zone.max_order)
        return extfrag_for_order(list(zone.free_area.nr_free), order)

    def fragmentation_score_zone_weighted(self, zone: Zone) -> int:
        """``fragmentation_score_zone_weighted()``: scaled by the zone's share of the node."""
        node_present = sum(z.present_pages for z in self.mm.nodes[zone.nid].node_zones
                           if z is not None)
        return fragmentation_score_weighted(zone.present_pages, node_present,
                                            self.fragmentation_score_zone(zone))

    def fragmentation_score_node(self, nid: int) -> int:
        """``fragmentation_score_node()``: the node's weighted score, 0..100."""
        return sum(self.fragmentation_score_zone_weighted(z)
                   for z in self.mm.nodes[nid].node_zones if z is not None)

    def fragmentation_score_wmark(self, low: bool) -> int:
        """``fragmentation_score_wmark()``: low = max(100 - proactiveness, 5); high = +10."""
        wmark_low = max(100 - self.proactiveness, 5)
        return wmark_low if low else min(wmark_low + 10, 100)

    def should_proactive_compact_node(self, nid: int) -> bool:
        """``should_proactive_compact_node()``: the node's score is above the high mark."""
        if not self.proactiveness or self.kswapd_running(nid):
            return False
        return self.fragmentation_score_node(nid) > self.fragmentation_score_wmark(False)

    def compact_finished(self, cc: CompactControl) -> str:
        """``compact_finished()`` (``__compact_finished()``; NO_SUITABLE_PAGE goes on)."""
        zone = cc.zone
        if cc.free_pfn >> zone.pageblock_order <= cc.migrate_pfn >> zone.pageblock_order:
            self.reset_cached_positions(zone)
            if cc.direct_compaction:
                zone.compact_blockskip_flush = True
            return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
        if cc.proactive_compaction:
            if self.kswapd_running(zone.nid):
                return COMPACT_PARTIAL_SKIPPED
            if self.fragmentation_score_zone(zone) > self.fragmentation_score_wmark(True):
                return COMPACT_CONTINUE
            return COMPACT_SUCCESS
        if cc.order < 0:
            return COMPACT_CONTINUE
        if cc.migrate_pfn & ((1 << zone.pageblock_order) - 1):
            return COMPACT_CONTINUE
        fa = zone.free_area
        for order in range(cc.order, zone.max_order + 1):
            if not fa.empty(order, cc.migratetype):
                return COMPACT_SUCCESS
            if find_suitable_fallback(zone, order, cc.migratetype, True)[0] != -1:
                return COMPACT_SUCCESS
        return COMPACT_CONTINUE  # NO_SUITABLE_PAGE

    def compact_zone(self, cc: CompactControl) -> str:
        """``compact_zone()``: run the scanners until :meth:`compact_finished` says stop.

        Records an ``mm_compaction`` span (begin to end, its status and what it did) and
        counts ``compact_migrate_scanned``/``compact_free_scanned``. Direct compaction
        captures a block of its order freed in this zone (:attr:`Zone.capture_order`).
        """
        zone = cc.zone
        start_pfn = zone.zone_start_pfn
        end_pfn = zone.end_pfn
        sync = cc.mode != MIGRATE_ASYNC
        ret = self.suitable(zone, cc.order, cc.highest_zoneidx, cc.alloc_flags)
        if ret in (COMPACT_SUCCESS, COMPACT_SKIPPED):
            return ret
        if self.compaction_restarting(zone, cc.order):
            self.reset_isolation_suitable_zone(zone)
        if cc.whole_zone:
            cc.migrate_pfn = start_pfn
            cc.free_pfn = _pageblock_start(zone, end_pfn - 1)
        else:
            cc.migrate_pfn = zone.compact_cached_migrate_pfn[1 if sync else 0]
            cc.free_pfn = zone.compact_cached_free_pfn
            if not start_pfn <= cc.free_pfn < end_pfn:
                cc.free_pfn = _pageblock_start(zone, end_pfn - 1)
                zone.compact_cached_free_pfn = cc.free_pfn
            if not start_pfn <= cc.migrate_pfn < end_pfn:
                cc.migrate_pfn = start_pfn
                zone.compact_cached_migrate_pfn[0] = cc.migrate_pfn
                zone.compact_cached_migrate_pfn[1] = cc.migrate_pfn
            if cc.migrate_pfn <= zone.compact_init_migrate_pfn:
                cc.whole_zone = True
        last_migrated_pfn = 0
        update_cached = (not sync and zone.compact_cached_migrate_pfn[0]
                         == zone.compact_cached_migrate_pfn[1])
        if cc.direct_compaction:
            zone.capture_order = cc.order
            zone.capture_mt = cc.migratetype
            zone.captured_pfn = -1
        pcp = zone.per_cpu_pageset[cc.cpu] if cc.cpu < len(zone.per_cpu_pageset) else None
        try:
            while True:
                ret = self.compact_finished(cc)
                if ret != COMPACT_CONTINUE:
                    break
                iteration_start_pfn = cc.migrate_pfn
                cc.rescan = (_pageblock_start(zone, last_migrated_pfn)
                             == _pageblock_start(zone, iteration_start_pfn))
                if self.isolate_migratepages(cc):
                    update_cached = False
                    last_migrated_pfn = iteration_start_pfn
                    err = self.migrate_pages(cc)
                    if err:  # some page was not moved (and was put back)
                        if err < 0 and not _scanners_met(cc):
                            ret = COMPACT_CONTENDED  # -ENOMEM before the scanners met
                            break
                        if cc.direct_compaction and cc.mode == MIGRATE_ASYNC:
                            cc.migrate_pfn = _block_end(cc.migrate_pfn - 1, cc.order)
                            last_migrated_pfn = 0
                elif update_cached:
                    zone.compact_cached_migrate_pfn[1] = zone.compact_cached_migrate_pfn[0]
                # check_drain: free the migrated-from pages so they can merge.
                if cc.order > 0 and last_migrated_pfn:
                    if last_migrated_pfn < _block_start(cc.migrate_pfn, cc.order):
                        if pcp is not None:
                            pcp.drain()
                        last_migrated_pfn = 0
                if zone.captured_pfn >= 0:
                    ret = COMPACT_SUCCESS
                    break
            if cc.freepages:  # still under capture_control, as in the kernel
                free_pfn = _pageblock_start(zone, self.release_freepages(cc))
                if free_pfn > zone.compact_cached_free_pfn:
                    zone.compact_cached_free_pfn = free_pfn
        finally:
            zone.capture_order = -1
        self.vm.add("compact_migrate_scanned", cc.total_migrate_scanned)
        self.vm.add("compact_free_scanned", cc.total_free_scanned)
        return ret

    def cost_ns(self, cc: CompactControl) -> int:
        """What a compaction's work took: pages scanned and pages migrated."""
        cost = self.cost
        return ((cc.total_migrate_scanned + cc.total_free_scanned) * cost.compact_scan_ns
                + cc.nr_migrated * cost.compact_migrate_ns)

    def _span_zone(self, cc: CompactControl, ret: str, cost_ns: int, ago_ns: int) -> None:
        self.span("mm_compaction", cc.zone.nid, cc.nr_migrated, cost_ns,
                  f"zone={cc.zone.name} order={cc.order} mode={MODE_NAMES[cc.mode]} "
                  f"status={status_name(ret)} migrate_scanned={cc.total_migrate_scanned} "
                  f"free_scanned={cc.total_free_scanned} migrated={cc.nr_migrated} "
                  f"failed={cc.nr_failed}", ago_ns)

    # -- entry points -------------------------------------------------------------------
    def try_to_compact_pages(self, gfp: int, order: int, alloc_flags: int,
                             zonelist: tuple[Zone, ...], highest_zoneidx: int,
                             priority: int, cpu: int = 0) -> tuple[str, int, int]:
        """``try_to_compact_pages()``: ``(result, cost_ns, captured_pfn)``.

        Each zone of the zonelist (up to ``highest_zoneidx``) is compacted unless
        deferred (not at the strongest priority); the first SUCCESS stops the walk;
        a COMPLETE or PARTIAL_SKIPPED sync run defers the zone. The result is the
        largest of the zones' results (``enum compact_result`` order). A captured block
        (``capture_control``) ends the walk with SUCCESS; its pfn is returned (-1: none).
        """
        if not gfp & GFP_IO:
            return COMPACT_SKIPPED, 0, -1
        rc = COMPACT_SKIPPED
        total_ns = 0
        captured = -1
        mode = MIGRATE_ASYNC if priority == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT
        strongest = priority == MIN_COMPACT_PRIORITY
        for zone in zonelist:
            if zone.zone_idx > highest_zoneidx:
                continue
            if priority > MIN_COMPACT_PRIORITY and self.compaction_deferred(zone, order):
                rc = _max_result(rc, COMPACT_DEFERRED)
                continue
            cc = CompactControl(zone, order, gfp, mode, cpu, alloc_flags=alloc_flags,
                                highest_zoneidx=highest_zoneidx, direct_compaction=True,
                                whole_zone=strongest, ignore_skip_hint=strongest,
                                ignore_block_suitable=strongest)
            status = self.compact_zone(cc)
            if zone.captured_pfn >= 0:
                captured = zone.captured_pfn
                zone.captured_pfn = -1
                status = COMPACT_SUCCESS
            if status not in (COMPACT_SKIPPED, COMPACT_SUCCESS) or cc.nr_migrated \
                    or cc.total_migrate_scanned:
                cost = self.cost_ns(cc)
                self._span_zone(cc, status, cost, -total_ns)
                total_ns += cost
            rc = _max_result(rc, status)
            if status == COMPACT_SUCCESS:
                self.compaction_defer_reset(zone, order, False)
                break
            if priority != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE,
                                                              COMPACT_PARTIAL_SKIPPED):
                self.defer_compaction(zone, order)
        return rc, total_ns, captured

    def compact_node(self, nid: int, cpu: int, start_ns: int = 0) -> tuple[int, int]:
        """``compact_node()`` (``/proc/sys/vm/compact_memory``): every zone, whole, sync.

        Returns ``(pages migrated, cost_ns)``. The zones' spans start ``start_ns`` from
        now, one after the other (the writer compacts the nodes in turn).
        """
        migrated = 0
        total_ns = 0
        for zone in self.mm.nodes[nid].node_zones:
            if zone is None or not zone.present_pages:
                continue
            cc = CompactControl(zone, -1, GFP_KERNEL, MIGRATE_SYNC, cpu, whole_zone=True,
                                ignore_skip_hint=True)
            ret = self.compact_zone(cc)
            cost = self.cost_ns(cc)
            self._span_zone(cc, ret, cost, -(start_ns + total_ns))
            total_ns += cost
            migrated += cc.nr_migrated
        return migrated, total_ns

    def proactive_compact_node(self, nid: int, cpu: int) -> int:
        """``proactive_compact_node()``: every zone until its score is at the low mark.

        Returns the cost in ns.
        """
        total_ns = 0
        for zone in self.mm.nodes[nid].node_zones:
            if zone is None or not zone.present_pages:
                continue
            cc = CompactControl(zone, -1, GFP_KERNEL, MIGRATE_SYNC_LIGHT, cpu,
                                whole_zone=True, ignore_skip_hint=True,
                                proactive_compaction=True)
            ret = self.compact_zone(cc)
            cost = self.cost_ns(cc)
            self._span_zone(cc, ret, cost, -total_ns)
            total_ns += cost
        return total_ns

    def trigger_proactive(self) -> None:
        """``compaction_proactiveness_sysctl_handler()``: wake kcompactd to check now.

        Only for a non-zero value, and once per node until it has checked.
        """
        if not self.proactiveness:
            return
        for st in self.kcompactd:
            if st.proactive_trigger:
                continue
            st.proactive_trigger = True
            if st.waiting and st.thread:
                st.waiting = False
                st.wake()

    def kcompactd_node_suitable(self, nid: int) -> bool:
        """``kcompactd_node_suitable()``: a zone up to the wakers' highest is CONTINUE."""
        st = self.kcompactd[nid]
        zones = self.mm.nodes[nid].node_zones
        for zone in zones[: st.highest_zoneidx + 1]:
            if zone is not None and zone.present_pages and self.suitable(
                    zone, st.max_order, st.highest_zoneidx) == COMPACT_CONTINUE:
                return True
        return False

    def kcompactd_do_work(self, nid: int, cpu: int) -> int:
        """``kcompactd_do_work()``: compact the node's zones for the wakers' order.

        Counts ``compact_daemon_wake`` and the daemon's scanned pages. Returns the cost.
        """
        st = self.kcompactd[nid]
        order = st.max_order
        highest = st.highest_zoneidx
        self.vm.add("compact_daemon_wake", 1)
        total_ns = 0
        whole_zone = False  # one compact_control for all zones: whole_zone sticks
        zones = self.mm.nodes[nid].node_zones
        for zone in zones[: highest + 1]:
            if zone is None or not zone.present_pages:
                continue
            if self.compaction_deferred(zone, order):
                continue
            if self.suitable(zone, order, zone.zone_idx) != COMPACT_CONTINUE:
                continue
            cc = CompactControl(zone, order, GFP_KERNEL, MIGRATE_SYNC_LIGHT, cpu,
                                highest_zoneidx=highest, whole_zone=whole_zone)
            status = self.compact_zone(cc)
            whole_zone = cc.whole_zone
            if status == COMPACT_SUCCESS:
                self.compaction_defer_reset(zone, order, False)
            elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
                self.mm.drain_all_pages(zone)
                self.defer_compaction(zone, order)
            self.vm.add("compact_daemon_migrate_scanned", cc.total_migrate_scanned)
            self.vm.add("compact_daemon_free_scanned", cc.total_free_scanned)
            cost = self.cost_ns(cc)
            self._span_zone(cc, status, cost, -total_ns)
            total_ns += cost
        if st.max_order <= order:
            st.max_order = 0
        if st.highest_zoneidx >= highest:
            st.highest_zoneidx = len(zones) - 1
        return total_ns

    def wakeup_kcompactd(self, nid: int, order: int, highest_zoneidx: int) -> bool:
        """``wakeup_kcompactd()``: record the order and wake the node's kcompactd.

        Not for order 0; only a sleeping kcompactd is woken, and only if
        ``kcompactd_node_suitable()``. Returns whether it was woken.
        """
        if not order:
            return False
        st = self.kcompactd[nid]
        if st.max_order < order:
            st.max_order = order
        if st.highest_zoneidx > highest_zoneidx:
            st.highest_zoneidx = highest_zoneidx
        if not st.waiting:
            return False
        if not self.kcompactd_node_suitable(nid):
            return False
        self.kcompactd_wakeups += 1
        self.vm.add("kcompactd_wakeup", 1)
        if st.thread:  # autoremove_wake_function(): off the wait queue
            st.waiting = False
        st.wake()
        return True


def _putback(lruvec: Lruvec, pfn: int) -> None:
    """``putback_lru_page()``: an isolated page goes back to the head of its LRU list."""
    where = lruvec.on_list(pfn)
    if 0 <= where < _LRU_SLAB:
        lruvec.put(pfn, where, lruvec.delete(pfn))


def _max_result(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


def _pageblock_start(zone: Zone, pfn: int) -> int:
    """``pageblock_start_pfn()``."""
    return pfn & ~((1 << zone.pageblock_order) - 1)


def _pageblock_end(zone: Zone, pfn: int) -> int:
    """``pageblock_end_pfn()``: the start of the next pageblock."""
    return _pageblock_start(zone, pfn) + (1 << zone.pageblock_order)


def _block_start(pfn: int, order: int) -> int:
    """``block_start_pfn()``."""
    return pfn & ~((1 << max(order, 0)) - 1)


def _block_end(pfn: int, order: int) -> int:
    """``block_end_pfn()``: ``ALIGN(pfn + 1, 1 << order)``."""
    return _block_start(pfn, order) + (1 << max(order, 0))


def _scanners_met(cc: CompactControl) -> bool:
    """``compact_scanners_met()``."""
    shift = cc.zone.pageblock_order
    return cc.free_pfn >> shift <= cc.migrate_pfn >> shift


def _defer_detail(zone: Zone, order: int) -> str:
    return (f"zone={zone.name} order={order} considered={zone.compact_considered} "
            f"defer_shift={zone.compact_defer_shift} order_failed={zone.compact_order_failed}")


def _nothing() -> None:
    """The default kcompactd waker: no kcompactd process runs."""


def _never(nid: int) -> bool:
    return False


def _no_pages(zone: Zone) -> int:
    return 0


def _no_move(old_pfn: int, new_pfn: int) -> None:
    """The default migration hook: no owner keeps handles."""


def _no_span(name: str, nid: int, pages: int, duration_ns: int, detail: str,
             ago_ns: int = 0) -> None:
    """The default span sink: records nothing."""

