"""``vmstat`` text is a real 6.1 ``/proc/vmstat`` line for line (formats.vmstat_text).

The simulator-only counters go to their own text (``vmstat_simulator.txt``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procfs import parse_vmstat
from simcore.formats.procstate import simulator_vmstat_text, vmstat_text, vmstat_values
from simcore.formats.vmstat_text import (
    DEPRECATED_COUNTERS,
    VMSTAT_TEXT,
    format_proc_vmstat,
    format_simulator_vmstat,
    is_kernel_counter,
)
from simcore.mm.gfp import parse_gfp
from simcore.mm.lru import KIND_FILE
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.vmstat import KERNEL_EVENTS, SIM_ONLY, VmStat

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
REAL_VMSTATS = sorted(ORACLE.glob("*/*/vmstat"))
_ids = [f"{p.parent.parent.name}/{p.parent.name}" for p in REAL_VMSTATS]


def _names(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines()]


def _is_subsequence(names: list[str], of: list[str]) -> bool:
    remaining = iter(of)
    return all(name in remaining for name in names)


def test_real_vmstat_files_are_present() -> None:
    assert {p.parent.parent.name for p in REAL_VMSTATS} >= {"boot-idle", "boot-idle-numa2"}


@pytest.mark.parametrize("real", REAL_VMSTATS, ids=_ids)
def test_printed_names_are_the_real_vmstat_line_for_line(real: Path) -> None:
    """Every line of the oracle kernel's /proc/vmstat, in its order, nothing else."""
    real_names = list(parse_vmstat(real.read_text(), str(real)))
    assert _names(format_proc_vmstat({})) == real_names
    assert real_names == [*VMSTAT_TEXT, *DEPRECATED_COUNTERS]


def test_kept_counters_are_kernel_lines_in_kernel_order() -> None:
    assert _is_subsequence(list(KERNEL_EVENTS), list(VMSTAT_TEXT))
    assert not any(is_kernel_counter(name) for name in SIM_ONLY)


def test_subsequence_check_catches_a_wrong_order() -> None:
    real = ["nr_free_pages", "numa_hit", "pgalloc_dma", "pgfree"]
    assert _is_subsequence(["nr_free_pages", "pgalloc_dma", "pgfree"], real)
    assert not _is_subsequence(["pgalloc_dma", "numa_hit"], real)


def test_values_and_zeros() -> None:
    text = format_proc_vmstat({"pgfree": 5, "nr_free_pages": 7, "extfrag_steal": 3})
    assert text.startswith("nr_free_pages 7\nnr_zone_inactive_anon 0\n")
    assert "\npgfree 5\n" in text and "\nnuma_interleave 0\n" in text
    assert "extfrag_steal" not in text
    assert text.endswith("direct_map_level3_splits 0\nnr_unstable 0\n")


def test_simulator_only_counters_have_their_own_text() -> None:
    counters = {**VmStat().as_dict(), "warn_example": 3}
    text = format_simulator_vmstat(counters, SIM_ONLY)
    assert _names(text) == [*SIM_ONLY, "warn_example"]
    assert text.endswith("warn_example 3\n")
    assert parse_vmstat(text)["warn_example"] == 3


def test_counts_of_a_two_node_machine() -> None:
    """numa_* and pgalloc_* follow the allocations; numa_interleave stays 0 (no mempolicy)."""
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=1 << 15, cpus=1),
                               NodeConfig(memory_pages=1 << 15, cpus=1)))
    mm = PageAllocator(cfg, SysctlConfig())
    gfp = int(parse_gfp("GFP_KERNEL"))
    assert mm.alloc_pages(gfp, 2, 1, 0) >= 0  # node 1's memory from node 0's CPU
    counters = parse_vmstat(vmstat_text(mm))
    assert counters["nr_free_pages"] == mm.nr_free_pages
    assert counters["numa_hit"] == 1 and counters["numa_other"] == 1
    assert counters["pgalloc_dma32"] == 4
    assert counters["numa_interleave"] == counters["pgalloc_device"] == 0
    assert set(parse_vmstat(simulator_vmstat_text(mm))) == set(SIM_ONLY)


def test_zone_items_are_the_sums_of_the_node_items() -> None:
    """nr_zone_<lru> summed over zones equals the node's nr_<lru> summed over nodes."""
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=1 << 15, cpus=1),))
    mm = PageAllocator(cfg, SysctlConfig())
    pfn = mm.alloc_pages(int(parse_gfp("GFP_HIGHUSER_MOVABLE")), 1, 0, 0)
    mm.reclaim.lru_add(pfn, 1, KIND_FILE, dirty=True)  # two dirty page-cache pages
    values = vmstat_values(mm)
    assert values["nr_inactive_file"] == values["nr_zone_inactive_file"] == 2
    assert values["nr_dirty"] == values["nr_zone_write_pending"] == 2
    assert values["nr_inactive_anon"] == 0
    assert values["nr_free_pages"] == mm.nr_free_pages
