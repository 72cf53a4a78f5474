"""Speed and memory benchmarks, each reported next to an in-process reference.

1. Bare core: alloc/free operations per second of :class:`PageAllocator` on a 16 GiB,
   2-node machine with an order-0-heavy mix (90% order 0), no tracing, no SimPy.
2. End to end: page operations (allocations + frees) per second of a SimPy run of the
   synthetic workload with the recording tracer on.
3. Reference: a raw SimPy timeout loop (events per second) and a raw Python loop
   appending to a list, measured in the same process.
4. Memory: peak RSS of building a 1 TiB machine, minus the peak RSS of a process that
   only imports the model, per simulated page (measured in child processes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simpy

GIB_PAGES = (1 << 30) >> 12


def raw_simpy_events_per_s(n: int) -> float:
    """Events per second of one SimPy process yielding ``n`` timeouts."""
    env = simpy.Environment()

    def proc(env: simpy.Environment):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield env.timeout(1)

    env.process(proc(env))
    t0 = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t0)


def raw_python_ops_per_s(n: int) -> float:
    """Iterations per second of a plain Python loop that appends and pops a list."""
    lst: list[int] = []
    t0 = time.perf_counter()
    for i in range(n):
        if i & 1:
            lst.pop()
        else:
            lst.append(i)
    return n / (time.perf_counter() - t0)


def _machine_16g() -> object:
    from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
    from simcore.mm.page_alloc import PageAllocator

    cfg = MachineConfig(nodes=(NodeConfig(8 * GIB_PAGES, cpus=4),
                               NodeConfig(8 * GIB_PAGES, cpus=4)))
    return PageAllocator(cfg, SysctlConfig())


def bare_core_ops_per_s(n: int, seed: int = 1) -> tuple[float, int]:
    """Alloc + free operations per second of the pure core; returns (ops/s, failures)."""
    from simcore.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL

    mm = _machine_16g()
    rng = np.random.default_rng(seed)
    orders = rng.choice([0, 1, 2, 3, 9], size=n, p=[0.90, 0.04, 0.03, 0.02, 0.01]).tolist()
    cpus = rng.integers(0, 8, size=n).tolist()
    coins = rng.random(n).tolist()
    picks = rng.random(n).tolist()
    gfps = [int(GFP_KERNEL), int(GFP_HIGHUSER_MOVABLE)]
    alloc_pages, free_pages = mm.alloc_pages, mm.free_pages  # type: ignore[attr-defined]
    live: list[tuple[int, int]] = []
    failures = 0
    t0 = time.perf_counter()
    for i in range(n):
        if live and (coins[i] < 0.5 or len(live) > 200_000):
            j = int(picks[i] * len(live))
            live[j], live[-1] = live[-1], live[j]
            pfn, order = live.pop()
            free_pages(pfn, order, cpus[i])
        else:
            order = orders[i]
            pfn = alloc_pages(gfps[i & 1], order, cpus[i] >> 2, cpus[i])
            if pfn < 0:
                failures += 1
            else:
                live.append((pfn, order))
    return n / (time.perf_counter() - t0), failures


def end_to_end_page_ops_per_s(duration_s: float) -> tuple[float, int]:
    """Page operations per wall second of a traced SimPy run; returns (ops/s, events)."""
    from simcore.config.types import ExperimentConfig, MachineConfig, NodeConfig, WorkloadConfig
    from simcore.mm.gfp import GFP_KERNEL
    from simcore.sim.machine import Machine
    from simcore.sim.tracer import RecordingTracer
    from workloads.registry import WORKLOADS
    from workloads.synthetic_params import LifetimeSpec, SyntheticParams

    params = SyntheticParams(rate_per_s=50_000, order_weights=((0, 0.9), (1, 0.05), (3, 0.05)),
                             lifetime=LifetimeSpec("exponential", mean_ns=20_000_000),
                             gfp=int(GFP_KERNEL))
    cfg = ExperimentConfig(
        name="bench", seed=1, duration_ns=int(duration_s * 1e9),
        machine=MachineConfig(nodes=(NodeConfig(8 * GIB_PAGES, 4), NodeConfig(8 * GIB_PAGES, 4))),
        workloads=(WorkloadConfig("w", "synthetic", {"params": params}),),
    )
    with tempfile.TemporaryDirectory() as tmp:
        tracer = RecordingTracer(Path(tmp) / "events.parquet", clock=lambda: 0)
        machine = Machine.from_config(cfg, tracer)
        tracer.clock = machine.trace_now
        (rng,) = machine.spawn_rngs(1)
        machine.env.process(WORKLOADS["synthetic"].run(machine, cfg.workloads[0], rng))
        t0 = time.perf_counter()
        machine.env.run(until=cfg.duration_ns)
        tracer.close()
        wall = time.perf_counter() - t0
    ops = machine.stats.alloc_requests + machine.stats.free_requests
    return ops / wall, tracer.events_traced


_CHILD = """
import resource, sys, time
import simcore.mm.page_alloc as pa
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.argv[1] == "build":
    t = time.perf_counter()
    cfg = MachineConfig(nodes=(NodeConfig(int(sys.argv[2]), cpus=64),))
    mm = pa.PageAllocator(cfg, SysctlConfig())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(peak, base, time.perf_counter() - t, mm.pages.nbytes)
else:
    print(base, base, 0.0, 0)
"""


def build_memory(pages: int) -> dict[str, float]:
    """Peak RSS (KiB) of building a machine of ``pages`` pages, in a child process."""
    out = subprocess.run([sys.executable, "-c", _CHILD, "build", str(pages)],
                         capture_output=True, text=True, check=True).stdout.split()
    peak_kib, base_kib, secs, state_bytes = int(out[0]), int(out[1]), float(out[2]), int(out[3])
    return {"pages": pages, "peak_rss_kib": peak_kib, "import_rss_kib": base_kib,
            "build_seconds": secs, "bytes_per_page": (peak_kib - base_kib) * 1024 / pages,
            "page_state_bytes_per_page": state_bytes / pages}


def main(argv: list[str] | None = None) -> int:
    """Run every benchmark and print a table (and JSON with --json)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    n = 50_000 if args.quick else 400_000
    ref_simpy = raw_simpy_events_per_s(n)
    ref_python = raw_python_ops_per_s(n)
    core, core_fail = bare_core_ops_per_s(n)
    e2e, events = end_to_end_page_ops_per_s(0.5 if args.quick else 4.0)
    mem = build_memory((16 if args.quick else 1024) * GIB_PAGES)
    results = {
        "raw_simpy_events_per_s": ref_simpy, "raw_python_loop_per_s": ref_python,
        "bare_core_ops_per_s": core, "bare_core_failures": core_fail,
        "end_to_end_page_ops_per_s": e2e, "end_to_end_events_traced": events,
        "memory": mem,
    }
    print(f"{'benchmark':44} {'value':>14}  ratio")
    print(f"{'raw SimPy timeout loop (events/s)':44} {ref_simpy:14,.0f}  1.00 (reference)")
    print(f"{'raw Python append/pop loop (iter/s)':44} {ref_python:14,.0f}  "
          f"{ref_python / ref_simpy:.2f} x SimPy")
    print(f"{'bare core alloc+free, 90% order-0 (ops/s)':44} {core:14,.0f}  "
          f"{core / ref_simpy:.2f} x SimPy")
    print(f"{'end-to-end SimPy run, traced (page ops/s)':44} {e2e:14,.0f}  "
          f"{e2e / ref_simpy:.2f} x SimPy, {e2e / core:.2f} x bare core")
    gib = mem["pages"] // GIB_PAGES
    print(f"{f'build {gib} GiB machine: peak RSS over import (B/page)':44} "
          f"{mem['bytes_per_page']:14.2f}  per-page arrays {mem['page_state_bytes_per_page']:.0f} "
          f"B/page, built in {mem['build_seconds']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
