"""A run's exported ``/proc`` text, read back by the importers and printed again, is identical.

The end-of-run files are written by the run directory's own code (``_Run.write_outputs``)
for a 1-node and a 2-node machine whose state is not trivial (allocations of several
orders and migratetypes on every node and CPU, some freed again so the pcp lists hold
pages). Each file is then parsed by :mod:`simcore.formats.procfs` and printed from the parsed
values; the text must come back byte for byte. ``proc show`` must also read the
directory, as it reads a real host's snapshot.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from allocsim.cli import main
from allocsim.run import _Run
from simcore.config.types import ExperimentConfig, MachineConfig, NodeConfig, TraceConfig
from simcore.formats.procfmt import ObservedZone, format_zoneinfo
from simcore.formats.procfs import (
    parse_buddyinfo,
    parse_pagetypeinfo,
    parse_vmstat,
    parse_zoneinfo,
    read_snapshot,
)
from simcore.formats.snapshots import format_buddyinfo, format_pagetypeinfo
from simcore.formats.vmstat_text import format_proc_vmstat
from simcore.mm.gfp import parse_gfp
from simcore.sim.machine import Allocation, Machine

MIB = 256  # pages
MACHINES = {
    "1node": (NodeConfig(memory_pages=96 * MIB, cpus=2),),
    # Node 1 lies above node 0 (below 4 GiB): DMA32 plus a Movable zone, no DMA.
    "2node": (
        NodeConfig(memory_pages=64 * MIB, cpus=1),
        NodeConfig(memory_pages=64 * MIB, cpus=2, movable_pages=16 * MIB),
    ),
}
GFPS = ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL|__GFP_RECLAIMABLE", "GFP_ATOMIC")
FILES = ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat")


def _exercise(machine: Machine) -> None:
    """Allocate on every node and CPU, then free every third block."""
    held: list[Allocation] = []
    nr_nodes = len(machine.mm.nodes)
    for i in range(600):
        gfp = int(parse_gfp(GFPS[i % len(GFPS)]))
        order = (0, 0, 1, 3, 9, 2, 0, 10)[i % 8]
        cpu = i % machine.nr_cpus
        handle = machine.alloc_now("test", gfp, order, cpu, nid=i % nr_nodes)
        if handle is not None:
            held.append(handle)
    for handle in held[::3]:
        machine.free(handle)


def _export(name: str, directory: Path) -> Path:
    """The end-of-run /proc files of a machine, written by the run directory code."""
    cfg = ExperimentConfig(name=name, seed=1, duration_ns=1,
                           machine=MachineConfig(nodes=MACHINES[name]),
                           trace=TraceConfig(events=False))
    run = _Run(cfg, directory, report=False)
    _exercise(run.machine)
    run.timings["simulate_seconds"] = 0.0
    run.write_outputs()
    (directory / "machine").write_text(name)
    return directory


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: _export(name, tmp_path_factory.mktemp(name)) for name in MACHINES}


@pytest.fixture(params=sorted(MACHINES))
def run_dir(request: pytest.FixtureRequest, run_dirs: dict[str, Path]) -> Path:
    return run_dirs[request.param]


def _text(run_dir: Path, name: str) -> str:
    return (run_dir / f"{name}.txt").read_text()


def _nr_nodes(run_dir: Path) -> int:
    return len(MACHINES[(run_dir / "machine").read_text()])


def test_state_is_not_trivial(run_dir: Path) -> None:
    vmstat = parse_vmstat(_text(run_dir, "vmstat"))
    assert vmstat["pgfree"] > 0 and vmstat["pgalloc_dma32"] > 0
    zones = [z for z in parse_zoneinfo(_text(run_dir, "zoneinfo")) if z.present]
    assert any(pcp.count for zone in zones for pcp in zone.pcp)
    assert all(zone.nr_free_pages < zone.managed for zone in zones)
    blocks = parse_pagetypeinfo(_text(run_dir, "pagetypeinfo")).block_counts
    assert any(counts[0] for counts in blocks.values())  # some Unmovable pageblocks


def test_zoneinfo_round_trips(run_dir: Path) -> None:
    text = _text(run_dir, "zoneinfo")
    views = [ObservedZone.from_snapshot(zone) for zone in parse_zoneinfo(text)]
    assert format_zoneinfo(views) == text


def test_buddyinfo_round_trips(run_dir: Path) -> None:
    text = _text(run_dir, "buddyinfo")
    rows = [(nid, zone, counts) for (nid, zone), counts in parse_buddyinfo(text).items()]
    assert format_buddyinfo(rows) == text


def test_pagetypeinfo_round_trips(run_dir: Path) -> None:
    text = _text(run_dir, "pagetypeinfo")
    assert format_pagetypeinfo(parse_pagetypeinfo(text)) == text
    nr_nodes = len({z.nid for z in parse_zoneinfo(_text(run_dir, "zoneinfo"))})
    assert text.count("Page block order: 9\n") == nr_nodes


def test_vmstat_round_trips(run_dir: Path) -> None:
    text = _text(run_dir, "vmstat")
    assert format_proc_vmstat(parse_vmstat(text)) == text


def test_zoneinfo_lists_every_zone_of_every_node(run_dir: Path) -> None:
    """As zoneinfo_show(): all MAX_NR_ZONES (5) zones per node, 5 protection entries."""
    text = _text(run_dir, "zoneinfo")
    headers = re.findall(r"^Node (\d+), zone\s+(\S+)$", text, flags=re.M)
    nr_nodes = _nr_nodes(run_dir)
    names = ["DMA", "DMA32", "Normal", "Movable", "Device"]
    assert headers == [(str(nid), name) for nid in range(nr_nodes) for name in names]
    protections = re.findall(r"^        protection: \((.*)\)$", text, flags=re.M)
    assert len(protections) == 5 * nr_nodes
    assert all(len(line.split(", ")) == 5 for line in protections)
    empty = [z for z in parse_zoneinfo(text) if z.present == 0]
    assert all(z.spanned == z.managed == z.wmark_high == 0 and not z.pcp for z in empty)
    assert all(set(z.protection) == {0} for z in empty)


def test_zoneinfo_protection_of_the_second_node(run_dirs: dict[str, Path]) -> None:
    """Node 1 of the 2-node machine has no DMA: its DMA32 reserves against Movable only."""
    run_dir = run_dirs["2node"]
    zones = {(z.nid, z.name): z for z in parse_zoneinfo(_text(run_dir, "zoneinfo"))}
    movable = zones[(1, "Movable")].managed
    assert movable == 16 * MIB and zones[(1, "DMA")].present == 0
    reserve = movable // 256  # lowmem_reserve_ratio[ZONE_DMA32] = 256
    assert zones[(1, "DMA32")].protection == (0, 0, 0, reserve, reserve)
    dma32 = zones[(0, "DMA32")].managed // 256
    assert zones[(0, "DMA")].protection == (0, dma32, dma32, dma32, dma32)


def test_proc_show_reads_the_run_directory(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The simulator's own files are a valid snapshot, 2-node pagetypeinfo included.

    ``proc show`` reads the run directory itself (``NAME.txt``) and a copy with the
    kernel's file names, with the same result.
    """
    for name in FILES:
        shutil.copy(run_dir / f"{name}.txt", tmp_path / name)
    snap = read_snapshot(tmp_path)
    assert snap.pagetypeinfo is not None and snap.vmstat["pgfree"] > 0
    assert read_snapshot(run_dir).vmstat == snap.vmstat
    assert main(["proc", "show", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert main(["proc", "show", str(run_dir)]) == 0
    assert capsys.readouterr() == (out, "")
    real = _text(run_dir, "zoneinfo")
    geometry = re.compile(r"^(Node |        (spanned|present|managed|min|low|high |protection))")
    assert [ln for ln in out.splitlines() if geometry.match(ln)] == [
        ln for ln in real.splitlines() if geometry.match(ln)
    ]
