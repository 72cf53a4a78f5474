"""Bad ``/proc`` snapshot files, through the command line: exit 2 and one line, no traceback.

For each file a snapshot can hold (zoneinfo, buddyinfo, pagetypeinfo, vmstat,
sysctl_vm, nodeN.cpulist, transparent_hugepage_enabled, iomem), a line cut short, a file
cut short and binary garbage are each reported by ``allocsim proc show DIR`` and
``allocsim proc import DIR -o x.yaml`` as one stderr line naming the file, the line and
what was expected; nothing is written. (tests/unit/test_procfs.py and
tests/integration/test_proc_show.py cover malformed values; this covers damage.)

A ``pagetypeinfo`` from a kernel with CONFIG_CMA is not bad input: its ``CMA`` rows and
column parse, and import accepts it, reporting the CMA pageblocks it takes as ordinary
memory.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from allocsim.cli import main

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
BASE = ORACLE / "hugetlb-fresh" / "end"
IOMEM = "00001000-0009fbff : System RAM\n00100000-1ffdffff : System RAM\n"


def _lineno(text: str, startswith: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(startswith))


def _cut_line(startswith: str, keep: Callable[[str], str]) -> Callable[[str], tuple[str, int]]:
    """The file ends in the middle of the first line starting with ``startswith``."""
    def damage(text: str) -> tuple[str, int]:
        n = _lineno(text, startswith)
        lines = text.splitlines(keepends=True)
        return "".join(lines[:n - 1]) + keep(lines[n - 1].rstrip("\n")), n
    return damage


def _cut_file(nr_lines: int) -> Callable[[str], tuple[str, int]]:
    """The file ends after ``nr_lines`` whole lines: the error is just past them."""
    def damage(text: str) -> tuple[str, int]:
        return "".join(text.splitlines(keepends=True)[:nr_lines]), nr_lines + 1
    return damage


# (file, damage) -> text of the damaged file and the line the error must name.
CUT_LINES = {
    "zoneinfo": _cut_line("        protection: (0, 0, 448", lambda ln: ln[:-8]),
    "buddyinfo": _cut_line("Node 0, zone   Normal", lambda ln: ln[:50]),
    "pagetypeinfo": _cut_line("Node    0, zone    DMA32, type      Movable", lambda ln: ln[:70]),
    "vmstat": _cut_line("nr_file_pages", lambda ln: ln.split()[0]),
    "sysctl_vm": _cut_line("vm.lowmem_reserve_ratio", lambda ln: ln[:31]),
    "node0.cpulist": _cut_line("0-1", lambda ln: "0-"),
    "transparent_hugepage_enabled": _cut_line("[always]", lambda ln: ln[:4]),
    "iomem": _cut_line("00100000", lambda ln: ln[:12]),
}
CUT_FILES = {
    "zoneinfo": _cut_file(120),
    "buddyinfo": _cut_file(1),  # DMA only: DMA32 and Normal are populated in zoneinfo
    "pagetypeinfo": _cut_file(12),
    "sysctl_vm": _cut_file(3),
}
EXTRA = {"transparent_hugepage_enabled": "[always] madvise never\n", "iomem": IOMEM}


def _snapshot(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(BASE, snap)
    for name, text in EXTRA.items():
        (snap / name).write_text(text)
    return snap


def _assert_one_error(snap: Path, name: str, lineno: int,
                      capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out_file = tmp_path / "x.yaml"
    for argv in (["proc", "show", str(snap)], ["proc", "show", str(snap), "--recompute"],
                 ["proc", "import", str(snap), "-o", str(out_file)]):
        assert main(argv) == 2, argv
        out, err = capsys.readouterr()
        assert out == "", argv
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert err.startswith(f"allocsim: error: {snap / name}:{lineno}: expected "), (argv, err)
    assert not out_file.exists()


def test_the_undamaged_snapshot_is_good(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot(tmp_path)
    assert main(["proc", "show", str(snap)]) == 0
    assert main(["proc", "import", str(snap), "-o", str(tmp_path / "x.yaml")]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("name", sorted(CUT_LINES))
def test_a_line_cut_short(name: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot(tmp_path)
    text, lineno = CUT_LINES[name]((snap / name).read_text())
    (snap / name).write_text(text)
    _assert_one_error(snap, name, lineno, capsys, tmp_path)


@pytest.mark.parametrize("name", sorted(CUT_FILES))
def test_a_file_cut_short(name: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot(tmp_path)
    text, lineno = CUT_FILES[name]((snap / name).read_text())
    (snap / name).write_text(text)
    _assert_one_error(snap, name, lineno, capsys, tmp_path)


@pytest.mark.parametrize("name", sorted(CUT_LINES))
def test_binary_garbage(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot(tmp_path)
    lines = (snap / name).read_bytes().splitlines(keepends=True)
    at = min(2, len(lines))  # garbage from the start of line 2 (line 1 of a 1-line file)
    garbage = bytes(range(256))[::7] + b"\n"
    (snap / name).write_bytes(b"".join(lines[:at - 1]) + garbage + b"".join(lines[at - 1:]))
    _assert_one_error(snap, name, at, capsys, tmp_path)
    err_text = "UTF-8"
    assert main(["proc", "show", str(snap)]) == 2
    assert err_text in capsys.readouterr().err


def _with_cma(text: str) -> str:
    """The oracle's pagetypeinfo as a CONFIG_CMA kernel prints it, with CMA memory in DMA32.

    pagetypeinfo_showfree_print() prints a ``CMA`` row per zone between HighAtomic and
    Isolate (migratetype_names[]), and the block-count tables a ``CMA`` column.
    """
    out = []
    for line in text.splitlines(keepends=True):
        if "type   HighAtomic" in line:
            out.append(line)
            zone = line.split("zone")[1].split(",")[0].strip()
            counts = (16, 2, 0, 0, 0, 0, 0, 0, 0, 3, 1) if zone == "DMA32" else (0,) * 11
            cells = "".join(f"{n:6d} " for n in counts)
            out.append(f"Node    0, zone {zone:>8}, type {'CMA':>12} {cells}\n")
        elif line.startswith("Number of blocks type"):
            out.append(line.replace("  HighAtomic ", "  HighAtomic          CMA "))
        elif line.startswith("Node 0, zone") and "type" not in line:
            fields = line.split()
            cma = 8 if fields[3] == "DMA32" else 0
            counts = [int(v) for v in fields[4:]]
            counts.insert(4, cma)
            out.append(f"Node 0, zone {fields[3]:>8} " + "".join(f"{n:12d} " for n in counts)
                       + "\n")
        else:
            out.append(line)
    return "".join(out)


def test_a_cma_kernel_s_pagetypeinfo_is_read_and_its_cma_memory_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = _snapshot(tmp_path)
    (snap / "pagetypeinfo").write_text(_with_cma((BASE / "pagetypeinfo").read_text()))
    out_file = tmp_path / "x.yaml"
    assert main(["proc", "import", str(snap), "-o", str(out_file)]) == 0
    err = capsys.readouterr().err
    free = 16 + 2 * 2 + 3 * 512 + 1 * 1024
    assert f"node 0 DMA32 has 8 CMA pageblocks ({free} free pages on the CMA lists)" in err
    assert "node 0 DMA " not in err  # no CMA memory there: no note
    assert yaml.safe_load(out_file.read_text())["machine"]["cma"] is True
    assert main(["proc", "show", str(snap)]) == 0
    assert "8 CMA pageblocks" in capsys.readouterr().err


MEMINFO_CONFIG = """\
name: mi
seed: 1
duration: 10ms
machine: {from_proc: snap}
initial_state: from_proc
"""


@pytest.mark.parametrize(("damaged", "lineno", "got"), [
    (b"MemTotal:       1000 kB\nMemFr", 2, "MemFr"),            # a line cut short
    (b"MemTotal:       1000 kB\nMemFree: \xff\xfe kB\n", 2, "UTF-8"),  # binary garbage
])
def test_a_damaged_meminfo_of_an_initial_state(
    damaged: bytes, lineno: int, got: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """meminfo is read for ``initial_state: from_proc``: validate names its file and line."""
    shutil.copytree(ORACLE / "hugetlb-fresh" / "start", tmp_path / "snap")
    cfg = tmp_path / "mi.yaml"
    cfg.write_text(MEMINFO_CONFIG)
    assert main(["validate", str(cfg)]) == 0
    capsys.readouterr()
    (tmp_path / "snap" / "meminfo").write_bytes(damaged)
    assert main(["validate", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"allocsim: error: {tmp_path / 'snap' / 'meminfo'}:{lineno}: expected")
    assert got in err


@pytest.mark.parametrize(("line", "expected"), [
    ("vm.min_free_kbytes = -99999999999", "integer 0..2147483647"),
    ("vm.watermark_scale_factor = 0", "integer 1..3000"),
    ("vm.percpu_pagelist_high_fraction = 3", "0 or an integer >= 8"),
])
def test_a_sysctl_out_of_its_range(line: str, expected: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A snapshot's sysctl gets the range the config schema gives its key: proc import
    no longer writes a YAML file the tool itself rejects (a negative min_free_kbytes ran)."""
    snap = tmp_path / "snap"
    shutil.copytree(ORACLE / "hugetlb-fresh" / "start", snap)
    with (snap / "sysctl_vm").open("a") as f:
        f.write(line + "\n")
    assert main(["proc", "import", str(snap), "-o", str(tmp_path / "m.yaml")]) == 2
    err = capsys.readouterr().err
    assert "sysctl_vm:" in err and expected in err and not (tmp_path / "m.yaml").exists()
