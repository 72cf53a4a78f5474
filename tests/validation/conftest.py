"""One run of ``configs/quickstart.yaml`` for the whole session.

The golden digests and the quickstart's story both read it, so the suite pays for the
run (about 3 s compiled, 10 s pure Python) once.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.golden import CONFIGS


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run directory of the quickstart at its own seed, without a report."""
    from allocsim.run import simulate
    from workloads.registry import load_experiment

    out = tmp_path_factory.mktemp("quickstart")
    return simulate(load_experiment(CONFIGS["quickstart"]), out, report=False).run_dir
