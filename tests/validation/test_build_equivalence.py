"""The compiled and the pure-Python engine write byte-identical run outputs.

One source, two builds: the compiled build (when it is installed) runs in this
process; the pure build runs in a child with ``ALLOCSIM_PURE_PYTHON=1``. Every trace
file and every end-of-run ``/proc`` file must match byte for byte, on several configs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import simcore
from simcore.formats import trace_schema as ts
from tests.golden import CONFIGS

REPO = Path(__file__).resolve().parents[2]
COMPARED = (ts.EVENTS_FILE, ts.SPANS_FILE, ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE, "vmstat.txt",
            "buddyinfo.txt", "pagetypeinfo.txt", "zoneinfo.txt", "extfrag_index.txt",
            "unusable_index.txt")
# A third machine shape: NUMA spill and THISNODE-free fallback on three small nodes.
THREE_NODES = """\
name: three-nodes
seed: 5
duration: 80ms
machine:
  nodes:
    - {memory: 64MiB, cpus: 1}
    - {memory: 96MiB, cpus: 2}
    - {memory: 64MiB, cpus: 1}
  distance: [[10, 20, 30], [20, 10, 20], [30, 20, 10]]
trace: {events: true, snapshot_interval: 10ms}
workloads:
  - {name: fill, type: synthetic, rate: 20000/s, order: {0: 0.7, 2: 0.2, 9: 0.1},
     lifetime: forever, gfp: GFP_HIGHUSER_MOVABLE}
  - {name: slab, type: synthetic, rate: 5000/s, order: {0: 0.9, 1: 0.1},
     lifetime: {exponential: 5ms}, gfp: GFP_KERNEL}
  - {name: irq, type: synthetic, rate: 2000/s, order: {0: 0.8, 3: 0.2},
     lifetime: 2ms, gfp: GFP_ATOMIC}
"""


# Memory pressure: page cache (some dirty), anon with swap, slab, a hog that the OOM
# killer takes, kswapd on both nodes, and a drop_caches action.
PRESSURE = """\
name: pressure-small
seed: 9
duration: 600ms
machine:
  nodes:
    - {memory: 64MiB, cpus: 1}
    - {memory: 64MiB, cpus: 1}
  swap: 8MiB
trace: {events: true, snapshot_interval: 20ms}
workloads:
  - {name: cache, type: synthetic, rate: 60000/s, order: 0, lifetime: forever,
     gfp: GFP_HIGHUSER_MOVABLE, memory: file, dirty: 0.5, hot: 0.1}
  - {name: heap, type: synthetic, rate: 20000/s, order: {0: 0.9, 2: 0.1}, lifetime: forever,
     gfp: GFP_HIGHUSER_MOVABLE, memory: anon}
  - {name: dentry, type: synthetic, rate: 5000/s, order: 0, lifetime: forever,
     gfp: GFP_KERNEL|__GFP_RECLAIMABLE, memory: slab}
  - {name: hog, type: synthetic, rate: 60000/s, order: 0, lifetime: forever, gfp: GFP_KERNEL}
  - {name: irq, type: synthetic, rate: 2000/s, order: {0: 0.8, 1: 0.2}, lifetime: 2ms,
     gfp: GFP_ATOMIC|__GFP_NOWARN, oom_score_adj: -1000}
actions:
  - {at: 150ms, do: {drop_caches: 3}}
"""


def _run(config: Path, out: Path, pure: bool) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("ALLOCSIM_PURE_PYTHON", None)
    if pure:
        env["ALLOCSIM_PURE_PYTHON"] = "1"
    probe = "import simcore, sys; sys.stdout.write(str(simcore.COMPILED))"
    r = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO,
                       capture_output=True, text=True, check=True)
    assert r.stdout == str(not pure and simcore.COMPILED), r.stderr
    r = subprocess.run([sys.executable, "-m", "simcore", "run", str(config), "-o", str(out),
                        "-q", "--no-report"], env=env, cwd=REPO, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    (run_dir,) = out.iterdir()
    return run_dir


# Compaction: churned page cache around long-lived anon pages, order-9 requests that
# compact directly, and a compact_memory action.
COMPACTION = """\
name: compaction-small
seed: 4
duration: 700ms
machine:
  nodes:
    - {memory: 64MiB, cpus: 1}
    - {memory: 64MiB, cpus: 1}
sysctl: {compaction_proactiveness: 20}
trace: {events: true, snapshot_interval: 20ms}
workloads:
  - {name: cache, type: synthetic, rate: 100000/s, max_requests: 30000, order: 0,
     lifetime: {exponential: 100ms}, gfp: GFP_HIGHUSER_MOVABLE, memory: file}
  - {name: app, type: synthetic, rate: 20000/s, max_requests: 4000, order: 0,
     lifetime: forever, gfp: GFP_HIGHUSER_MOVABLE, memory: anon}
  - {name: kernel, type: synthetic, rate: 2000/s, max_requests: 200, order: 0,
     lifetime: forever, gfp: GFP_KERNEL}
  - {name: thp, type: synthetic, rate: 200/s, start: 350ms, order: 9,
     lifetime: {fixed: 100ms}, gfp: GFP_TRANSHUGE|__GFP_COMP}
actions:
  - {at: 600ms, do: compact_memory}
"""


# Hugetlb: pool resizes under pressure, freezes that meet a walker's references (a wide
# race window), a workload shrinking its pool into surplus; and a gigantic page that
# migrates anonymous pages out of its GiB.
HUGETLB = """\
name: hugetlb-small
seed: 6
duration: 400ms
machine:
  nodes:
    - {memory: 64MiB, cpus: 1}
    - {memory: 64MiB, cpus: 1}
sysctl: {compaction_proactiveness: 0}
trace: {events: true, snapshot_interval: 20ms}
workloads:
  - {name: cache, type: synthetic, rate: 100000/s, max_requests: 20000, order: 0,
     lifetime: forever, gfp: GFP_HIGHUSER_MOVABLE, memory: file}
  - {name: app, type: synthetic, rate: 20000/s, max_requests: 3000, order: 0,
     lifetime: {exponential: 50ms}, gfp: GFP_HIGHUSER_MOVABLE, memory: anon}
  - {name: pins, type: synthetic, rate: 5000/s, max_requests: 500, order: 0,
     lifetime: forever, gfp: GFP_HIGHUSER|__GFP_ACCOUNT}
  - {name: walk, type: speculative_refs, rate: 50000/s, hold: 2ms, mode: gup_fast,
     race_window: 100us}
  - {name: db, type: hugetlb, resize: [{at: 300ms, count: 24, node: 1},
     {at: 350ms, count: 4, node: 1}], use: 0.5, release: 380ms}
actions:
  - {at: 250ms, do: {nr_hugepages: 1000}}
  - {at: 290ms, do: {nr_hugepages: 0}}
"""
GIGANTIC = """\
name: gigantic-small
seed: 2
duration: 300ms
machine:
  nodes:
    - {memory: 2064MiB, cpus: 1}
sysctl: {compaction_proactiveness: 0}
trace: {events: true, snapshot_interval: 50ms}
workloads:
  - {name: filler, type: synthetic, rate: 100000/s, max_requests: 252, order: 10,
     lifetime: {fixed: 60ms}, gfp: GFP_HIGHUSER_MOVABLE}
  - {name: app, type: synthetic, rate: 100000/s, start: 10ms, max_requests: 5000, order: 0,
     lifetime: forever, gfp: GFP_HIGHUSER_MOVABLE, memory: anon}
actions:
  - {at: 100ms, do: {nr_hugepages: {count: 1, size: 1GiB}}}
  - {at: 200ms, do: {nr_hugepages: {count: 0, size: 1GiB}}}
"""


@pytest.mark.skipif(not simcore.COMPILED, reason="no compiled engine is installed")
@pytest.mark.parametrize("name", ["det", "atomic-reserves", "three-nodes", "pressure-small",
                                  "compaction-small", "hugetlb-small", "gigantic-small"])
def test_compiled_and_pure_builds_write_the_same_bytes(name: str, tmp_path: Path) -> None:
    inline = {"three-nodes": THREE_NODES, "pressure-small": PRESSURE,
              "compaction-small": COMPACTION, "hugetlb-small": HUGETLB,
              "gigantic-small": GIGANTIC}
    config = tmp_path / f"{name}.yaml" if name in inline else CONFIGS[name]
    if name in inline:
        config.write_text(inline[name])
    compiled = _run(config, tmp_path / "compiled", pure=False)
    pure = _run(config, tmp_path / "pure", pure=True)
    for rel in COMPARED:
        assert (compiled / rel).read_bytes() == (pure / rel).read_bytes(), rel


def test_pure_python_switch_is_honoured() -> None:
    """``ALLOCSIM_PURE_PYTHON=1`` imports the .py modules even beside a compiled build."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALLOCSIM_PURE_PYTHON": "1"}
    probe = ("import simcore, simcore.mm.zone as z; "
             "print(simcore.COMPILED, z.__file__.endswith('.py'))")
    r = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO,
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "True"]
