"""The compiled and the pure-Python engine write the same run, file for file.

One source, two builds: each config runs in two child processes at once, one on the
compiled build (no ``ALLOCSIM_PURE_PYTHON``) and one on the pure build
(``ALLOCSIM_PURE_PYTHON=1``). Their run directories must be the same run
(:func:`tests.rundiff.assert_same_run` across builds): every trace file, the
end-of-run and ``/proc`` files, ``config.yaml``, and ``summary.json`` and
``manifest.json`` (the report's inputs) but for their wall-clock fields and the two
that name the build, which must say compiled and pure.

A run of the suite is a pure run when ``ALLOCSIM_PURE_PYTHON`` is set, and a compiled
run otherwise (``pip install -e '.[test]'`` compiles the engine). In a compiled run,
these tests fail if the compiled engine of this checkout is missing or stale; in a pure
run they are skipped (it tests the pure build; the compiled run compares the two).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simcore.engine import PURE_ENV, pure_requested
from tests.golden import CONFIGS
from tests.rundiff import MIXED_ARGS, assert_same_run

REPO = Path(__file__).resolve().parents[2]


def _env(pure: bool) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop(PURE_ENV, None)
    if pure:
        env[PURE_ENV] = "1"
    return env


@pytest.fixture(scope="module")
def compiled_engine() -> None:
    """Skip in a pure run; in a compiled run, fail unless this checkout's engine is."""
    if pure_requested():
        pytest.skip(f"a pure run ({PURE_ENV} is set): the compiled run compares the builds")
    probe = "import simcore; print(simcore.COMPILED, simcore.build_description())"
    r = subprocess.run([sys.executable, "-c", probe], env=_env(pure=False), cwd=REPO,
                       capture_output=True, text=True, check=True)
    compiled, _, build = r.stdout.strip().partition(" ")
    if compiled != "True":
        pytest.fail(f"a compiled run ({PURE_ENV} is not set), but the engine runs {build}. "
                    f"Build it (pip install -e .), or set {PURE_ENV}=1 for a pure run.",
                    pytrace=False)


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


def _run_both(args: list[str], out: Path) -> tuple[Path, Path]:
    """``allocsim run ARGS`` on the compiled and the pure build at once."""
    procs = [subprocess.Popen([sys.executable, "-m", "allocsim", "run", *args, "-o",
                               str(out / build), "-q", "--no-report"], env=_env(pure),
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for build, pure in (("compiled", False), ("pure", True))]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    (compiled,) = (out / "compiled").iterdir()
    (pure,) = (out / "pure").iterdir()
    return compiled, pure


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


@pytest.mark.usefixtures("compiled_engine")
@pytest.mark.parametrize("name", ["det", "atomic-reserves", "three-nodes", "pressure-small",
                                  "compaction-small", "hugetlb-small", "gigantic-small",
                                  "mixed"])
def test_compiled_and_pure_builds_write_the_same_run(name: str, tmp_path: Path) -> None:
    inline = {"three-nodes": THREE_NODES, "pressure-small": PRESSURE,
              "compaction-small": COMPACTION, "hugetlb-small": HUGETLB,
              "gigantic-small": GIGANTIC}
    if name == "mixed":
        args = list(MIXED_ARGS)
    elif name in inline:
        (tmp_path / f"{name}.yaml").write_text(inline[name])
        args = [str(tmp_path / f"{name}.yaml")]
    else:
        args = [str(CONFIGS[name])]
    compiled, pure = _run_both(args, tmp_path)
    builds = [json.loads((d / "manifest.json").read_text()) for d in (compiled, pure)]
    assert [m["compiled"] for m in builds] == [True, False]
    assert builds[1]["versions"]["engine_build"] == f"pure Python: {PURE_ENV} is set"
    assert_same_run(compiled, pure, across_builds=True)


def test_pure_python_switch_is_honoured() -> None:
    """``ALLOCSIM_PURE_PYTHON=1`` imports the .py modules even beside a compiled build."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "ALLOCSIM_PURE_PYTHON": "1"}
    probe = ("import simcore, simcore.mm.zone as z; "
             "print(simcore.COMPILED, z.__file__.endswith('.py'))")
    r = subprocess.run([sys.executable, "-c", probe], env=env, cwd=REPO,
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "True"]
