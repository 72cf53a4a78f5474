"""Where freed pages go: buddy_merge_likely()'s tail placement and the pcp drain order.

mm/page_alloc.c, 6.1.20:

* __free_one_page() merges while the buddy is free at the same order, then (without
  FPI_TO_TAIL and without page shuffling) puts the block at the list tail iff
  buddy_merge_likely(pfn, buddy_pfn, page, order): ``order < MAX_ORDER - 2`` (below 9)
  and the buddy of the order-(order+1) block that contains the result,
  ``(buddy_pfn & pfn) ^ (1 << (order + 1))``, is a free block of exactly order+1
  (page_is_buddy()). ``buddy_pfn`` is the last buddy looked at, the one that did not
  merge. Otherwise the block goes to the head.
* free_unref_page_commit() adds the freed page to the head of its pcp list and, when
  ``pcp->count >= high``, calls free_pcppages_bulk(zone, nr_pcp_free(), pcp, pindex)
  with the freed page's own list ``pindex = order_to_pindex(mt, order)``.
  free_pcppages_bulk() starts at that list and goes round-robin upwards (wrapping from
  NR_PCP_LISTS - 1 = 12 to 0) over non-empty lists; from each it takes pages from the
  tail (oldest first) and stays on the list until it is empty or ``count <= 0``, where
  ``count`` drops by ``1 << order`` per block, so a high-order block can overshoot.
  drain_pages_zone() drains everything starting at pindex 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.constants import MigrateType
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE
from simcore.mm.invariants import check_invariants
from simcore.mm.pcp import order_to_pindex

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.pcp import PerCpuPages

UNMOV = int(MigrateType.UNMOVABLE)
MOV = int(MigrateType.MOVABLE)
RECL = int(MigrateType.RECLAIMABLE)
B = 4096 + 512  # a pageblock-aligned base inside ZONE_DMA32


# -- buddy_merge_likely() -----------------------------------------------------------------


def test_merged_block_goes_to_tail_when_the_next_buddy_up_is_free(lab: Lab) -> None:
    # Free B+3 (order 0): buddy B+2 is free -> merge to [B+2, B+4) order 1; its buddy B
    # is not free -> stop, buddy_pfn = B. higher = B & (B+2) = B (not the merged block's
    # own pfn), whose order-2 buddy B ^ 4 = B+4 is free at order 2 -> tail, behind the
    # unrelated block already listed.
    mm, zone = lab.bare_dma32()
    lab.place(zone, B + 64, 1, MOV)
    lab.place(zone, B + 2, 0, MOV, label=False)
    lab.place(zone, B + 4, 2, MOV, label=False)
    zone.free_one_page(B + 3, 0, MOV)
    assert lab.listed(zone, 1, MOV) == [B + 64, B + 2]


def test_merged_block_goes_to_head_when_the_next_buddy_up_is_smaller(lab: Lab) -> None:
    # Same, but B+4 is free only as an order-1 block (B+6 is allocated): page_is_buddy()
    # wants order 2 exactly -> head (before B+64 and B+4, both listed earlier).
    mm, zone = lab.bare_dma32()
    lab.place(zone, B + 64, 1, MOV)
    lab.place(zone, B, 0, MOV, label=False)
    lab.place(zone, B + 4, 1, MOV, label=False)
    zone.free_one_page(B + 1, 0, MOV)
    assert lab.listed(zone, 1, MOV) == [B, B + 64, B + 4]


def test_order8_is_the_highest_order_that_can_go_to_the_tail(lab: Lab) -> None:
    # order 8 < MAX_ORDER - 2 = 9: [P, P+256) with its order-8 buddy P+256 allocated
    # and the order-9 buddy of [P, P+512), P+512, free -> tail. (Order 9 always goes to
    # the head; tests/unit/test_buddy.py checks that side of the boundary.)
    mm, zone = lab.bare_dma32()
    p = 8192
    lab.place(zone, 12288, 8, MOV)
    lab.place(zone, p + 512, 9, MOV)
    zone.free_one_page(p, 8, MOV)
    assert lab.listed(zone, 8, MOV) == [12288, p]


def test_pcp_drain_uses_buddy_merge_likely_boot_uses_fpi_to_tail(
    lab: Lab, call_log: CallLog
) -> None:
    # free_pcppages_bulk() frees with FPI_NONE: a drained page whose next buddy up is
    # not free goes to the head, even though boot (FPI_TO_TAIL) filled the lists tail
    # first. Here B+2 (order 1) drains while B and B+1 are allocated and B+4 is not free.
    mm, zone = lab.bare_dma32(call_log)
    lab.place(zone, B + 64, 1, MOV)
    lab.place(zone, B + 2, 1, MOV)
    assert mm.alloc_pages(int(GFP_HIGHUSER_MOVABLE), 1, 0, 0) == B + 64  # list head
    zone.per_cpu_pageset[0].high = 1 << 20
    assert mm.free_pages(B + 64, 1, 0)
    mm.drain_all_pages()
    assert lab.listed(zone, 1, MOV) == [B + 64, B + 2]


# -- free_pcppages_bulk(): which list first --------------------------------------------------


def _loaded_pcp(lab: Lab, call_log: CallLog, thp: bool) -> tuple[PageAllocator, PerCpuPages,
                                                                  dict[str, list[int]]]:
    """CPU 0's DMA32 pcp holding, oldest first (pindex in brackets):

    UNMOVABLE order 0 x3 [0], MOVABLE order 0 x3 [1], RECLAIMABLE order 0 x2 [2],
    UNMOVABLE order 1 x1 [3] and, with ``thp``, one order-9 block [12]. Also one
    MOVABLE order-0 page ``m_last`` and one RECLAIMABLE order-1 block ``r1`` allocated,
    to be freed by the test. Nothing drains while loading (high is huge).
    """
    mm = lab.machine(tracer=call_log)
    kernel, movable = int(GFP_KERNEL), int(GFP_HIGHUSER_MOVABLE)
    reclaimable = int(GFP_KERNEL | GFP.RECLAIMABLE)
    pages = {
        "u0": [mm.alloc_pages(kernel, 0, 0, 0) for _ in range(3)],
        "m0": [mm.alloc_pages(movable, 0, 0, 0) for _ in range(4)],
        "r0": [mm.alloc_pages(reclaimable, 0, 0, 0) for _ in range(2)],
        "u1": [mm.alloc_pages(kernel, 1, 0, 0)],
        "r1": [mm.alloc_pages(reclaimable, 1, 0, 0)],
        "thp": [mm.alloc_pages(int(GFP_TRANSHUGE), 9, 0, 0)] if thp else [],
    }
    mm.drain_all_pages()
    pcp = mm.zones[1].per_cpu_pageset[0]
    pcp.high = 1 << 20
    order = {"u0": 0, "m0": 0, "r0": 0, "u1": 1, "thp": 9}
    pages["m_last"] = [pages["m0"].pop()]
    for name, o in order.items():
        for pfn in pages[name]:
            assert mm.free_pages(pfn, o, 0)
    assert pcp.free_factor == 0
    call_log.calls.clear()
    return mm, pcp, pages


def _drained(call_log: CallLog) -> list[tuple[int, int, int]]:
    return [(a[1], a[2], a[3]) for a in call_log.named("mm_page_pcpu_drain")]


def test_bulk_free_starts_with_the_freed_pages_list(lab: Lab, call_log: CallLog) -> None:
    """Free one more MOVABLE order-0 page with high = count after it, batch 7.

    count = 3 + 4 + 2 + 2 + 512 = 523 = high -> nr_pcp_free(): max_nr_free = 523 - 7,
    batch << free_factor(0) = 7 -> 7 pages. free_pcppages_bulk(pindex 1): MOVABLE
    order 0, oldest first, the new page last (4 pages, 3 left); then pindex 2,
    RECLAIMABLE order 0 (2 pages, 1 left); then pindex 3, the order-1 UNMOVABLE block
    (count 1 - 2 = -1: it overshoots, 8 pages freed). pindex 0 and the THP list stay.
    drain_pages_zone() then starts at pindex 0 and ends with pindex 12.
    """
    mm, pcp, pages = _loaded_pcp(lab, call_log, thp=True)
    (m_last,) = pages["m_last"]
    pcp.high, pcp.batch = 523, 7
    assert mm.free_pages(m_last, 0, 0)
    assert _drained(call_log) == [
        *((pfn, 0, MOV) for pfn in (*pages["m0"], m_last)),
        *((pfn, 0, RECL) for pfn in pages["r0"]),
        (pages["u1"][0], 1, UNMOV),
    ]
    assert pcp.count == 523 - 8
    assert pcp.free_factor == 1
    call_log.calls.clear()
    mm.drain_all_pages()
    assert _drained(call_log) == [
        *((pfn, 0, UNMOV) for pfn in pages["u0"]), (pages["thp"][0], 9, MOV),
    ]
    check_invariants(mm, {pages["r1"][0]: 1})


def test_bulk_free_wraps_round_robin_past_the_last_list(lab: Lab, call_log: CallLog) -> None:
    """Free the RECLAIMABLE order-1 block (pindex 3 * 1 + 2 = 5) with batch 8.

    count = 3 + 3 + 2 + 2 + 2 = 12 = high -> nr_pcp_free(): min_nr_free 8, max_nr_free
    12 - 8 = 4, and clamp() (include/linux/minmax.h) applies the upper bound last:
    min(max(8, 8), 4) = 4 pages; free_factor stays 0 (8 < 4 is false). So: pindex 5
    (the block just freed, 2 pages), lists 6..12 are empty, wrap to pindex 0: two of
    the three UNMOVABLE order-0 pages, oldest first. MOVABLE and RECLAIMABLE order 0
    and the order-1 UNMOVABLE block stay.
    """
    mm, pcp, pages = _loaded_pcp(lab, call_log, thp=False)
    (r1,) = pages["r1"]
    assert order_to_pindex(RECL, 1) == 5
    pcp.high, pcp.batch = 12, 8
    assert mm.free_pages(r1, 1, 0)
    assert _drained(call_log) == [
        (r1, 1, RECL), *((pfn, 0, UNMOV) for pfn in pages["u0"][:2]),
    ]
    assert pcp.count == 8
    assert pcp.free_factor == 0
