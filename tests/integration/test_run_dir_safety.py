"""The run directory's promises: complete or clearly not, and output errors in one line.

A directory named ``<name>-seed<seed>`` is complete (report included unless
``--no-report``); a run stopped at any stage is named ``.interrupted``/``.failed`` or
left only as a hidden temporary directory; bad output places and machines too large for
the host get one line and exit 2, with nothing left behind.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

import allocsim.hostmem as hostmem
import allocsim.run as run_mod
import reports.build as report_build
import reports.render as report_render
from allocsim.cli import main
from allocsim.run import expected_outputs, missing_outputs
from simcore.config.footprint import estimate_footprint, estimate_run_footprint
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm.page_alloc import PageAllocator
from simcore.sim.machine import Machine
from simcore.sim.recorder import SnapshotRecorder
from workloads.registry import load_experiment

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
FINAL = "small-seed3"

CONFIG = """\
# A small run for the run-directory safety tests.
name: small
seed: 3
duration: 60ms
machine:
  nodes:
    - {memory: 128MiB, cpus: 2}
trace: {events: true, snapshot_interval: 10ms}
workloads:
  - {name: churn, type: synthetic, rate: 4000/s, order: {0: 0.9, 3: 0.1},
     lifetime: 5ms, gfp: GFP_KERNEL}
"""


def _config(directory: Path, text: str = CONFIG) -> Path:
    path = directory / "small.yaml"
    path.write_text(text)
    return path


def _one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("allocsim: error: "), lines[0]
    return lines[0]


def _no_final_dir_unless_complete(out: Path, report: bool = True) -> None:
    """The invariant: a final-named directory exists only if it is complete."""
    final = out / FINAL
    if final.exists():
        assert missing_outputs(final, report) == []
        manifest = json.loads((final / ts.MANIFEST_FILE).read_text())
        assert manifest["status"] == "ok"


def _no_temp_left(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


# ---------------------------------------------------------------- complete runs


def test_complete_run_has_every_listed_file(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["run", str(_config(tmp_path)), "-o", str(out), "-q"]) == 0
    assert [p.name for p in out.iterdir()] == [FINAL]
    assert missing_outputs(out / FINAL, report=True) == []
    manifest = json.loads((out / FINAL / ts.MANIFEST_FILE).read_text())
    assert manifest["report_requested"] is True
    assert set(manifest["timings"]) == {"build_seconds", "simulate_seconds", "report_seconds"}
    # Each listed file is really there, not just named in the list.
    assert f"{ts.REPORT_DIR}/report.pdf" in expected_outputs(True)
    assert (out / FINAL / ts.REPORT_DIR / "report.pdf").read_bytes().startswith(b"%PDF")


def test_no_report_is_recorded_in_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    assert main(["run", str(_config(tmp_path)), "-o", str(out), "-q", "--no-report"]) == 0
    run_dir = out / FINAL
    assert not (run_dir / ts.REPORT_DIR).exists()
    assert missing_outputs(run_dir, report=False) == []
    assert missing_outputs(run_dir, report=True) != []
    manifest = json.loads((run_dir / ts.MANIFEST_FILE).read_text())
    assert manifest["report_requested"] is False and manifest["status"] == "ok"


# ---------------------------------------------------------------- stopped at each stage


def _raise_on_call(n: int, exc: BaseException, real: Callable[..., Any]) -> Callable[..., Any]:
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise exc
        return real(*args, **kwargs)

    return wrapper


STAGES: dict[str, tuple[str, Callable[[pytest.MonkeyPatch], None]]] = {
    "mid-simulation": ("simulating", lambda mp: mp.setattr(
        SnapshotRecorder, "take", _raise_on_call(3, KeyboardInterrupt(), SnapshotRecorder.take))),
    "text snapshots": ("writing outputs", lambda mp: mp.setattr(
        run_mod, "proc_texts", _raise_on_call(2, KeyboardInterrupt(), run_mod.proc_texts))),
    "summary": ("writing outputs", lambda mp: mp.setattr(
        run_mod._Run, "summary", _raise_on_call(1, KeyboardInterrupt(), run_mod._Run.summary))),
    "report figures": ("building the report", lambda mp: mp.setattr(
        report_build, "page_builders",
        _raise_on_call(1, KeyboardInterrupt(), report_build.page_builders))),
    "report PDF": ("building the report", lambda mp: mp.setattr(
        report_render, "pdf_bytes", _raise_on_call(1, KeyboardInterrupt(),
                                                   report_render.pdf_bytes))),
    "report PNGs": ("building the report", lambda mp: mp.setattr(
        Figure, "savefig", _raise_on_call(3, KeyboardInterrupt(), Figure.savefig))),
    "report PDF merge": ("building the report", lambda mp: mp.setattr(
        report_render, "_merge", _raise_on_call(1, KeyboardInterrupt(), report_render._merge))),
    "final manifest": ("building the report", lambda mp: mp.setattr(
        run_mod._Run, "write_manifest",
        _raise_on_call(4, KeyboardInterrupt(), run_mod._Run.write_manifest))),
}


@pytest.mark.parametrize("point", list(STAGES))
def test_ctrl_c_at_any_stage_leaves_a_directory_that_says_so(
    point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stage, patch = STAGES[point]
    patch(monkeypatch)
    out = tmp_path / "runs"
    assert main(["run", str(_config(tmp_path)), "-o", str(out), "-q"]) == 130
    assert capsys.readouterr().err.strip() == "allocsim: interrupted"
    assert [p.name for p in out.iterdir()] == [f"{FINAL}.interrupted"]
    run_dir = out / f"{FINAL}.interrupted"
    manifest = json.loads((run_dir / ts.MANIFEST_FILE).read_text())
    assert manifest["status"] == "interrupted" and manifest["stage"] == stage
    _no_temp_left(out)
    # `allocsim report` says how the run ended instead of naming a missing file.
    assert main(["report", str(run_dir)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"the run interrupted while {stage}" in line and "KeyboardInterrupt" in line


def test_a_failing_report_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report_render, "pdf_bytes",
                        _raise_on_call(1, OSError(errno.ENOSPC, "No space left on device"),
                                       report_render.pdf_bytes))
    out = tmp_path / "runs"
    with pytest.raises(OSError, match="No space left"):
        run_mod.simulate(load_experiment(_config(tmp_path)), out)
    assert [p.name for p in out.iterdir()] == [f"{FINAL}.failed"]
    manifest = json.loads((out / f"{FINAL}.failed" / ts.MANIFEST_FILE).read_text())
    assert manifest["status"] == "failed" and manifest["stage"] == "building the report"


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while not predicate():
        assert proc.poll() is None, f"run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"never reached {what}"
        time.sleep(0.005)


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "started": lambda out: bool(list(out.glob(".*.tmp-*/manifest.json"))),
    "outputs written": lambda out: bool(list(out.glob(".*.tmp-*/summary.json"))),
    "report being written": lambda out: bool(list(out.glob(".*.tmp-*/report"))),
}


@pytest.mark.parametrize("sig", [signal.SIGTERM], ids=["SIGTERM"])
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_real_kill_at_several_points(point: str, sig: signal.Signals, tmp_path: Path) -> None:
    """A real ``allocsim run`` process killed at a stage: never an incomplete final dir.

    SIGKILL at random points of every stage is test_kill_run.py's (tests/crashkit.py).
    """
    _config(tmp_path, CONFIG.replace("duration: 60ms", "duration: 400ms"))
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simcore", "run", "small.yaml", "-o", "runs", "-q"],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: out.is_dir() and KILL_POINTS[point](out), proc, point)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _no_final_dir_unless_complete(out)
    names = sorted(p.name for p in out.iterdir())
    assert "Traceback" not in stderr
    if names == [FINAL]:  # the run finished between the check and the signal
        return
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == "allocsim: terminated"
    assert names == [f"{FINAL}.interrupted"]
    manifest = json.loads((out / names[0] / ts.MANIFEST_FILE).read_text())
    assert manifest["status"] == "interrupted" and manifest["error"].startswith("Terminated")


# ---------------------------------------------------------------- output and size errors


def test_output_path_is_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("keep me\n")
    assert main(["run", str(_config(tmp_path)), "-o", str(target), "-q"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(target) in line and "an existing file" in line
    assert target.read_text() == "keep me\n"
    _no_temp_left(tmp_path)


def test_output_on_a_read_only_filesystem_simulated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        if tmp_path / "ro" in (self, *self.parents):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    out = tmp_path / "ro" / "runs"
    assert main(["run", str(_config(tmp_path)), "-o", str(out), "-q"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(out) in line and "Read-only file system" in line
    _no_temp_left(tmp_path)


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Any:
    """A real read-only tmpfs, where this machine lets root mount one."""
    mnt = tmp_path / "ro-mount"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)],
                       capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_output_on_a_real_read_only_filesystem(
    tmp_path: Path, read_only_mount: Path
) -> None:
    _config(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "simcore", "run", "small.yaml", "-o", str(read_only_mount), "-q"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r.stderr)
    assert str(read_only_mount) in line and "Read-only file system" in line
    assert list(read_only_mount.iterdir()) == []


HUGE = CONFIG.replace("{memory: 128MiB, cpus: 2}", "{memory: 1024TiB, cpus: 2}")


@pytest.mark.parametrize("command", ["run", "validate"])
def test_machine_too_large_for_the_host_is_refused_before_building(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """1 PiB of simulated RAM needs ~1 TiB of page state: no host here has it."""
    out = tmp_path / "runs"
    argv = ["run", str(_config(tmp_path, HUGE)), "-o", str(out), "-q"] if command == "run" \
        else ["validate", str(_config(tmp_path, HUGE))]
    started = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - started < 10, "it must refuse, not try"
    line = _one_error_line(capsys.readouterr().err)
    assert "small.yaml: machine: expected a machine that fits" in line
    assert "it needs about 2.0 TiB" in line
    assert not out.exists()


def test_host_memory_check_uses_the_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    footprint = estimate_run_footprint(load_experiment(_config(tmp_path)))  # its snapshots too
    monkeypatch.setattr(hostmem, "available_bytes", lambda: footprint.total - 1)
    assert main(["validate", str(_config(tmp_path))]) == 2
    assert "expected a machine that fits" in _one_error_line(capsys.readouterr().err)
    monkeypatch.setattr(hostmem, "available_bytes", lambda: footprint.total)
    assert main(["validate", str(_config(tmp_path))]) == 0
    assert "the machine needs about" in capsys.readouterr().out


def test_out_of_memory_while_building_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class NoMemoryMachine(Machine):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise MemoryError

    # The compiled Machine is an immutable type: replace the name the run uses.
    monkeypatch.setattr(run_mod, "Machine", NoMemoryMachine)
    out = tmp_path / "runs"
    assert main(["run", str(_config(tmp_path)), "-o", str(out), "-q"]) == 2
    assert "out of memory while building it" in _one_error_line(capsys.readouterr().err)
    assert list(out.iterdir()) == []


def test_estimate_covers_what_the_machine_really_allocates() -> None:
    cfg = MachineConfig(nodes=(NodeConfig(96 << 8, cpus=1), NodeConfig(40 << 8, cpus=1)))
    mm = PageAllocator(cfg, SysctlConfig())
    footprint = estimate_footprint(cfg)
    assert footprint.nr_pfns == mm.pages.nr_pages
    assert footprint.page_state == mm.pages.nbytes
    assert footprint.pageblocks == len(mm.pageblock_mt) + len(mm.pb_zone)


# ---------------------------------------------------------------- validate


def test_validate_checks_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _config(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.replace("duration: 60ms", "duration: 60parsecs"))
    worse = tmp_path / "worse.yaml"
    worse.write_text(CONFIG.replace("order: {0: 0.9, 3: 0.1}", "order: 11"))
    assert main(["validate", str(bad), str(good), str(worse)]) == 2
    captured = capsys.readouterr()
    assert captured.out.count(": ok (") == 1 and str(good) in captured.out
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3, errors
    assert str(bad) in errors[0] and "duration" in errors[0]
    assert str(worse) in errors[1] and "workloads[0].order" in errors[1]
    assert errors[2] == "allocsim: 2 of 3 files failed validation"
