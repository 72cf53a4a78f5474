"""Figure 2 (end to end): allocation requests per wall second of ``allocsim run``.

The run goes through the real path: a YAML file written to a temporary directory,
``workloads.registry.load_experiment()``, then ``allocsim.run.simulate(cfg, out,
report=False)`` with event tracing and snapshots on. The figure is the run summary's
``alloc_requests`` over its ``wall_seconds``, which is the simulation stage alone
(``timings.simulate_seconds`` in the manifest): building the machine and writing the
outputs are not counted. Frees are not counted either; every request is freed later.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from allocsim.run import simulate
from workloads.registry import load_experiment

CONFIG = """\
# Benchmark (python -m benchmarks, figure 2): how many allocation requests per wall second
# does a traced run of five synthetic callers sustain on a 2-node 16 GiB machine?
# Expect: no failures; live memory stays far below the machine (about 60 MiB by
# Little's law, most of it THP), so every request is served by the fast path.
name: bench-e2e
seed: 1
duration: {duration_ms}ms
machine:
  nodes:
    - memory: 8GiB
      cpus: 4
    - memory: 8GiB
      cpus: 4
trace:
  events: true
  snapshot_interval: 50ms
workloads:
  - name: kernel
    type: synthetic
    rate: 12000/s
    order: {{0: 0.9, 1: 0.05, 2: 0.03, 3: 0.02}}
    lifetime: {{lognormal: {{median: 20ms, sigma: 1.5}}}}
    gfp: GFP_KERNEL
  - name: user
    type: synthetic
    rate: 10000/s
    order: 0
    lifetime: 300ms
    gfp: GFP_HIGHUSER_MOVABLE
  - name: reclaimable
    type: synthetic
    rate: 3000/s
    order: 0
    lifetime: {{exponential: 500ms}}
    gfp: GFP_KERNEL|__GFP_RECLAIMABLE
  - name: atomic
    type: synthetic
    rate: 2000/s
    order: {{0: 0.8, 1: 0.2}}
    lifetime: 5ms
    gfp: GFP_ATOMIC
  - name: thp
    type: synthetic
    rate: 100/s
    order: 9
    lifetime: 200ms
    gfp: GFP_TRANSHUGE_LIGHT
"""
"""Five callers, 27,100 requests per simulated second; ``duration_ms`` sets the length."""


def run_once(duration_ms: int, work_dir: Path) -> dict[str, Any]:
    """One ``simulate()`` of :data:`CONFIG` under ``work_dir``; returns its summary."""
    path = work_dir / "bench-e2e.yaml"
    path.write_text(CONFIG.format(duration_ms=duration_ms))
    result = simulate(load_experiment(path), work_dir / "runs", report=False)
    return result.summary


class EndToEnd:
    """Repeated runs of :data:`CONFIG`; keeps the last summary for the report."""

    def __init__(self, duration_ms: int) -> None:
        self.duration_ms = duration_ms
        self.summary: dict[str, Any] = {}
        self.failures = 0

    def requests_per_s(self) -> float:
        """Allocation requests per wall second of one run's simulation stage."""
        with tempfile.TemporaryDirectory(prefix="allocsim-bench-") as tmp:
            self.summary = run_once(self.duration_ms, Path(tmp))
        self.failures += sum(self.summary["failures"]["by_order"].values())
        return self.summary["alloc_requests"] / self.summary["wall_seconds"]
