"""A run's ``proc/start``, ``proc/end`` and ``proc/t=...`` snapshot directories.

Each is laid out like a real host's snapshot (``allocsim proc capture``), so ``proc show``
and ``machine: {from_proc: ...}`` read it; ``proc/end`` holds the same text as the
top-level ``*.txt`` end-state files; asking for snapshots does not change the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from allocsim.cli import main
from allocsim.run import expected_outputs, proc_snapshot_name, simulate
from simcore.config.parse import parse_config
from simcore.errors import ConfigError
from simcore.formats.procfs import parse_vmstat, read_snapshot
from simcore.formats.procmachine import machine_from_proc
from simcore.formats.vmstat_text import VMSTAT_TEXT
from simcore.mm.topology import layout_machine
from simcore.mm.vmstat import SIM_ONLY
from tests.golden import digests
from workloads.registry import load_experiment

CONFIG = """\
name: procsnap
seed: 3
duration: 60ms
machine:
  nodes:
    - {memory: 96MiB, cpus: 2}
    - {memory: 64MiB, cpus: 1, movable: 16MiB}
trace:
  events: true
  snapshot_interval: 10ms
  proc_snapshots: [40ms, 20ms]
workloads:
  - name: slab
    type: synthetic
    rate: 3000/s
    order: {0: 0.8, 3: 0.2}
    lifetime: {exponential: 5ms}
    gfp: GFP_KERNEL
  - name: cache
    type: synthetic
    rate: 2000/s
    order: 0
    lifetime: {exponential: 30ms}
    gfp: GFP_HIGHUSER_MOVABLE
"""
WHEN = ("start", "t=0.020s", "t=0.040s", "end")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("procsnap")
    cfg = tmp / "procsnap.yaml"
    cfg.write_text(CONFIG)
    return simulate(load_experiment(cfg), tmp / "runs", report=False).run_dir


def test_snapshot_directories(run_dir: Path) -> None:
    assert sorted(p.name for p in (run_dir / "proc").iterdir()) == sorted(WHEN)
    for name in expected_outputs(False, ("t=0.020s", "t=0.040s")):
        assert (run_dir / name).is_file(), name
    for when in WHEN:
        files = {p.name for p in (run_dir / "proc" / when).iterdir()}
        assert files >= {"zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "sysctl_vm",
                         "iomem", "node0.cpulist", "node1.cpulist", "node1.distance"}


def test_end_is_the_end_state_files(run_dir: Path) -> None:
    for name in ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "extfrag_index",
                 "unusable_index"):
        assert (run_dir / "proc" / "end" / name).read_text() == \
            (run_dir / f"{name}.txt").read_text()


def test_vmstat_is_the_kernel_s_list_and_grows_over_time(run_dir: Path) -> None:
    seen = [parse_vmstat((run_dir / "proc" / w / "vmstat").read_text()) for w in WHEN]
    for counters in seen:
        assert list(counters) == [*VMSTAT_TEXT, "nr_unstable"]
    pgalloc = [c["pgalloc_dma32"] + c["pgalloc_normal"] + c["pgalloc_movable"] for c in seen]
    assert pgalloc[0] == 0 and pgalloc == sorted(pgalloc) and pgalloc[-1] > pgalloc[1] > 0
    simulator = parse_vmstat((run_dir / "vmstat_simulator.txt").read_text())
    assert list(simulator) == list(SIM_ONLY)


def test_proc_show_and_from_proc_read_a_snapshot(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for when in ("start", "end"):
        assert main(["proc", "show", str(run_dir / "proc" / when)]) == 0
        out, err = capsys.readouterr()
        assert err == "" and out.startswith("Node 0, zone      DMA\n  per-node stats\n")
    original = load_experiment(run_dir.parent.parent / "procsnap.yaml").machine
    imported, sysctl = machine_from_proc(run_dir / "proc" / "end")
    assert layout_machine(imported) == layout_machine(original)
    assert [n.cpus for n in imported.nodes] == [2, 1]
    snap = read_snapshot(run_dir / "proc" / "end")
    assert sysctl.min_free_kbytes == snap.sysctl_int("min_free_kbytes") > 0
    cfg = parse_config({"name": "again", "seed": 1, "duration": "1ms",
                        "machine": {"from_proc": str(run_dir / "proc" / "end")}}, "<test>")
    assert layout_machine(cfg.machine) == layout_machine(original)


def test_asking_for_snapshots_does_not_change_the_run(run_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "procsnap.yaml"
    cfg.write_text(CONFIG.replace("  proc_snapshots: [40ms, 20ms]\n", ""))
    plain = simulate(load_experiment(cfg), tmp_path / "runs", report=False).run_dir
    assert not (plain / "proc" / "t=0.020s").exists()
    assert digests(plain) == digests(run_dir)


@pytest.mark.parametrize(("value", "key", "expected"), [
    ("[1s]", "trace.proc_snapshots[0]", "before the end of the run"),
    ("[10ms, 60ms]", "trace.proc_snapshots[1]", "before the end of the run"),
    ("[10ms, 10ms]", "trace.proc_snapshots[1]", "not listed before"),
    ("[10]", "trace.proc_snapshots[0]", "duration"),
    ("10ms", "trace.proc_snapshots", "a list"),
])
def test_bad_proc_snapshots_name_the_key(value: str, key: str, expected: str,
                                         tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(CONFIG.replace("[40ms, 20ms]", value))
    with pytest.raises(ConfigError) as info:
        load_experiment(cfg)
    assert info.value.key == key and expected in info.value.expected


@pytest.mark.parametrize(("ns", "name"), [
    (0, "t=0.000s"), (1_000_000_000, "t=1.000s"), (20_000_000, "t=0.020s"),
    (1_000_500_000, "t=1.0005s"), (2_000_000_001, "t=2.000000001s"),
])
def test_proc_snapshot_name(ns: int, name: str) -> None:
    assert proc_snapshot_name(ns) == name


def test_a_run_started_from_a_host_snapshot_exports_it_back(tmp_path: Path) -> None:
    """``initial_state: from_proc``: proc/start has the host's buddyinfo and pagetypeinfo."""
    host = Path(__file__).resolve().parents[1] / "data" / "oracle" / "hugetlb-fresh" / "start"
    cfg = tmp_path / "host.yaml"
    cfg.write_text(f"name: host\nseed: 1\nduration: 10ms\nmachine: {{from_proc: {host}}}\n"
                   "initial_state: from_proc\n")
    run_dir = simulate(load_experiment(cfg), tmp_path / "runs", report=False).run_dir
    start = run_dir / "proc" / "start"
    for name in ("buddyinfo", "pagetypeinfo"):
        assert (start / name).read_text() == (host / name).read_text(), name
    free = [z.nr_free_pages for z in read_snapshot(start).zones]
    assert free == [z.nr_free_pages for z in read_snapshot(host).zones]
