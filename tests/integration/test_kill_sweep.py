"""Interrupt (SIGINT) or kill (SIGKILL) a real ``allocsim sweep`` at a random point,
with one job and with two: what it leaves says so, and resuming it gives the results
of a sweep never stopped, byte for byte (issue 13). See :mod:`tests.crashkit_sweep`."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from allocsim.sweep.runner import plan_sweep, run_sweep
from tests.crashkit_sweep import (
    SWEEP_CONFIG,
    check_same_results,
    check_sweep_dir,
    kill_sweep,
    resume,
)

SEED = 13


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sweep file, and the directory of one uninterrupted sweep of it."""
    root = tmp_path_factory.mktemp("killsweep")
    config = root / "killsweep.yaml"
    config.write_text(SWEEP_CONFIG)
    assert run_sweep(plan_sweep(config), root / "reference", jobs=1).status == "ok"
    return config, root / "reference"


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_stopped_sweep_resumes_to_the_same_results(
        sig: signal.Signals, jobs: int, reference: tuple[Path, Path], tmp_path: Path) -> None:
    config, ref = reference
    out = tmp_path / "sweep"
    rng = np.random.default_rng([SEED, int(sig), jobs])
    doing = kill_sweep(config, out, sig, jobs, rng)
    print(f"{sig.name} with --jobs {jobs}: stopped with {doing}")
    check_sweep_dir(out, ref, sig)
    resume(config, out)
    check_same_results(out, ref)
