"""Migratetype fallback, pageblock stealing, boosting and the highatomic reserve.

Spec §3.4, §3.8, §3.9, §8.4. Unless a test says otherwise it uses a fresh 64 MiB
machine whose ZONE_DMA and ZONE_DMA32 free lists were emptied (``lab.clear``), with
zero watermarks and pcp batch 1, and then places exactly the free blocks it needs in
DMA32 pageblocks ``PB(k) = 4096 + 512 k``. Pages not placed count as allocated,
non-movable memory (no PG_MOVABLE_OWNER) unless the test marks them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.constants import MigrateType
from simcore.mm.fallback import boost_watermark
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import PG_MOVABLE_OWNER

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone

UNMOV = int(MigrateType.UNMOVABLE)
MOV = int(MigrateType.MOVABLE)
RECL = int(MigrateType.RECLAIMABLE)
HIGHATOMIC = int(MigrateType.HIGHATOMIC)
KERNEL = int(GFP_KERNEL)
MOVABLE = int(GFP_HIGHUSER_MOVABLE)
RECLAIMABLE = int(GFP_KERNEL | GFP.RECLAIMABLE)


def PB(k: int) -> int:  # noqa: N802 - reads like the kernel's pageblock index
    return 4096 + 512 * k


def _ready(lab: Lab, tracer: CallLog | None = None) -> tuple[PageAllocator, Zone]:
    return lab.bare_dma32(tracer)


def _extfrag(call_log: CallLog) -> list[tuple[object, ...]]:
    return [args[1:] for args in call_log.named("mm_page_alloc_extfrag")]


def test_unmovable_steals_highest_order_and_claims_pageblock(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 34 (MOVABLE block: free + non-movable allocated >= 256 -> claim)
    mm, zone = _ready(lab, call_log)
    lab.place(zone, PB(1), 3, MOV)
    lab.place(zone, PB(2), 3, RECL)
    lab.place(zone, PB(3), 5, MOV)
    lab.place(zone, PB(3) + 64, 2, MOV)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    # every free page of PB(3) moved to UNMOVABLE; the smallest (order 2) serves it
    assert pfn == PB(3) + 64
    assert zone.get_pageblock_migratetype(PB(3)) == UNMOV
    assert lab.blocks(zone) == {
        PB(1): (3, MOV), PB(2): (3, RECL), PB(3): (5, UNMOV),
        PB(3) + 66: (1, UNMOV), PB(3) + 65: (0, UNMOV),
    }
    assert _extfrag(call_log) == [(PB(3), 0, 5, UNMOV, MOV, True)]
    check_invariants(mm)


def test_unmovable_steal_keeps_label_when_block_is_mostly_movable(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 34: free (36) + non-movable allocated (0) < 256 -> moved, not claimed
    mm, zone = _ready(lab, call_log)
    lab.place(zone, PB(3), 5, MOV)
    lab.place(zone, PB(3) + 64, 2, MOV)
    mm.pages.flags_np[PB(3) + 32 : PB(3) + 64] |= PG_MOVABLE_OWNER  # allocated, LRU
    mm.pages.flags_np[PB(3) + 68 : PB(4)] |= PG_MOVABLE_OWNER
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert pfn == PB(3) + 64
    assert zone.get_pageblock_migratetype(PB(3)) == MOV
    assert lab.blocks(zone)[PB(3)] == (5, UNMOV)
    assert _extfrag(call_log) == [(PB(3), 0, 5, UNMOV, MOV, False)]


def test_reclaimable_preferred_at_equal_order(lab: Lab, call_log: CallLog) -> None:
    # behaviour 34: RECLAIMABLE is first in UNMOVABLE's fallback list; from a
    # RECLAIMABLE block only free pages count (32 < 256: no claim)
    mm, zone = _ready(lab, call_log)
    lab.place(zone, PB(1), 5, MOV)
    lab.place(zone, PB(2), 5, RECL)
    assert mm.alloc_pages(KERNEL, 0, 0, 0) == PB(2)
    assert zone.get_pageblock_migratetype(PB(2)) == RECL
    assert _extfrag(call_log) == [(PB(2), 0, 5, UNMOV, RECL, False)]
    assert lab.blocks(zone)[PB(1)] == (5, MOV)


def test_reclaimable_block_with_half_free_is_claimed(lab: Lab) -> None:
    # behaviour 34: free pages >= 256 claim a RECLAIMABLE pageblock
    mm, zone = _ready(lab)
    lab.place(zone, PB(2), 8, RECL)
    assert mm.alloc_pages(KERNEL, 0, 0, 0) == PB(2)
    assert zone.get_pageblock_migratetype(PB(2)) == UNMOV


def test_movable_takes_smallest_fallback_block_below_order4(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 35
    mm, zone = _ready(lab, call_log)
    lab.place(zone, PB(2), 3, RECL)
    lab.place(zone, PB(4), 2, UNMOV)
    lab.place(zone, PB(5), 1, RECL)
    pfn = mm.alloc_pages(MOVABLE, 0, 0, 0)
    assert pfn == PB(5)
    assert lab.blocks(zone) == {
        PB(2): (3, RECL), PB(4): (2, UNMOV), PB(5) + 1: (0, MOV),
    }
    assert zone.get_pageblock_migratetype(PB(5)) == RECL  # no relabel
    assert _extfrag(call_log) == [(PB(5), 0, 1, MOV, RECL, False)]
    check_invariants(mm)


def test_movable_steals_whole_pageblock_contents_from_order4(lab: Lab) -> None:
    # behaviour 35 (contrast): an order >= 4 fallback block may take the pageblock
    mm, zone = _ready(lab)
    lab.place(zone, PB(4), 4, UNMOV)
    lab.place(zone, PB(4) + 32, 1, UNMOV)
    lab.place(zone, PB(5), 1, RECL)
    pfn = mm.alloc_pages(MOVABLE, 0, 0, 0)
    assert pfn == PB(4) + 32  # both PB(4) blocks moved; the order-1 one is smaller
    assert lab.blocks(zone)[PB(4)] == (4, MOV)
    assert zone.get_pageblock_migratetype(PB(4)) == UNMOV  # 18 free, 0 movable: no claim


def test_order10_fallback_relabels_every_covered_pageblock(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 36; whole-pageblock steals do not boost (behaviour 37)
    mm, zone = _ready(lab, call_log)
    zone.watermark = [0, 0, 400, 0]
    lab.place(zone, 8192, 10, MOV)
    assert mm.alloc_pages(KERNEL, 0, 0, 0) == 8192
    assert zone.get_pageblock_migratetype(8192) == UNMOV
    assert zone.get_pageblock_migratetype(8704) == UNMOV
    assert lab.blocks(zone) == {8192 + (1 << o): (o, UNMOV) for o in range(10)}
    assert _extfrag(call_log) == [(8192, 0, 10, UNMOV, MOV, True)]
    assert zone.watermark_boost == 0
    assert mm.vm["extfrag_fragmenting"] == 0


def test_sub_pageblock_steal_boosts_and_wakes_kswapd(lab: Lab) -> None:
    # behaviour 37: +512 per steal, capped at max(512, high * 15000 / 10000)
    mm, zone = _ready(lab)
    zone.watermark = [0, 0, 400, 0]
    lab.place(zone, 12288, 10, HIGHATOMIC)  # free pages nobody may steal
    lab.place(zone, 13312, 10, HIGHATOMIC)
    lab.place(zone, PB(3), 5, MOV)
    lab.place(zone, PB(5), 5, MOV)
    assert mm.alloc_pages(KERNEL, 0, 0, 0) == PB(3)
    assert zone.watermark_boost == 512
    assert mm.vm["kswapd_wakeup"] == 1
    assert not zone.boosted_watermark  # cleared by rmqueue() when it woke kswapd
    assert mm.alloc_pages(RECLAIMABLE, 0, 0, 0) == PB(5)
    assert zone.watermark_boost == 600
    assert mm.vm["kswapd_wakeup"] == 2


def test_boost_without_kswapd_reclaim_does_not_wake(lab: Lab) -> None:
    # behaviour 37: only ALLOC_KSWAPD requests set ZONE_BOOSTED_WATERMARK
    mm, zone = _ready(lab)
    zone.watermark = [0, 0, 400, 0]
    lab.place(zone, PB(3), 5, MOV)
    gfp = KERNEL & ~int(GFP.KSWAPD_RECLAIM)
    assert mm.alloc_pages(gfp, 0, 0, 0) == PB(3)
    assert zone.watermark_boost == 512
    assert mm.vm["kswapd_wakeup"] == 0


def test_small_zones_are_never_boosted(lab: Lab) -> None:
    # behaviour 37: pageblock_nr_pages * 4 > managed -> no boost
    small = lab.machine(2048).zones[0]
    assert small.managed_pages == 2047
    assert not boost_watermark(small)
    assert small.watermark_boost == 0
    edge = lab.machine(2049).zones[0]
    assert edge.managed_pages == 2048
    assert boost_watermark(edge)
    assert edge.watermark_boost == 512


def test_extfrag_fields_and_counters(lab: Lab, call_log: CallLog) -> None:
    # behaviour 38: one event per fallback; fragmenting = fallback_order < 9
    mm, zone = _ready(lab, call_log)
    lab.place(zone, PB(2), 3, RECL)  # sub-pageblock, claimed (UNMOVABLE from RECL: no)
    lab.place(zone, 8192, 9, MOV)
    mm.alloc_pages(KERNEL, 0, 0, 0)  # takes the order-9 block: not fragmenting
    for _ in range(511):
        assert mm.alloc_pages(KERNEL, 0, 0, 0) >= 0
    mm.alloc_pages(KERNEL, 0, 0, 0)  # now from the RECLAIMABLE block: fragmenting
    events = _extfrag(call_log)
    assert events == [(8192, 0, 9, UNMOV, MOV, True), (PB(2), 0, 3, UNMOV, RECL, False)]
    ev = mm.vm
    assert (ev["extfrag_steal"], ev["extfrag_fragmenting"], ev["extfrag_pageblock_claimed"]) \
        == (2, 1, 1)


def _normal_box(lab: Lab) -> tuple[PageAllocator, Zone, Zone]:
    """Single node with DMA, DMA32 [4096, 1 << 20) and a 16 MiB Normal zone."""
    mm = lab.machine((1 << 20) + 4096)
    lab.no_watermarks(mm)
    dma32, normal = mm.zones[1], mm.zones[2]
    assert normal.name == "Normal" and normal.zone_start_pfn == 1 << 20
    lab.clear(normal)
    lab.place(normal, (1 << 20) + 512, 3, MOV)
    return mm, dma32, normal


def test_nofragment_prefers_whole_pageblock_in_dma32(lab: Lab) -> None:
    # behaviour 39: first pass steals only blocks >= pageblock_order, in any zone
    mm, dma32, normal = _normal_box(lab)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert mm.page_zone(pfn) is dma32
    assert pfn == 4096
    assert dma32.get_pageblock_migratetype(4096) == UNMOV
    assert lab.blocks(normal) == {(1 << 20) + 512: (3, MOV)}
    assert normal.get_pageblock_migratetype((1 << 20) + 512) == MOV


def test_nofragment_falls_back_to_sub_pageblock_steal_in_normal(lab: Lab) -> None:
    # behaviour 39: only when no zone has a whole pageblock to give does the second
    # walk (without ALLOC_NOFRAGMENT) steal the small block in the preferred zone
    mm, dma32, normal = _normal_box(lab)
    lab.clear(mm.zones[0])
    lab.clear(dma32)
    lab.place(dma32, 8192, 3, MOV)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert pfn == (1 << 20) + 512
    assert normal.get_pageblock_migratetype(pfn) == UNMOV
    assert lab.blocks(dma32) == {8192: (3, MOV)}


def _slowpath_only(mm: PageAllocator) -> None:
    """Fail every fast-path (LOW) check while the slow path's MIN check passes."""
    for zone in mm.zones:
        zone.watermark = [0, 1 << 30, 1 << 30, 1 << 30]


def test_slowpath_atomic_high_order_reserves_highatomic_pageblock(lab: Lab) -> None:
    # behaviour 40
    mm = lab.machine()
    zone = mm.zones[1]
    _slowpath_only(mm)
    pfn = mm.alloc_pages(int(GFP_ATOMIC), 1, 0, 0)
    assert pfn >= 0 and mm.page_zone(pfn) is zone
    assert zone.get_pageblock_migratetype(pfn) == HIGHATOMIC
    assert zone.nr_reserved_highatomic == 512
    assert mm.vm["highatomic_reserved"] == 1
    start = pfn & ~511
    inside = [mt for p, (_, mt) in lab.blocks(zone).items() if start <= p < start + 512]
    assert inside and set(inside) == {HIGHATOMIC}
    # cap = managed/100 + 512 = 634: one more pageblock fits, then no more
    for _ in range(6):
        assert mm.alloc_pages(int(GFP_ATOMIC), 3, 0, 1) >= 0
    assert zone.nr_reserved_highatomic == 1024
    assert mm.vm["highatomic_reserved"] == 2
    assert mm.pageblock_mt.count(HIGHATOMIC) == 2


def test_fastpath_atomic_success_never_reserves(lab: Lab) -> None:
    # behaviour 40
    mm = lab.machine()
    pfn = mm.alloc_pages(int(GFP_ATOMIC), 2, 0, 0)
    assert pfn >= 0
    assert mm.zones[1].nr_reserved_highatomic == 0
    assert mm.zones[1].get_pageblock_migratetype(pfn) != HIGHATOMIC


def test_order0_never_takes_highatomic_but_order1_atomic_does(lab: Lab) -> None:
    # behaviour 40 / §3.9 consumption
    mm, zone = _ready(lab)
    lab.place(zone, PB(6), 3, HIGHATOMIC)
    zone.nr_reserved_highatomic = 512
    assert mm.alloc_pages(int(GFP_ATOMIC), 0, 0, 0) == -1
    assert lab.blocks(zone) == {PB(6): (3, HIGHATOMIC)}
    assert mm.alloc_pages(int(GFP_ATOMIC), 1, 0, 0) == PB(6)
    # no ALLOC_HARDER: hidden (__GFP_NORETRY: one reclaim round, nothing to reclaim)
    assert mm.alloc_pages(KERNEL | int(GFP.NORETRY), 1, 0, 0) == -1
