"""Fuzz the ``/proc`` snapshot importers with damaged copies of real 6.1 (and 5.4, 6.12) files.

Two levels: each file's parser on its own (zoneinfo, buddyinfo, pagetypeinfo, vmstat,
sysctl_vm, nodeN.cpulist, transparent_hugepage_enabled, meminfo, nodeN.meminfo,
dentry-state/inode-state, iomem, nodeN.distance), read from disk as the importers read
it; and whole snapshot directories with one file damaged, through every command that
reads one: ``allocsim proc import`` (:func:`import_machine`), ``allocsim proc show``
(:func:`proc_show`, which builds the machine) and an experiment file with ``machine:
{from_proc: DIR}`` and ``initial_state: from_proc``. Each must give its object or one
error naming the file and the line (``ProcParseError``), or the config's key
(``ConfigError``).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocsim.hostmem import check_fits_host
from allocsim.procimport import import_machine
from allocsim.procshow import proc_show
from reports.load import ReportInputError
from reports.overlay import read_buddyinfo_periodic
from simcore.config.types import ExperimentConfig
from simcore.formats.fsstate import parse_state
from simcore.formats.meminfo import parse_meminfo
from simcore.formats.procfs import (
    parse_buddyinfo,
    parse_cpulist,
    parse_pagetypeinfo,
    parse_sysctl_vm,
    parse_thp_enabled,
    parse_vmstat,
    parse_zoneinfo,
    read_text_file,
)
from simcore.formats.procmachine import read_distances, read_iomem
from simcore.formats.proctables import ProcParseError
from tests.fuzz.fuzzing import fuzz_settings, note_class, outcome
from tests.fuzz.hostile import mutated
from workloads.registry import load_experiment

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
BASES = (DATA / "oracle" / "hugetlb-fresh" / "start", DATA / "oracle" / "boot-idle-numa2" / "start",
         DATA / "oracle" / "wmark-recompute" / "s00-mfk128-wsf10", DATA / "kernels" / "5.4",
         DATA / "kernels" / "6.12")
EXTRA = {
    "iomem": "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n"
             "00100000-1ffdffff : System RAM\n  01000000-01e0276f : Kernel code\n",
    "node0.distance": "10\n",
    "dentry-state": "39815\t20000\t45\t0\t11111\t0\n",
    "inode-state": "30711\t2201\t0\t0\t0\t0\t0\n",
    "transparent_hugepage_enabled": "always [madvise] never\n",
}
"""Files the oracle copies lack, as 6.1 prints them (one node; ``iomem`` as root sees it)."""
WORK = Path(tempfile.mkdtemp(prefix="allocsim-fuzz-proc-"))


def _distances(path: Path) -> object:
    return read_distances(path.parent, [0])


PARSERS: dict[str, Callable[[Path], object]] = {
    "zoneinfo": lambda p: parse_zoneinfo(read_text_file(p), str(p)),
    "buddyinfo": lambda p: parse_buddyinfo(read_text_file(p), str(p)),
    "pagetypeinfo": lambda p: parse_pagetypeinfo(read_text_file(p), str(p)),
    "vmstat": lambda p: parse_vmstat(read_text_file(p), str(p)),
    "sysctl_vm": lambda p: parse_sysctl_vm(read_text_file(p), str(p)),
    "node0.cpulist": lambda p: parse_cpulist(read_text_file(p), str(p)),
    "transparent_hugepage_enabled": lambda p: parse_thp_enabled(read_text_file(p), str(p)),
    "meminfo": lambda p: parse_meminfo(read_text_file(p), str(p)),
    "node0.meminfo": lambda p: parse_meminfo(read_text_file(p), str(p)),
    "dentry-state": lambda p: parse_state(read_text_file(p), str(p)),
    "inode-state": lambda p: parse_state(read_text_file(p), str(p)),
    "iomem": read_iomem,
    "node0.distance": _distances,
}


def _texts(name: str) -> tuple[str, ...]:
    texts = [(base / name).read_text() for base in BASES if (base / name).is_file()]
    return tuple(texts) or (EXTRA[name],)


TEXTS = {name: _texts(name) for name in PARSERS}


def test_every_base_file_parses() -> None:
    for name, parse in PARSERS.items():
        for text in TEXTS[name]:
            path = WORK / "base" / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            result = outcome("proc-base", str(path), functools.partial(parse, path))
            assert not isinstance(result, ProcParseError), name


@fuzz_settings(150)
@given(st.data())
def test_damaged_proc_files(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(PARSERS)))
    content, _ = data.draw(mutated(TEXTS[name], "proc"))
    note_class("proc", f"file {name}")
    path = WORK / "one" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    outcome("proc", str(path), lambda: PARSERS[name](path))


# ---------------------------------------------------------------- whole snapshots


def _snapshot(base: Path) -> Path:
    snap = WORK / "snap"
    shutil.rmtree(snap, ignore_errors=True)
    shutil.copytree(base, snap)
    if base.name == "start" and "numa2" not in str(base):
        for name, text in EXTRA.items():
            (snap / name).write_text(text)
    return snap


def _damage(data: st.DataObject, base: Path) -> Path:
    snap = _snapshot(base)
    names = sorted(p.name for p in snap.iterdir() if p.name in PARSERS or p.name in (
        "node1.cpulist", "node1.distance"))
    name = data.draw(st.sampled_from(names))
    note_class("proc-dir", f"file {name}")
    content, _ = data.draw(mutated((snap / name).read_text(), "proc-dir"))
    (snap / name).write_bytes(content)
    return snap


FROM_PROC = """name: fuzz
seed: 1
duration: 10ms
machine: {{from_proc: {snap}}}
initial_state: {state}
"""


def _config(snap: Path, state: str) -> ExperimentConfig:
    path = WORK / "from_proc.yaml"
    path.write_text(FROM_PROC.format(snap=snap, state=state))
    cfg = load_experiment(path)
    check_fits_host(cfg)
    return cfg


@fuzz_settings(60)
@given(st.data())
def test_damaged_snapshot_directories(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(BASES[:3]))
    snap = _damage(data, base)
    config = str(WORK / "from_proc.yaml")
    outcome("proc-dir", str(snap), lambda: import_machine(snap, WORK / "imported.yaml"))
    outcome("proc-dir", str(snap), lambda: proc_show(snap, data.draw(st.booleans())))
    state = "from_proc" if (snap / "meminfo").is_file() else "fresh"
    outcome("proc-dir", config, lambda: _config(snap, state), also=(str(snap),))


def test_the_undamaged_snapshots_import() -> None:
    for base in BASES[:3]:
        snap = _snapshot(base)
        assert isinstance(import_machine(snap, WORK / "imported.yaml"), list)
        assert proc_show(snap, False).startswith("Node 0, zone")
        state = "from_proc" if (snap / "meminfo").is_file() else "fresh"
        assert _config(snap, state).machine.from_proc == str(snap)


# ---------------------------------------------------------------- regressions


@pytest.mark.parametrize(("name", "old", "new", "expected"), [
    ("zoneinfo", "Node 0, zone      DMA", "Node 999999, zone      DMA", "below 1024"),
    ("zoneinfo", "Node 0, zone      DMA", "Node 70, zone      DMA", "at most 64"),  # (*)
    ("zoneinfo", "pages free     ", "pages free     " + "9" * 5000, "at most 20 digits"),
    ("node0.cpulist", "0-1", "0-1000000000", "below 8192"),
    ("buddyinfo", "Node 0, zone      DMA", "Node " + "9" * 5000 + ", zone      DMA",
     "at most 20 digits"),
    ("sysctl_vm", "vm.min_free_kbytes = ", "vm.min_free_kbytes = " + "9" * 5000,
     "at most 20 digits"),
    ("meminfo", "MemTotal:", "MemTotal: " + "9" * 5000, "a meminfo line"),
])
def test_hostile_numbers_are_one_error_at_their_line(name: str, old: str, new: str,
                                                     expected: str) -> None:
    snap = _snapshot(BASES[0])
    text = (snap / name).read_text()
    assert old in text
    (snap / name).write_text(text.replace(old, new, 1))
    line = text[:text.index(old)].count("\n") + 1
    state = "from_proc"
    if "Node 70" in new:  # (*) a consistent snapshot: node 70 in no other file
        (snap / "buddyinfo").unlink()
        state = "fresh"
    result = outcome("proc-dir", str(snap), lambda: _config(snap, state),
                     also=(str(WORK / "from_proc.yaml"),))
    assert isinstance(result, ProcParseError), result
    assert expected in str(result) and result.line in (line, None), str(result)


def test_a_dentry_state_in_unicode_digits_is_an_error() -> None:
    """``str.isdigit`` is true of '²', which ``int()`` refuses: it was a ValueError."""
    path = WORK / "dentry-state"
    path.write_text("39815 2\u00b2 45 0 0 0\n")
    result = outcome("proc", str(path), lambda: parse_state(read_text_file(path), str(path)))
    assert isinstance(result, ProcParseError) and result.line == 1


# ---------------------------------------------------------------- buddyinfo.periodic

PERIODIC = tuple((DATA / "oracle" / run / "buddyinfo.periodic").read_text()[:3000]
                 for run in ("hugetlb-fresh", "boot-idle", "hugetlb-fragmented-nocompact"))
"""The head of real ``buddyinfo.periodic`` files (``allocsim report --overlay``)."""


@fuzz_settings(60)
@given(mutated(PERIODIC, "overlay"))
def test_damaged_buddyinfo_periodic(case: tuple[bytes, tuple[str, ...]]) -> None:
    path = WORK / "buddyinfo.periodic"
    path.write_bytes(case[0])
    result = outcome("overlay", str(path), lambda: read_buddyinfo_periodic(path),
                     errors=(ReportInputError,))
    if not isinstance(result, ReportInputError):
        assert list(result.columns) == ["time_s", "nid", "zone", "order", "nr_free"]
        assert (result["nr_free"] >= 0).all()


@pytest.mark.parametrize("row", ["Node 0, zone DMA " + "9" * 5000,
                                 "Node 0, zone DMA 1 " + " 1" * 60 + " 9999999999"])
def test_buddyinfo_periodic_counts_beyond_any_machine(row: str) -> None:
    path = WORK / "huge.periodic"
    path.write_text(f"t=1.0\n{row}\n")
    result = outcome("overlay", str(path), lambda: read_buddyinfo_periodic(path),
                     errors=(ReportInputError,))
    assert isinstance(result, ReportInputError) and str(result).startswith(f"{path}:2: ")
