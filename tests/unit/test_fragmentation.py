"""Unit tests for simcore.mm.fragmentation (vmstat.c indices) and the snapshot printers."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procfs import parse_buddyinfo, parse_pagetypeinfo
from simcore.formats.snapshots import (
    buddyinfo,
    free_block_levels,
    nr_free_rows,
    pagetypeinfo,
    printed_migratetypes,
)
from simcore.mm.constants import MIGRATE_TYPES, MigrateType
from simcore.mm.fragmentation import (
    ContigPageInfo,
    contig_page_info,
    extfrag_for_order,
    format_extfrag_index,
    format_unusable_index,
    fragmentation_index,
    fragmentation_score_weighted,
    unusable_free_index,
)
from simcore.mm.gfp import parse_gfp
from simcore.mm.page_alloc import PageAllocator

# Orders 0..3: 4 + 2*2 + 1*4 = 12 free pages in 7 blocks, none of order 3.
SMALL = (4, 2, 1, 0)


# -- contig_page_info ---------------------------------------------------------------------
def test_contig_page_info_counts_pages_blocks_and_suitable_blocks() -> None:
    # 3 + 1*2 + 1*8 = 13 pages in 5 blocks; order 2: the order-3 block holds two.
    assert contig_page_info((3, 1, 0, 1), 2) == ContigPageInfo(13, 5, 2)
    assert contig_page_info((3, 1, 0, 1), 0) == ContigPageInfo(13, 5, 13)


@pytest.mark.parametrize("order", [-1, 4])
def test_contig_page_info_rejects_orders_outside_the_free_area(order: int) -> None:
    with pytest.raises(ValueError, match="order"):
        contig_page_info(SMALL, order)


# -- behaviour 61: extfrag_index ----------------------------------------------------------
def test_fragmentation_index_hand_computed() -> None:
    # 1000 - (1000 + 12*1000/8) / 7 = 1000 - 2500 // 7 = 1000 - 357
    assert fragmentation_index(SMALL, 3) == 643


@pytest.mark.parametrize("order", [0, 1, 2])
def test_fragmentation_index_is_minus_1000_when_a_suitable_block_exists(order: int) -> None:
    assert fragmentation_index(SMALL, order) == -1000


def test_fragmentation_index_is_0_with_no_free_blocks() -> None:
    assert [fragmentation_index((0,) * 11, k) for k in range(11)] == [0] * 11


def test_fragmentation_index_near_1000_when_free_memory_is_all_small_blocks() -> None:
    # 1000 order-0 blocks, order 10: 1000 - (1000 + 1000*1000/1024) / 1000 = 1000 - 1
    nr_free = (1000,) + (0,) * 10
    assert fragmentation_index(nr_free, 10) == 999


def test_fragmentation_index_of_one_small_block_wraps_negative_as_the_kernel_does() -> None:
    # free_blocks_total == 1: 1000 - (1000 + 500) is computed unsigned and read as int.
    assert fragmentation_index((1, 0, 0), 1) == -500
    assert fragmentation_index((1, 0, 0), 2) == -250
    assert format_extfrag_index([(0, "DMA", (1, 0, 0))]) == (
        "Node 0, zone      DMA -1.000  0.-500  0.-250 \n"
    )


# -- behaviour 62: unusable_index ---------------------------------------------------------
def test_unusable_free_index_hand_computed() -> None:
    # order 1: suitable = 2 + 1*2 = 4 blocks of 2 pages; (12 - 8) * 1000 / 12
    assert unusable_free_index(SMALL, 1) == 333
    # order 2: one order-2 block; (12 - 4) * 1000 / 12
    assert unusable_free_index(SMALL, 2) == 666
    assert unusable_free_index(SMALL, 3) == 1000


def test_unusable_free_index_is_0_at_order_0_with_free_pages() -> None:
    for nr_free in itertools.product(range(3), repeat=4):
        if any(nr_free):
            assert unusable_free_index(nr_free, 0) == 0


def test_unusable_free_index_is_1000_with_no_free_pages() -> None:
    assert [unusable_free_index((0,) * 11, k) for k in range(11)] == [1000] * 11


def test_extfrag_for_order_is_the_percent_version_of_unusable_index() -> None:
    assert extfrag_for_order(SMALL, 2) == 66
    assert extfrag_for_order((0,) * 11, 9) == 0
    for nr_free in itertools.product(range(3), repeat=4):
        if any(nr_free):
            for order in range(4):
                # floor(floor(x*1000/F) / 10) == floor(x*100/F)
                assert extfrag_for_order(nr_free, order) == (
                    unusable_free_index(nr_free, order) // 10
                )


def test_fragmentation_score_of_a_node_hand_computed() -> None:
    """fragmentation_score_node(): each zone's extfrag_for_order(9) weighted by its
    present pages over the node's present pages + 1 (integer division per zone)."""
    # DMA32: 1 free order-9 block and 512 order-0 pages: half its free memory is in
    # blocks smaller than order 9, so its score is 50; Normal: no free block of order 9
    # or more (1000 order-3 blocks), so 100.
    dma32 = [512, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
    normal = [0, 0, 0, 1000, 0, 0, 0, 0, 0, 0, 0]
    assert extfrag_for_order(dma32, 9) == 50 and extfrag_for_order(normal, 9) == 100
    present = {"DMA32": 262_144, "Normal": 786_432}
    node = sum(present.values())  # 1,048,576
    assert fragmentation_score_weighted(present["DMA32"], node, 50) == 12  # 13107200 // 1048577
    assert fragmentation_score_weighted(present["Normal"], node, 100) == 74  # 78643200 // 1048577
    # the "+ 1" matters: one zone holding the whole node scores one less than its own score
    assert fragmentation_score_weighted(node, node, 100) == 99


def test_the_model_and_the_report_share_the_score() -> None:
    """compaction's fragmentation_score_zone_weighted() is fragmentation_score_weighted()."""
    from pathlib import Path

    import simcore.mm

    source = (Path(simcore.mm.__file__).parent / "compaction.py").read_text()
    assert "fragmentation_score_weighted(" in source
    assert "node_present + 1" not in source  # no second copy of the rule


# -- debugfs text -------------------------------------------------------------------------
def test_format_extfrag_index_layout() -> None:
    rows = [(0, "DMA", (5, 7, 30, 16, 1, 16, 3, 1, 1, 0, 0))]
    assert format_extfrag_index(rows) == (
        "Node 0, zone      DMA -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 -1.000 "
        "-1.000  0.955  0.971 \n"
    )


def test_format_unusable_index_layout() -> None:
    rows = [(1, "Normal", SMALL), (1, "Movable", (0, 0, 0, 0))]
    assert format_unusable_index(rows) == (
        "Node 1, zone   Normal 0.000 0.333 0.666 1.000 \n"
        "Node 1, zone  Movable 1.000 1.000 1.000 1.000 \n"
    )


# -- /proc printers on a fake zone --------------------------------------------------------
@dataclass
class FakeFreeArea:
    nr_free: list[int]
    counts: list[list[int]]


@dataclass
class FakeZone:
    nid: int
    name: str
    zone_start_pfn: int
    end_pfn: int
    labels: Sequence[int]
    pageblock_order: int = 9
    max_order: int = 2
    free_area: FakeFreeArea = field(
        default_factory=lambda: FakeFreeArea([0] * 3, [[0] * MIGRATE_TYPES for _ in range(3)])
    )

    def get_pageblock_migratetype(self, pfn: int) -> int:
        return self.labels[pfn >> self.pageblock_order]


def test_pagetypeinfo_caps_free_counts_at_100000_with_a_prefix() -> None:
    zone = FakeZone(0, "Normal", 0, 512, [MigrateType.MOVABLE])
    zone.free_area.counts[0][MigrateType.MOVABLE] = 100000
    zone.free_area.counts[1][MigrateType.MOVABLE] = 99999
    line = pagetypeinfo([zone]).splitlines()[5]
    assert line == "Node    0, zone   Normal, type      Movable >100000  99999      0 "


def test_pagetypeinfo_blockcount_walks_from_an_unaligned_zone_start() -> None:
    # pfns 1..2048 span 5 pageblocks but the walk 1, 513, 1025, 1537 visits 4 of them.
    labels = [
        MigrateType.UNMOVABLE,
        MigrateType.MOVABLE,
        MigrateType.MOVABLE,
        MigrateType.RECLAIMABLE,
        MigrateType.HIGHATOMIC,
    ]
    zone = FakeZone(0, "DMA", 1, 2049, labels)
    assert pagetypeinfo([zone]).splitlines()[-1] == (
        "Node 0, zone      DMA            1            2            1            0            0 "
    )


def test_pagetypeinfo_cma_and_isolate_switches() -> None:
    assert printed_migratetypes() == [0, 1, 2, 3, 5]
    assert printed_migratetypes(show_cma=True, show_isolate=False) == [0, 1, 2, 3, 4]
    zone = FakeZone(0, "DMA", 0, 512, [MigrateType.CMA])
    text = pagetypeinfo([zone], show_cma=True, show_isolate=False)
    assert "type          CMA" in text and "Isolate" not in text
    assert text.splitlines()[-2].split()[-1] == "CMA"
    assert text.splitlines()[-1].split()[-1] == "1"


def test_pagetypeinfo_repeats_the_header_per_node() -> None:
    zones = [FakeZone(0, "Normal", 0, 512, [1]), FakeZone(1, "Normal", 512, 1024, [1, 1])]
    text = pagetypeinfo(zones)
    assert text.count("Page block order: 9\n") == 2
    assert text.count("Number of blocks type") == 2


# -- printers on the real allocator -------------------------------------------------------
@pytest.fixture
def mm() -> PageAllocator:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=1 << 16, cpus=2),))
    allocator = PageAllocator(cfg, SysctlConfig())
    gfp = int(parse_gfp("GFP_KERNEL"))
    for order in (0, 1, 3, 9, 10, 2, 0, 5):
        assert allocator.alloc_pages(gfp, order, 0, 0) >= 0
    return allocator


def test_buddyinfo_of_live_zones_round_trips_through_the_parser(mm: PageAllocator) -> None:
    text = buddyinfo(mm.zones)
    assert text.startswith("Node 0, zone      DMA ")
    parsed = parse_buddyinfo(text)
    assert parsed == {(z.nid, z.name): tuple(z.free_area.nr_free) for z in mm.zones}
    assert [(n, z, tuple(c)) for (n, z), c in parsed.items()] == nr_free_rows(mm.zones)


def test_pagetypeinfo_of_live_zones_agrees_with_the_free_lists(mm: PageAllocator) -> None:
    parsed = parse_pagetypeinfo(pagetypeinfo(mm.zones))
    for zone in mm.zones:
        per_order = [0] * (zone.max_order + 1)
        for mt_name in ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate"):
            counts = parsed.free_counts[(zone.nid, zone.name, mt_name)]
            per_order = [a + b for a, b in zip(per_order, counts, strict=True)]
        assert per_order == list(zone.free_area.nr_free)
        nr_blocks = -(-(zone.end_pfn - zone.zone_start_pfn) >> zone.pageblock_order)
        assert sum(parsed.block_counts[(zone.nid, zone.name)]) == nr_blocks
    assert parsed.block_counts[(0, "DMA32")][MigrateType.UNMOVABLE] >= 1  # the steal


def test_free_block_levels_long_format(mm: PageAllocator) -> None:
    rows = free_block_levels(mm.zones)
    assert len(rows) == len(mm.zones) * 5 * (mm.max_order + 1)
    for zone in mm.zones:
        for order in range(zone.max_order + 1):
            total = sum(r[4] for r in rows if r[:2] == (zone.nid, zone.name) and r[3] == order)
            assert total == zone.free_area.nr_free[order]
    assert rows[0] == (0, "DMA", "Unmovable", 0, mm.zones[0].free_area.count_of(0, 0))
