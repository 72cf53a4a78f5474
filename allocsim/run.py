"""One experiment run: build the machine, run the workloads, write the run directory.

Follows desmod's ``simulate(config)``: a directory per run holding the manifest
(effective config, seed, versions, git commit, status), the Parquet traces and
snapshots, ``summary.json`` and end-of-run ``/proc``-format snapshots. The directory is
built under a temporary name and renamed when done; the manifest is written even when
the run fails or is interrupted, and partial traces are never left under their final
names.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

import simcore
from simcore import trace_schema as ts
from simcore.atomic import atomic_write_text
from simcore.config_types import ExperimentConfig
from simcore.fragmentation import format_extfrag_index, format_unusable_index
from simcore.machine import Machine
from simcore.procfmt import format_zoneinfo
from simcore.recorder import SnapshotRecorder
from simcore.snapshots import buddyinfo, pagetypeinfo
from simcore.trace import NullTracer, RecordingTracer, Tracer
from workloads.registry import WORKLOADS, dump_experiment

ProgressFn = Callable[[int, int], None]
"""``progress(now_ns, duration_ns)``, called as the run advances."""
PROGRESS_STEPS = 200


@dataclass(frozen=True)
class RunResult:
    """Where a run went and how it ended."""

    run_dir: Path
    status: str
    summary: dict[str, Any]


def unique_run_dir(out_root: Path, name: str, seed: int) -> Path:
    """``<out>/<name>-seed<seed>``, with ``-2``, ``-3`` ... if that already exists."""
    base = out_root / f"{name}-seed{seed}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = out_root / f"{base.name}-{n}"
    return candidate


def _versions() -> dict[str, str]:
    import numpy
    import pyarrow

    return {
        "allocsim": simcore.__version__, "kernel_model": simcore.KERNEL_VERSION,
        "python": platform.python_version(), "simpy": _dist_version("simpy"),
        "numpy": numpy.__version__, "pyarrow": pyarrow.__version__,
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Run:
    """The state of one run while it executes."""

    def __init__(self, cfg: ExperimentConfig, tmp_dir: Path) -> None:
        self.cfg = cfg
        self.tmp_dir = tmp_dir
        self.manifest: dict[str, Any] = {
            "name": cfg.name, "seed": cfg.seed, "status": "running",
            "config": dump_experiment(cfg), "config_source": cfg.source,
            "versions": _versions(), "git_commit": _git_commit(),
            "started": _now(), "finished": None,
        }
        self.tracer: Tracer = NullTracer()
        if cfg.trace.events:
            self.tracer = RecordingTracer(tmp_dir / ts.EVENTS_FILE, clock=lambda: 0)
        self.machine = Machine.from_config(cfg, self.tracer)
        if isinstance(self.tracer, RecordingTracer):
            env = self.machine.env
            self.tracer.clock = lambda: int(env.now)
        self.recorder = SnapshotRecorder(self.machine.mm)

    def write_manifest(self) -> None:
        atomic_write_text(self.tmp_dir / ts.MANIFEST_FILE,
                          json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")

    def start_processes(self) -> None:
        env = self.machine.env
        env.process(self.recorder.process(env, self.cfg.trace.snapshot_interval_ns))
        rngs = self.machine.spawn_rngs(len(self.cfg.workloads))
        for spec, rng in zip(self.cfg.workloads, rngs, strict=True):
            env.process(WORKLOADS[spec.kind].run(self.machine, spec, rng))

    def simulate(self, progress: ProgressFn | None) -> None:
        env = self.machine.env
        end = self.cfg.duration_ns
        step = max(1, end // PROGRESS_STEPS)
        while env.now < end:
            env.run(until=min(end, int(env.now) + step))
            if progress is not None:
                progress(int(env.now), end)
        self.recorder.take(int(env.now))

    def write_outputs(self, wall_seconds: float) -> dict[str, Any]:
        mm = self.machine.mm
        self.tracer.close()
        self.recorder.write(self.tmp_dir)
        d = self.tmp_dir
        atomic_write_text(d / ts.VMSTAT_FILE, mm.vm.format(mm.nr_free_pages))
        atomic_write_text(d / "buddyinfo.txt", buddyinfo(mm.zones))
        atomic_write_text(d / "pagetypeinfo.txt", pagetypeinfo(mm.zones, show_cma=mm.cma))
        atomic_write_text(d / "zoneinfo.txt", format_zoneinfo(mm.zones))
        rows = [(z.nid, z.name, tuple(z.free_area.nr_free)) for z in mm.zones]
        atomic_write_text(d / "extfrag_index.txt", format_extfrag_index(rows))
        atomic_write_text(d / "unusable_index.txt", format_unusable_index(rows))
        atomic_write_text(d / ts.CONFIG_FILE, yaml.safe_dump(self.manifest["config"],
                                                             sort_keys=False))
        summary = self.summary(wall_seconds)
        atomic_write_text(d / ts.SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    def summary(self, wall_seconds: float) -> dict[str, Any]:
        st = self.machine.stats
        return {
            "simulated_seconds": self.machine.now_ns / 1e9,
            "wall_seconds": round(wall_seconds, 3),
            "alloc_requests": st.alloc_requests,
            "pages_allocated": st.pages_allocated,
            "pages_freed": st.pages_freed,
            "failures": {
                "by_order": {str(k): v for k, v in sorted(st.failures_by_order.items())},
                "by_caller": dict(sorted(st.failures_by_caller.items())),
            },
            "events_traced": self.tracer.events_traced,
            "snapshots": self.recorder.snapshots,
            "bad_page": self.machine.mm.vm.ev["bad_page"],
        }


def simulate(
    cfg: ExperimentConfig, out_root: Path, progress: ProgressFn | None = None
) -> RunResult:
    """Run one experiment and write its run directory under ``out_root``.

    The manifest records ``status``: ``ok``, ``failed`` (with the error) or
    ``interrupted``. Exceptions are re-raised after the manifest is written.
    """
    out_root.mkdir(parents=True, exist_ok=True)
    final_dir = unique_run_dir(out_root, cfg.name, cfg.seed)
    tmp_dir = out_root / f".{final_dir.name}.tmp-{os.getpid()}"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir()
    run = _Run(cfg, tmp_dir)
    run.write_manifest()
    t0 = time.perf_counter()
    try:
        run.start_processes()
        run.simulate(progress)
        summary = run.write_outputs(time.perf_counter() - t0)
    except BaseException as exc:
        _abort(run, exc, final_dir)
        raise
    run.manifest.update(status="ok", finished=_now())
    run.write_manifest()
    os.replace(tmp_dir, final_dir)
    return RunResult(final_dir, "ok", summary)


def _abort(run: _Run, exc: BaseException, final_dir: Path) -> None:
    """Drop partial outputs, record why, and keep the manifest under the final name."""
    if isinstance(run.tracer, RecordingTracer):
        run.tracer.abort()
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    run.manifest.update(status=status, finished=_now(),
                        error=f"{type(exc).__name__}: {exc}",
                        simulated_ns=run.machine.now_ns)
    run.write_manifest()
    os.replace(run.tmp_dir, final_dir)
