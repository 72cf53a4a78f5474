"""Unit tests for simcore.mm.watermarks (spec §3.5, §8.1-§8.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.config.parse import parse_config
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.watermarks import (
    calculate_min_free_kbytes,
    default_min_free_kbytes,
    int_sqrt,
    nr_free_buffer_pages,
    pageset_high_and_batch,
    recommended_min_free_kbytes,
    setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks,
    zone_batchsize,
    zone_highsize,
)

# Spec §8.2 illustrative 16 GiB single node: DMA, DMA32, Normal, Movable.
BOX_16G = [3840, 746000, 3400000, 0]
GIB_PAGES = 262144


@pytest.mark.parametrize(("x", "root"), [(0, 0), (1, 1), (3, 1), (4, 2), (99, 9), (10**12, 10**6)])
def test_int_sqrt_is_floor(x: int, root: int) -> None:
    assert int_sqrt(x) == root


@pytest.mark.parametrize(
    ("lowmem_mib", "expected_kbytes"),
    [
        (16, 512),
        (64, 1024),
        (1024, 4096),  # spec §8.1: 1 GiB -> 4096
        (2048, 5792),
        (4096, 8192),  # spec §8.1: 4 GiB -> 8192
        (8192, 11585),  # the source comment says 11584; int_sqrt(134217728) is 11585
        (16384, 16384),  # spec §8.1: 16 GiB -> 16384
    ],
)
def test_calculate_min_free_kbytes_source_comment_table(
    lowmem_mib: int, expected_kbytes: int
) -> None:
    assert calculate_min_free_kbytes(lowmem_mib * 256) == expected_kbytes


def test_calculate_min_free_kbytes_clamps() -> None:
    assert calculate_min_free_kbytes(0) == 128
    assert calculate_min_free_kbytes(10) == 128
    assert calculate_min_free_kbytes(1 << 40) == 262144


def test_calculate_min_free_kbytes_keeps_larger_user_value() -> None:
    assert calculate_min_free_kbytes(GIB_PAGES, user_min_free_kbytes=9000) == 9000
    assert calculate_min_free_kbytes(GIB_PAGES, user_min_free_kbytes=1000) == 4096


def test_nr_free_buffer_pages_counts_only_zones_up_to_normal() -> None:
    managed = [100, 1000, 5000, 7000]  # Movable must not count
    high = [200, 10, 50, 70]  # DMA is below its high watermark: contributes 0
    assert nr_free_buffer_pages(managed, high) == 990 + 4950


def test_nr_free_buffer_pages_sums_all_nodes_by_zone_idx() -> None:
    managed = [1000, 2000, 3000, 4000]
    assert nr_free_buffer_pages(managed, [0] * 4, zone_idx=[1, 2, 2, 3]) == 6000
    with pytest.raises(ValueError):
        nr_free_buffer_pages(managed, [0] * 4, zone_idx=[1, 2])


def test_recommended_min_free_kbytes_three_zones() -> None:
    # spec §8.1: (2 + 3*3) pageblocks x 3 zones x 512 pages = 16896 pages = 67584 KiB
    assert recommended_min_free_kbytes(3, 10**7) == 67584
    assert recommended_min_free_kbytes(2, 10**7) == 45056


def test_recommended_min_free_kbytes_caps_at_five_percent() -> None:
    assert recommended_min_free_kbytes(3, 225199) == 4 * (225199 // 20)


def test_default_min_free_kbytes_16g_with_and_without_thp() -> None:
    assert default_min_free_kbytes(BOX_16G, thp_enabled=False) == 16296
    assert default_min_free_kbytes(BOX_16G, thp_enabled=True) == 67584


def test_default_min_free_kbytes_never_lowers_the_sqrt_value() -> None:
    # 512 GiB in Normal: the sqrt value (~94k KiB) exceeds the THP recommendation.
    managed = [3840, 746000, 512 * GIB_PAGES, 0]
    sqrt_value = default_min_free_kbytes(managed, thp_enabled=False)
    assert sqrt_value > 67584
    assert default_min_free_kbytes(managed, thp_enabled=True) == sqrt_value


def test_setup_per_zone_wmarks_16g_thp_example() -> None:  # behaviour 23
    wmarks = setup_per_zone_wmarks(BOX_16G, None, 67584, 10)
    assert [w[:3] for w in wmarks] == [
        (15, 18, 21),
        (3037, 3796, 4555),
        (13843, 17303, 20763),
        (0, 0, 0),
    ]


def test_setup_per_zone_wmarks_16g_without_thp_raise() -> None:  # behaviour 23
    wmarks = setup_per_zone_wmarks(BOX_16G, None, 16296, 10)
    assert [w[:3] for w in wmarks[:3]] == [(3, 6, 9), (732, 1478, 2224), (3337, 6737, 10137)]


def test_setup_per_zone_wmarks_promo_adds_one_more_delta() -> None:
    for wmin, low, high, promo in setup_per_zone_wmarks(BOX_16G, None, 67584, 150):
        assert promo - high == high - low == low - wmin


def test_setup_per_zone_wmarks_scale_factor_dominates_when_large() -> None:
    ((wmin, low, high, _),) = setup_per_zone_wmarks([100000], None, 400, 1000)
    assert (wmin, low, high) == (100, 10100, 20100)


def test_setup_per_zone_wmarks_highmem_min_is_clamped() -> None:
    wmarks = setup_per_zone_wmarks([100000, 10000, 500000], [False, True, True], 4096, 10)
    assert wmarks[0][0] == 1024  # all of pages_min goes to the only lowmem zone
    assert wmarks[1][0] == 32  # 10000/1024 = 9, raised to SWAP_CLUSTER_MAX
    assert wmarks[2][0] == 128  # 488, capped at 128
    # the delta still uses the unclamped share pages_min*managed/lowmem_pages
    assert wmarks[2][1] - wmarks[2][0] == (1024 * 500000 // 100000) >> 2


def test_setup_per_zone_wmarks_no_lowmem_does_not_divide_by_zero() -> None:
    assert setup_per_zone_wmarks([0, 0], None, 4096, 10) == [(0, 0, 0, 0), (0, 0, 0, 0)]


def test_lowmem_reserve_spec_example() -> None:  # behaviour 24
    reserve = setup_per_zone_lowmem_reserve(BOX_16G, [256, 256, 32, 0])
    assert reserve == [
        [0, 2914, 16195, 16195],
        [0, 0, 13281, 13281],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]


def test_lowmem_reserve_zero_ratio_or_empty_zone_clears_row() -> None:
    reserve = setup_per_zone_lowmem_reserve([0, 5000, 6400, 3200], [256, 0, 32, 0])
    assert reserve[0] == [0, 0, 0, 0]  # DMA has no managed pages
    assert reserve[1] == [0, 0, 0, 0]  # ratio 0
    assert reserve[2] == [0, 0, 0, 100]  # Movable counts for Normal with ratio 32


def test_lowmem_reserve_ratio_below_one_is_zero() -> None:
    assert setup_per_zone_lowmem_reserve([100, 200], [-5])[0] == [0, 0]


def test_lowmem_reserve_needs_enough_ratios() -> None:
    with pytest.raises(ValueError):
        setup_per_zone_lowmem_reserve([1, 2, 3], [256])


@pytest.mark.parametrize(
    ("managed", "batch"),
    [
        (3840, 1),  # 16 MiB DMA zone: behaviour 22
        (746000, 63),  # behaviour 22
        (3400000, 63),  # behaviour 22
        (GIB_PAGES, 63),
        (110557, 31),  # oracle DMA32
        (0, 1),
        (4096, 1),
        (8192, 1),
        (16384, 3),
    ],
)
def test_zone_batchsize(managed: int, batch: int) -> None:
    assert zone_batchsize(managed) == batch


@given(st.integers(min_value=0, max_value=1 << 40))
def test_zone_batchsize_is_power_of_two_minus_one_and_bounded(managed: int) -> None:
    batch = zone_batchsize(managed)
    assert 1 <= batch <= 63
    assert batch == 1 or (batch + 1) & batch == 0


def test_zone_highsize_splits_low_wmark_over_node_cpus() -> None:
    assert zone_highsize(110557, 2467, 31, 2, 0, 2) == 1233
    assert zone_highsize(110557, 2467, 31, 4, 0, 4) == 616


def test_zone_highsize_is_at_least_four_batches() -> None:
    assert zone_highsize(110557, 125, 31, 2, 0, 2) == 124


def test_zone_highsize_uses_fraction_of_managed_when_set() -> None:
    assert zone_highsize(114898, 2467, 31, 2, 8, 2) == 114898 // 8 // 2


def test_zone_highsize_cpuless_node_uses_all_online_cpus() -> None:
    assert zone_highsize(1000000, 40000, 63, 0, 0, 8) == 5000
    assert zone_highsize(1000000, 40000, 63, 0, 0, 8, cpu_online=1) == 40000


def test_pageset_high_and_batch() -> None:
    assert pageset_high_and_batch(3840, 3, 2, 0, 2) == (4, 1)
    assert pageset_high_and_batch(3400000, 17303, 1, 0, 1) == (17303, 63)


def test_a_fully_reserved_zone_still_counts_for_khugepaged() -> None:
    """set_recommended_min_free_kbytes() counts zones with for_each_populated_zone().

    1 GiB, 16 MiB reserved: ZONE_DMA has 4095 present pages and none managed. Per zone
    khugepaged wants 2 pageblocks + MIGRATE_PCPTYPES^2 pageblocks = 512 * (2 + 9) =
    5632 pages; 5% of the ~258000 lowmem pages (12900) does not cap it. Two populated
    zones: 11264 pages = 45056 KiB. Counting managed zones only: 5632 pages = 22528 KiB.
    """
    doc = {"name": "t", "seed": 1, "duration": "1ms",
           "machine": {"nodes": [{"memory": "1GiB", "reserved": "16MiB", "cpus": 1}]}}
    cfg = parse_config(doc, "x.yaml")
    allocator = PageAllocator(cfg.machine, cfg.sysctl)
    assert [z.managed_pages for z in allocator.zones][0] == 0
    assert allocator.min_free_kbytes == 45056
    present = [z.present_pages for z in allocator.zones]
    managed = [z.managed_pages for z in allocator.zones]
    types = [z.zone_idx for z in allocator.zones]
    assert default_min_free_kbytes(managed, types, thp_enabled=True) == 22528
    assert default_min_free_kbytes(managed, types, thp_enabled=True, present=present) == 45056
