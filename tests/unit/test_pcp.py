"""Per-CPU lists: which frees use them, refill batches, LIFO/FIFO order, drain sizing.

Spec §3.5 and §5.2-§5.3. ``GIB_PAGES`` machines have a ZONE_DMA32 of about 1.23 GiB,
so its computed pcp batch is 63, as on any zone of at least 1 GiB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simcore.mm.constants import MigrateType
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import PG_PCP
from simcore.mm.pcp import NR_LOWORDER_PCP_LISTS, order_to_pindex

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.pcp import PerCpuPages
    from simcore.mm.zone import Zone

UNMOV = int(MigrateType.UNMOVABLE)
MOV = int(MigrateType.MOVABLE)
HIGHATOMIC = int(MigrateType.HIGHATOMIC)
CMA = int(MigrateType.CMA)
ISOLATE = int(MigrateType.ISOLATE)
GIB_PAGES = 5 << 16
KERNEL = int(GFP_KERNEL)


@pytest.mark.parametrize("order", range(11))
def test_pcp_allowed_orders_go_to_the_pcp(lab: Lab, order: int) -> None:
    # behaviour 14
    mm = lab.machine()
    zone = mm.zones[1]
    boot_pgfree = mm.vm["pgfree"]
    pfn = mm.alloc_pages(KERNEL, order, 0, 0)
    pcp = zone.per_cpu_pageset[0]
    pcp.high = 1 << 20  # no drain: see where the free lands
    before_pcp, before_free = pcp.count, zone.nr_free_pages
    assert mm.free_pages(pfn, order, 0)
    if order <= 3 or order == 9:
        assert pcp.entries(order_to_pindex(UNMOV, order))[0] >> 3 == pfn
        assert mm.pages.flags[pfn] & PG_PCP
        assert pcp.count == before_pcp + (1 << order)
        assert zone.nr_free_pages == before_free
    else:
        assert pcp.count == before_pcp
        assert zone.nr_free_pages == before_free + (1 << order)
    assert mm.vm["pgfree"] == boot_pgfree + (1 << order)
    check_invariants(mm, {})


def test_refill_lowers_nr_free_pages_by_a_whole_batch(lab: Lab) -> None:
    # behaviour 15
    mm = lab.machine(GIB_PAGES)
    zone = mm.zones[1]
    assert zone.pcp_batch == 63
    free, buddy = zone.nr_free_pages, zone.free_area.free_pages()
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert pfn == 4096
    assert zone.nr_free_pages == free - 63
    assert zone.free_area.free_pages() == buddy - 63
    assert zone.per_cpu_pageset[0].count == 62
    # a pcp hit does not touch NR_FREE_PAGES
    assert mm.alloc_pages(KERNEL, 0, 0, 0) == 4097
    assert zone.nr_free_pages == free - 63
    check_invariants(mm, {4096: 0, 4097: 0})


@pytest.mark.parametrize(
    ("gfp", "order", "refill"),
    [(KERNEL, 0, 63), (KERNEL, 1, 31), (KERNEL, 2, 15), (KERNEL, 3, 7),
     (int(GFP_TRANSHUGE), 9, 2)],
)
def test_refill_batch_per_order(lab: Lab, gfp: int, order: int, refill: int) -> None:
    # behaviour 16
    mm = lab.machine(GIB_PAGES)
    zone = mm.zones[1]
    free = zone.nr_free_pages
    pfn = mm.alloc_pages(gfp, order, 0, 0)
    mt = MOV if order == 9 else UNMOV
    lst = zone.per_cpu_pageset[0].entries(order_to_pindex(mt, order))
    assert len(lst) == refill - 1
    assert zone.nr_free_pages == free - (refill << order)
    # FIFO with respect to the refill: ascending pfns, the first one handed out
    pfns = [pfn] + [e >> 3 for e in lst]
    assert pfns == [4096 + (i << order) for i in range(refill)]


def test_pcp_alloc_is_lifo_and_drain_takes_oldest(lab: Lab, call_log: CallLog) -> None:
    # behaviour 17
    mm = lab.machine(tracer=call_log)
    zone = mm.zones[1]
    pcp = zone.per_cpu_pageset[0]
    pfns = [mm.alloc_pages(KERNEL, 0, 0, 0) for _ in range(6)]  # two refills of 3
    assert pcp.count == 0
    for pfn in pfns[:3]:
        mm.free_pages(pfn, 0, 0)
    assert [e >> 3 for e in pcp.entries(UNMOV)] == pfns[2::-1]
    assert mm.alloc_pages(KERNEL, 0, 0, 0) == pfns[2]
    for pfn in (pfns[2], *pfns[3:]):
        mm.free_pages(pfn, 0, 0)
    listed = [e >> 3 for e in pcp.entries(UNMOV)]
    call_log.calls.clear()
    mm.drain_all_pages()
    drained = [args[1] for args in call_log.named("mm_page_pcpu_drain")]
    assert drained == listed[::-1]  # tail (oldest) first
    check_invariants(mm, {})


def _freeable_pages(lab: Lab, n: int) -> tuple[PageAllocator, PerCpuPages, list[int]]:
    mm = lab.machine()
    pfns = [mm.alloc_pages(KERNEL, 0, 0, 0) for _ in range(n)]
    mm.drain_all_pages()
    pcp = mm.zones[1].per_cpu_pageset[0]
    return mm, pcp, pfns


def test_drain_size_doubles_without_allocations(lab: Lab) -> None:
    # behaviour 18: high 20, batch 4 -> drains of 4, 8, 16, then capped at high-batch
    mm, pcp, pfns = _freeable_pages(lab, 80)
    pcp.high, pcp.batch, pcp.free_factor = 20, 4, 0
    drains = []
    for pfn in pfns:
        before = pcp.count
        mm.free_pages(pfn, 0, 0)
        if pcp.count <= before:
            drains.append(before + 1 - pcp.count)
    assert drains[:4] == [4, 8, 16, 16]
    assert pcp.free_factor == 2


def test_allocation_halves_free_factor(lab: Lab) -> None:
    # behaviour 18: "without an intervening pcp allocation"
    mm, pcp, pfns = _freeable_pages(lab, 40)
    pcp.high, pcp.batch, pcp.free_factor = 20, 4, 0
    for pfn in pfns[:24]:  # drains of 4 then 8
        mm.free_pages(pfn, 0, 0)
    assert pcp.free_factor == 2
    mm.alloc_pages(KERNEL, 0, 0, 0)
    assert pcp.free_factor == 1


def test_high_order_free_with_free_factor_drains_everything(lab: Lab) -> None:
    # behaviour 19
    mm = lab.machine()
    zone = mm.zones[1]
    pcp = zone.per_cpu_pageset[0]
    order1 = mm.alloc_pages(KERNEL, 1, 0, 0)
    order0 = [mm.alloc_pages(KERNEL, 0, 0, 0) for _ in range(5)]
    for pfn in order0:
        mm.free_pages(pfn, 0, 0)
    assert pcp.count > 0 and pcp.free_factor == 0
    pcp.free_factor = 1
    mm.free_pages(order1, 1, 0)
    assert pcp.count == 0
    check_invariants(mm, {})


def test_high_order_free_without_free_factor_keeps_pcp(lab: Lab) -> None:
    # behaviour 19 (contrast): free_factor 0 -> normal high check
    mm = lab.machine()
    pcp = mm.zones[1].per_cpu_pageset[0]
    pfn = mm.alloc_pages(KERNEL, 1, 0, 0)
    count = pcp.count
    mm.free_pages(pfn, 1, 0)
    assert pcp.count == count + 2


def test_reclaim_active_caps_high_at_four_batches(lab: Lab) -> None:
    # behaviour 20
    mm, pcp, pfns = _freeable_pages(lab, 40)
    zone = mm.zones[1]
    assert (pcp.high, pcp.batch) == (375, 3)
    assert pcp.nr_pcp_high(False) == 375
    zone.reclaim_active = True
    assert pcp.nr_pcp_high(False) == 12
    counts = []
    for pfn in pfns[:12]:
        mm.free_pages(pfn, 0, 0)
        counts.append(pcp.count)
    assert counts[:11] == list(range(1, 12))
    assert counts[11] == 12 - 3  # reached 4*batch: one batch drained


def _free_block_of(lab: Lab, zone: Zone, pfn: int) -> tuple[int, int]:
    """(order, mt) of the free block holding ``pfn``."""
    for head, (order, mt) in lab.blocks(zone).items():
        if head <= pfn < head + (1 << order):
            return order, mt
    raise AssertionError(f"{pfn:#x} is not free")


@pytest.mark.parametrize("block_mt", [HIGHATOMIC, CMA])
def test_highatomic_and_cma_pages_use_the_movable_pcp_list(lab: Lab, block_mt: int) -> None:
    # behaviour 21
    mm = lab.machine()
    zone = mm.zones[1]
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    mm.drain_all_pages()
    zone.set_pageblock_migratetype(pfn, block_mt)
    mm.free_pages(pfn, 0, 0)
    pcp = zone.per_cpu_pageset[0]
    assert list(pcp.entries(order_to_pindex(MOV, 0))) == [pfn << 3 | block_mt]
    assert not pcp.entries(order_to_pindex(UNMOV, 0))
    pcp.drain()
    # drained with the cached type: the (merged) block lands on that type's free list
    assert _free_block_of(lab, zone, pfn)[1] == block_mt


def test_isolated_pageblock_bypasses_pcp(lab: Lab) -> None:
    # behaviour 21; free_one_page() does not count pgfree (behaviour 64)
    mm = lab.machine()
    zone = mm.zones[1]
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    mm.drain_all_pages()
    free = zone.nr_free_pages
    boot_pgfree = mm.vm["pgfree"]
    zone.set_pageblock_migratetype(pfn, ISOLATE)
    mm.free_pages(pfn, 0, 0)
    assert zone.per_cpu_pageset[0].count == 0
    assert _free_block_of(lab, zone, pfn)[1] == ISOLATE
    assert zone.nr_free_pages == free  # ISOLATE pages are not counted free
    assert mm.vm["pgfree"] == boot_pgfree


def test_pgalloc_counts_the_supplying_zone_including_pcp_hits(lab: Lab) -> None:
    # behaviour 64
    mm = lab.machine()
    ev = mm.vm
    mm.alloc_pages(KERNEL, 0, 0, 0)  # refill
    mm.alloc_pages(KERNEL, 0, 0, 0)  # pcp hit
    mm.alloc_pages(KERNEL, 5, 0, 0)  # buddy
    assert ev["pgalloc_dma32"] == 1 + 1 + 32
    dma = mm.alloc_pages(int(GFP.DMA), 2, 0, 0)
    assert mm.page_zone(dma) is mm.zones[0]
    assert ev["pgalloc_dma"] == 4
    assert ev["pgalloc_dma32"] == 34


def test_pgfree_counts_frees_once_not_drains(lab: Lab) -> None:
    # behaviour 64
    mm = lab.machine()
    ev = mm.vm
    boot = ev["pgfree"]
    a = mm.alloc_pages(KERNEL, 0, 0, 0)
    b = mm.alloc_pages(int(GFP_HIGHUSER_MOVABLE), 3, 0, 1)
    c = mm.alloc_pages(KERNEL, 6, 0, 0)
    mm.free_pages(a, 0, 0)
    mm.free_pages(b, 3, 1)
    mm.free_pages(c, 6, 0)  # __free_pages_ok
    assert ev["pgfree"] == boot + 1 + 8 + 64
    mm.drain_all_pages()
    assert ev["pgfree"] == boot + 73
    assert sum(p.count for z in mm.zones for p in z.per_cpu_pageset) == 0
    check_invariants(mm, {})


def test_thp_pcp_list_is_shared_by_migratetypes(lab: Lab) -> None:
    # behaviour 14/16: every order-9 page uses the one extra list
    mm = lab.machine()
    pcp = mm.zones[1].per_cpu_pageset[0]
    pcp.high = 1 << 20
    a = mm.alloc_pages(KERNEL, 9, 0, 0)
    b = mm.alloc_pages(int(GFP_TRANSHUGE), 9, 0, 0)
    mm.free_pages(a, 9, 0)
    mm.free_pages(b, 9, 0)
    assert [e >> 3 for e in pcp.entries(NR_LOWORDER_PCP_LISTS)][:2] == [b, a]


def test_nr_pcp_free_clamps_like_the_kernel(lab: Lab) -> None:
    # behaviour 18: clamp(batch, batch, high - batch) = min(max(.), high - batch), so a
    # pcp whose high is below 2 * batch frees high - batch, not batch
    pcp = lab.machine().zones[1].per_cpu_pageset[0]
    pcp.high, pcp.batch, pcp.free_factor = 5, 4, 0
    assert pcp.nr_pcp_free(5, False) == 1
    pcp.high, pcp.batch, pcp.free_factor = 3, 4, 0
    assert pcp.nr_pcp_free(3, False) == 1  # high < batch: boot pageset rule
