"""One experiment run: build the machine, run the workloads, write the run directory.

Follows desmod's ``simulate(config)``: a directory per run holding the manifest
(effective config, seed, versions, git commit, status), the Parquet traces and
snapshots, ``summary.json``, ``/proc``-format snapshots (the end state as ``*.txt``, and
``proc/start``, ``proc/end`` and ``proc/t=<seconds>s`` directories laid out like a real
host's snapshot) and the report.

The directory is built under a hidden temporary name (``.<name>.tmp-<pid>``) and takes
its final name ``<name>-seed<seed>`` only once every file listed in
:func:`expected_outputs` is in it, the report included unless it was not asked for. A
run that fails or is interrupted is renamed ``<name>-seed<seed>.failed`` or
``.interrupted``; its manifest says why and at which stage, and every file in it is
complete (each is written atomically), but its results are not. A process killed
outright (SIGKILL) leaves only the hidden temporary directory, never a final name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import simcore
from allocsim.hostmem import check_fits_host
from allocsim.procsnap import (
    PROC_DIR,
    PROC_END,
    PROC_FILES,
    PROC_START,
    SIM_VMSTAT_FILE,
    proc_node_files,
    proc_snapshot_name,
    write_proc_dir,
)
from allocsim.provenance import snapshot_digests, source_commit
from allocsim.rundir import tmp_dir_name
from simcore.atomic import atomic_write_text
from simcore.config.types import ExperimentConfig
from simcore.config.yamlio import opening_comment
from simcore.errors import AllocsimError, ConfigError, interruption_in
from simcore.formats import trace_schema as ts
from simcore.formats.procstate import proc_texts, simulator_vmstat_text
from simcore.mm.oom_kill import KernelPanic
from simcore.mm.tracepoints import NullTracer, Tracer
from simcore.sim.actions import actions_process
from simcore.sim.audit import Audit, InvariantViolation, Violation, WindowDone
from simcore.sim.initial_state import apply_initial_state
from simcore.sim.machine import Machine
from simcore.sim.pageblock_map import write_pageblock_map
from simcore.sim.pollution import ZoneCensus, pollution_summary, rescan_census
from simcore.sim.pressure import pressure_summary
from simcore.sim.recorder import SnapshotRecorder
from simcore.sim.tracer import RecordingTracer
from workloads.registry import WORKLOADS, dump_experiment

ProgressFn = Callable[[int, int], None]
"""``progress(now_ns, duration_ns)``, called as the run advances."""
SetupFn = Callable[[Machine], None]
"""``setup(machine)``: adds a run's own processes (e.g. a trace replay) before it starts."""
PROGRESS_STEPS = 200


STATUS_OK, STATUS_FAILED, STATUS_INTERRUPTED = "ok", "failed", "interrupted"
STATUS_PANIC = "panic"
"""The modelled kernel panicked (the OOM killer found nothing to kill): the run stopped
there, and every output up to that moment is written, as for ``ok``."""
TEXT_OUTPUTS = ("vmstat.txt", "buddyinfo.txt", "pagetypeinfo.txt", "zoneinfo.txt",
                "extfrag_index.txt", "unusable_index.txt")
"""End-state snapshots in the kernel's text formats (``NAME.txt`` for ``/proc/NAME``)."""
GC_GEN0_THRESHOLD = 100_000
"""Young-generation threshold of the cyclic GC while a run simulates (Python's is 700)."""


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """Run the cyclic garbage collector less often while the simulation runs.

    A run makes several short-lived container objects per request (SimPy events, the
    handles, generator frames) and almost no cycles; with the default threshold the
    collector spends about a tenth of the run walking them. Reference counting still
    frees them at once. The previous thresholds are restored afterwards.
    """
    old = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)


class OutputError(AllocsimError):
    """The run directory cannot be written where it was asked for (one line, exit 2)."""

    def __init__(self, path: Path, expected: str, got: str) -> None:
        super().__init__(path, expected, got)
        self.path, self.expected, self.got = path, expected, got

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, got {self.got}"


@dataclass(frozen=True)
class RunResult:
    """Where a run went and how it ended."""

    run_dir: Path
    status: str
    summary: dict[str, Any]
    report: list[Path]


def expected_outputs(report: bool, proc_snapshots: tuple[str, ...] = (),
                     nids: tuple[int, ...] = (0,)) -> list[str]:
    """The files a complete run directory holds, relative to it (what the README lists).

    ``proc_snapshots`` names the ``proc/t=...`` directories taken on request (those the
    run reached); ``proc/start`` and ``proc/end`` are always there, each with the files
    of every node in ``nids``. With ``report``, the report's PDF and every figure's PNG.
    """
    names = [ts.MANIFEST_FILE, ts.CONFIG_FILE, ts.SUMMARY_FILE, ts.EVENTS_FILE,
             ts.SPANS_FILE, ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE, ts.PAGEBLOCKS_FILE,
             *TEXT_OUTPUTS, SIM_VMSTAT_FILE]
    proc = [*PROC_FILES, *(name for nid in nids for name in proc_node_files(nid))]
    names += [f"{PROC_DIR}/{when}/{name}" for when in (PROC_START, *proc_snapshots, PROC_END)
              for name in proc]
    if report:
        from reports.build import FIGURE_STEMS  # a report's run has imported it already

        names += [f"{ts.REPORT_DIR}/report.pdf",
                  *(f"{ts.REPORT_DIR}/{stem}.png" for stem in FIGURE_STEMS)]
    return names


def missing_outputs(run_dir: Path, report: bool, events: bool = True,
                    proc_snapshots: tuple[str, ...] = (),
                    nids: tuple[int, ...] = (0,)) -> list[str]:
    """What :func:`expected_outputs` names that ``run_dir`` lacks (empty: complete).

    ``events`` False (``trace.events: false``) exempts the events file.
    """
    return [name for name in expected_outputs(report, proc_snapshots, nids)
            if not (run_dir / name).is_file() and (events or name != ts.EVENTS_FILE)]


def unique_run_dir(out_root: Path, base_name: str) -> Path:
    """``<out>/<base_name>``, with ``-2``, ``-3`` ... if that already exists."""
    candidate, n = out_root / base_name, 1
    while candidate.exists():
        n += 1
        candidate = out_root / f"{base_name}-{n}"
    return candidate


def _versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {
        "allocsim": simcore.__version__, "kernel_model": simcore.KERNEL_VERSION,
        "python": platform.python_version(), "simpy": _dist_version("simpy"),
        "numpy": numpy.__version__, "pyarrow": pyarrow.__version__,
        **{name: _dist_version(name) for name in ("pandas", "matplotlib", "PyYAML")},
        "engine_build": simcore.build_description(),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def effective_config(cfg: ExperimentConfig, min_free_kbytes: int) -> ExperimentConfig:
    """``cfg`` with ``min_free_kbytes: auto`` replaced by the value the machine derived.

    Re-running the effective config builds the same machine with no derivation left.
    """
    return dataclasses.replace(
        cfg, sysctl=dataclasses.replace(cfg.sysctl, min_free_kbytes=min_free_kbytes))


def _question(source: str) -> str:
    """The opening comment of the config file the run came from ("" if none or unreadable).

    A rerun (``run --from RUN/manifest.json``) keeps the question that run recorded.
    """
    try:
        text = Path(source).read_text(encoding="utf-8")
        if source.endswith(".json"):
            return str(json.loads(text).get("question") or "")
        return opening_comment(text)
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return ""


class _Run:
    """The state of one run while it executes."""

    def __init__(self, cfg: ExperimentConfig, tmp_dir: Path, report: bool,
                 setup: SetupFn | None = None, audit_every: int | None = None) -> None:
        self.cfg = cfg
        self.audit_every = audit_every
        self.setup = setup
        self.tmp_dir = tmp_dir
        self.report = report
        self.stage = "building the machine"
        self.timings: dict[str, float] = {}
        self.manifest: dict[str, Any] = {
            "name": cfg.name, "seed": cfg.seed, "status": "running",
            "config": dump_experiment(cfg), "config_source": cfg.source,
            "min_free_kbytes_source": "auto" if cfg.sysctl.min_free_kbytes is None else "config",
            "versions": _versions(), "git_commit": source_commit(),
            "compiled": bool(getattr(simcore, "COMPILED", False)),
            "report_requested": report, "started": _now(), "finished": None,
            "question": _question(cfg.source),
        }
        self.tracer: Tracer = NullTracer()
        if cfg.trace.events:
            self.tracer = RecordingTracer(tmp_dir / ts.EVENTS_FILE, clock=lambda: 0)
        t0 = time.perf_counter()
        self.machine = Machine.from_config(cfg, self.tracer)
        if cfg.initial_state is not None:  # a real host's state: record which, and its files
            state = apply_initial_state(self.machine, Path(cfg.initial_state))
            self.manifest["initial_state"] = {**state.as_dict(),
                                              "sha256": snapshot_digests(Path(cfg.initial_state))}
        self.timings["build_seconds"] = time.perf_counter() - t0
        self.effective = effective_config(cfg, self.machine.mm.min_free_kbytes)
        self.manifest["config"] = dump_experiment(self.effective)
        if isinstance(self.tracer, RecordingTracer):
            self.tracer.clock = self.machine.trace_now  # deferred frees carry their expiry
        self.recorder = SnapshotRecorder(self.machine.mm, self.machine.apply_pending_frees)
        self.actions_log: list[dict[str, Any]] = []
        self.panic: KernelPanic | None = None
        self.audit = None if audit_every is None else Audit(self.machine, audit_every)
        if self.audit is not None:
            self.audit.install()
        self.violation: Violation | None = None
        self.proc_snapshots: list[str] = []
        """The ``proc/t=...`` directories written so far."""

    def write_manifest(self) -> None:
        if self.manifest["status"] == "running":  # what a run killed outright was doing
            self.manifest["stage"] = self.stage
        self.manifest["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        atomic_write_text(self.tmp_dir / ts.MANIFEST_FILE,
                          json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")

    def write_proc_snapshot(self, when: str, texts: dict[str, str] | None = None) -> None:
        """``proc/<when>/``: the machine now, as a real host's snapshot directory."""
        write_proc_dir(self.tmp_dir / PROC_DIR / when, texts or proc_texts(self.machine.mm))

    def proc_snapshot_process(self, env: Any) -> Any:
        """SimPy process: ``proc/t=<seconds>s/`` at each ``trace.proc_snapshots`` time.

        Deferred frees due by then are applied first, as for the periodic snapshots.
        """
        for time_ns in sorted(self.cfg.trace.proc_snapshot_times_ns):
            yield env.timeout(time_ns - env.now)
            self.machine.apply_pending_frees()
            self.proc_snapshots.append(proc_snapshot_name(time_ns))
            self.write_proc_snapshot(self.proc_snapshots[-1])

    def start_processes(self) -> None:
        self.write_proc_snapshot(PROC_START)
        env = self.machine.env
        env.process(self.recorder.process(env, self.cfg.trace.snapshot_interval_ns))
        if self.cfg.trace.proc_snapshot_times_ns:
            env.process(self.proc_snapshot_process(env))
        if self.cfg.actions:
            env.process(actions_process(self.machine, self.cfg.actions, self.actions_log))
        rngs = self.machine.spawn_rngs(len(self.cfg.workloads))
        for spec, rng in zip(self.cfg.workloads, rngs, strict=True):
            env.process(WORKLOADS[spec.kind].run(self.machine, spec, rng))
        if self.setup is not None:
            self.setup(self.machine)

    def simulate(self, progress: ProgressFn | None) -> None:
        self.stage = "simulating"
        env = self.machine.env
        end = self.cfg.duration_ns
        step = max(1, end // PROGRESS_STEPS)
        t0 = time.perf_counter()
        with _fewer_gc_passes():
            try:
                while env.now < end:
                    env.run(until=min(end, int(env.now) + step))
                    if progress is not None:
                        progress(int(env.now), end)
                if self.audit is not None:
                    self.audit.finish()
            except KernelPanic as panic:  # the run ends here, as the kernel would
                self.panic = panic
            except InvariantViolation as exc:  # the model is wrong: stop, keep the trace
                self.violation = exc.violation
                self.timings["simulate_seconds"] = time.perf_counter() - t0
                return
        # SimPy events at exactly `end` do not run, but deferred frees due by `end` are
        # applied: they are in the last snapshot and the end-of-run files.
        self.machine.apply_pending_frees()
        self.recorder.take(int(env.now))
        self.timings["simulate_seconds"] = time.perf_counter() - t0

    def write_outputs(self) -> dict[str, Any]:
        self.stage = "writing outputs"
        self.write_manifest()
        mm = self.machine.mm
        self.tracer.close()
        self.recorder.write(self.tmp_dir)
        d = self.tmp_dir
        # The final rescan charges the last claims (pageblock_polluted spans): before the
        # spans are written.
        scan = rescan_census(self.machine)
        write_pageblock_map(self.machine, scan, d / ts.PAGEBLOCKS_FILE)
        self.machine.spans.write(d / ts.SPANS_FILE)
        texts = proc_texts(mm)
        for name in TEXT_OUTPUTS:
            atomic_write_text(d / name, texts[name.removesuffix(".txt")])
        atomic_write_text(d / SIM_VMSTAT_FILE, simulator_vmstat_text(mm))
        self.write_proc_snapshot(PROC_END, texts)
        atomic_write_text(d / ts.CONFIG_FILE, self._config_yaml())
        summary = self.summary(self.timings["simulate_seconds"], scan)
        atomic_write_text(d / ts.SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    def _config_yaml(self) -> str:
        text = yaml.safe_dump(self.manifest["config"], sort_keys=False)
        if self.cfg.sysctl.min_free_kbytes is None:
            text = ("# Effective config. sysctl.min_free_kbytes was 'auto' and is the value the\n"
                    "# machine derived (calculate_min_free_kbytes() and the THP raise).\n" + text)
        return text

    def build_report(self) -> list[Path]:
        """The report, built inside the temporary directory before it is renamed."""
        from reports import build_report

        self.stage = "building the report"
        t0 = time.perf_counter()
        paths = build_report(self.tmp_dir)
        self.timings["report_seconds"] = time.perf_counter() - t0
        return paths

    def summary(self, wall_seconds: float,
                scan: tuple[list[ZoneCensus], np.ndarray]) -> dict[str, Any]:
        """``summary.json``; ``scan`` is :func:`rescan_census` at the end of the run."""
        return {**self._base_summary(wall_seconds), **pressure_summary(self.machine),
                "pollution": pollution_summary(self.machine, scan),
                "actions": self.actions_log,
                **extras_summary(self.machine),
                "panic": None if self.panic is None else {
                    "time_ns": self.panic.time_ns, "reason": self.panic.reason}}

    def _base_summary(self, wall_seconds: float) -> dict[str, Any]:
        st = self.machine.stats
        owners = list(self.machine.owners.values())
        return {
            "simulated_seconds": self.machine.now_ns / 1e9,
            "wall_seconds": round(wall_seconds, 3),
            "alloc_requests": st.alloc_requests,
            "pages_allocated": st.pages_allocated,
            "pages_freed": st.pages_freed,
            "pages_reclaimed": st.pages_reclaimed,
            "pages_oom_killed": st.pages_oom_killed,
            "requests": {"by_caller": {o.name: o.requests for o in owners if o.requests},
                         "by_caller_order": {o.name: _by_order(o.requests_by_order)
                                             for o in owners if o.requests}},
            "failures": {
                "by_order": {str(k): v for k, v in sorted(st.failures_by_order.items())},
                "by_caller": dict(sorted(st.failures_by_caller.items())),
                "by_caller_order": {o.name: _by_order(o.failures_by_order)
                                    for o in owners if o.first_failure_ns >= 0},
                "first_ns": {o.name: o.first_failure_ns for o in owners
                             if o.first_failure_ns >= 0},
            },
            "events_traced": self.tracer.events_traced,
            "snapshots": self.recorder.snapshots,
            "bad_page": self.machine.mm.vm["bad_page"],
        }


def _by_order(counts: Any) -> dict[str, int]:
    """A caller's per-order counts, the orders it used only (keys are orders, as text)."""
    arr = np.asarray(counts)
    return {str(order): int(arr[order]) for order in np.flatnonzero(arr).tolist()}


def _make_tmp_dir(out_root: Path, final_name: str) -> Path:
    """Create ``out_root`` (if needed) and the run's hidden temporary directory in it.

    Raises:
        OutputError: ``out_root`` is a file, or cannot be created or written.
    """
    if out_root.exists() and not out_root.is_dir():
        raise OutputError(out_root, "a directory to hold run directories", "an existing file")
    tmp_dir = out_root / tmp_dir_name(final_name, os.getpid())
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir()
    except OSError as exc:
        raise OutputError(out_root, "a directory this process can write run directories in",
                          exc.strerror or type(exc).__name__) from None
    return tmp_dir


def extras_summary(machine: Machine) -> dict[str, Any]:
    """``summary.json`` sections of a run's own processes (a replay's counts)."""
    from simcore.sim.replay import REPLAY_KEY

    replay = machine.extras.get(REPLAY_KEY)
    return {} if replay is None else {"replay": replay.counts.as_dict()}


def simulate(
    cfg: ExperimentConfig, out_root: Path, progress: ProgressFn | None = None,
    report: bool = True, setup: SetupFn | None = None, dir_name: str | None = None,
    check_invariants: int | None = None,
) -> RunResult:
    """Run one experiment and write its run directory under ``out_root``.

    The directory gets its final name ``<name>-seed<seed>`` only when complete (see the
    module docstring). The manifest records ``status``: ``ok``, ``failed`` (with the
    error and the stage) or ``interrupted``; exceptions are re-raised after the
    directory is renamed ``.failed``/``.interrupted``. ``setup`` adds the run's own
    processes (:data:`SetupFn`); ``dir_name`` replaces ``<name>-seed<seed>``.
    ``check_invariants=N`` audits the machine every N SimPy events
    (:mod:`simcore.sim.audit`); a violation stops the run, which is written as
    ``.failed`` with the trace up to it and the first bad event in its manifest
    (``invariant_violation``).

    Raises:
        simcore.errors.ConfigError: The machine would not fit in this host's memory
            (checked before anything is built or written).
        OutputError: ``out_root`` cannot hold a run directory (nothing is left behind).
    """
    check_fits_host(cfg)
    if check_invariants is not None and check_invariants < 1:
        raise ValueError(f"check_invariants: expected N >= 1 events, got {check_invariants}")
    t_start = time.perf_counter()
    base = dir_name if dir_name is not None else f"{cfg.name}-seed{cfg.seed}"
    tmp_dir = _make_tmp_dir(out_root, unique_run_dir(out_root, base).name)
    try:
        run = _Run(cfg, tmp_dir, report, setup, check_invariants)
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(exc, MemoryError):
            raise ConfigError(cfg.source, "machine", "a machine that fits in this host's "
                              "memory", "out of memory while building it") from None
        raise
    try:
        run.stage = "simulating"
        run.write_manifest()  # from here on an interruption leaves a named directory
        run.start_processes()
        run.simulate(progress)
        if run.audit is not None:
            run.manifest["invariant_audit"] = {"every": run.audit.every,
                                               "events": run.audit.events,
                                               "checks": run.audit.checks}
        if run.violation is not None:
            return _stop_at_violation(run, out_root, base)
        summary = run.write_outputs()
        status = STATUS_OK if run.panic is None else STATUS_PANIC
        run.manifest.update(status=status, finished=_now())
        run.manifest.pop("stage")
        if run.panic is not None:
            run.manifest["panic"] = {"time_ns": run.panic.time_ns, "reason": run.panic.reason}
        run.write_manifest()
        paths = run.build_report() if report else []
        run.manifest["wall_seconds"] = round(time.perf_counter() - t_start, 3)
        run.write_manifest()
        _check_complete(run)
        final_dir = unique_run_dir(out_root, base)
        os.replace(tmp_dir, final_dir)
    except BaseException as exc:
        _abort(run, exc, out_root, base)
        raise
    paths = [final_dir / p.relative_to(tmp_dir) for p in paths]
    return RunResult(final_dir, run.manifest["status"], summary, paths)


def _check_complete(run: _Run) -> None:
    missing = missing_outputs(run.tmp_dir, run.report, run.cfg.trace.events,
                              tuple(run.proc_snapshots),
                              tuple(node.nid for node in run.machine.mm.nodes))
    if missing:
        raise RuntimeError(f"run directory incomplete, missing: {', '.join(missing)}")


def _abort(run: _Run, exc: BaseException, out_root: Path, base: str) -> None:
    """Record why the run stopped and rename it ``<base>.failed``/``.interrupted``.

    Partial traces, the ``proc/`` snapshots taken so far and a partial ``report/`` are
    dropped (every other file in the directory is complete, as each is written
    atomically). If even that fails (the disk is full, the directory is gone), the
    temporary directory is removed so nothing half-written stays.
    """
    if isinstance(run.tracer, RecordingTracer):
        run.tracer.abort()
    # The proc/ snapshots taken so far are complete, but the run's set of them is not;
    # nor is a report cut off while it was being built (its pages are, one by one).
    shutil.rmtree(run.tmp_dir / PROC_DIR, ignore_errors=True)
    shutil.rmtree(run.tmp_dir / ts.REPORT_DIR, ignore_errors=True)
    interrupt = interruption_in(exc)
    status = STATUS_INTERRUPTED if interrupt is not None else STATUS_FAILED
    reason = interrupt if interrupt is not None else exc
    run.manifest.update(status=status, finished=_now(), stage=run.stage,
                        error=f"{type(reason).__name__}: {reason}",
                        simulated_ns=run.machine.now_ns)
    try:
        run.write_manifest()
        os.replace(run.tmp_dir, unique_run_dir(out_root, f"{base}.{status}"))
    except OSError:
        shutil.rmtree(run.tmp_dir, ignore_errors=True)


def _stop_at_violation(run: _Run, out_root: Path, base: str) -> RunResult:
    """The audit found a broken invariant: name the first bad event, keep the trace.

    A check every N events found it up to N - 1 events late: the run is replayed (it is
    deterministic) with a check after every event of that window (:func:`pin_violation`).
    The trace files up to the violation are written (the end-of-run tables that read the
    broken state are attempted, and left out if they fail); no report. The directory is
    ``<base>.failed``; its manifest's ``invariant_violation`` names the event.
    """
    assert run.violation is not None
    if not run.violation.pinned:
        run.stage = "pinning the first bad event"
        run.violation = pin_violation(run.cfg, run.setup, run.violation, run.tmp_dir)
    run.stage = "writing outputs"
    summary: dict[str, Any] = {}
    try:
        summary = run.write_outputs()
    except Exception as exc:  # the broken state may break the end-of-run tables too
        run.tracer.close()
        run.manifest["outputs_error"] = f"{type(exc).__name__}: {exc}"
    run.manifest.update(status=STATUS_FAILED, finished=_now(), stage="simulating",
                        error=f"InvariantViolation: {run.violation.describe()}",
                        invariant_violation=run.violation.as_dict(),
                        simulated_ns=run.machine.now_ns)
    run.write_manifest()
    final_dir = unique_run_dir(out_root, f"{base}.{STATUS_FAILED}")
    os.replace(run.tmp_dir, final_dir)
    return RunResult(final_dir, STATUS_FAILED, summary, [])


def pin_violation(cfg: ExperimentConfig, setup: SetupFn | None, found: Violation,
                  scratch_root: Path) -> Violation:
    """Replay the run, checking every event after ``found.last_good``: the first bad one.

    The replay builds the same machine and processes and runs them the same way (and
    traces, to count each event's trace rows) in a scratch directory it then removes.
    If the replay does not break where the run did (that would be a determinism bug),
    ``found`` is returned unchanged.
    """
    scratch = scratch_root / ".pin"
    scratch.mkdir()
    replay: _Run | None = None
    try:
        replay = _Run(cfg, scratch, report=False, setup=setup)
        replay.audit = Audit(replay.machine, 1, first=found.last_good, last=found.event)
        replay.audit.install()
        replay.start_processes()
        with contextlib.suppress(WindowDone):
            replay.simulate(None)
        return replay.violation if replay.violation is not None else found
    finally:
        if replay is not None and isinstance(replay.tracer, RecordingTracer):
            replay.tracer.abort()
        shutil.rmtree(scratch, ignore_errors=True)
