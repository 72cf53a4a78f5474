"""The migratetype fallback table of 6.1 and the preference it gives at equal order.

mm/page_alloc.c (6.1.20) ``fallbacks[MIGRATE_TYPES][3]``:

    UNMOVABLE   -> RECLAIMABLE, MOVABLE      (then the MIGRATE_TYPES terminator)
    MOVABLE     -> RECLAIMABLE, UNMOVABLE
    RECLAIMABLE -> UNMOVABLE,   MOVABLE

HIGHATOMIC, CMA and ISOLATE have no row (``__rmqueue()`` is never called with them).
``find_suitable_fallback()`` walks a row in order and returns the first type whose
free list at the order being scanned is not empty, so at equal order the first entry
wins, whatever the pfns or list positions.

Each test starts from :meth:`Lab.bare_dma32`: DMA32 pageblocks ``PB(k) = 4096 + 512 k``
hold only the blocks placed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simcore.mm.constants import FALLBACKS, MigrateType
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL

if TYPE_CHECKING:
    from conftest import CallLog, Lab

UNMOV = int(MigrateType.UNMOVABLE)
MOV = int(MigrateType.MOVABLE)
RECL = int(MigrateType.RECLAIMABLE)
HIGHATOMIC = int(MigrateType.HIGHATOMIC)
GFP_OF = {
    UNMOV: int(GFP_KERNEL),
    MOV: int(GFP_HIGHUSER_MOVABLE),
    RECL: int(GFP_KERNEL | GFP.RECLAIMABLE),
}
KERNEL_6_1_FALLBACKS = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
}


def PB(k: int) -> int:  # noqa: N802 - reads like the kernel's pageblock index
    return 4096 + 512 * k


def test_fallback_table_equals_6_1() -> None:
    assert FALLBACKS == KERNEL_6_1_FALLBACKS
    for mt in (MigrateType.HIGHATOMIC, MigrateType.CMA, MigrateType.ISOLATE):
        assert mt not in FALLBACKS


@pytest.mark.parametrize("start_mt", [UNMOV, MOV, RECL])
@pytest.mark.parametrize("order", [2, 5])
def test_first_table_entry_wins_at_equal_order(
    lab: Lab, call_log: CallLog, start_mt: int, order: int
) -> None:
    """An order-0 request of ``start_mt`` with one free block of each other type.

    The second-choice block sits at the lower pfn and is listed first, and a
    HIGHATOMIC block of the same order is free too; every block has the same order.
    At order 5 the request may steal the pageblock (``can_steal_fallback()``: order >=
    pageblock_order / 2), so __rmqueue_fallback() uses the largest-order scan; at order
    2 a MOVABLE request cannot, and goes through ``find_smallest``. Either way the
    order scanned first holds both candidates, and the table's first entry is taken.
    """
    mm, zone = lab.bare_dma32(call_log)
    first, second = KERNEL_6_1_FALLBACKS[MigrateType(start_mt)]
    lab.place(zone, PB(1), order, HIGHATOMIC)
    lab.place(zone, PB(2), order, int(second))
    lab.place(zone, PB(3), order, int(first))
    pfn = mm.alloc_pages(GFP_OF[start_mt], 0, 0, 0)
    assert PB(3) <= pfn < PB(3) + (1 << order)
    (steal,) = call_log.named("mm_page_alloc_extfrag")
    assert steal[1:6] == (PB(3), 0, order, start_mt, int(first))


@pytest.mark.parametrize("start_mt", [UNMOV, MOV, RECL])
def test_second_table_entry_then_nothing(lab: Lab, start_mt: int) -> None:
    # Without the first choice the second is used; HIGHATOMIC is never a fallback
    # (it has no place in any row), so with only HIGHATOMIC free the request fails.
    mm, zone = lab.bare_dma32()
    _, second = KERNEL_6_1_FALLBACKS[MigrateType(start_mt)]
    lab.place(zone, PB(1), 5, HIGHATOMIC)
    lab.place(zone, PB(2), 0, int(second))
    assert mm.alloc_pages(GFP_OF[start_mt], 0, 0, 0) == PB(2)
    # __GFP_NORETRY: nothing is reclaimable, so one round and no OOM killer.
    assert mm.alloc_pages(GFP_OF[start_mt] | int(GFP.NORETRY), 0, 0, 0) == -1
    assert lab.blocks(zone) == {PB(1): (5, HIGHATOMIC)}


def test_movable_steals_reclaimable_before_unmovable(lab: Lab) -> None:
    # The case spelled out: MOVABLE order 0 with order-3 blocks of UNMOVABLE
    # (lower pfn) and RECLAIMABLE free. find_smallest (order 3 < pageblock_order / 2)
    # finds both at order 3; fallbacks[MIGRATE_MOVABLE][0] is RECLAIMABLE.
    mm, zone = lab.bare_dma32()
    lab.place(zone, PB(1), 3, UNMOV)
    lab.place(zone, PB(2), 3, RECL)
    assert mm.alloc_pages(GFP_OF[MOV], 0, 0, 0) == PB(2)
    assert lab.blocks(zone)[PB(1)] == (3, UNMOV)
