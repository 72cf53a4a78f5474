"""Take one given block off the free lists: what a replay at real pfns needs.

The kernel has the single-page case: ``take_page_off_buddy()`` in mm/page_alloc.c (6.1)
finds the free buddy block that holds a page, takes it off its free list and hands back
every other part of it (``break_down_buddy_pages()``), so the page alone leaves the free
lists. :func:`take_block_off_buddy` does the same for an aligned block of any order.
:func:`take_block_off_pcp` takes a block that sits on a per-CPU list, as
``__rmqueue_pcplist()`` would if that block were first on its list.

Used by ``allocsim replay --placement real``, where a traced allocation must take the pfn
the host gave it. Pure code: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.constants import MT_ISOLATE
from simcore.mm.pages import CLEAR_PG_PCP, MT_SHIFT, ORDER_MASK, PG_BUDDY, PG_PCP

if TYPE_CHECKING:
    from simcore.mm.zone import Zone


def take_block_off_buddy(zone: Zone, pfn: int, order: int) -> int:
    """Take the free block ``[pfn, pfn + 2**order)`` off ``zone``'s buddy lists.

    After take_page_off_buddy() + break_down_buddy_pages(), for an aligned block of
    ``order`` instead of one page: the free block holding it is split, the halves that do
    not hold it go back on their free list (at the head, as ``expand()`` puts them), and
    NR_FREE_PAGES drops by the block's pages. Unlike take_page_off_buddy(), which files
    the halves under the pageblock's migratetype, they keep the free list's (as
    ``expand()`` does in __rmqueue_smallest()), so the free table is what an allocation
    of that block would have left. Returns the free list's migratetype, or -1
    when no free block holds the whole range (it is allocated, on a pcp list, or split).
    """
    flags = zone.pages.flags
    info = zone.pages.info
    start, end = zone.zone_start_pfn, zone.end_pfn
    for current in range(order, zone.max_order + 1):
        head = pfn & ~((1 << current) - 1)
        if head < start or head >= end:
            return -1
        if flags[head] & PG_BUDDY and info[head] & ORDER_MASK == current:
            mt = info[head] >> MT_SHIFT
            fa = zone.free_area
            fa.remove(head, current, mt)
            while current > order:  # break_down_buddy_pages()
                current -= 1
                half = 1 << current
                if pfn >= head + half:
                    fa.add(head, current, mt, False)
                    head += half
                else:
                    fa.add(head + half, current, mt, False)
            if mt != MT_ISOLATE:
                zone.nr_free_pages -= 1 << order
            return mt
    return -1


def take_block_off_pcp(zone: Zone, pfn: int, order: int) -> bool:
    """Take the block at ``pfn`` off the pcp list it sits on, if it is one of ``order``.

    The list is found from the block's own list node (walking back to the sentinel), so
    it does not matter which CPU freed it.
    """
    pages = zone.pages
    if not pages.flags[pfn] & PG_PCP or pages.info[pfn] & ORDER_MASK != order:
        return False
    lists = zone.lists
    node = lists.lru[pfn]
    while lists.pfn[node] >= 0:  # back to the list's sentinel: which list holds it
        node = lists.prv[node]
    for pcp in zone.per_cpu_pageset:
        if node in pcp.heads_np:
            lists.unlink(pfn)
            pages.flags[pfn] &= CLEAR_PG_PCP
            pcp.count -= 1 << order
            return True
    return False
