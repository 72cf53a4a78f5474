"""A sweep gives the same runs and tables in this process, on local workers and on Dask.

The same small sweep (``tests/data/sweep/determinism.yaml``: 4 runs with every trace
on) runs in this process (``--jobs 1``), on the local process executor (``--jobs 2``)
and on a Dask ``distributed.LocalCluster`` of two single-threaded worker processes.
Every run directory and every table must be the same
(:func:`tests.rundiff.assert_same_sweep`). The runs share processes differently on
each executor (all four in this one, which has run other tests before; two in each
worker), so a run depending on what an earlier run left in its process would show.
dask.distributed is in the ``test`` extra, and this test imports it directly: without
it the test fails rather than being skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import distributed

import allocsim
from allocsim.sweep.runner import plan_sweep, run_sweep
from tests.rundiff import assert_same_sweep

SWEEP = Path(__file__).resolve().parents[1] / "data" / "sweep" / "determinism.yaml"


def test_local_processes_and_dask_give_the_same_sweep(tmp_path: Path) -> None:
    plan = plan_sweep(SWEEP)
    inline = run_sweep(plan, tmp_path / "inline", jobs=1)
    local = run_sweep(plan, tmp_path / "local", jobs=2)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        # The workers run this checkout's allocsim, as this process does.
        assert set(client.run(lambda: allocsim.__file__).values()) == {allocsim.__file__}
        dask = run_sweep(plan, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert inline.status == local.status == dask.status == "ok" and len(local.records) == 4
    assert json.loads((tmp_path / "dask" / "sweep.json").read_text())["executor"] == {
        "scheduler": cluster.scheduler_address}
    assert_same_sweep(tmp_path / "inline", tmp_path / "local")
    assert_same_sweep(tmp_path / "local", tmp_path / "dask")
