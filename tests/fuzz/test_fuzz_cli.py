"""Hostile files through the real command line, and absurd machines refused before building.

The first tests run ``python -m allocsim`` as a user would, on the worst inputs the fuzzers
know (an alias bomb, 5,000 levels of nesting, tags that would build Python objects, NUL
and non-UTF-8 bytes, a 4,301-digit integer, a file of a million nodes, 1 PiB and 1 EiB of
RAM, order 40, a run whose snapshots need terabytes), and check what the user sees: exit
status 2, one stderr line per file naming it, no traceback, and a process that stayed
small and quick (its own peak RSS and CPU time, from ``wait4()``). The absurd-machine tests
check the refusal in-process: the estimate and the host's limit in the message, under
the fuzzers' watchdog.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import allocsim.hostmem as hostmem
from allocsim.cli import main
from simcore.config.footprint import Footprint, estimate_footprint, estimate_run_footprint
from simcore.config.types import MachineConfig, NodeConfig
from simcore.errors import ConfigError
from tests.fuzz.fuzzing import outcome
from tests.fuzz.hostile import alias_bomb
from workloads.registry import load_experiment

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
QUICKSTART = REPO / "configs" / "quickstart.yaml"
SNAPSHOT = REPO / "tests" / "data" / "oracle" / "hugetlb-fresh" / "start"
PWNED = Path("/tmp/allocsim-fuzz-pwned")
"""What ``!!python/object/apply:os.system ['touch ...']`` would create if a tag ran."""
SMALL_RSS = 256 << 20
"""A refused input leaves the process this small (it is about 45 MiB)."""
QUICK_CPU_S = 30.0


def _config(old: str, new: str) -> str:
    text = QUICKSTART.read_text()
    assert old in text
    return text.replace(old, new, 1)


NODES = "name: x\nseed: 1\nduration: 1s\nmachine:\n  nodes:\n"
NODE = "    - {memory: 2MiB, cpus: 1}\n"
HOSTILE_FILES: dict[str, str | bytes] = {
    "bomb.yaml": _config("seed: 42", f"seed: {alias_bomb(9, 9)}"),
    "deep.yaml": _config("seed: 42", "seed: " + "[" * 5000 + "]" * 5000),
    "python-apply.yaml": _config("seed: 42", f"seed: !!python/object/apply:os.system "
                                             f"['touch {PWNED}']"),
    "python-name.yaml": _config("seed: 42", "seed: !!python/name:os.system"),
    "custom-tag.yaml": _config("seed: 42", "seed: !custom 42"),
    "nul.yaml": _config("seed: 42", "seed: 4\x002"),
    "latin1.yaml": _config("name: quickstart", "name: caf\xe9").encode("latin-1"),
    "bigint.yaml": _config("seed: 42", "seed: " + "9" * 4301),
    "million-nodes.yaml": NODES + NODE * 1_000_000,
    "65-nodes.yaml": NODES + NODE * 65,
    "one-pib.yaml": _config("memory: 256MiB", "memory: 1PiB"),
    "one-eib.yaml": _config("memory: 256MiB", "memory: 1EiB"),
    "16-eib.yaml": _config("memory: 256MiB", "memory: 16EiB"),
    "order-40.yaml": _config("  transparent_hugepage: always", "  max_order: 40"),
    "a-century.yaml": _config("duration: 3s", "duration: 876000h"),
    "empty.yaml": "",
}
"""File -> content; each is refused with one line naming it."""


@dataclass
class Finished:
    """A finished ``python -m allocsim`` process."""

    status: int
    stdout: str
    stderr: str
    peak_rss: int
    cpu_s: float


HWM = """import atexit, runpy, sys
out = sys.argv.pop(1)
def hwm():  # peak RSS of this program alone (ru_maxrss would count the forking parent's)
    lines = open("/proc/self/status").read().splitlines()
    kib = next(line.split()[1] for line in lines if line.startswith("VmHWM:"))
    open(out, "w").write(kib)
atexit.register(hwm)
runpy.run_module("allocsim", run_name="__main__", alter_sys=True)
"""
"""``python -m allocsim ARGV``, as ``runpy`` runs it, writing its peak RSS at exit."""


def _run_all(tmp_path: Path, argvs: list[list[str]]) -> list[Finished]:
    """Run each argv as ``python -m allocsim ARGV`` (in parallel): output, peak RSS, CPU."""
    procs = []
    for i, argv in enumerate(argvs):
        out, err = (tmp_path / f"{i}.out").open("w"), (tmp_path / f"{i}.err").open("w")
        procs.append(subprocess.Popen([sys.executable, "-c", HWM, str(tmp_path / f"{i}.hwm"),
                                       *argv], cwd=tmp_path, env=ENV, stdout=out, stderr=err))
        out.close()
        err.close()
    done = []
    for i, p in enumerate(procs):
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        done.append(Finished(p.returncode, (tmp_path / f"{i}.out").read_text(),
                             (tmp_path / f"{i}.err").read_text(),
                             int((tmp_path / f"{i}.hwm").read_text()) * 1024,
                             usage.ru_utime + usage.ru_stime))
    return done


def _assert_refused(run: Finished, names: list[str]) -> list[str]:
    """Exit 2, no traceback, one ``allocsim: error:`` line per name, in order, naming it."""
    assert run.status == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("allocsim: error: ")]
    assert len(lines) == len(names), run.stderr
    for line, name in zip(lines, names, strict=True):
        assert line.startswith(f"allocsim: error: {name}"), (line, name)
        assert "expected " in line, line
    assert run.peak_rss < SMALL_RSS and run.cpu_s < QUICK_CPU_S, (run.peak_rss, run.cpu_s)
    return lines


def test_validate_refuses_every_hostile_file_in_one_line_each(tmp_path: Path) -> None:
    PWNED.unlink(missing_ok=True)
    for name, content in HOSTILE_FILES.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    names = list(HOSTILE_FILES)
    run, = _run_all(tmp_path, [["validate", *names]])
    lines = _assert_refused(run, names)
    assert run.stderr.splitlines()[-1] == (f"allocsim: {len(names)} of {len(names)} files "
                                           "failed validation")
    assert not PWNED.exists(), "a YAML tag ran a command"
    by_name = dict(zip(names, lines, strict=True))
    assert "alias bomb" in by_name["bomb.yaml"]
    assert "levels of nested" in by_name["deep.yaml"]
    assert "could not determine a constructor" in by_name["python-apply.yaml"]
    assert "at most 1 MiB" in by_name["million-nodes.yaml"]
    assert "a list of 1..64 entries" in by_name["65-nodes.yaml"]
    for name in ("one-pib.yaml", "one-eib.yaml", "a-century.yaml"):
        assert "fits in this host's available memory" in by_name[name], by_name[name]
        assert "it needs about" in by_name[name]
    assert "below 16 EiB" in by_name["16-eib.yaml"]
    assert "machine.max_order: expected an integer in 1..16, got 40" in by_name["order-40.yaml"]


def test_run_set_proc_and_trace_commands_refuse_hostile_input(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(SNAPSHOT, snap)
    zoneinfo = (snap / "zoneinfo").read_text()
    (snap / "zoneinfo").write_text(zoneinfo.replace("Node 0, zone   Normal",
                                                    "Node 999999, zone   Normal", 1))
    line = zoneinfo[:zoneinfo.index("Node 0, zone   Normal")].count("\n") + 1
    (tmp_path / "trace.txt.gz").write_bytes(b"\x1f\x8b\x08\x00junk")
    out = tmp_path / "runs"
    runs = _run_all(tmp_path, [
        ["run", str(QUICKSTART), "-o", "runs", "-q", "--set", "machine.nodes[0].memory=1PiB"],
        ["run", str(QUICKSTART), "-o", "runs", "-q", "--set",
         "seed=!!python/object/apply:os.system ['true']"],
        ["proc", "import", "snap", "-o", "x.yaml"],
        ["proc", "show", "snap"],
        ["trace", "import", "trace.txt.gz", "-o", "t.parquet"],
    ])
    assert "available memory" in _assert_refused(runs[0], [str(QUICKSTART)])[0]
    assert "one YAML scalar" in runs[1].stderr and runs[1].status == 2  # argparse's usage error
    for run in runs[2:4]:
        _assert_refused(run, [f"snap/zoneinfo:{line}: expected a node number below 1024"])
    _assert_refused(runs[4], ["trace.txt.gz"])
    assert not out.exists() or not list(out.iterdir())
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path / "t.parquet").exists()


def test_replay_sweep_and_rerun_refuse_hostile_files(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bomb = tmp_path / "machine.yaml"
    bomb.write_text(f"machine: {alias_bomb(9, 9)}\n")
    trace = tmp_path / "trace.txt"
    trace.write_text("# tracer: nop\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(_config("seed: 42", "seed: 42\nsweep: {grid: {seed: !!python/name:os."
                             "system}}"))
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"config": {"name": "x", "seed": ' + "9" * 5000 + "}}")
    cases = [
        (["replay", str(trace), "--machine", str(bomb), "-o", str(tmp_path / "r"),
          "--no-report", "-q"], str(bomb)),
        (["sweep", str(sweep), "-o", str(tmp_path / "s")], str(sweep)),
        (["validate", str(sweep)], str(sweep)),
        (["run", "--from", str(manifest), "-o", str(tmp_path / "m"), "-q"], str(manifest)),
    ]
    for argv, name in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert err.startswith(f"allocsim: error: {name}"), err
    assert not any((tmp_path / d).exists() for d in ("r", "s", "m"))


# ---------------------------------------------------------------- absurd machines


def _refusal(name: str, text: str, tmp_path: Path) -> ConfigError:
    path = tmp_path / name
    path.write_text(text)
    result = outcome("absurd", str(path),
                     lambda: hostmem.check_fits_host(load_experiment(path)))
    assert isinstance(result, ConfigError), result
    return result


@pytest.mark.parametrize(("memory", "needs"), [("1PiB", "2.0 TiB"), ("1EiB", "2.0 PiB"),
                                               ("4096PB", "7.1 PiB")])
def test_a_huge_machine_is_refused_with_its_estimate_and_the_limit(
        memory: str, needs: str, tmp_path: Path) -> None:
    error = _refusal("huge.yaml", _config("memory: 256MiB", f"memory: {memory}"), tmp_path)
    assert error.key == "machine" and f"{needs} of per-page state" in str(error)
    assert "it needs about " in str(error)
    assert "fits in this host's available memory (" in str(error)


def test_a_machine_above_the_available_memory_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_experiment(QUICKSTART)
    need = estimate_run_footprint(cfg).total
    monkeypatch.setattr(hostmem, "available_bytes", lambda: need)
    assert hostmem.check_fits_host(cfg).total == need
    monkeypatch.setattr(hostmem, "available_bytes", lambda: need - 1)
    error = _refusal("q.yaml", QUICKSTART.read_text(), tmp_path)
    assert f"({hostmem.format_size_approx(need - 1)}); it needs about" in str(error)


@pytest.mark.parametrize(("old", "new", "key", "expected"), [
    ("  transparent_hugepage: always", "  max_order: 40", "machine.max_order", "1..16"),
    ("  transparent_hugepage: always", "  pageblock_order: 40", "machine.pageblock_order",
     "1..16"),
    ("    - memory: 256MiB\n      cpus: 2\n    - memory: 256MiB\n      cpus: 2\n",
     "    - {memory: 256MiB, cpus: 2}\n" * 65, "machine.nodes", "1..64 entries"),
    ("cpus: 2", "cpus: 1000000", "machine.nodes[0].cpus", "0..8192"),
])
def test_absurd_shapes_are_refused_by_their_key(old: str, new: str, key: str, expected: str,
                                                tmp_path: Path) -> None:
    error = _refusal("shape.yaml", _config(old, new), tmp_path)
    assert error.key == key and expected in str(error) and error.line is not None


def test_a_million_nodes_are_estimated_without_being_laid_out() -> None:
    """A file cannot name more than 64 nodes (nor a snapshot), but the estimate itself
    stays arithmetic: no zone of a million-node machine is built before it is refused."""
    machine = MachineConfig(nodes=(NodeConfig(memory_pages=512, cpus=1),) * 1_000_000)
    footprint = outcome("absurd", "a million nodes", lambda: estimate_footprint(machine))
    assert isinstance(footprint, Footprint) and footprint.nr_pfns >= 512 * 1_000_000
