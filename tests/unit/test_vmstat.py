"""``vmstat.txt`` lines up with a real 6.1 ``/proc/vmstat`` (simcore.mm.vmstat)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procfs import parse_vmstat
from simcore.mm.gfp import parse_gfp
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.vmstat import KERNEL_EVENTS, SIM_ONLY, SIM_ONLY_MARKER, VmStat, format_vmstat

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
REAL_VMSTATS = sorted(ORACLE.glob("*/*/vmstat"))
_ids = [f"{p.parent.parent.name}/{p.parent.name}" for p in REAL_VMSTATS]


def _kernel_names(text: str) -> list[str]:
    """Names printed before the ``# simulator-only`` line."""
    names = []
    for line in text.splitlines():
        if line == SIM_ONLY_MARKER:
            break
        names.append(line.split()[0])
    return names


def _is_subsequence(names: list[str], of: list[str]) -> bool:
    remaining = iter(of)
    return all(name in remaining for name in names)


def test_real_vmstat_files_are_present() -> None:
    assert {p.parent.parent.name for p in REAL_VMSTATS} >= {"boot-idle", "boot-idle-numa2"}


@pytest.mark.parametrize("real", REAL_VMSTATS, ids=_ids)
def test_printed_kernel_names_are_a_subsequence_of_a_real_vmstat(real: Path) -> None:
    """A ``diff`` against a real host lines up: same names, same order."""
    real_names = list(parse_vmstat(real.read_text(), str(real)))
    printed = _kernel_names(VmStat().format(0))
    assert printed == ["nr_free_pages", *KERNEL_EVENTS]
    assert _is_subsequence(printed, real_names), [n for n in printed if n not in real_names]


def test_subsequence_check_catches_a_wrong_order() -> None:
    real = ["nr_free_pages", "numa_hit", "pgalloc_dma", "pgfree"]
    assert _is_subsequence(["nr_free_pages", "pgalloc_dma", "pgfree"], real)
    assert not _is_subsequence(["pgalloc_dma", "numa_hit"], real)


def test_new_kernel_counters_are_printed() -> None:
    names = _kernel_names(VmStat().format(0))
    for name in ("pgalloc_device", "allocstall_device", "numa_interleave"):
        assert name in names
    assert names.index("numa_interleave") == names.index("numa_foreign") + 1
    assert names.index("pgalloc_device") == names.index("pgalloc_movable") + 1


def test_simulator_only_counters_follow_the_marker() -> None:
    text = VmStat().format(7)
    head, tail = text.split(SIM_ONLY_MARKER + "\n")
    assert head.startswith("nr_free_pages 7\n")
    assert [line.split()[0] for line in tail.splitlines()] == list(SIM_ONLY)
    assert not set(SIM_ONLY) & set(_kernel_names(text))


def test_unknown_counters_are_printed_after_the_simulator_only_ones() -> None:
    counters = {**dict.fromkeys(SIM_ONLY, 1), "warn_example": 3, "pgfree": 5}
    text = format_vmstat(counters, 9)
    assert text.endswith(f"{SIM_ONLY[-1]} 1\nwarn_example 3\n")
    assert "\npgfree 5\n" in text and "\nnuma_interleave 0\n" in text


def test_counts_of_a_two_node_machine() -> None:
    """numa_* and pgalloc_* follow the allocations; numa_interleave stays 0 (no mempolicy)."""
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=1 << 15, cpus=1),
                               NodeConfig(memory_pages=1 << 15, cpus=1)))
    mm = PageAllocator(cfg, SysctlConfig())
    gfp = int(parse_gfp("GFP_KERNEL"))
    assert mm.alloc_pages(gfp, 2, 1, 0) >= 0  # node 1's memory from node 0's CPU
    counters = parse_vmstat(mm.vm.format(mm.nr_free_pages))
    assert counters["nr_free_pages"] == mm.nr_free_pages
    assert counters["numa_hit"] == 1 and counters["numa_other"] == 1
    assert counters["pgalloc_dma32"] == 4
    assert counters["numa_interleave"] == counters["pgalloc_device"] == 0
