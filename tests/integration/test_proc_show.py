"""``allocsim proc show`` against the real 6.1 ``/proc/zoneinfo`` it was built from.

For each zone the lines ``min``, ``low``, ``high``, ``spanned``, ``present``, ``managed``,
``protection:`` and every pageset ``high:``/``batch:`` are compared as strings with the
real file, whitespace included: the output must be in /proc/zoneinfo layout, not just
carry the same numbers.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from allocsim.cli import main
from allocsim.procshow import machine_from_snapshot
from simcore.formats.procfs import read_snapshot
from simcore.mm.constants import ZONE_NAMES
from simcore.mm.watermarks import zone_batchsize

REPO = Path(__file__).resolve().parents[2]
ORACLE = REPO / "tests" / "data" / "oracle"
WMARK = sorted(p for p in (ORACLE / "wmark-recompute").iterdir() if (p / "zoneinfo").exists())
BOOT = sorted(p.parent for p in ORACLE.glob("*/*/zoneinfo") if "wmark" not in str(p))
ZONE_KEYS = ("min", "low", "high", "spanned", "present", "managed")
ZONE_HEADER = re.compile(r"^Node (\d+), zone\s+(\S+)$")

Zones = dict[tuple[int, str], list[str]]


def compared_lines(text: str) -> Zones:
    """Per (node, zone): the compared lines, in file order."""
    zones: Zones = {}
    lines: list[str] = []
    in_pagesets = False
    for line in text.splitlines():
        m = ZONE_HEADER.match(line)
        if m:
            lines = zones.setdefault((int(m[1]), m[2]), [])
            in_pagesets = False
            continue
        fields = line.split()
        if not fields or not zones:
            continue
        if fields[0] == "pagesets":
            in_pagesets = True
        elif in_pagesets and fields[0] in ("high:", "batch:"):
            lines.append(line)
        elif (fields[0] in ZONE_KEYS and len(fields) == 2) or fields[0] == "protection:":
            lines.append(line)
    return zones


def populated(zones: Zones) -> Zones:
    return {k: v for k, v in zones.items() if _value(v, "present") != "0"}


def _value(lines: list[str], key: str) -> str:
    (value,) = [line.split()[1] for line in lines if line.split()[0] == key]
    return value


def _show(capsys: pytest.CaptureFixture[str], snap: Path, recompute: bool) -> Zones:
    argv = ["proc", "show", str(snap)] + (["--recompute"] if recompute else [])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return compared_lines(captured.out)


def _assert_same(got: Zones, real: Zones) -> None:
    assert list(got) == list(real)
    for zone, lines in real.items():
        nr_cpus = sum(1 for line in lines if line.split()[0] == "batch:")
        if _value(lines, "present") != "0":  # unpopulated zones print no pagesets
            assert nr_cpus >= 1, zone
        assert len(lines) == len(ZONE_KEYS) + 1 + 2 * nr_cpus, zone
        assert got[zone] == lines, zone


@pytest.mark.parametrize("recompute", [False, True], ids=["observed", "recompute"])
@pytest.mark.parametrize("snap", WMARK, ids=[p.name for p in WMARK])
def test_wmark_recompute_snapshot(
    capsys: pytest.CaptureFixture[str], snap: Path, recompute: bool
) -> None:
    """Observed and recomputed watermarks both equal the real ones.

    These snapshots were taken right after a sysctl write, which makes the kernel run
    ``setup_per_zone_wmarks()`` / ``setup_per_zone_lowmem_reserve()`` /
    ``zone_pcp_update()`` on the managed pages the snapshot shows.
    """
    real = compared_lines((snap / "zoneinfo").read_text())
    _assert_same(_show(capsys, snap, recompute), real)


def test_there_are_17_wmark_snapshots() -> None:
    assert len(WMARK) == 17
    assert BOOT, "no */start snapshots"


@pytest.mark.parametrize("snap", BOOT, ids=[p.parent.name for p in BOOT])
def test_boot_snapshot(capsys: pytest.CaptureFixture[str], snap: Path) -> None:
    """Observed lines are reproduced; the recomputation runs but is not compared.

    A boot snapshot's watermarks, lowmem_reserve and pcp sizes were computed during boot
    from the managed pages of that moment, before init memory (and other early
    reservations) were released, and the THP setup then raised min_free_kbytes and
    recomputed. The managed pages in the snapshot are the later, larger ones, so
    recomputing from them legitimately gives different (slightly higher) numbers. The
    zone geometry (spanned/present/managed) must still match.
    """
    real = compared_lines((snap / "zoneinfo").read_text())
    _assert_same(_show(capsys, snap, recompute=False), real)
    recomputed = _show(capsys, snap, recompute=True)
    assert list(recomputed) == list(real)
    for zone, lines in populated(real).items():
        for key in ("spanned", "present", "managed"):
            assert _value(recomputed[zone], key) == _value(lines, key), (zone, key)
        marks = [int(_value(recomputed[zone], key)) for key in ("min", "low", "high")]
        assert 0 < marks[0] < marks[1] < marks[2], (zone, marks)


def test_unpopulated_zones_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    snap = WMARK[0]
    real = compared_lines((snap / "zoneinfo").read_text())
    assert set(real) != set(populated(real)), "the oracle has unpopulated zones"
    got = _show(capsys, snap, recompute=False)
    assert list(got) == list(real)


# -- 2-node hosts ---------------------------------------------------------------------------
NUMA2 = ORACLE / "boot-idle-numa2"
NUMA2_SNAPS = [NUMA2 / "start", NUMA2 / "end"]


def test_numa2_snapshots_are_boot_snapshots() -> None:
    assert all(snap in BOOT for snap in NUMA2_SNAPS)


@pytest.mark.parametrize("snap", NUMA2_SNAPS, ids=["start", "end"])
def test_numa2_observed_is_the_real_zoneinfo(
    capsys: pytest.CaptureFixture[str], snap: Path
) -> None:
    """Every kept line of both nodes' ten zones, byte for byte (pages free is the model's)."""
    real = compared_lines((snap / "zoneinfo").read_text())
    assert [zone for zone in real] == [
        (nid, name) for nid in (0, 1) for name in ("DMA", "DMA32", "Normal", "Movable", "Device")
    ]
    _assert_same(_show(capsys, snap, recompute=False), real)


@pytest.mark.parametrize("snap", NUMA2_SNAPS, ids=["start", "end"])
def test_numa2_recompute(capsys: pytest.CaptureFixture[str], snap: Path) -> None:
    """What the recomputation of the 2-node boot snapshots reproduces.

    ``batch`` depends only on the managed pages (zone_batchsize()), which move too little
    after boot to change it, so it matches. Each node has one CPU, so zone_highsize()
    gives ``high == low`` in the real file and in the recomputation alike (the low
    watermarks themselves differ: they were computed at boot from fewer managed pages).
    ``protection`` matches except node 0's DMA in ``start`` (see
    :func:`test_end_snapshot_protection_was_recomputed`).
    """
    real = compared_lines((snap / "zoneinfo").read_text())
    got = _show(capsys, snap, recompute=True)
    assert list(got) == list(real)
    for zone, lines in populated(real).items():
        for key in ("batch:", "spanned", "present", "managed"):
            assert _values(got[zone], key) == _values(lines, key), (zone, key)
        for lines_of in (lines, got[zone]):
            assert set(_values(lines_of, "high:")) == {_value(lines_of, "low")}, zone
        assert _values(got[zone], "min") != _values(lines, "min"), zone  # boot-time values
    reserve = int(_value(real[(0, "DMA32")], "managed")) // 256  # lowmem_reserve_ratio[DMA]
    assert _values(got[(0, "DMA")], "protection:") == [f"(0, {', '.join([str(reserve)] * 4)})"]
    booted = {(0, "DMA")} if snap.name == "start" else set()
    for zone in real:
        same = _values(got[zone], "protection:") == _values(real[zone], "protection:")
        assert same == (zone not in booted), zone
    if booted:
        assert _values(real[(0, "DMA")], "protection:") == ["(0, 368, 368, 368, 368)"]


END = sorted(p.parent for p in ORACLE.glob("*/end/zoneinfo"))


@pytest.mark.parametrize("snap", END, ids=[p.parent.name for p in END])
def test_end_snapshot_protection_was_recomputed(
    capsys: pytest.CaptureFixture[str], snap: Path
) -> None:
    """In every ``end`` snapshot, 1- and 2-node, ``protection`` equals the recomputation.

    6.1's lowmem_reserve_ratio_sysctl_handler() calls setup_per_zone_lowmem_reserve()
    on every access, reads included. Reading ``vm.lowmem_reserve_ratio`` for the
    ``start`` snapshot's ``sysctl_vm`` therefore recomputed ``lowmem_reserve`` from the
    managed pages of that moment, so the ``end`` snapshot shows the recomputed values,
    while its watermarks are still the boot-time ones.
    """
    assert len(END) == 4  # boot-idle, boot-idle-numa2, the two hugetlb runs
    real = compared_lines((snap / "zoneinfo").read_text())
    got = _show(capsys, snap, recompute=True)
    assert list(got) == list(real)
    for zone in real:
        assert _values(got[zone], "protection:") == _values(real[zone], "protection:"), zone
    start = compared_lines((snap.parent / "start" / "zoneinfo").read_text())
    assert any(
        _values(start[zone], "protection:") != _values(real[zone], "protection:") for zone in real
    )


def _values(lines: list[str], key: str) -> list[str]:
    return [line.split(None, 1)[1] for line in lines if line.split()[0] == key]


# -- memory-only nodes ----------------------------------------------------------------------
def _memory_only(tmp_path: Path, node0_cpus: str) -> Path:
    """The numa2 start snapshot with node 1's CPU list emptied (a CPU-less node)."""
    snap = tmp_path / "memonly"
    shutil.copytree(NUMA2 / "start", snap)
    (snap / "node0.cpulist").write_text(node0_cpus)
    (snap / "node1.cpulist").write_text("\n")
    return snap


@pytest.mark.parametrize("node0_cpus", ["0\n", "0-1\n"])
def test_memory_only_node(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, node0_cpus: str
) -> None:
    """Node 1 has memory and no CPU: zone_highsize() splits its pcp high over all online CPUs.

    With node1.cpulist emptied but node0.cpulist still "0", CPU 1 (online: it has
    pagesets) is named by no cpulist; it is given to node 0, so the machine keeps 2
    online CPUs as the real host has.
    """
    snap = _memory_only(tmp_path, node0_cpus)
    mm = machine_from_snapshot(read_snapshot(snap), recompute=True)
    assert [len(node.cpus) for node in mm.nodes] == [2, 0]
    assert mm.nodes[1].node_order == [1, 0]
    assert [z.name for z in mm.zonelist(1, False, 2)] == ["Normal", "DMA32", "DMA"]
    observed = _show(capsys, snap, recompute=False)
    _assert_same(observed, compared_lines((snap / "zoneinfo").read_text()))
    got = _show(capsys, snap, recompute=True)
    for nid, name in [(0, "DMA"), (0, "DMA32"), (1, "Normal")]:
        zone = mm.nodes[nid].node_zones[ZONE_NAMES.index(name)]
        assert zone is not None
        low = int(_value(got[(nid, name)], "low"))
        batch = zone_batchsize(zone.managed_pages)
        # 6.1: cpumask_weight(cpumask_of_node(nid)) CPUs, or num_online_cpus() (2) if 0.
        expected = max(low // 2, batch * 4)
        assert _values(got[(nid, name)], "high:") == [str(expected)] * 2, (nid, name)
        assert zone.per_cpu_pageset[0].high == expected
    assert int(_value(got[(1, "Normal")], "low")) // 2 == 3950  # not 7900: split over 2 CPUs


def test_every_cpulist_empty_still_uses_the_online_cpus(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Online CPUs no cpulist names are kept, so no zone_highsize() division by zero."""
    snap = _memory_only(tmp_path, "\n")
    assert main(["proc", "show", str(snap), "--recompute"]) == 0
    mm = machine_from_snapshot(read_snapshot(snap), recompute=True)
    assert mm.nr_cpus == 2


def test_cpus_from_pagesets_without_cpulists() -> None:
    """Without cpulists, online CPUs (one here) are spread over the nodes, lowest first."""
    snap = read_snapshot(NUMA2 / "start")
    one_cpu = tuple(
        dataclasses.replace(z, pcp=z.pcp[:1]) for z in snap.zones
    )
    snap = dataclasses.replace(snap, zones=one_cpu, node_cpus={})
    mm = machine_from_snapshot(snap, recompute=True)
    assert [len(node.cpus) for node in mm.nodes] == [1, 0]
    normal = mm.nodes[1].node_zones[ZONE_NAMES.index("Normal")]
    assert normal is not None and normal.pcp_high == normal.wmark_pages(1)


def test_no_online_cpu_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    snap = tmp_path / "nocpu"
    snap.mkdir()
    text = (NUMA2 / "start" / "zoneinfo").read_text()
    kept = [ln for ln in text.splitlines(keepends=True)
            if not ln.lstrip().startswith(("cpu:", "count:", "high:", "batch:",
                                           "vm stats threshold:"))]
    (snap / "zoneinfo").write_text("".join(kept))
    assert main(["proc", "show", str(snap), "--recompute"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{snap / 'zoneinfo'}:" in err and "online CPU" in err


# -- every file type: malformed is exit 2 naming file and line; missing is fine --------------
MALFORMED = {
    "buddyinfo": ("Node 0, zone      DMA      0      x\n", 1),
    "pagetypeinfo": ("Page block order: 9\nPages per block:  500\n", 2),
    "sysctl_vm": ("vm.min_free_kbytes = 45104\nmin_free_kbytes 3\n", 2),
    "node1.cpulist": ("1-0\n", 1),
    "transparent_hugepage_enabled": ("always madvise never\n", 1),
    "vmstat": ("nr_free_pages 1\nnr_free_pages 2\n", 2),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_is_one_error_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str
) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(NUMA2 / "start", snap)
    text, lineno = MALFORMED[name]
    (snap / name).write_text(text)
    for extra in ([], ["--recompute"]):
        assert main(["proc", "show", str(snap), *extra]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1
        assert err.startswith(f"allocsim: error: {snap / name}:{lineno}: expected "), err


def test_only_zoneinfo_is_required(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shutil.copy(NUMA2 / "start" / "zoneinfo", tmp_path / "zoneinfo")
    for extra in ([], ["--recompute"]):
        assert main(["proc", "show", str(tmp_path), *extra]) == 0
        assert capsys.readouterr().err == ""


def test_unreadable_optional_file_is_skipped_with_a_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(NUMA2 / "start", snap)
    (snap / "buddyinfo").unlink()
    (snap / "buddyinfo").mkdir()  # exists, but reading it fails (EISDIR)
    assert read_snapshot(snap).buddyinfo == {}
    assert main(["proc", "show", str(snap)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Node 0, zone      DMA\n")
    assert err == f"allocsim: note: ignoring unreadable {snap / 'buddyinfo'}: Is a directory\n"


SHARED_ORACLE = REPO.parent / "shared" / "oracle"
SHARED_SNAPS = sorted(p.parent for p in SHARED_ORACLE.glob("**/zoneinfo"))


@pytest.mark.skipif(not SHARED_SNAPS, reason=(
    "the full oracle data (../shared/oracle, outside this repository) is not available; "
    "tests/data/oracle holds what the rest of the suite needs"))
@pytest.mark.parametrize("recompute", [False, True], ids=["observed", "recompute"])
def test_every_shared_oracle_snapshot(
    capsys: pytest.CaptureFixture[str], recompute: bool
) -> None:
    """Every snapshot under ../shared/oracle, 1- and 2-node, is read with exit 0."""
    assert any("numa2" in str(p) for p in SHARED_SNAPS)
    for snap in SHARED_SNAPS:
        _show(capsys, snap, recompute)


def test_memoryless_node_keeps_its_cpu() -> None:
    """A node with a CPU and no memory: its CPU counts, its zonelist is node 0's zones."""
    snap = read_snapshot(NUMA2 / "start")
    emptied = tuple(
        dataclasses.replace(z, present=0, spanned=0, managed=0, pcp=()) if z.nid == 1 else z
        for z in snap.zones
    )
    mm = machine_from_snapshot(dataclasses.replace(snap, zones=emptied), recompute=True)
    assert [len(node.cpus) for node in mm.nodes] == [1, 1]
    assert mm.nodes[1].zones == []
    assert [(z.nid, z.name) for z in mm.zonelist(1, False, 2)] == [(0, "DMA32"), (0, "DMA")]
