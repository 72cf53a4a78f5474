"""The model's zoneinfo has a real 6.1 zoneinfo's lines, and its vmstat thresholds.

``allocsim proc show`` of every oracle snapshot prints the same lines as the real file,
in the same order (numbers aside): the per-node stats, the zone counters, the pagesets
with ``vm stats threshold``, ``node_unreclaimable`` and ``start_pfn``. Where the real
kernel's kswapd was asleep, the thresholds are calculate_normal_threshold()'s and
equal the real ones; calculate_pressure_threshold() gives the real values of a snapshot
taken while kswapd was awake: every real threshold is one or the other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from allocsim.procshow import proc_show
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procfs import read_snapshot
from simcore.formats.procstate import (
    calculate_normal_threshold,
    calculate_pressure_threshold,
    live_zones,
    stat_threshold,
)
from simcore.mm.page_alloc import PageAllocator

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
SNAPSHOTS = sorted(p.parent for p in ORACLE.glob("**/zoneinfo"))


def _shape(text: str) -> list[str]:
    return [re.sub(r"-?\d+", "N", line) for line in text.splitlines()]


def _thresholds(text: str) -> list[str]:
    return re.findall(r"^  vm stats threshold: (\d+)$", text, flags=re.M)


@pytest.mark.parametrize("snap", SNAPSHOTS, ids=lambda p: str(p.relative_to(ORACLE)))
def test_proc_show_prints_the_real_lines(snap: Path) -> None:
    real = (snap / "zoneinfo").read_text()
    printed = proc_show(snap, recompute=False)
    assert _shape(printed) == _shape(real)
    nr_cpus = len({pcp.cpu for zone in read_snapshot(snap).zones for pcp in zone.pcp})
    for zone in read_snapshot(snap).zones:
        if zone.pcp:  # kswapd slept (normal) or ran (pressure) when the snapshot was taken
            normal = calculate_normal_threshold(zone.managed, nr_cpus)
            pressure = calculate_pressure_threshold(zone.wmark_min, zone.wmark_low, nr_cpus)
            assert {pcp.stat_threshold for pcp in zone.pcp} <= {normal, pressure}
    # The machine proc show builds has just booted: kswapd sleeps.
    assert _thresholds(printed) == [str(calculate_normal_threshold(zone.managed, nr_cpus))
                                    for zone in read_snapshot(snap).zones for _ in zone.pcp]


def test_some_snapshot_has_the_pressure_thresholds() -> None:
    """hugetlb-fresh/end was taken while kswapd ran; the start snapshots while it slept."""
    real = _thresholds((ORACLE / "hugetlb-fresh" / "end" / "zoneinfo").read_text())
    assert real == ["23", "23", "125", "125", "125", "125"]
    start = _thresholds((ORACLE / "hugetlb-fresh" / "start" / "zoneinfo").read_text())
    assert start == _thresholds(proc_show(ORACLE / "hugetlb-fresh" / "start", False))


def test_pressure_thresholds_of_a_snapshot_with_kswapd_awake() -> None:
    """hugetlb-fresh/end: DMA (min 190, low 237) and DMA32 (5459, 6823) on 2 CPUs."""
    assert calculate_pressure_threshold(190, 237, 2) == 23
    assert calculate_pressure_threshold(5459, 6823, 2) == 125
    real = _thresholds((ORACLE / "hugetlb-fresh" / "end" / "zoneinfo").read_text())
    assert real == ["23", "23", "125", "125", "125", "125"]


@pytest.mark.parametrize(("managed", "cpus", "threshold"), [
    (3840, 2, 4), (110557, 2, 12), (126215, 2, 12), (1 << 20, 1, 14), (1 << 22, 1024, 125),
])
def test_normal_threshold(managed: int, cpus: int, threshold: int) -> None:
    assert calculate_normal_threshold(managed, cpus) == threshold


def test_the_threshold_follows_kswapd() -> None:
    """Pressure while kswapd runs in a zone with a drift mark; normal once it sleeps."""
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=1 << 16, cpus=8),))
    mm = PageAllocator(cfg, SysctlConfig(min_free_kbytes=128))
    zone = mm.zones[-1]
    low_min = zone.wmark_pages(1) - zone.wmark_pages(0)
    normal = calculate_normal_threshold(zone.managed_pages, 8)
    assert 8 * normal > low_min  # percpu_drift_mark is set
    assert stat_threshold(mm, zone) == normal
    state = mm.reclaim.kswapd[0]
    state.thread, state.waiting = True, False
    assert stat_threshold(mm, zone) == max(1, low_min // 8) < normal
    state.failures = 16
    assert all(z.node_unreclaimable == 1 for z in live_zones(mm))
