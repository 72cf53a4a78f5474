"""Watermark, lowmem_reserve and pcp sizing arithmetic against a real Linux 6.1 kernel.

The ``wmark-recompute`` snapshots (copied from /work/shared/oracle into tests/data/oracle)
were each taken right after a sysctl write made the kernel recompute these values from the
managed pages shown in the same snapshot, so every number must match exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.formats.procfs import ProcSnapshot, read_snapshot
from simcore.mm.watermarks import (
    calculate_min_free_kbytes,
    default_min_free_kbytes,
    nr_free_buffer_pages,
    pageset_high_and_batch,
    setup_per_zone_lowmem_reserve,
    setup_per_zone_wmarks,
)

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
WMARK_SNAPSHOTS = sorted((ORACLE / "wmark-recompute").iterdir())


def test_all_seventeen_snapshots_are_present() -> None:
    assert len(WMARK_SNAPSHOTS) == 17


def _computed(snap: ProcSnapshot) -> tuple[list[tuple[int, int, int, int]], list[list[int]]]:
    managed = [zone.managed for zone in snap.zones]
    wmarks = setup_per_zone_wmarks(
        managed,
        None,
        snap.sysctl_int("min_free_kbytes"),
        snap.sysctl_int("watermark_scale_factor"),
    )
    reserve = setup_per_zone_lowmem_reserve(managed, snap.sysctl_ints("lowmem_reserve_ratio"))
    return wmarks, reserve


@pytest.mark.parametrize("snapshot", WMARK_SNAPSHOTS, ids=lambda p: p.name)
def test_watermarks_match_zoneinfo(snapshot: Path) -> None:  # behaviour 23
    snap = read_snapshot(snapshot)
    wmarks, _ = _computed(snap)
    observed = [
        (z.wmark_min - z.boost, z.wmark_low - z.boost, z.wmark_high - z.boost) for z in snap.zones
    ]
    assert [w[:3] for w in wmarks] == observed
    assert sum(w[0] for w in wmarks) > 0


@pytest.mark.parametrize("snapshot", WMARK_SNAPSHOTS, ids=lambda p: p.name)
def test_lowmem_reserve_matches_protection(snapshot: Path) -> None:  # behaviour 24
    snap = read_snapshot(snapshot)
    _, reserve = _computed(snap)
    assert [tuple(row) for row in reserve] == [z.protection for z in snap.zones]


@pytest.mark.parametrize("snapshot", WMARK_SNAPSHOTS, ids=lambda p: p.name)
def test_pcp_high_and_batch_match_pagesets(snapshot: Path) -> None:  # behaviour 22
    snap = read_snapshot(snapshot)
    wmarks, _ = _computed(snap)
    fraction = snap.sysctl_int("percpu_pagelist_high_fraction")
    nr_online = sum(len(cpus) for cpus in snap.node_cpus.values())
    checked = 0
    for zone, wmark in zip(snap.zones, wmarks, strict=True):
        cpus_of_node = len(snap.node_cpus[zone.nid])
        low_wmark_pages = wmark[1] + zone.boost
        expected = pageset_high_and_batch(
            zone.managed, low_wmark_pages, cpus_of_node, fraction, nr_online
        )
        for pcp in zone.pcp:
            assert (pcp.high, pcp.batch) == expected
            checked += 1
    assert checked == 6  # 3 populated zones x 2 CPUs


# ---- the spec's worked examples (single node, 16 GiB) --------------------------------

BOX_16G = [3840, 746000, 3400000, 0]


def test_spec_16g_min_free_kbytes_with_and_without_thp() -> None:
    assert default_min_free_kbytes(BOX_16G, thp_enabled=False) == 16296
    assert default_min_free_kbytes(BOX_16G, thp_enabled=True) == 67584


def test_spec_16g_watermarks() -> None:  # behaviour 23
    with_thp = setup_per_zone_wmarks(BOX_16G, None, 67584, 10)
    plain = setup_per_zone_wmarks(BOX_16G, None, 16296, 10)
    assert [w[:3] for w in with_thp[:3]] == [
        (15, 18, 21),
        (3037, 3796, 4555),
        (13843, 17303, 20763),
    ]
    assert [w[:3] for w in plain[:3]] == [(3, 6, 9), (732, 1478, 2224), (3337, 6737, 10137)]


def test_spec_16g_lowmem_reserve() -> None:  # behaviour 24
    reserve = setup_per_zone_lowmem_reserve(BOX_16G, [256, 256, 32, 0])
    assert reserve[:3] == [[0, 2914, 16195, 16195], [0, 0, 13281, 13281], [0, 0, 0, 0]]


def test_spec_16g_pcp_batch() -> None:  # behaviour 22
    assert [pageset_high_and_batch(m, 0, 1, 0, 1)[1] for m in BOX_16G[:3]] == [1, 63, 63]


@pytest.mark.parametrize(("gib", "kbytes"), [(1, 4096), (4, 8192), (16, 16384)])
def test_spec_min_free_kbytes_examples(gib: int, kbytes: int) -> None:
    assert calculate_min_free_kbytes(gib * 262144) == kbytes


# ---- boot: the THP raise to 45036 KiB -------------------------------------------------

BOOT = ORACLE / "boot-idle" / "start"
# KiB freed into DMA32 after the initcalls ran, from boot-idle/dmesg.txt: "Freeing initrd
# memory", "unused decrypted memory", "unused kernel image (initmem / text/rodata gap /
# rodata/data gap) memory". ("SMP alternatives" is freed in start_kernel(), before them.)
FREED_AFTER_INITCALLS_KIB = 2676 + 2036 + 2824 + 2040 + 1108


def _boot_managed() -> list[int]:
    """Managed pages when init_per_zone_wmark_min() and khugepaged ran at boot."""
    managed = [zone.managed for zone in read_snapshot(BOOT).zones]
    managed[1] -= FREED_AFTER_INITCALLS_KIB // 4
    return managed


def test_boot_min_free_kbytes_is_45036_not_plain_sqrt() -> None:
    snap = read_snapshot(BOOT)
    assert snap.sysctl_int("min_free_kbytes") == 45036
    managed = [zone.managed for zone in snap.zones]
    # The README's "about 3830": the sqrt formula on the managed pages shown after boot.
    assert calculate_min_free_kbytes(nr_free_buffer_pages(managed, [0] * len(managed))) == 3830


def test_boot_min_free_kbytes_reproduced_from_boot_time_managed() -> None:
    managed = _boot_managed()
    assert managed[:3] == [3840, 96568, 126215]
    assert calculate_min_free_kbytes(sum(managed[:3])) == 3808  # before the THP raise
    # khugepaged's 3-zone 67584 KiB is capped at 5% of nr_free_buffer_pages(), taken
    # with the watermarks of min_free_kbytes 3808: 4 KiB * (225198 // 20) = 45036.
    highs = [w[2] for w in setup_per_zone_wmarks(managed, None, 3808, 10)]
    assert nr_free_buffer_pages(managed, highs) == 225198
    assert default_min_free_kbytes(managed, thp_enabled=True) == 45036


def test_boot_zoneinfo_reproduced_from_boot_time_managed() -> None:
    snap = read_snapshot(BOOT)
    managed = _boot_managed()
    wmarks = setup_per_zone_wmarks(managed, None, 45036, 10)
    reserve = setup_per_zone_lowmem_reserve(managed, snap.sysctl_ints("lowmem_reserve_ratio"))
    for zone, size, wmark, row in zip(snap.zones, managed, wmarks, reserve, strict=True):
        assert (zone.wmark_min, zone.wmark_low, zone.wmark_high) == wmark[:3]
        assert zone.protection == tuple(row)
        for pcp in zone.pcp:
            assert (pcp.high, pcp.batch) == pageset_high_and_batch(size, wmark[1], 2, 0, 2)
