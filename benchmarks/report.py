"""Figure 6: how long a run's report takes, against the run it reports on.

The issue's budget: a report takes at most 25 % of its run's wall time, or 3 s, whichever
is larger, for runs of up to a million allocation events, and grows linearly beyond. Two
runs of the end-to-end benchmark's five callers (:mod:`benchmarks.e2e`) are simulated
without a report, one small and one of about a million ``mm_page_alloc`` events; then
``reports.build.build_report()`` is timed on each (median of a few builds, R measured
between them). The figure is the larger report time over its budget (target <= 1). The
time per event of the two sizes is shown too: a report that grew faster than linearly
would show it there.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from allocsim.run import simulate
from benchmarks.e2e import CONFIG
from benchmarks.reference import simpy_events_per_s
from workloads.registry import load_experiment

BUDGET_SHARE = 0.25
BUDGET_FLOOR_S = 3.0
REQUESTS_PER_S = 27_100
"""Allocation requests per simulated second of :data:`benchmarks.e2e.CONFIG`."""


def _run(work: Path, events: int) -> tuple[Path, float, int]:
    """Simulate about ``events`` requests; returns (run dir, run wall s, requests)."""
    duration_ms = max(100, round(events / REQUESTS_PER_S * 1000))
    path = work / f"bench-report-{duration_ms}.yaml"
    path.write_text(CONFIG.format(duration_ms=duration_ms), encoding="utf-8")
    result = simulate(load_experiment(path), work / f"runs-{duration_ms}", report=False)
    timings = result.summary["wall_seconds"]
    manifest_wall = _manifest_wall(Path(result.run_dir))
    return Path(result.run_dir), max(timings, manifest_wall), int(result.summary["alloc_requests"])


def _manifest_wall(run_dir: Path) -> float:
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    return float(manifest.get("wall_seconds") or 0.0)


def _report_seconds(run_dir: Path, out: Path, rounds: int, r_steps: int,
                    r_samples: list[float]) -> float:
    from reports.build import build_report

    times = []
    for i in range(rounds):
        r_samples.append(simpy_events_per_s(r_steps))
        t0 = time.perf_counter()
        build_report(run_dir, out / f"report-{i}")
        times.append(time.perf_counter() - t0)
    r_samples.append(simpy_events_per_s(r_steps))
    return statistics.median(times)


def report_speed(sizes: tuple[int, ...], rounds: int, r_steps: int) -> dict[str, Any]:
    """Figure 6 over runs of about ``sizes`` allocation requests each."""
    import reports.build  # noqa: F401 - imported before timing: a report's import is not its cost

    r_samples: list[float] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="allocsim-bench-report-") as tmp:
        work = Path(tmp)
        for size in sizes:
            run_dir, wall, requests = _run(work, size)
            seconds = _report_seconds(run_dir, work / f"out-{size}", rounds, r_steps, r_samples)
            budget = max(BUDGET_SHARE * wall, BUDGET_FLOOR_S)
            rows.append({"requests": requests, "run_wall_seconds": wall,
                         "report_seconds": seconds, "budget_seconds": budget,
                         "over_budget": seconds / budget,
                         "us_per_request": seconds / max(requests, 1) * 1e6})
    worst = max(rows, key=lambda row: row["over_budget"])
    return {"report_sizes": rows, "report_over_budget": worst["over_budget"],
            "report_seconds_largest": rows[-1]["report_seconds"],
            "report_requests_largest": rows[-1]["requests"],
            "report_R_events_per_s": statistics.median(r_samples),
            "report_R_samples": r_samples}
