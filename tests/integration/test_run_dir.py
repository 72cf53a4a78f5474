"""The run directory: every promised file, numbers that agree with the trace, crash safety."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

import allocsim.run as run_mod
import simcore
from allocsim.cli import main
from allocsim.run import effective_config, simulate
from simcore.config.parse import parse_config
from simcore.formats import trace_schema as ts
from simcore.sim.machine import Machine
from simcore.sim.recorder import SnapshotRecorder
from simcore.sim.tracer import RecordingTracer
from workloads.registry import load_experiment, workload_parsers

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

# Three callers; "hog" pins order-9 blocks forever until the zones reach their MIN
# watermark, so later hog requests fail (costly, no retry), and "huge" asks for order-10
# blocks, which stop existing once hog has pinned the zones: failures by order and by
# caller are both non-trivial. Nothing is reclaimable, and churn's requests are
# __GFP_NORETRY, so they fail too rather than call the OOM killer.
CONFIG = """\
# Small run-directory test machine: one 256 MiB node, 200 ms.
name: rundir
seed: 7
duration: 200ms
machine:
  nodes:
    - memory: 256MiB
      cpus: 2
trace:
  events: true
  snapshot_interval: 20ms
workloads:
  - name: churn
    type: synthetic
    rate: 5000/s
    order: {0: 0.8, 1: 0.1, 3: 0.1}
    lifetime: {exponential: 10ms}
    gfp: GFP_KERNEL|__GFP_NORETRY
  - name: hog
    type: synthetic
    rate: 1000/s
    order: 9
    lifetime: forever
    gfp: GFP_HIGHUSER_MOVABLE
  - name: huge
    type: synthetic
    rate: 50/s
    order: 10
    lifetime: 1ms
    gfp: GFP_KERNEL|__GFP_NOWARN
"""

TRACE_FILES = (ts.EVENTS_FILE, ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE)
RUN_FILES = (ts.MANIFEST_FILE, ts.SUMMARY_FILE, ts.CONFIG_FILE, *TRACE_FILES)


def _write_config(directory: Path, text: str = CONFIG) -> Path:
    path = directory / "rundir.yaml"
    path.write_text(text)
    return path


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One complete run through the CLI (with its report): (config path, run dir)."""
    root = tmp_path_factory.mktemp("rundir")
    cfg = _write_config(root)
    out = root / "runs"
    assert main(["run", str(cfg), "-o", str(out), "-q"]) == 0
    (run_dir,) = [p for p in out.iterdir()]
    return cfg, run_dir


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_every_file_is_written(finished: tuple[Path, Path]) -> None:
    _, run_dir = finished
    assert run_dir.name == "rundir-seed7"
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    report = run_dir / ts.REPORT_DIR
    assert (report / "report.pdf").read_bytes().startswith(b"%PDF")
    pngs = sorted(report.glob("*.png"))
    assert pngs
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    for name in ("zoneinfo.txt", "buddyinfo.txt", "pagetypeinfo.txt", "vmstat.txt"):
        assert (run_dir / name).is_file(), name
    # Nothing temporary is left anywhere, in the run directory or next to it.
    leftovers = [p for p in run_dir.parent.rglob("*") if ".tmp-" in p.name]
    assert not leftovers


def test_manifest(finished: tuple[Path, Path]) -> None:
    cfg_path, run_dir = finished
    manifest = _load_json(run_dir / ts.MANIFEST_FILE)
    assert manifest["status"] == "ok"
    assert manifest["seed"] == 7
    assert manifest["name"] == "rundir"
    assert manifest["finished"]
    assert "error" not in manifest
    for package in ("allocsim", "python", "simpy", "numpy", "pyarrow"):
        assert manifest["versions"][package], package
    assert manifest["versions"]["engine_build"] == simcore.build_description()
    assert manifest["config"]["workloads"][0]["name"] == "churn"


def test_config_yaml_is_the_effective_config(finished: tuple[Path, Path]) -> None:
    """config.yaml is the config with 'auto' resolved to the min_free_kbytes really used."""
    cfg_path, run_dir = finished
    cfg = load_experiment(cfg_path)
    assert cfg.sysctl.min_free_kbytes is None  # the source file says auto (by default)
    text = (run_dir / ts.CONFIG_FILE).read_text()
    assert text.startswith("# Effective config.")
    again = parse_config(yaml.safe_load(text), cfg.source, workload_parsers())
    used = Machine.from_config(cfg).mm.min_free_kbytes
    assert again.sysctl.min_free_kbytes == used > 0
    assert again == effective_config(cfg, used)
    manifest = _load_json(run_dir / ts.MANIFEST_FILE)
    assert manifest["min_free_kbytes_source"] == "auto"


def test_rerunning_config_yaml_gives_the_same_trace(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    """The effective config is re-runnable and builds the same machine: same trace bytes."""
    _, run_dir = finished
    again = simulate(load_experiment(run_dir / ts.CONFIG_FILE), tmp_path, report=False)
    assert (again.run_dir / ts.EVENTS_FILE).read_bytes() == (run_dir / ts.EVENTS_FILE).read_bytes()
    assert (again.run_dir / "zoneinfo.txt").read_text() == (run_dir / "zoneinfo.txt").read_text()


def test_manifest_config_round_trips(finished: tuple[Path, Path]) -> None:
    """manifest['config'] -> YAML text -> parse gives the same config as config.yaml."""
    _, run_dir = finished
    manifest = _load_json(run_dir / ts.MANIFEST_FILE)
    text = yaml.safe_dump(manifest["config"], sort_keys=False)
    source = str(run_dir / ts.CONFIG_FILE)
    assert parse_config(yaml.safe_load(text), source, workload_parsers()) == \
        load_experiment(run_dir / ts.CONFIG_FILE)


def test_summary_matches_the_trace(finished: tuple[Path, Path]) -> None:
    _, run_dir = finished
    summary = _load_json(run_dir / ts.SUMMARY_FILE)
    events = pq.read_table(run_dir / ts.EVENTS_FILE).to_pandas()
    for col in ("event", "caller", "outcome", "path", "zone", "reason"):
        events[col] = events[col].astype(str)
    allocs = events[events.event == ts.MM_PAGE_ALLOC]
    ok = allocs[allocs.outcome == ts.OUTCOME_OK]
    fail = allocs[allocs.outcome == ts.OUTCOME_FAIL]
    assert len(ok) + len(fail) == len(allocs)

    # An order >= MAX_ORDER returns NULL before mm_page_alloc: alloc_order_warn instead.
    warned = events[events.event == ts.ALLOC_ORDER_WARN]
    assert (warned.order > 10).all() and (warned.caller == "huge").all()
    fail = events[(events.event == ts.ALLOC_ORDER_WARN)
                  | ((events.event == ts.MM_PAGE_ALLOC) & (events.outcome == ts.OUTCOME_FAIL))]

    assert summary["events_traced"] == len(events)
    assert summary["alloc_requests"] == len(allocs) + len(warned)
    assert summary["pages_allocated"] == int((2 ** ok.order.astype("int64")).sum())
    frees = events[events.event == ts.MM_PAGE_FREE]
    # Every mm_page_free is an owner's free, a reclaimed page or an OOM victim's page.
    freed = summary["pages_freed"] + summary["pages_reclaimed"] + summary["pages_oom_killed"]
    assert freed == int((2 ** frees.order.astype("int64")).sum())
    by_order = {str(k): int(v) for k, v in fail.groupby("order").size().items()}
    by_caller = {str(k): int(v) for k, v in fail.groupby("caller").size().items()}
    assert summary["failures"]["by_order"] == by_order
    assert summary["failures"]["by_caller"] == by_caller
    # The run was built to fail in both ways; a silent zero would prove nothing.
    assert by_order.get("10", 0) > 0 and by_caller.get("huge", 0) > 0
    assert by_caller.get("hog", 0) > 0
    assert summary["simulated_seconds"] == pytest.approx(0.2)
    assert summary["wall_seconds"] >= 0
    # Snapshots: one per 20 ms from t=0, plus the final one at the end.
    zonestat = pq.read_table(run_dir / ts.ZONESTAT_FILE).to_pandas()
    nr_zones = zonestat.groupby("time_ns").size()
    assert (nr_zones == nr_zones.iloc[0]).all()
    assert summary["snapshots"] == zonestat.time_ns.nunique() == 11
    assert summary["snapshots"] * nr_zones.iloc[0] == len(zonestat)
    assert int(zonestat.time_ns.max()) == 200_000_000


def test_second_run_gets_a_new_directory(tmp_path: Path) -> None:
    cfg = load_experiment(_write_config(tmp_path, CONFIG.replace("200ms", "20ms")))
    out = tmp_path / "runs"
    first = simulate(cfg, out)
    before = {p: p.read_bytes() for p in _files(first.run_dir)}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    second = simulate(cfg, out)
    assert second.run_dir != first.run_dir
    assert second.run_dir.name == "rundir-seed7-2"
    assert {p: p.read_bytes() for p in _files(first.run_dir)} == before
    assert {p: p.stat().st_mtime_ns for p in before} == mtimes
    third = simulate(cfg, out)
    assert third.run_dir.name == "rundir-seed7-3"


# ---------------------------------------------------------------- crash safety


class _SmallFlushTracer(RecordingTracer):
    """Flushes every 50 rows, so a partial events file exists when the run dies."""

    def __init__(self, path: Path, clock: Any, flush_rows: int = 50) -> None:
        super().__init__(path, clock, flush_rows=50)


def _assert_aborted(out: Path, status: str, error_type: str) -> Path:
    (run_dir,) = [p for p in out.iterdir()]
    assert run_dir.name == f"rundir-seed7.{status}", "the name says how the run ended"
    manifest = _load_json(run_dir / ts.MANIFEST_FILE)
    assert manifest["status"] == status
    assert manifest["error"].startswith(error_type)
    assert manifest["finished"]
    assert not (run_dir / ts.EVENTS_FILE).exists()
    assert not (run_dir / ts.SUMMARY_FILE).exists()
    assert not (run_dir / ts.REPORT_DIR).exists()
    # Anything else in the directory must be obviously temporary (no file that a reader
    # could take for a complete output).
    for path in _files(run_dir):
        if path.name != ts.MANIFEST_FILE:
            assert ".tmp-" in path.name, path
    return run_dir


def test_workload_crash_writes_failed_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_mod, "RecordingTracer", _SmallFlushTracer)
    calls = 0

    class CrashingMachine(Machine):
        """Its 300th allocation raises (a subclass: the compiled Machine is immutable)."""

        def alloc(self, *args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == 300:
                raise RuntimeError("workload exploded")
            return (yield from super().alloc(*args, **kwargs))

    monkeypatch.setattr(run_mod, "Machine", CrashingMachine)
    cfg = load_experiment(_write_config(tmp_path))
    out = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="workload exploded"):
        simulate(cfg, out)
    run_dir = _assert_aborted(out, "failed", "RuntimeError: workload exploded")
    manifest = _load_json(run_dir / ts.MANIFEST_FILE)
    assert 0 < manifest["simulated_ns"] < cfg.duration_ns
    assert manifest["stage"] == "simulating"


def _interrupt() -> None:
    raise KeyboardInterrupt


def _interrupt_hidden_by_a_cleanup_error() -> None:
    """Library cleanup code raising its own error during Ctrl-C (matplotlib did)."""
    try:
        raise KeyboardInterrupt
    finally:
        raise AssertionError("No offset for object 12")  # noqa: B012


@pytest.mark.parametrize("interrupt", [_interrupt, _interrupt_hidden_by_a_cleanup_error],
                         ids=["plain", "hidden by a cleanup error"])
def test_keyboard_interrupt_in_cli_exits_130(
    interrupt: Callable[[], None], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(run_mod, "RecordingTracer", _SmallFlushTracer)
    real_take = SnapshotRecorder.take
    calls = 0

    def interrupted_take(self: SnapshotRecorder, now_ns: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            interrupt()
        real_take(self, now_ns)

    monkeypatch.setattr(SnapshotRecorder, "take", interrupted_take)
    cfg = _write_config(tmp_path)
    out = tmp_path / "runs"
    assert main(["run", str(cfg), "-o", str(out), "-q"]) == 130
    captured = capsys.readouterr()
    assert captured.err.strip() == "allocsim: interrupted"
    _assert_aborted(out, "interrupted", "KeyboardInterrupt")


def test_disk_full_in_the_cli_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(*args: Any, **kwargs: Any) -> str:
        raise OSError(28, "No space left on device", "zoneinfo.txt")

    monkeypatch.setattr(run_mod, "proc_texts", full)
    cfg = _write_config(tmp_path, CONFIG.replace("200ms", "20ms"))
    out = tmp_path / "runs"
    assert main(["run", str(cfg), "-o", str(out), "-q", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err == "allocsim: error: zoneinfo.txt: No space left on device\n"
    assert [p.name for p in out.iterdir()] == ["rundir-seed7.failed"]


def test_crash_while_writing_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the traces are closed: status failed, no summary, no temp leftovers."""

    real = run_mod.proc_texts
    calls = []

    def broken(*args: Any, **kwargs: Any) -> dict[str, str]:
        calls.append(1)
        if len(calls) > 1:  # proc/start is written; the end-of-run files are not
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "proc_texts", broken)
    cfg = load_experiment(_write_config(tmp_path, CONFIG.replace("200ms", "20ms")))
    out = tmp_path / "runs"
    with pytest.raises(OSError, match="No space left"):
        simulate(cfg, out)
    (run_dir,) = list(out.iterdir())
    assert run_dir.name == "rundir-seed7.failed"
    manifest = _load_json(run_dir / ts.MANIFEST_FILE)
    assert manifest["status"] == "failed"
    assert manifest["stage"] == "writing outputs"
    assert "No space left" in manifest["error"]
    assert not (run_dir / ts.SUMMARY_FILE).exists()
    assert not [p for p in _files(run_dir) if ".tmp-" in p.name]
    # Whatever trace file did reach its final name is complete (it opens and has rows).
    for name in TRACE_FILES:
        if (run_dir / name).exists():
            assert pq.read_table(run_dir / name).num_rows > 0


def _as_from_a_shell() -> None:
    """Start the run as a shell starts a foreground command: SIGINT at its default, and
    neither it nor SIGTERM blocked. A pytest started as a background job of a shell
    without job control (``.ci/run > log &`` in a script) holds SIGINT ignored from its
    start, and so does every process it starts unless told otherwise: the run then
    ignored the signal, as it should (the faulthandler dump showed it still simulating
    60 s later). No test changes the signal state (``tests/conftest.py`` checks)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def test_real_sigint_exits_130(tmp_path: Path) -> None:
    """Ctrl-C to a real ``allocsim run`` process mid-simulation."""
    long = CONFIG.replace("duration: 200ms", "duration: 1000s")
    _write_config(tmp_path, long)
    proc = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "simcore", "run", "rundir.yaml", "-o",
         "runs", "-q"],
        cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_as_from_a_shell)
    out = tmp_path / "runs"
    deadline = time.monotonic() + 60
    try:
        # Wait until the run has started (its temporary directory holds the manifest).
        while not list(out.glob(".*.tmp-*/manifest.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "run never started"
            time.sleep(0.05)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # say where it was stuck: faulthandler's stacks
            proc.send_signal(signal.SIGABRT)
            _, stuck = proc.communicate(timeout=30)
            raise AssertionError(f"no exit 60 s after SIGINT; its stacks:\n{stuck[-3000:]}") \
                from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "allocsim: interrupted"
    _assert_aborted(out, "interrupted", "KeyboardInterrupt")
