"""Same config and seed give the same run: in one process, across processes and
``PYTHONHASHSEED`` values, with no global RNG; the seed, and only the seed, matters.

"The same run" is :func:`tests.rundiff.assert_same_run`: every file of the run directory
byte for byte, wall-clock fields aside. The same holds across executors
(``test_determinism_executors.py``) and builds (``test_build_equivalence.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from allocsim.run import simulate
from simcore.config.types import ExperimentConfig
from simcore.formats import trace_schema as ts
from tests.rundiff import MIXED_ARGS, assert_same_run, run_differences
from workloads.registry import load_experiment

REPO = Path(__file__).resolve().parents[2]

# Two nodes and every random draw the synthetic workload makes: order mix, CPU choice,
# exponential and lognormal lifetimes, Poisson arrivals.
CONFIG = """\
# Determinism test: tiny two-node machine, 150 ms of mixed churn.
name: det
seed: 11
duration: 150ms
machine:
  nodes:
    - memory: 128MiB
      cpus: 2
    - memory: 128MiB
      cpus: 1
trace:
  events: true
  snapshot_interval: 10ms
workloads:
  - name: slab
    type: synthetic
    rate: 3000/s
    order: {0: 0.8, 1: 0.1, 3: 0.1}
    lifetime: {lognormal: {median: 5ms, sigma: 1.2}}
    gfp: GFP_KERNEL
  - name: cache
    type: synthetic
    rate: 2000/s
    order: 0
    lifetime: {exponential: 20ms}
    gfp: GFP_HIGHUSER_MOVABLE
  - name: thp
    type: synthetic
    rate: 50/s
    order: 9
    lifetime: 30ms
    gfp: GFP_TRANSHUGE_LIGHT
"""


def _config(tmp_path: Path) -> ExperimentConfig:
    path = tmp_path / "det.yaml"
    path.write_text(CONFIG)
    return load_experiment(path)


def _run(cfg: ExperimentConfig, out: Path) -> Path:
    return simulate(cfg, out, report=False).run_dir


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert_same_run(_run(cfg, tmp_path / "a"), _run(cfg, tmp_path / "b"))


def test_different_seed_different_events(tmp_path: Path) -> None:
    """The comparison sees a change of seed, in the events and beyond."""
    cfg = _config(tmp_path)
    first = _run(cfg, tmp_path / "a")
    other = _run(dataclasses.replace(cfg, seed=cfg.seed + 1), tmp_path / "b")
    differing = {d.split(":")[0] for d in run_differences(first, other)}
    assert {ts.EVENTS_FILE, ts.BUDDYINFO_FILE, "manifest.json", "summary.json"} <= differing


def test_no_global_rng(tmp_path: Path) -> None:
    """Reseeding Python's and NumPy's global generators changes nothing."""
    cfg = _config(tmp_path)
    np.random.seed(0)
    random.seed(0)
    first = _run(cfg, tmp_path / "a")
    np.random.seed(1)
    random.seed(1)
    # Also move the global streams on by a different amount before the second run.
    np.random.random(17)
    random.random()
    assert_same_run(first, _run(cfg, tmp_path / "b"))


HASH_SEEDS = {"a": "0", "b": "0", "c": "1", "d": "random"}
"""Run name -> its ``PYTHONHASHSEED``: a and b differ only in being separate processes."""


@pytest.fixture(scope="module")
def mixed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The MIXED_ARGS run in four ``python -m allocsim run`` processes at once."""
    out = tmp_path_factory.mktemp("processes")
    procs = {}
    for name, hash_seed in HASH_SEEDS.items():
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": hash_seed}
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "allocsim", "run", *MIXED_ARGS, "-o", str(out / name),
             "-q", "--no-report"], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
    for proc in procs.values():
        _, err = proc.communicate(timeout=100)
        assert proc.returncode == 0, err
    return {name: out / name / "mixed_callers-seed3" for name in HASH_SEEDS}


def test_the_mixed_run_reaches_every_keyed_path(mixed_runs: dict[str, Path]) -> None:
    """The run compared below does go through reclaim, compaction, OOM and failures."""
    summary = json.loads((mixed_runs["a"] / "summary.json").read_text())
    vmstat = summary["vmstat"]
    assert vmstat["pgsteal_kswapd"] and vmstat["pgsteal_direct"] and vmstat["compact_stall"]
    assert vmstat["pgmigrate_success"] and summary["oom_kills"]
    assert summary["failures"]["by_caller"] and summary["pollution"]
    assert len(summary["requests"]["by_caller"]) >= 20  # workloads and their slab caches


def test_same_run_across_processes(mixed_runs: dict[str, Path]) -> None:
    assert_same_run(mixed_runs["a"], mixed_runs["b"])


def test_same_run_across_hash_seeds(mixed_runs: dict[str, Path]) -> None:
    """``PYTHONHASHSEED`` 0, 1 and random: string hashing (set and dict order) differs."""
    probe = [subprocess.run([sys.executable, "-c", "print(hash('allocsim'))"],
                            env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True,
                            text=True, check=True).stdout for seed in ("0", "1")]
    assert probe[0] != probe[1]
    assert_same_run(mixed_runs["a"], mixed_runs["c"])
    assert_same_run(mixed_runs["a"], mixed_runs["d"])
