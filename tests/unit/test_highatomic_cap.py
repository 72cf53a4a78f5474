"""The cap on the high-order atomic reserve, at zone sizes where a wrong cap shows.

reserve_highatomic_pageblock() (mm/page_alloc.c, 6.1.20) runs after every order > 0
ALLOC_HARDER allocation that get_page_from_freelist() served, and converts the page's
pageblock to MIGRATE_HIGHATOMIC unless

    zone->nr_reserved_highatomic >= max_managed,
    max_managed = zone_managed_pages(zone) / 100 + pageblock_nr_pages    (integer /)

Each conversion adds pageblock_nr_pages (512) to nr_reserved_highatomic, so the number
of pageblocks reserved is the number of k = 0, 1, 2, ... with 512 k < max_managed.

  managed  present  1 %: max -> blocks   alternatives that must not pass
  51200    61440    512+512 = 1024 -> 2  present/100 (614+512 -> 3); 2 % (1536 -> 3);
                                          ">" instead of ">=" (3); no "+ 512" (512 -> 1)
  60000    60000    600+512 = 1112 -> 3  0.1 % (60+512 = 572 -> 2); 2 % (1712 -> 4)

The machine has one node with ZONE_DMA [1, 4096) and a ZONE_DMA32 at 4096 of the sizes
above (its unmanaged pages at its start). Every free list is emptied; then pageblocks
PB(k) get one free order-4 MOVABLE block each. The fast path's LOW watermark is out of
reach and MIN is 0, so each GFP_ATOMIC order-4 request is served by the slow path with
ALLOC_HARDER: the HIGHATOMIC lists are empty (a reserved pageblock's only free block was
the one allocated), __rmqueue_fallback() steals the next PB(k)'s block (claiming the
pageblock as UNMOVABLE: 16 free + 496 "alike" pages), and reserve_highatomic_pageblock()
converts that pageblock while under the cap. Boosting is off so MIN stays 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.constants import MigrateType, ZoneType
from simcore.mm.gfp import GFP_ATOMIC
from simcore.mm.invariants import check_invariants
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.topology import ZoneSpan

if TYPE_CHECKING:
    from conftest import Lab

HIGHATOMIC = int(MigrateType.HIGHATOMIC)
MOV = int(MigrateType.MOVABLE)
ATOMIC = int(GFP_ATOMIC)
DMA32_START = 4096
REQUESTS = 6


@pytest.mark.parametrize(("managed", "present", "blocks"), [
    (51200, 61440, 2),
    (60000, 60000, 3),
])
def test_highatomic_reserve_stops_at_one_percent_plus_a_pageblock(
    lab: Lab, managed: int, present: int, blocks: int
) -> None:
    spans = [
        ZoneSpan(0, int(ZoneType.DMA), 1, 4095, 4095, 4095, 1, 0),
        ZoneSpan(0, int(ZoneType.DMA32), DMA32_START, present, present, managed,
                 DMA32_START, present - managed),
    ]
    mm = PageAllocator(MachineConfig(nodes=(NodeConfig(memory_pages=present + 4096),)),
                       SysctlConfig(), spans=spans)
    dma, zone = mm.zones
    assert zone.managed_pages == managed and zone.present_pages == present
    lab.clear(dma)
    lab.clear(zone)
    for z in mm.zones:
        z.watermark = [0, 1 << 30, 1 << 30, 1 << 30]
        z.lowmem_reserve = [0, 0, 0, 0]
        z.watermark_boost_factor = 0
    first = -(-zone.managed_start_pfn // 512) * 512
    targets = [first + 512 * k for k in range(REQUESTS)]
    for pfn in targets:
        lab.place(zone, pfn, 4, MOV)
    got = [mm.alloc_pages(ATOMIC, 4, 0, 0) for _ in range(REQUESTS)]
    assert got == targets
    reserved = [pfn for pfn in targets if zone.get_pageblock_migratetype(pfn) == HIGHATOMIC]
    assert reserved == targets[:blocks]
    assert zone.nr_reserved_highatomic == 512 * blocks
    assert mm.vm["highatomic_reserved"] == blocks
    check_invariants(mm)
