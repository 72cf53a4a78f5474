"""Watermark checks as the allocator applies them (spec §3.3, §8.2, §8.3).

The arithmetic itself is tested in test_watermarks.py; here the allocator's zones and
the allocation paths are checked. End-to-end tests keep the real free memory and set
the zone watermarks around it, so the exact boundary (``free == mark + reserve``) is hit.
CMA is not modelled (SIMPLIFICATION in Zone.rmqueue), so behaviour 29 is tested for the
highatomic reserve only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.config.types import SysctlConfig
from simcore.mm.constants import ALLOC_HARDER, ALLOC_HIGH, ALLOC_WMARK_LOW, MigrateType
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, gfp_to_alloc_flags

if TYPE_CHECKING:
    from conftest import Lab

    from simcore.mm.page_alloc import PageAllocator

MOV = int(MigrateType.MOVABLE)
HIGHATOMIC = int(MigrateType.HIGHATOMIC)
KERNEL = int(GFP_KERNEL)
KERNEL_NORETRY = int(GFP_KERNEL | GFP.NORETRY)
"""GFP_KERNEL that gives up after one reclaim round: these machines have nothing to
reclaim, and plain GFP_KERNEL would go on to the OOM killer (behaviour 48)."""
ATOMIC = int(GFP_ATOMIC)
NOWAIT = int(GFP_NOWAIT)
NORMAL_IDX = 2
DMA32_IDX = 1


def test_watermarks_of_the_spec_example(lab: Lab) -> None:
    # behaviour 23: min_free_kbytes 67584, Normal 3,400,000 of 4,149,840 lowmem pages.
    # DMA is fully reserved and 294,640 DMA32 pages too, to hit the exact managed sizes.
    mm = lab.machine(4448576, reserved_pages=298735,
                     sysctl=SysctlConfig(min_free_kbytes=67584))
    dma, dma32, normal = mm.zones
    assert (dma.managed_pages, dma32.managed_pages, normal.managed_pages) == (0, 749840, 3400000)
    assert normal.watermark[:3] == [13843, 17303, 20763]
    pages_min = 67584 >> 2
    tmp = pages_min * 749840 // 4149840
    step = max(tmp >> 2, 749840 * 10 // 10000)
    assert dma32.watermark[:3] == [tmp, tmp + step, tmp + 2 * step]
    assert dma.watermark[:3] == [0, 0, 0]


def test_lowmem_reserve(lab: Lab) -> None:
    # behaviour 24: managed pages of the zones above, divided by the lower zone's ratio
    mm = lab.machine((1 << 20) + 8192, movable_pages=4096)
    dma, dma32, normal, movable = mm.zones
    assert (normal.managed_pages, movable.managed_pages) == (4096, 4096)
    assert dma.lowmem_reserve == [0, dma32.managed_pages // 256,
                                  (dma32.managed_pages + 4096) // 256,
                                  (dma32.managed_pages + 8192) // 256]
    assert dma32.lowmem_reserve == [0, 0, 4096 // 256, 8192 // 256]
    assert normal.lowmem_reserve == [0, 0, 0, 4096 // 32]
    assert movable.lowmem_reserve == [0, 0, 0, 0]


def test_zone_without_managed_pages_has_no_reserve(lab: Lab) -> None:
    # behaviour 24: a zone with no managed pages reserves nothing (clear in the kernel)
    mm = lab.machine(4448576, reserved_pages=298735)
    assert mm.zones[0].lowmem_reserve == [0, 0, 0, 0]


def _set_marks(mm: PageAllocator, zone_marks: dict[int, tuple[int, int]]) -> None:
    """Set (min, low) per zone index; every other zone gets unpassable watermarks."""
    for i, zone in enumerate(mm.zones):
        mn, low = zone_marks.get(i, (1 << 30, 1 << 30))
        zone.watermark = [mn, low, max(low, mn), max(low, mn)]


def test_kernel_fallback_to_dma32_needs_lowmem_reserve(lab: Lab) -> None:
    # behaviour 25
    mm = lab.machine((1 << 20) + 4096)
    dma32 = mm.zones[1]
    reserve = dma32.lowmem_reserve[NORMAL_IDX]
    assert reserve == 16
    free = dma32.nr_free_pages
    mark = free - reserve
    _set_marks(mm, {1: (mark, mark)})
    assert mm.alloc_pages(KERNEL_NORETRY, 0, 0, 0) == -1  # free == mark + reserve
    assert mm.alloc_pages(KERNEL | int(GFP.DMA32), 0, 0, 0) >= 0  # needs only > mark
    mm.drain_all_pages()
    assert dma32.nr_free_pages == free - 1
    _set_marks(mm, {1: (mark - 2, mark - 2)})
    assert mm.alloc_pages(KERNEL, 0, 0, 0) >= 0  # free - 1 > mark - 2 + reserve


def test_fast_path_uses_low_without_reductions(lab: Lab) -> None:
    # behaviour 26
    mm = lab.machine()
    dma32 = mm.zones[1]
    ac = mm.prepare_alloc_pages(ATOMIC, 0)
    flags = mm.fast_path_flags(ATOMIC, ac)
    assert flags & 3 == ALLOC_WMARK_LOW
    assert not flags & (ALLOC_HIGH | ALLOC_HARDER)
    free = dma32.nr_free_pages
    _set_marks(mm, {1: (0, free - 1)})
    assert mm.alloc_pages(ATOMIC, 0, 0, 0) >= 0
    assert mm.vm["kswapd_wakeup"] == 0  # served by the fast path
    mm.drain_all_pages()
    _set_marks(mm, {1: (0, dma32.nr_free_pages)})  # free == low: fast path fails
    assert mm.alloc_pages(ATOMIC, 0, 0, 0) >= 0
    assert mm.vm["kswapd_wakeup"] == 1  # the slow path woke kswapd


def test_atomic_slow_path_threshold_is_three_eighths_of_min(lab: Lab) -> None:
    # behaviour 27: min 1000 -> 1000 - 500 = 500 -> 500 - 125 = 375
    zone = lab.machine().zones[1]
    atomic = int(gfp_to_alloc_flags(ATOMIC))
    kernel = int(gfp_to_alloc_flags(KERNEL))
    assert zone.watermark_ok(0, 1000, DMA32_IDX, atomic, 376)
    assert not zone.watermark_ok(0, 1000, DMA32_IDX, atomic, 375)
    assert zone.watermark_ok(0, 1000, DMA32_IDX, kernel, 1001)
    assert not zone.watermark_ok(0, 1000, DMA32_IDX, kernel, 1000)
    # odd min: 999 -> 999 - 499 = 500 -> 500 - 125 = 375
    assert not zone.watermark_ok(0, 999, DMA32_IDX, atomic, 375)


def test_atomic_succeeds_below_min_where_kernel_and_nowait_fail(lab: Lab) -> None:
    # behaviour 27, and GFP_NOWAIT below min fails and counts pgalloc_fail (51)
    mm = lab.machine()
    dma32 = mm.zones[1]
    free = dma32.nr_free_pages
    _set_marks(mm, {1: (free, 1 << 30)})  # free == min
    assert mm.alloc_pages(NOWAIT, 0, 0, 0) == -1
    assert mm.vm["pgalloc_fail"] == 1
    assert mm.alloc_pages(KERNEL_NORETRY, 0, 0, 0) == -1
    assert mm.vm["pgalloc_fail"] == 2
    assert dma32.nr_free_pages == free
    assert mm.alloc_pages(ATOMIC, 0, 0, 0) >= 0
    assert mm.vm["pgalloc_fail"] == 2


def test_nowait_fails_exactly_at_min(lab: Lab) -> None:
    # GFP_NOWAIT needs free > min in the slow path
    mm = lab.machine()
    free = mm.zones[1].nr_free_pages
    _set_marks(mm, {1: (free - 1, 1 << 30)})
    assert mm.alloc_pages(NOWAIT, 0, 0, 0) >= 0
    assert mm.vm["pgalloc_fail"] == 0


def test_high_order_needs_one_suitable_block(lab: Lab) -> None:
    # behaviour 28
    mm = lab.machine()
    zone = mm.zones[1]
    lab.clear(zone)
    lab.place(zone, 8192, 1, MOV)
    free = 10_000  # order-0 part passes for any of these calls
    assert zone.watermark_ok(1, 0, DMA32_IDX, 0, free)
    assert not zone.watermark_ok(2, 0, DMA32_IDX, 0, free)
    lab.place(zone, 9216, 3, HIGHATOMIC)
    assert not zone.watermark_ok(2, 0, DMA32_IDX, 0, free)
    assert zone.watermark_ok(2, 0, DMA32_IDX, ALLOC_HARDER, free)
    assert not zone.watermark_ok(4, 0, DMA32_IDX, ALLOC_HARDER, free)
    # no per-order free-page accounting: the order-0 test is on all free pages
    assert not zone.watermark_ok(1, 100, DMA32_IDX, 0, 101)  # 101 - 1 <= 100


def test_highatomic_reserve_is_unusable_without_harder(lab: Lab) -> None:
    # behaviour 29
    zone = lab.machine().zones[1]
    zone.nr_reserved_highatomic = 512
    assert not zone.watermark_ok(0, 100, DMA32_IDX, 0, 612)
    assert zone.watermark_ok(0, 100, DMA32_IDX, 0, 613)
    assert zone.watermark_ok(0, 100, DMA32_IDX, ALLOC_HARDER, 101)
    zone.nr_free_pages = 612
    assert not zone.watermark_fast(0, 100, DMA32_IDX, 0, KERNEL)
    zone.nr_free_pages = 613
    assert zone.watermark_fast(0, 100, DMA32_IDX, 0, KERNEL)
