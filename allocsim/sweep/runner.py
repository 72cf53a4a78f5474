"""``allocsim sweep CONFIG -o DIR``: plan, resume, run, and write the sweep's tables.

``DIR`` holds:

``runs/pPPP-rRR-HASH/``
    One run directory per point ``PPP`` and replicate ``RR`` (``HASH``: the start of its
    config hash), as ``allocsim run --no-report`` writes it; a run that crashed is
    ``...failed`` with its error in its manifest.
``runs.csv``
    One row per run: point, replicate, seed, the swept values, its directory, config
    hash, status and error.
``sweep.parquet``
    The tidy table: one row per run and metric, with the point's values (one column per
    swept key path, as written in the file), ``replicate``, ``seed``, ``metric``,
    ``value`` and ``wall`` (True for a wall-clock metric).
``summary.csv``
    Per point and metric: ``n``, ``missing``, ``mean``, ``std``, ``ci_low``, ``ci_high``
    and ``method`` (:mod:`allocsim.sweep.stats`).
``sweep.json``
    The sweep's manifest: the experiment's name, the file's opening comment
    (``description``: what it asks), the file and its SHA-256, the swept keys, points,
    replicates and seeds, the executor, the counts and the status (``ok``, ``failed`` when some run
    failed, ``interrupted``; ``running`` from its start, so a sweep killed outright says
    so).

Resume: the same command on the same ``DIR`` skips every run whose directory is complete
(found by its config hash, so editing the file re-runs exactly the runs it changes) and
runs the rest; the tables are always rebuilt from the run directories, so an interrupted
and resumed sweep ends with the same values as one that was not. An interrupted sweep
writes ``runs.csv`` and ``sweep.json`` (``interrupted``), not the result tables; one
killed outright leaves ``sweep.json`` (``running``) and no result tables either, as each
attempt removes the previous one's when it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from allocsim.sweep.executors import (
    OK_STATUSES,
    RunRecord,
    run_dask,
    run_inline,
    run_local,
)
from allocsim.sweep.metrics import WALL_METRICS, read_summary, run_metrics
from allocsim.sweep.plan import RunTask, plan_runs, runs_dir
from allocsim.sweep.spec import SweepSpec, parse_sweep, split_sweep
from allocsim.sweep.stats import summarize
from simcore.atomic import atomic_path, atomic_write_text
from simcore.config.override import scalar_text, set_value
from simcore.config.yamlio import read_yaml_lines
from simcore.errors import ConfigError
from workloads.registry import from_origin

ProgressFn = Callable[[RunRecord | None, int, int], None]
"""``progress(record, done, failed)`` after each run finishes (first with None and the
runs found complete)."""


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` did."""

    out: Path
    spec: SweepSpec
    tasks: list[RunTask]
    records: list[RunRecord]
    skipped: int
    status: str
    summary: pd.DataFrame

    @property
    def failed(self) -> list[RunRecord]:
        """The runs that did not complete."""
        return [r for r in self.records if r.status not in OK_STATUSES]


@dataclass(frozen=True)
class SweepPlan:
    """A sweep file, parsed and planned, before anything runs."""

    source: Path
    spec: SweepSpec
    tasks: list[RunTask]
    study: object
    name: str = ""
    """The experiment's ``name`` (the file's stem without one)."""


def plan_sweep(config: Path, overrides: Sequence[tuple[str, object]] = ()) -> SweepPlan:
    """Read ``config``, apply ``--set`` values, and plan every run (validating each).

    Raises:
        simcore.errors.ConfigError: The file, a ``--set`` value or a sweep value is bad.
    """
    source = str(config)
    doc, lines = read_yaml_lines(config)
    set_origins = {}
    for path, value in overrides:
        arg = f"--set {path}={scalar_text(value)}"
        doc = set_value(doc, path, value, arg)
        set_origins[path] = (arg, path)
    try:
        rest, sweep, study = split_sweep(doc, source)
        spec = parse_sweep(sweep, source)
        tasks = plan_runs(rest, spec, source, lines, set_origins)
    except ConfigError as exc:  # named by its --set argument, or by its line in the file
        raise (from_origin(exc, set_origins, lines) if exc.source == source else exc) from None
    return SweepPlan(config, spec, tasks, study, str(rest.get("name") or config.stem))


def run_sweep(plan: SweepPlan, out: Path, jobs: int = 1, scheduler: str | None = None,
              progress: ProgressFn | None = None) -> SweepResult:
    """Run every run of ``plan`` not already complete in ``out``; write the tables.

    Raises:
        KeyboardInterrupt: After ``runs.csv`` and ``sweep.json`` record what was done.
        allocsim.sweep.executors.SchedulerError: ``scheduler`` cannot be used.
    """
    runs = runs_dir(out)
    runs.mkdir(parents=True, exist_ok=True)
    for tmp in runs.glob(".*.tmp-*"):  # a run an earlier attempt was killed in
        shutil.rmtree(tmp, ignore_errors=True)
    records: dict[str, RunRecord] = {}
    todo = []
    for task in plan.tasks:
        done = _completed(runs / task.dir_name, task)
        if done is not None:
            records[task.dir_name] = done
        else:
            todo.append(task)
    skipped = len(records)
    if progress is not None:
        progress(None, skipped, 0)
    executor = _executor(todo, runs, jobs, scheduler)
    manifest = _manifest(plan, jobs, scheduler)
    status = "interrupted"  # unless the loop below ends
    try:
        _start(out, manifest)
        failed = 0
        for record in executor:
            records[record.dir_name] = record
            failed += record.status not in OK_STATUSES
            if progress is not None:
                progress(record, len(records), failed)
        status = "ok" if not failed and all(
            r.status in OK_STATUSES for r in records.values()) else "failed"
    finally:
        manifest.update(runs=len(plan.tasks), skipped=skipped)
        with _interrupts_held():
            ordered, summary = _finish(out, plan, records, status, manifest)
    return SweepResult(out, plan.spec, plan.tasks, ordered, skipped, status, summary)


def _finish(out: Path, plan: SweepPlan, records: dict[str, RunRecord], status: str,
            manifest: dict[str, Any]) -> tuple[list[RunRecord], pd.DataFrame]:
    """Write ``runs.csv``, the result tables unless ``interrupted``, then ``sweep.json``."""
    ordered = [records[t.dir_name] for t in plan.tasks if t.dir_name in records]
    _write_runs_csv(out, plan, ordered)
    summary = pd.DataFrame()
    if status != "interrupted":
        rows = tidy(plan, ordered)
        summary = summarize(rows[~rows.wall], list(plan.spec.keys))
        _write_parquet(out / "sweep.parquet", rows)
        with atomic_path(out / "summary.csv") as tmp:
            summary.to_csv(tmp, index=False, float_format="%.10g")
    manifest.update(status=status, finished=_now(),
                    completed=sum(r.status in OK_STATUSES for r in ordered),
                    failed=sum(r.status not in OK_STATUSES for r in ordered))
    atomic_write_text(out / "sweep.json", json.dumps(manifest, indent=2) + "\n")
    return ordered, summary


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then act on the first one.

    The sweep's bookkeeping (:func:`_finish`) is then whole: an interrupt landing in it
    would leave tables beside a ``sweep.json`` that still says ``running``. Off the main
    thread (where handlers cannot be set) the block runs as it is.
    """
    held: list[int] = []
    try:
        previous = {sig: signal.signal(sig, lambda signum, _: held.append(signum))
                    for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            handler = previous[signal.Signals(held[0])]
            if callable(handler):  # e.g. KeyboardInterrupt, or the CLI's Terminated
                handler(held[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(held[0])


RESULT_TABLES = ("sweep.parquet", "summary.csv")
"""Written only by a sweep that ends (``ok`` or ``failed``), from every run directory."""


def _start(out: Path, manifest: dict[str, Any]) -> None:
    """Record the sweep as ``running`` and drop an earlier attempt's result tables.

    A sweep killed outright (SIGKILL) then leaves ``sweep.json`` saying ``running`` and
    no tables, rather than an earlier attempt's tables beside runs they do not cover.
    """
    atomic_write_text(out / "sweep.json", json.dumps(manifest, indent=2) + "\n")
    for name in RESULT_TABLES:
        (out / name).unlink(missing_ok=True)


def _executor(todo: list[RunTask], runs: Path, jobs: int,
              scheduler: str | None) -> Iterator[RunRecord]:
    if scheduler is not None:
        return run_dask(todo, runs, scheduler)
    if jobs <= 1 or len(todo) <= 1:
        return run_inline(todo, runs)
    return run_local(todo, runs, min(jobs, len(todo)))


def _completed(run_dir: Path, task: RunTask) -> RunRecord | None:
    """The record of a complete run directory of this task (same config hash), or None."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("status") not in OK_STATUSES:  # the name carries the config hash
            return None
        metrics = run_metrics(read_summary(run_dir))
    except (OSError, ValueError, KeyError):
        return None
    return RunRecord(task.point, task.replicate, task.seed, task.config_hash, task.dir_name,
                     str(manifest["status"]), None, metrics)


def tidy(plan: SweepPlan, records: Sequence[RunRecord]) -> pd.DataFrame:
    """The long table: one row per completed run and metric (see the module docstring)."""
    params = {task.dir_name: dict(task.params) for task in plan.tasks}
    keys = list(plan.spec.keys)
    rows: list[dict[str, Any]] = []
    for r in records:
        if r.status not in OK_STATUSES:
            continue
        values = {k: scalar_text(params[r.dir_name].get(k)) for k in keys}
        for metric in sorted(r.metrics):
            rows.append({"point": r.point, **values, "replicate": r.replicate,
                         "seed": r.seed, "run_dir": f"runs/{r.dir_name}",
                         "config_hash": r.config_hash, "metric": metric,
                         "value": r.metrics[metric], "wall": metric in WALL_METRICS})
    columns = ["point", *keys, "replicate", "seed", "run_dir", "config_hash", "metric",
               "value", "wall"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype({"point": "int64", "replicate": "int64", "seed": "int64",
                         "value": "float64", "wall": "bool"})


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _write_runs_csv(out: Path, plan: SweepPlan, records: Sequence[RunRecord]) -> None:
    by_name = {r.dir_name: r for r in records}
    rows = []
    for task in plan.tasks:
        r = by_name.get(task.dir_name)
        rows.append({"point": task.point, **{k: scalar_text(v) for k, v in task.params},
                     "replicate": task.replicate, "seed": task.seed,
                     "run_dir": f"runs/{task.dir_name}", "config_hash": task.config_hash,
                     "status": "not run" if r is None else r.status,
                     "error": "" if r is None or r.error is None else r.error})
    with atomic_path(out / "runs.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)


def _manifest(plan: SweepPlan, jobs: int, scheduler: str | None) -> dict[str, Any]:
    from allocsim.provenance import source_commit

    data = plan.source.read_bytes()
    return {
        "name": plan.name or plan.source.stem, "description": opening_comment(data),
        "config": str(plan.source.resolve()), "config_sha256": hashlib.sha256(data).hexdigest(),
        "keys": list(plan.spec.keys),
        "points": [dict(p.params) for p in plan.spec.points],
        "replicates": plan.spec.replicates,
        "seeds": sorted({t.seed for t in plan.tasks}, key=[t.seed for t in plan.tasks].index),
        "executor": {"scheduler": scheduler} if scheduler else {"jobs": jobs},
        "git_commit": source_commit(), "started": _now(), "status": "running",
        "host_pid": os.getpid(),
    }


def opening_comment(data: bytes) -> str:
    """The comment lines a file opens with, without their ``#`` (one line each).

    Each ``configs/*.yaml`` opens with what it asks and what to expect.
    """
    lines = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines).strip()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

