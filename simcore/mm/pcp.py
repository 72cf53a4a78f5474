"""Per-CPU page lists: ``struct per_cpu_pages``.

Mirrors mm/page_alloc.c (6.1): ``order_to_pindex()``, ``pindex_to_order()``,
``pcp_allowed_order()``, ``__rmqueue_pcplist()``/``rmqueue_pcplist()``,
``free_unref_page_commit()``, ``nr_pcp_free()``, ``nr_pcp_high()``,
``free_pcppages_bulk()`` and ``drain_pages_zone()``.

Each list is an intrusive list of the zone's :class:`~simcore.mm.freelist.PageLists`
(``page->pcp_list``), no Python object per page. The migratetype that
``set_pcppage_migratetype()`` cached (in free_unref_page_prepare() on free, in
__rmqueue_smallest() on refill) is kept in the page's ``info`` byte, with the order.
Frees and allocations use the list head (LIFO), refills append to the tail and drains
take from the tail (oldest first).

Pure code: no SimPy, no I/O, no randomness. SIMPLIFICATION: the pcp trylock never
fails (no lock contention is modelled).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simcore.mm import page_misuse
from simcore.mm.constants import MIGRATE_PCPTYPES, PAGE_ALLOC_COSTLY_ORDER
from simcore.mm.pages import CLEAR_PG_PCP, MT_SHIFT, PG_PCP

if TYPE_CHECKING:
    from simcore.mm.zone import Zone

NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP = 1
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP


def order_to_pindex(mt: int, order: int) -> int:
    """``order_to_pindex()``: orders 0-3 by type; every THP shares one list."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS
    return MIGRATE_PCPTYPES * order + mt


class PerCpuPages:
    """``struct per_cpu_pages`` of one zone on one CPU."""

    def __init__(self, cpu: int, zone: Zone, high: int = 0, batch: int = 1) -> None:
        self.cpu = cpu
        self.zone = zone
        self.count = 0
        """Pages (not entries) on all lists."""
        self.high = high
        self.batch = batch
        self.free_factor = 0
        self.page_lists = zone.lists
        self.heads_np = np.array([zone.lists.new_list() for _ in range(NR_PCP_LISTS)],
                                 dtype=np.int32)
        self.heads = self.heads_np.data
        """Sentinel node of each pcp list, by pindex."""
        self.pages = zone.pages

    def entries(self, pindex: int) -> list[int]:
        """List ``pindex`` front to back, as ``pfn << 3 | cached migratetype``."""
        info = self.pages.info
        return [pfn << 3 | (info[pfn] >> MT_SHIFT)
                for pfn in self.page_lists.pfns(self.heads[pindex])]

    def pindex_to_order(self, pindex: int) -> int:
        """``pindex_to_order()``."""
        if pindex == NR_LOWORDER_PCP_LISTS:
            return self.zone.pageblock_order
        return pindex // MIGRATE_PCPTYPES

    def rmqueue(self, order: int, mt: int, alloc_flags: int) -> int:
        """Take a block from this pcp, refilling an empty list in one batch.

        Mirrors rmqueue_pcplist() (which halves ``free_factor``) + __rmqueue_pcplist().
        Returns a pfn or -1.
        """
        self.free_factor >>= 1
        return self.rmqueue_pcplist(order, mt, alloc_flags)

    def rmqueue_pcplist(self, order: int, mt: int, alloc_flags: int) -> int:
        """``__rmqueue_pcplist()``: the list's first block, after a batch refill if empty.

        The bulk allocator calls it directly (``free_factor`` stays). Returns a pfn or -1.
        """
        head = self.heads[order_to_pindex(mt, order)]
        lists = self.page_lists
        flags = self.pages.flags
        pfn = lists.first(head)
        if pfn < 0:
            batch = self.batch
            if batch > 1:
                batch = max(batch >> order, 2)
            pfns = self.zone.rmqueue_bulk(order, batch, mt, alloc_flags)
            if not pfns:
                return -1
            for pfn in pfns:
                lists.add_tail(head, pfn)  # info keeps the type __rmqueue_smallest() cached
                flags[pfn] |= PG_PCP
            self.count += len(pfns) << order
            pfn = lists.first(head)
        lists.unlink(pfn)
        flags[pfn] &= CLEAR_PG_PCP
        self.count -= 1 << order
        return pfn

    def free_commit(self, pfn: int, order: int, pcp_mt: int, cached_mt: int) -> None:
        """Put a freed block on the list head, draining if over high.

        Mirrors free_unref_page_commit(). ``pcp_mt`` selects the list (HIGHATOMIC and
        CMA pages use MOVABLE's); ``cached_mt`` is the pageblock type the page will be
        merged back as when drained.
        """
        self.page_lists.add(self.heads[order_to_pindex(pcp_mt, order)], pfn)
        self.pages.info[pfn] = order | (cached_mt << MT_SHIFT)  # free_unref_page_prepare()
        self.pages.flags[pfn] |= PG_PCP
        self.count += 1 << order
        free_high = bool(self.free_factor and order and order <= PAGE_ALLOC_COSTLY_ORDER)
        high = self.nr_pcp_high(free_high)
        if self.count >= high:
            self.free_bulk(self.nr_pcp_free(high, free_high), order_to_pindex(pcp_mt, order))

    def nr_pcp_high(self, free_high: bool) -> int:
        """``nr_pcp_high()``: 0 when batch-freeing high orders; capped while reclaiming."""
        if not self.high or free_high:
            return 0
        if not self.zone.reclaim_active:
            return self.high
        return min(self.batch << 2, self.high)

    def nr_pcp_free(self, high: int, free_high: bool) -> int:
        """``nr_pcp_free()``: how many pages to drain, doubling on repeated frees."""
        if free_high:
            return self.count
        if high < self.batch:
            return 1
        min_nr_free = self.batch
        max_nr_free = high - self.batch
        batch = self.batch << self.free_factor
        if batch < max_nr_free:
            self.free_factor += 1
        return min(max(batch, min_nr_free), max_nr_free)  # the kernel's clamp()

    def free_bulk(self, count: int, pindex: int) -> None:
        """Return ``count`` pages to the buddy lists, oldest first, round-robin.

        Mirrors free_pcppages_bulk(), starting with list ``pindex``. Each page goes back
        with the migratetype cached when it entered the list, unless the zone has
        isolated pageblocks: then the pageblock's current type is re-read, so a page of
        a pageblock isolated meanwhile lands on the ISOLATE list (and is not counted in
        NR_FREE_PAGES). A page that fails ``bulkfree_pcp_prepare()`` (a negative refcount
        left by a caller's put) is reported and leaked instead.
        """
        count = min(self.count, count)
        zone = self.zone
        isolated_pageblocks = zone.nr_isolate_pageblock  # has_isolate_pageblock()
        check = zone.refcount_underflows != 0
        flags = self.pages.flags
        info = self.pages.info
        tracing = zone.tracing
        lists = self.page_lists
        heads = self.heads
        min_p, max_p = 0, NR_PCP_LISTS - 1
        pindex -= 1
        while count > 0:
            while True:
                pindex += 1
                if pindex > max_p:
                    pindex = min_p
                if lists.first(heads[pindex]) >= 0:
                    break
                if pindex == max_p:
                    max_p -= 1
                if pindex == min_p:
                    min_p += 1
            head = heads[pindex]
            order = self.pindex_to_order(pindex)
            nr_pages = 1 << order
            while True:
                pfn = lists.last(head)
                lists.unlink(pfn)
                mt = info[pfn] >> MT_SHIFT
                flags[pfn] &= CLEAR_PG_PCP
                count -= nr_pages
                self.count -= nr_pages
                if check and self.pages.ref[pfn]:  # bulkfree_pcp_prepare(): free_page_is_bad()
                    page_misuse.free_page_is_bad(zone, pfn, order)
                else:
                    if isolated_pageblocks:
                        mt = zone.get_pageblock_migratetype(pfn)
                    zone.free_one_page(pfn, order, mt, False)
                    if tracing:
                        zone.tracer.mm_page_pcpu_drain(zone, pfn, order, mt)
                if count <= 0 or lists.first(head) < 0:
                    break

    def drain(self) -> None:
        """``drain_pages_zone()``: return everything on this pcp to the buddy lists."""
        if self.count:
            self.free_bulk(self.count, 0)
