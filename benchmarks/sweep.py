"""Figure 5: a sweep's wall time on one local process against two (``--jobs 1`` / ``--jobs 2``).

The sweep is 16 runs (one point, 16 replicates) of a synthetic churn on a 2-node machine,
each run long enough to take at least :data:`MIN_RUN_SECONDS` of wall time here: a short
calibration run sets the simulated duration. Both sweeps go through
:func:`allocsim.sweep.runner.run_sweep` as the command line runs them (``--jobs 1`` in
this process, ``--jobs 2`` on two spawned worker processes, whose start-up counts), each
into a fresh directory. The figure is the speedup, wall(jobs 1) / wall(jobs 2) (target
>= 1.7 on 2 cores); R is measured before, between and after, so a load spike during one
of them shows.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.reference import simpy_events_per_s

MIN_RUN_SECONDS = 5.0
RUNS = 16
CONFIG = """\
# Benchmark sweep: 16 replicates of a synthetic churn (see benchmarks/sweep.py).
name: bench-sweep
seed: 1
duration: {duration_ms}ms
machine:
  nodes:
    - memory: 512MiB
      cpus: 2
    - memory: 512MiB
      cpus: 2
trace:
  events: false
workloads:
  - name: churn
    type: synthetic
    rate: 20000/s
    order: {{0: 0.9, 1: 0.04, 3: 0.04, 9: 0.02}}
    lifetime: 50ms
    gfp: GFP_KERNEL
sweep:
  points:
    - workloads[0].rate: 20000/s
  replicates: {runs}
"""


def _write(directory: Path, duration_ms: int, runs: int) -> Path:
    path = directory / f"sweep-{duration_ms}ms-{runs}.yaml"
    path.write_text(CONFIG.format(duration_ms=duration_ms, runs=runs), encoding="utf-8")
    return path


def _wall(config: Path, out: Path, jobs: int) -> float:
    from allocsim.sweep.runner import plan_sweep, run_sweep

    t0 = time.perf_counter()
    result = run_sweep(plan_sweep(config), out, jobs=jobs)
    wall = time.perf_counter() - t0
    if result.failed:
        raise RuntimeError(f"benchmark sweep runs failed: {result.failed[0].error}")
    return wall


def sweep_speedup(min_run_seconds: float, runs: int, r_steps: int) -> dict[str, Any]:
    """Figure 5: the wall times of the two sweeps, their ratio and R around them."""
    with tempfile.TemporaryDirectory(prefix="allocsim-bench-") as tmp:
        root = Path(tmp)
        probe_ms = 2000
        _wall(_write(root, 100, 1), root / "warm", 1)  # imports and first-call costs
        per_sim_s = _wall(_write(root, probe_ms, 1), root / "probe", 1) / (probe_ms / 1000)
        duration_ms = max(100, math.ceil(1.2 * min_run_seconds / per_sim_s * 1000))
        # a long run costs less per simulated second than a short one: measure once more
        wall = _wall(_write(root, duration_ms, 1), root / "probe2", 1)
        per_sim_s = wall / (duration_ms / 1000)
        duration_ms = max(100, math.ceil(1.15 * min_run_seconds / per_sim_s * 1000))
        config = _write(root, duration_ms, runs)
        r = [simpy_events_per_s(r_steps)]
        one = _wall(config, root / "jobs1", 1)
        r.append(simpy_events_per_s(r_steps))
        two = _wall(config, root / "jobs2", 2)
        r.append(simpy_events_per_s(r_steps))
        walls = [json.loads((d / "summary.json").read_text())["wall_seconds"]
                 for d in sorted((root / "jobs1" / "runs").iterdir())]
    return {"sweep_runs": runs, "sweep_run_duration_ms": duration_ms,
            "sweep_run_wall_seconds_est": per_sim_s * duration_ms / 1000,
            "sweep_run_wall_seconds_min": min(walls),
            "sweep_run_wall_seconds_median": statistics.median(walls),
            "sweep_jobs1_seconds": one, "sweep_jobs2_seconds": two,
            "sweep_speedup": one / two, "sweep_R_events_per_s": statistics.median(r),
            "sweep_R_samples": r}
