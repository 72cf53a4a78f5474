"""The long version of the kill tests (issue 13): many more kills, ``-m slow`` only.

``python -m pytest -m slow -s tests/soak/test_kill_soak.py`` prints where each kill
landed and a tally by phase. ``ALLOCSIM_SOAK_ROUNDS`` (default 3) sets how many rounds
of run kills (each: one kill in every phase, the renderer, the final rename, a
``--no-report`` run, and :data:`SPREAD` spread over the whole run) and of sweep kills
(each: SIGINT and SIGKILL, ``--jobs`` 1 and 2; mid-run in even rounds, at any point of
the sweep, its start and its tables included, in odd ones) it makes;
``ALLOCSIM_SOAK_SEED`` (default 1) the seed they are drawn from.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from allocsim.sweep.runner import plan_sweep, run_sweep
from tests.crashkit import FINAL, RUN_CONFIG, check_out_dir, kill_run, plan_kills, timeline
from tests.crashkit_sweep import (
    SWEEP_CONFIG,
    check_same_results,
    check_sweep_dir,
    kill_sweep,
    resume,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(4 * 3600)]
ROUNDS = int(os.environ.get("ALLOCSIM_SOAK_ROUNDS", "3"))
SEED = int(os.environ.get("ALLOCSIM_SOAK_SEED", "1"))
SPREAD = 10


def _tally(title: str, landed: Counter[str]) -> None:
    print(f"\n{title}: {sum(landed.values())} kills, every invariant held")
    for what, n in sorted(landed.items()):
        print(f"  {n:4d}  {what}")


def test_many_sigkills_of_a_run(tmp_path: Path) -> None:
    config = tmp_path / "killme.yaml"
    config.write_text(RUN_CONFIG)
    marks = timeline(config, tmp_path / "reference")
    landed: Counter[str] = Counter()
    for r in range(ROUNDS):
        for i, kill in enumerate(plan_kills(marks, SPREAD, SEED * 1000 + r)):
            out = tmp_path / "out"
            phase = kill_run(config, out, kill)
            left = check_out_dir(out, tmp_path / "reference" / FINAL, kill.report)
            print(f"round {r} kill {i}: {kill.label}: landed in {phase!r}, left {left}")
            landed[f"{kill.victim} killed in {phase}, left {left}"] += 1
            shutil.rmtree(out, ignore_errors=True)
    _tally("run", landed)


def test_many_stopped_and_resumed_sweeps(tmp_path: Path) -> None:
    config = tmp_path / "killsweep.yaml"
    config.write_text(SWEEP_CONFIG)
    assert run_sweep(plan_sweep(config), tmp_path / "reference", jobs=1).status == "ok"
    landed: Counter[str] = Counter()
    rng = np.random.default_rng(SEED)
    for r in range(ROUNDS):
        for sig in (signal.SIGINT, signal.SIGKILL):
            for jobs in (1, 2):
                out = tmp_path / f"sweep-{r}-{sig.name}-{jobs}"
                doing = kill_sweep(config, out, sig, jobs, rng, anywhere=r % 2 == 1)
                check_sweep_dir(out, tmp_path / "reference", sig)
                resume(config, out)
                check_same_results(out, tmp_path / "reference")
                print(f"round {r}: {sig.name} --jobs {jobs}: stopped with {doing}; resumed: "
                      "the same results")
                landed[f"{sig.name} --jobs {jobs}"] += 1
                shutil.rmtree(out)
    _tally("sweep", landed)
