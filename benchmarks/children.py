"""Figures 3 (memory) and 4 (scaling), each machine measured in a fresh child process.

A child is ``python -c`` (never a fork of this process, whose peak RSS already holds the
other figures' machines and runs). Every child imports the same modules; a child in
``cost`` mode then builds a ``gib`` GiB 2-node machine, fills the live set and runs
the bare-core loop in rounds interleaved with R (:mod:`benchmarks.reference`). Each
child reports its peak RSS at the end, so the child of the largest machine is also the
memory figure: its peak RSS covers building the machine and a short burst of
allocations and frees. A child in ``import`` mode stops after the imports; its peak RSS
is the baseline taken off.

The peak is ``VmHWM`` of ``/proc/self/status``, not ``ru_maxrss``: on exec, Linux
carries the old image's peak RSS into the new one's ``ru_maxrss`` (exec_mmap() records
the old mm's high-water mark in ``signal->maxrss``), and the old image of a child started
by ``subprocess`` is this parent. Its ``ru_maxrss`` would then be the parent's peak, not its
own, whenever the parent is bigger. ``VmHWM`` belongs to the mm made at exec. Both are
reported; ``ru_maxrss`` is used only where ``/proc`` cannot be read.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.core import CoreBench
from benchmarks.reference import interleave, simpy_events_per_s

ROOT = Path(__file__).resolve().parents[1]
"""The tree the children import from: this one, not whatever else is installed."""

CHILD = """
import json, sys
from benchmarks import children
out = children.measure_here(*map(int, sys.argv[2:])) if sys.argv[1] == "cost" else {}
out.update(children.peak_rss())
print(json.dumps(out))
"""
STATUS = Path("/proc/self/status")


def peak_rss() -> dict[str, Any]:
    """This process's peak RSS in KiB: ``VmHWM`` (see the module docstring), and ``ru_maxrss``."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        hwm = [line.split()[1] for line in STATUS.read_text().splitlines()
               if line.startswith("VmHWM:")]
    except OSError:
        hwm = []
    peak, source = (int(hwm[0]), "VmHWM") if hwm else (maxrss, "ru_maxrss")
    return {"peak_rss_kib": peak, "peak_rss_source": source, "ru_maxrss_kib": maxrss}


def measure_here(gib: int, steps: int, rounds: int, r_steps: int) -> dict[str, Any]:
    """Build a ``gib`` GiB machine and time the bare-core loop against R, in rounds."""
    bench = CoreBench(gib, steps)
    paired = interleave(bench.ops_per_s, lambda: simpy_events_per_s(r_steps), rounds)
    return {"gib": gib, "pages": bench.pages, "build_seconds": bench.build_seconds,
            "ns_per_op": 1e9 / paired.figure, "r_events_per_s": paired.r,
            "ns_per_op_samples": [1e9 / f for f in paired.figure_samples],
            "r_samples": list(paired.r_samples), "failed_slots": bench.failed_slots()}


def run_child(*args: str | int) -> dict[str, Any]:
    """Run :data:`CHILD` with ``args`` in a fresh interpreter; returns its JSON line."""
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": pythonpath},
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


@dataclass(frozen=True)
class Memory:
    """Peak RSS of the largest machine's child against an import-only child."""

    gib: int
    pages: int
    peak_rss_kib: int
    import_rss_kib: int
    source: str
    """Where both peaks were read: ``VmHWM`` (or ``ru_maxrss`` without ``/proc``)."""
    ru_maxrss_kib: int
    import_ru_maxrss_kib: int
    """The children's ``ru_maxrss``, for comparison (inherited from this parent on exec)."""

    @property
    def bytes_per_page(self) -> float:
        """(peak - import baseline) / pages: the figure held to the target."""
        return (self.peak_rss_kib - self.import_rss_kib) * 1024 / self.pages

    @property
    def absolute_bytes_per_page(self) -> float:
        """Peak / pages, interpreter and libraries included."""
        return self.peak_rss_kib * 1024 / self.pages


@dataclass(frozen=True)
class Scaling:
    """Cost per operation at each size, and its growth between two sizes."""

    sizes: list[dict[str, Any]]
    """One :func:`pool` of :func:`measure_here` results per size, smallest first."""
    from_gib: int
    to_gib: int

    def _at(self, gib: int) -> dict[str, Any]:
        return next(s for s in self.sizes if s["gib"] == gib)

    @property
    def growth(self) -> float:
        """ns/op at ``to_gib`` over ns/op at ``from_gib``."""
        return self._at(self.to_gib)["ns_per_op"] / self._at(self.from_gib)["ns_per_op"]

    @property
    def growth_r_normalized(self) -> float:
        """The same with each ns/op multiplied by its children's R (R-events per op)."""
        hi, lo = self._at(self.to_gib), self._at(self.from_gib)
        return (hi["ns_per_op"] * hi["r_events_per_s"]) / (lo["ns_per_op"] * lo["r_events_per_s"])


def pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One size's children as one: medians over all their rounds, the highest peak RSS."""
    ns = [x for run in runs for x in run["ns_per_op_samples"]]
    rs = [x for run in runs for x in run["r_samples"]]
    top = max(runs, key=lambda run: run["peak_rss_kib"])
    return {**top, "children": len(runs), "ns_per_op": statistics.median(ns),
            "r_events_per_s": statistics.median(rs), "ns_per_op_samples": ns, "r_samples": rs,
            "build_seconds": statistics.median(run["build_seconds"] for run in runs),
            "failed_slots": sum(run["failed_slots"] for run in runs)}


def scaling_and_memory(sizes_gib: list[int], steps: int, rounds: int, r_steps: int,
                       passes: int = 1) -> tuple[Scaling, Memory]:
    """Children over the sizes, up then down, ``passes`` times in all; then pooled per size.

    Going back down the sizes puts each size early in one pass and late in the other, so
    a drift in the machine's load does not fall on the large sizes alone. The growth is
    from 16 GiB (or the smallest size) to the largest.
    """
    sizes_gib = sorted(sizes_gib)
    base = run_child("import")
    runs: dict[int, list[dict[str, Any]]] = {gib: [] for gib in sizes_gib}
    for n in range(passes):
        for gib in sizes_gib if n % 2 == 0 else sizes_gib[::-1]:
            print(f"  scaling: {gib} GiB child (pass {n + 1})", file=sys.stderr, flush=True)
            runs[gib].append(run_child("cost", gib, steps, rounds, r_steps))
    results = [pool(runs[gib]) for gib in sizes_gib]
    from_gib = 16 if 16 in sizes_gib[:-1] else sizes_gib[0]
    top = results[-1]
    memory = Memory(top["gib"], top["pages"], top["peak_rss_kib"], base["peak_rss_kib"],
                    top["peak_rss_source"], top["ru_maxrss_kib"], base["ru_maxrss_kib"])
    return Scaling(results, from_gib, sizes_gib[-1]), memory
