"""Buddy mechanics: expand, __rmqueue_smallest, __free_one_page merging (spec §3.6, §3.7, §5.5).

Most tests start from a fresh 64 MiB machine, take every boot block off ZONE_DMA32's
free lists (``lab.clear``) and place exactly the blocks the behaviour needs, so list
positions and pfns are known. Pages not placed are "allocated elsewhere" for the test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simcore.mm.constants import MigrateType
from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import InvariantError, check_invariants
from simcore.mm.pages import PG_BUDDY

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone

UNMOV = int(MigrateType.UNMOVABLE)
MOV = int(MigrateType.MOVABLE)
RECL = int(MigrateType.RECLAIMABLE)
HIGHATOMIC = int(MigrateType.HIGHATOMIC)
DMA32_START = 4096
B = DMA32_START + 512  # a pageblock-aligned base inside ZONE_DMA32


def _dma32_ready(lab: Lab, tracer: CallLog | None = None) -> tuple[PageAllocator, Zone]:
    return lab.bare_dma32(tracer)


def test_expand_hands_out_lowest_pfn(lab: Lab) -> None:
    # behaviour 4
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B + 1024, 4, UNMOV)
    lab.place(zone, B, 3, UNMOV)
    pfn = mm.alloc_pages(int(GFP_KERNEL), 0, 0, 0)
    assert pfn == B
    assert lab.listed(zone, 2, UNMOV) == [B + 4]
    assert lab.listed(zone, 1, UNMOV) == [B + 2]
    assert lab.listed(zone, 0, UNMOV) == [B + 1]
    assert lab.listed(zone, 3, UNMOV) == []
    assert lab.listed(zone, 4, UNMOV) == [B + 1024]
    assert zone.nr_free_pages == 16 + 7
    check_invariants(mm)


def test_expand_inserts_split_halves_at_list_heads(lab: Lab) -> None:
    # behaviour 4: expand() uses add_to_free_list(), i.e. the head
    mm, zone = _dma32_ready(lab)
    other = B + 1024
    for order in (0, 1, 2):
        lab.place(zone, other + (8 << order), order, UNMOV)
    zone.expand(B, 0, 3, UNMOV)
    assert lab.listed(zone, 2, UNMOV) == [B + 4, other + 32]
    assert lab.listed(zone, 1, UNMOV) == [B + 2, other + 16]
    assert lab.listed(zone, 0, UNMOV) == [B + 1, other + 8]


def test_expand_direct_call_on_rmqueue_smallest(lab: Lab) -> None:
    # behaviour 4 (buddy path only, no pcp)
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B, 3, MOV)
    assert zone.rmqueue_smallest(0, MOV) == B
    assert lab.blocks(zone) == {B + 4: (2, MOV), B + 2: (1, MOV), B + 1: (0, MOV)}


def test_second_order0_request_takes_the_buddy_right_above(lab: Lab) -> None:
    # behaviour 5
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B, 3, UNMOV)
    first = mm.alloc_pages(int(GFP_KERNEL), 0, 0, 0)
    second = mm.alloc_pages(int(GFP_KERNEL), 0, 0, 0)
    third = mm.alloc_pages(int(GFP_KERNEL), 0, 0, 0)
    assert (first, second, third) == (B, B + 1, B + 2)
    assert lab.blocks(zone) == {B + 4: (2, UNMOV), B + 3: (0, UNMOV)}


def test_free_merges_upward_while_buddy_is_free_at_same_order(lab: Lab) -> None:
    # behaviour 6
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B + 1, 0, MOV)
    lab.place(zone, B + 2, 1, MOV)
    lab.place(zone, B + 4, 2, MOV)
    zone.free_one_page(B, 0, MOV)
    assert lab.blocks(zone) == {B: (3, MOV)}
    assert zone.nr_free_pages == 8
    assert not mm.pages.flags[B + 1] & PG_BUDDY
    check_invariants(mm)


def test_freed_odd_page_merges_to_even_start(lab: Lab) -> None:
    # behaviour 6: the merged block starts at pfn & ~1
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B + 8, 0, MOV)
    zone.free_one_page(B + 9, 0, MOV)
    assert lab.blocks(zone) == {B + 8: (1, MOV)}


def test_merging_stops_at_max_order(lab: Lab) -> None:
    # behaviour 7: boot memory of DMA32 is twelve order-10 blocks, never one order-11
    mm = lab.machine()
    zone = mm.zones[1]
    assert zone.free_area.nr_free[10] == 12
    assert len(zone.free_area.nr_free) == 11
    assert set(lab.blocks(zone)) == {DMA32_START + (i << 10) for i in range(12)}
    # two free buddies at order 10 stay apart
    _, zone = _dma32_ready(lab)
    lab.place(zone, 8192, 10, MOV)
    zone.free_one_page(8192 + 1024, 10, MOV)
    assert lab.blocks(zone) == {8192: (10, MOV), 9216: (10, MOV)}


def test_no_merge_with_buddy_of_different_order(lab: Lab) -> None:
    # behaviour 8: only page 0 of buddy range 0-1 is free
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B, 0, MOV)
    zone.free_one_page(B + 2, 1, MOV)
    assert lab.blocks(zone) == {B: (0, MOV), B + 2: (1, MOV)}
    check_invariants(mm)


def test_blocks_in_different_zones_never_merge(lab: Lab) -> None:
    # behaviour 9. With max_order 13 and pfn 0 usable, DMA [0, 4096) is one order-12
    # block and DMA32's first block [4096, 8192) is its order-12 buddy.
    mm = lab.machine(max_order=13, first_pfn=0)
    dma, dma32 = mm.zones[0], mm.zones[1]
    assert lab.blocks(dma) == {0: (12, MOV)}
    assert lab.blocks(dma32)[4096] == (12, MOV)
    pfn = mm.alloc_pages(int(GFP_KERNEL | GFP.DMA32 | GFP.MOVABLE), 12, 0, 0)
    assert pfn == 4096
    assert mm.free_pages(pfn, 12, 0)
    assert lab.blocks(dma) == {0: (12, MOV)}
    assert lab.blocks(dma32)[4096] == (12, MOV)
    check_invariants(mm, {})


def test_pageblock_buddies_of_mergeable_types_merge(lab: Lab) -> None:
    # behaviour 10: UNMOVABLE and MOVABLE pageblocks merge into order 10
    mm, zone = _dma32_ready(lab)
    base = 8192
    lab.place(zone, base + 512, 9, MOV)
    zone.set_pageblock_migratetype(base, UNMOV)
    zone.free_one_page(base, 9, UNMOV)
    assert lab.blocks(zone) == {base: (10, UNMOV)}
    check_invariants(mm)


def test_highatomic_pageblock_does_not_merge_with_other_type(lab: Lab) -> None:
    # behaviour 10
    mm, zone = _dma32_ready(lab)
    base = 8192
    lab.place(zone, base + 512, 9, MOV)
    zone.set_pageblock_migratetype(base, HIGHATOMIC)
    zone.free_one_page(base, 9, HIGHATOMIC)
    assert lab.blocks(zone) == {base: (9, HIGHATOMIC), base + 512: (9, MOV)}
    check_invariants(mm)  # the unmerged pair is allowed by the kernel's rule


def test_two_highatomic_pageblocks_merge(lab: Lab) -> None:
    # behaviour 10: the types must differ for the refusal
    mm, zone = _dma32_ready(lab)
    base = 8192
    lab.place(zone, base + 512, 9, HIGHATOMIC)
    zone.set_pageblock_migratetype(base, HIGHATOMIC)
    zone.free_one_page(base, 9, HIGHATOMIC)
    assert lab.blocks(zone) == {base: (10, HIGHATOMIC)}


def test_merged_block_goes_to_freed_pages_list(lab: Lab) -> None:
    # behaviour 11: buddy sits on the UNMOVABLE list, the freed page is MOVABLE
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B + 1, 0, UNMOV, label=False)
    lab.place(zone, B + 2, 1, RECL, label=False)
    zone.free_one_page(B, 0, MOV)
    assert lab.blocks(zone) == {B: (2, MOV)}
    assert zone.free_area.counts[2] == [0, 1, 0, 0, 0, 0]


def test_free_goes_to_tail_when_next_order_buddy_is_free(lab: Lab) -> None:
    # behaviour 12
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B + 64, 1, MOV)  # an unrelated order-1 block already listed
    lab.place(zone, B + 4, 2, MOV)  # the order-2 buddy of [B, B+4)
    zone.free_one_page(B + 2, 1, MOV)  # buddy B (order 1) is not free: no merge
    assert lab.listed(zone, 1, MOV) == [B + 64, B + 2]
    zone.free_one_page(B + 128 + 2, 1, MOV)  # no free order-2 buddy above: head
    assert lab.listed(zone, 1, MOV) == [B + 130, B + 64, B + 2]


def test_order9_free_always_goes_to_head(lab: Lab) -> None:
    # behaviour 12: order >= MAX_ORDER-2 never uses buddy_merge_likely()
    mm, zone = _dma32_ready(lab)
    lab.place(zone, 8192 + 1024, 10, MOV)  # the order-10 buddy of [8192, 9216) is free
    lab.place(zone, 12288, 9, MOV)
    zone.free_one_page(8192, 9, MOV)  # its order-9 buddy 8704 is allocated
    assert lab.listed(zone, 9, MOV) == [8192, 12288]


def test_boot_memory_on_movable_list_tails_in_pfn_order(lab: Lab) -> None:
    # behaviour 13; memmap_init_range() labels a pageblock MOVABLE only at a present
    # pageblock-aligned pfn, so DMA's first block (pfn 0 is not RAM on x86) keeps the
    # zeroed usemap: UNMOVABLE, and its pages are freed to the UNMOVABLE lists (the
    # oracle's boot trace takes GFP_DMA pfn 0x100 from them with no fallback).
    mm = lab.machine()
    for zone in mm.zones:
        blocks = lab.blocks(zone)
        for pfn, (_, mt) in blocks.items():
            assert mt == (UNMOV if pfn < 512 else MOV)
        for order in range(11):
            for mt in (UNMOV, MOV):
                listed = lab.listed(zone, order, mt)
                assert listed == sorted(listed)  # each later free went to the tail
        assert sum(1 << o for o, _ in blocks.values()) == zone.managed_pages
    assert mm.pageblock_mt[0] == UNMOV
    assert set(mm.pageblock_mt[1:]) == {MOV}
    # DMA starts at pfn 1: one block of each order 0..8 in block 0, then order 9 and 10
    assert lab.listed(mm.zones[0], 0, UNMOV) == [1]
    assert lab.listed(mm.zones[0], 8, UNMOV) == [256]
    assert lab.listed(mm.zones[0], 9, MOV) == [512]
    assert lab.listed(mm.zones[0], 10, MOV) == [1024, 2048, 3072]


def test_order_above_max_order_fails_without_touching_memory(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 53: WARN_ON_ONCE_GFP(order >= MAX_ORDER) returns NULL before
    # trace_mm_page_alloc: no mm_page_alloc, no warn_alloc line, no pgalloc_fail.
    mm = lab.machine(tracer=call_log)
    free = [z.nr_free_pages for z in mm.zones]
    assert mm.alloc_pages(int(GFP_KERNEL), 11, 0, 0) == -1
    assert mm.vm["pgalloc_fail"] == 0
    assert mm.vm["alloc_order_warn"] == 1
    assert [z.nr_free_pages for z in mm.zones] == free
    assert mm.vm["pgalloc_dma32"] == 0
    assert call_log.named("mm_page_alloc") == []
    assert call_log.named("mm_page_alloc_fail") == []
    (warn,) = call_log.named("alloc_order_warn")
    assert warn[:3] == (0, 11, int(GFP_KERNEL))
    assert "MAX_ORDER (11)" in warn[3] and "printed a WARNING" in warn[3]
    assert "page allocation failure" not in warn[3]
    assert mm.alloc_pages(int(GFP_KERNEL), 10, 0, 0) >= 0  # order 10 is the largest
    assert len(call_log.named("mm_page_alloc")) == 1


def test_order_warning_is_once_and_nowarn_suppresses_it(lab: Lab, call_log: CallLog) -> None:
    # WARN_ON_ONCE_GFP (mm/internal.h): __GFP_NOWARN suppresses the WARNING without
    # using up the once; the next request without it prints, the one after does not.
    mm = lab.machine(tracer=call_log)
    nowarn = int(GFP_KERNEL | GFP.NOWARN)
    assert mm.alloc_pages(nowarn, 12, 0, 0) == -1
    assert mm.alloc_pages(int(GFP_KERNEL), 11, 0, 0) == -1
    assert mm.alloc_pages(int(GFP_KERNEL), 11, 0, 0) == -1
    reasons = [args[3] for args in call_log.named("alloc_order_warn")]
    assert ["suppressed by __GFP_NOWARN" in reasons[0], "printed a WARNING" in reasons[1],
            "already warned once" in reasons[2]] == [True, True, True]
    assert mm.vm["alloc_order_warn"] == 3 and mm.vm["pgalloc_fail"] == 0
    assert call_log.named("mm_page_alloc") == []


def test_zone_locked_tracepoint_per_buddy_take(lab: Lab, call_log: CallLog) -> None:
    # behaviour 4: __rmqueue_smallest emits mm_page_alloc_zone_locked with the pfn
    mm, zone = _dma32_ready(lab, call_log)
    lab.place(zone, B, 3, UNMOV)
    mm.alloc_pages(int(GFP_KERNEL), 0, 0, 0)
    (locked,) = call_log.named("mm_page_alloc_zone_locked")
    assert locked == (zone, B, 0, UNMOV, True)


# -- the invariant checker itself catches broken states -------------------------------
def test_checker_catches_unmerged_buddies(lab: Lab) -> None:
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B, 1, MOV)
    lab.place(zone, B + 2, 1, MOV)
    with pytest.raises(InvariantError, match="not merged"):
        check_invariants(mm)


def test_checker_allows_buddy_on_pcp(lab: Lab) -> None:
    # a free block whose buddy sits on a pcp list is not a missed merge
    mm = lab.machine()
    pfn = mm.alloc_pages(int(GFP_KERNEL), 0, 0, 0)
    mm.free_pages(pfn, 0, 0)
    check_invariants(mm, {})


def test_checker_catches_counter_drift(lab: Lab) -> None:
    mm, zone = _dma32_ready(lab)
    lab.place(zone, B, 3, MOV)
    zone.nr_free_pages += 1
    with pytest.raises(InvariantError, match="NR_FREE_PAGES"):
        check_invariants(mm)
    zone.nr_free_pages -= 1
    zone.free_area.nr_free[3] += 1
    with pytest.raises(InvariantError, match=r"nr_free is 2"):
        check_invariants(mm)


def test_checker_catches_lost_and_misaligned_pages(lab: Lab) -> None:
    mm = lab.machine()
    pfn = mm.alloc_pages(int(GFP_KERNEL), 3, 0, 0)
    with pytest.raises(InvariantError, match="neither free"):
        check_invariants(mm, {pfn: 2})
    with pytest.raises(InvariantError, match="not aligned"):
        check_invariants(mm, {pfn + 1: 1})


def test_checker_catches_refcount_on_free_page(lab: Lab) -> None:
    mm = lab.machine()
    mm.pages.ref[8192 + 5] = 1
    with pytest.raises(InvariantError, match="refcount 1"):
        check_invariants(mm, {})
