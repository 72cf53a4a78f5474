"""Speed and memory of the model, each speed next to a reference rate R measured beside it.

R is the event rate of a raw SimPy loop (16 processes, each yielding ``env.timeout(1)``
in a loop) in this same process. Absolute rates on this machine mean little: it has two
cores shared with other jobs, and its speed drifts by tens of percent within a minute.
So R is measured interleaved with every speed figure: R, figure, R, figure, ..., R, the
median of each side is taken, and the ratio figure / R is what is held to the target.
A load spike then slows both sides of the ratio instead of only one.

1. Bare core (target >= 3 R): alloc + free operations per second of
   ``PageAllocator.alloc_pages()``/``free_pages()`` with no SimPy and no tracing, on a
   16 GiB machine (2 nodes of 8 GiB, 4 CPUs each, pcp on) with 90% order 0, 2% each of
   orders 1-3 and 4% order 9. The driver loop's own cost counts against the core, so it
   is kept lean (see :mod:`benchmarks.core`) and also reported alone, with stub
   alloc/free functions.
2. End to end (target >= 0.5 R): allocation requests (not page operations, not
   alloc + free) per wall second of the simulation stage of ``allocsim.run.simulate()``
   with event tracing and snapshots on, five synthetic callers (GFP_KERNEL,
   GFP_HIGHUSER_MOVABLE, GFP_KERNEL|__GFP_RECLAIMABLE, GFP_ATOMIC and order-9
   GFP_TRANSHUGE_LIGHT) on a 2-node machine (see :mod:`benchmarks.e2e`).
3. Memory (target <= 12 B/page): peak RSS of a fresh child process that builds a 1 TiB
   2-node machine and runs a short burst of allocations and frees, minus the peak RSS
   of a child that only imports the same modules, over the machine's pages. The
   absolute peak over pages is reported too. The peak is the child's ``VmHWM``, as its
   ``ru_maxrss`` starts from this parent's (see :mod:`benchmarks.children`).
4. Scaling (target <= 1.5x): ns per operation of the bare-core loop at 4, 16, 64, 256
   and 1024 GiB (2 nodes), each in fresh child processes (R interleaved inside them;
   two children per size, one going up the sizes and one coming back down, pooled);
   the figure is ns/op at 1 TiB over ns/op at 16 GiB. The same ratio with each ns/op
   multiplied by its children's R is shown beside it, as the children run at
   different times.

5. Sweep (target >= 1.7x): wall time of a 16-run sweep, each run at least 5 s, on
   ``--jobs 1`` over ``--jobs 2`` (see :mod:`benchmarks.sweep`).
6. Report (target <= 1): the time ``build_report()`` takes over its budget, the larger of
   25 % of the run's wall time and 3 s, for the end-to-end callers' runs of about 100,000
   and 1,000,000 allocation requests (see :mod:`benchmarks.report`).

``--quick`` shrinks everything (smaller machines for 3 and 4: the JSON's ``memory_gib``,
``growth_from_gib`` and ``growth_to_gib`` say which) for a smoke run. ``--json`` prints
one JSON object on stdout instead of the table; progress always goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date
from typing import Any

import simcore
from allocsim.provenance import source_commit
from benchmarks.children import scaling_and_memory
from benchmarks.core import CoreBench, driver_ops_per_s
from benchmarks.e2e import EndToEnd
from benchmarks.reference import Paired, interleave, simpy_events_per_s
from benchmarks.report import report_speed
from benchmarks.sweep import sweep_speedup
from benchmarks.table import format_table

TARGETS = {"bare_core_target_ratio": 3.0, "e2e_target_ratio": 0.5,
           "bytes_per_page_target": 12.0, "growth_target": 1.5, "sweep_speedup_target": 1.7,
           "report_over_budget_target": 1.0}


@dataclass(frozen=True)
class Plan:
    """How much of each benchmark to run."""

    r_steps: int
    """Timeouts per process in one R sample (16 processes)."""
    core_steps: int
    """Steps (one free + one alloc) per bare-core round."""
    core_rounds: int
    e2e_duration_ms: int
    """Simulated length of one end-to-end run."""
    e2e_rounds: int
    sizes_gib: tuple[int, ...]
    """Machine sizes for scaling; the largest is also the memory figure."""
    child_steps: int
    child_rounds: int
    child_passes: int
    """Children per size: passes up and down the sizes, pooled."""
    sweep_run_seconds: float
    """Least wall time of one run of the figure-5 sweep."""
    sweep_runs: int
    report_sizes: tuple[int, ...]
    """Allocation requests of the runs whose reports figure 6 times."""
    report_rounds: int


FULL = Plan(r_steps=12_500, core_steps=60_000, core_rounds=7, e2e_duration_ms=5_000,
            e2e_rounds=5, sizes_gib=(4, 16, 64, 256, 1024), child_steps=20_000,
            child_rounds=5, child_passes=2, sweep_run_seconds=5.0, sweep_runs=16,
            report_sizes=(100_000, 1_000_000), report_rounds=3)
QUICK = Plan(r_steps=2_000, core_steps=5_000, core_rounds=2, e2e_duration_ms=300,
             e2e_rounds=1, sizes_gib=(4, 16), child_steps=2_000, child_rounds=1,
             child_passes=1, sweep_run_seconds=0.3, sweep_runs=4, report_sizes=(10_000,),
             report_rounds=1)


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def bare_core(plan: Plan) -> dict[str, Any]:
    """Figure 1 and the driver's cost alone."""
    bench = CoreBench(16, plan.core_steps)
    paired = interleave(bench.ops_per_s, lambda: simpy_events_per_s(plan.r_steps),
                        plan.core_rounds)
    driver = statistics.median(driver_ops_per_s(plan.core_steps, seed=i)
                               for i in range(plan.core_rounds))
    return {**_paired("bare_core", "ops_per_s", paired),
            "bare_core_ns_per_op": 1e9 / paired.figure,
            "bare_core_failed_slots": bench.failed_slots(),
            "driver_ops_per_s": driver, "driver_ns_per_op": 1e9 / driver}


def end_to_end(plan: Plan) -> dict[str, Any]:
    """Figure 2, with what the last run did."""
    runs = EndToEnd(plan.e2e_duration_ms)
    paired = interleave(runs.requests_per_s, lambda: simpy_events_per_s(plan.r_steps),
                        plan.e2e_rounds)
    s = runs.summary
    return {**_paired("e2e", "requests_per_s", paired), "e2e_failures": runs.failures,
            "e2e_alloc_requests": s["alloc_requests"], "e2e_events_traced": s["events_traced"],
            "e2e_snapshots": s["snapshots"], "e2e_simulated_seconds": s["simulated_seconds"]}


def _paired(name: str, unit: str, p: Paired) -> dict[str, Any]:
    return {f"{name}_{unit}": p.figure, f"{name}_R_events_per_s": p.r,
            f"{name}_ratio": p.ratio, f"{name}_samples": list(p.figure_samples),
            f"{name}_R_samples": list(p.r_samples)}


def memory_and_scaling(plan: Plan) -> dict[str, Any]:
    """Figures 3 and 4, from the child processes."""
    scaling, mem = scaling_and_memory(list(plan.sizes_gib), plan.child_steps,
                                      plan.child_rounds, plan.r_steps, plan.child_passes)
    return {"bytes_per_page_1tib": mem.bytes_per_page,
            "bytes_per_page_1tib_absolute": mem.absolute_bytes_per_page,
            "memory_gib": mem.gib, "memory_pages": mem.pages,
            "memory_peak_rss_kib": mem.peak_rss_kib, "memory_import_rss_kib": mem.import_rss_kib,
            "memory_peak_rss_source": mem.source, "memory_ru_maxrss_kib": mem.ru_maxrss_kib,
            "memory_import_ru_maxrss_kib": mem.import_ru_maxrss_kib,
            "growth_16g_to_1t": scaling.growth, "growth_r_normalized": scaling.growth_r_normalized,
            "growth_from_gib": scaling.from_gib, "growth_to_gib": scaling.to_gib,
            "ns_per_op_by_gib": {str(s["gib"]): s["ns_per_op"] for s in scaling.sizes},
            "scaling": scaling.sizes}


def collect(plan: Plan, quick: bool = False) -> dict[str, Any]:
    """Run every benchmark of ``plan``; returns the JSON-ready results."""
    t0 = time.perf_counter()
    _progress("1/6 bare core")
    r: dict[str, Any] = bare_core(plan)
    _progress("2/6 end to end")
    r.update(end_to_end(plan))
    _progress("3/6 and 4/6 memory and scaling (child processes)")
    r.update(memory_and_scaling(plan))
    _progress(f"5/6 a {plan.sweep_runs}-run sweep, --jobs 1 then --jobs 2")
    r.update(sweep_speedup(plan.sweep_run_seconds, plan.sweep_runs, plan.r_steps))
    _progress("6/6 report time against its run")
    r.update(report_speed(plan.report_sizes, plan.report_rounds, plan.r_steps))
    r["R_samples"] = (r["bare_core_R_samples"] + r["e2e_R_samples"] + r["sweep_R_samples"]
                      + r["report_R_samples"])
    r["R_events_per_s"] = statistics.median(r["R_samples"])
    r.update(TARGETS)
    r["bare_core_pass"] = r["bare_core_ratio"] >= r["bare_core_target_ratio"]
    r["e2e_pass"] = r["e2e_ratio"] >= r["e2e_target_ratio"]
    r["memory_pass"] = r["bytes_per_page_1tib"] <= r["bytes_per_page_target"]
    r["growth_pass"] = r["growth_16g_to_1t"] <= r["growth_target"]
    # --quick runs are too short for a speedup: process start-up dominates them
    r["sweep_pass"] = None if quick else r["sweep_speedup"] >= r["sweep_speedup_target"]
    r["report_pass"] = r["report_over_budget"] <= r["report_over_budget_target"]
    r.update(compiled=bool(getattr(simcore, "COMPILED", False)), quick=quick,
             date=date.today().isoformat(), git_commit=source_commit(),
             machine={"python": platform.python_version(), "cpus": os.cpu_count(),
                      "platform": platform.platform()},
             elapsed_seconds=time.perf_counter() - t0)
    return r


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print the table, or one JSON object with --json."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object on stdout instead of the table")
    args = ap.parse_args(argv)
    results = collect(QUICK if args.quick else FULL, quick=args.quick)
    print(json.dumps(results, indent=2, sort_keys=True) if args.json else format_table(results))
    return 0
