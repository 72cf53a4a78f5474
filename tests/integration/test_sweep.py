"""``allocsim sweep``: points, replicates, tables, resume, crashes and executors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allocsim.cli import main
from allocsim.sweep.runner import plan_sweep, run_sweep
from allocsim.sweep.spec import parse_sweep, replicate_seeds
from simcore.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "tests" / "data" / "sweep" / "small.yaml"


def _model_values(out: Path) -> pd.DataFrame:
    """sweep.parquet without wall-clock metrics, in a fixed order."""
    frame = pd.read_parquet(out / "sweep.parquet")
    frame = frame[~frame.wall].drop(columns=["wall"])
    return frame.sort_values(["point", "replicate", "metric"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def inline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inline")
    run_sweep(plan_sweep(SMALL), out, jobs=1)
    return out


def test_grid_points_replicates_and_seeds() -> None:
    plan = plan_sweep(SMALL)
    assert plan.spec.keys == ("machine.nodes[0].memory", "workloads[0].rate")
    assert [dict(p.params) for p in plan.spec.points] == [
        {"machine.nodes[0].memory": m, "workloads[0].rate": r}
        for m in ("48MiB", "64MiB") for r in ("1000/s", "3000/s")]
    seeds = replicate_seeds(42, 3)
    assert seeds == [int(c.generate_state(1, dtype=np.uint32)[0])
                     for c in np.random.SeedSequence(42).spawn(3)]
    assert [t.seed for t in plan.tasks] == seeds * 4  # the same seeds at every point
    assert len({t.config_hash for t in plan.tasks}) == 12


def test_tables(inline: Path) -> None:
    rows = pd.read_parquet(inline / "sweep.parquet")
    assert {"point", "machine.nodes[0].memory", "workloads[0].rate", "replicate", "seed",
            "metric", "value", "wall"} <= set(rows.columns)
    assert rows.groupby("metric").size().max() == 12  # one row per run and metric
    assert rows[rows.metric == "wall_seconds"].wall.all()
    assert not rows[rows.metric != "wall_seconds"].wall.any()
    summary = pd.read_csv(inline / "summary.csv")
    assert "wall_seconds" not in set(summary.metric)
    free = summary[summary.metric == "free_pageblocks.node0"].set_index("point")
    values = rows[rows.metric == "free_pageblocks.node0"]
    for point, group in values.groupby("point"):
        assert free.loc[point, "mean"] == pytest.approx(group.value.mean())
        assert free.loc[point, "n"] == 3
    assert (free.ci_low <= free["mean"]).all() and (free["mean"] <= free.ci_high).all()
    # the busier caller keeps less memory whole, on either machine
    assert free.loc[1, "mean"] < free.loc[0, "mean"] and free.loc[3, "mean"] < free.loc[2, "mean"]
    runs = pd.read_csv(inline / "runs.csv")
    assert (runs.status == "ok").all() and len(runs) == 12
    manifest = json.loads((inline / "sweep.json").read_text())
    assert manifest["status"] == "ok" and manifest["completed"] == 12


def test_an_interrupted_sweep_resumed_ends_with_the_same_values(
        inline: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    plan = plan_sweep(SMALL)
    done = []

    def stop_after_five(record: object, n: int, failed: int) -> None:
        if record is not None:
            done.append(record)
        if len(done) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(plan, out, jobs=1, progress=stop_after_five)
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"
    assert not (out / "sweep.parquet").exists()
    assert (pd.read_csv(out / "runs.csv").status == "not run").sum() == 7
    result = run_sweep(plan, out, jobs=1)
    assert result.skipped == 5 and result.status == "ok"
    pd.testing.assert_frame_equal(_model_values(out), _model_values(inline))


def test_a_crashed_run_is_recorded_and_the_sweep_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import allocsim.run as run_module

    real = run_module.simulate

    def crash_one(cfg, out, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        if kw.get("dir_name", "").startswith("p002-r01"):
            raise RuntimeError("boom")
        return real(cfg, out, *args, **kw)

    monkeypatch.setattr(run_module, "simulate", crash_one)
    result = run_sweep(plan_sweep(SMALL), tmp_path, jobs=1)
    assert result.status == "failed" and len(result.failed) == 1
    runs = pd.read_csv(tmp_path / "runs.csv")
    bad = runs[runs.status == "failed"]
    assert list(bad.point) == [2] and list(bad.replicate) == [1]
    assert bad.error.iloc[0] == "RuntimeError: boom"
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert (summary[summary.point == 2].n <= 2).all()  # the others have 3
    assert (summary[summary.point == 1].n == 3).any()


def test_local_processes_give_the_inline_values(inline: Path, tmp_path: Path) -> None:
    run_sweep(plan_sweep(SMALL), tmp_path, jobs=2)
    pd.testing.assert_frame_equal(_model_values(tmp_path), _model_values(inline))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_real_dask_cluster_gives_the_local_values(inline: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # this checkout, as the test runs it
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
         "--port", str(port), "--no-dashboard"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=tmp_path, env=env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
         "--nworkers", "2", "--no-dashboard"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, cwd=tmp_path, env=env)
    try:
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        result = run_sweep(plan_sweep(SMALL), tmp_path / "dask", scheduler=address)
        assert result.status == "ok"
        pd.testing.assert_frame_equal(_model_values(tmp_path / "dask"), _model_values(inline))
        manifest = json.loads((tmp_path / "dask" / "sweep.json").read_text())
        assert manifest["executor"] == {"scheduler": address}
    finally:
        for proc in (worker, scheduler):
            proc.terminate()
        for proc in (worker, scheduler):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_an_unreachable_scheduler_is_one_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("distributed")
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    code = main(["sweep", str(SMALL), "-o", str(tmp_path), "--scheduler", address, "-q"])
    assert code == 2 and time.monotonic() - t0 < 60
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"allocsim: error: --scheduler {address}: expected a Dask scheduler")


@pytest.mark.parametrize(("section", "key", "expected"), [
    ({"grid": {"seed": [1]}, "points": [{"seed": 1}]}, "sweep", "exactly one of grid"),
    ({"grid": {"seed": []}}, "sweep.grid.seed", "a non-empty list"),
    ({"grid": {"a..b": [1]}}, "a..b", "a key path"),
    ({"points": [{}]}, "sweep.points[0]", "at least one key path"),
    ({"grid": {"seed": [1]}, "replicates": 0}, "sweep.replicates", "an integer in 1.."),
    ({"grid": {"seed": [1]}, "bogus": 1}, "sweep.bogus", "one of the keys"),
    # 10^8 points: refused from the lists' lengths, before any point is built
    ({"grid": {k: list(range(100)) for k in ("a", "b", "c", "d")}}, "sweep.grid",
     "at most 100,000 points"),
])
def test_bad_sweep_sections(section: dict[str, object], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_sweep(section, "x.yaml")
    assert info.value.key == key and expected in info.value.expected


def test_a_bad_value_is_named_by_its_place_in_the_sweep(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.read_text().replace("[1000/s, 3000/s]", "[1000/s, fast]"))
    assert main(["sweep", str(bad), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    line = 1 + bad.read_text().splitlines().index(
        next(t for t in bad.read_text().splitlines() if "[1000/s, fast]" in t))
    assert f"{bad}:{line}: sweep.grid.workloads[0].rate[1]: expected a rate like" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_cli_prints_the_table_and_resumes(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sweep", str(SMALL), "-o", str(tmp_path), "--jobs", "1", "-q",
            "--metric", "free_pageblocks.*"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "12 runs complete (0 from an earlier attempt), 0 failed" in out
    assert out.count("free_pageblocks.node0") == 4 and "failure_rate" not in out
    shutil.rmtree(next((tmp_path / "runs").glob("p003-r02-*")))
    assert main(args) == 0
    assert "12 runs complete (11 from an earlier attempt)" in capsys.readouterr().out


def test_sigterm_stops_a_local_sweep_and_its_workers(tmp_path: Path) -> None:
    """The workers only get SIGTERM's effect through the parent: they stop as interrupted."""
    from benchmarks.sweep import CONFIG

    config = tmp_path / "long.yaml"
    config.write_text(CONFIG.format(duration_ms=600_000, runs=6))  # 4 wait in the queue
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "allocsim", "sweep", str(config), "-o",
                             str(out), "--jobs", "2", "-q"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.monotonic() + 60
    while len(list((out / "runs").glob(".*.tmp-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # both runs are simulating
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "allocsim: terminated" in err and "Traceback" not in err
    time.sleep(2.0)  # nothing the pool had queued may start now
    assert sorted(p.name.split(".")[-1] for p in (out / "runs").iterdir()) == [
        "interrupted", "interrupted"]  # no complete run, no temporary directory
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["completed"] == 0
    assert (pd.read_csv(out / "runs.csv").status == "not run").sum() == 6
    assert not (out / "sweep.parquet").exists()


def test_a_complete_run_whose_summary_is_damaged_is_run_again_in_place(
        inline: Path, tmp_path: Path) -> None:
    shutil.copytree(inline, tmp_path / "s")
    victim = next((tmp_path / "s" / "runs").glob("p001-r01-*"))
    (victim / "summary.json").write_text("{ cut")
    result = run_sweep(plan_sweep(SMALL), tmp_path / "s", jobs=1)
    assert result.skipped == 11 and result.status == "ok"
    assert sorted(p.name for p in (tmp_path / "s" / "runs").glob("p001-r01-*")) == [victim.name]
    pd.testing.assert_frame_equal(_model_values(tmp_path / "s"), _model_values(inline))


@pytest.mark.parametrize(("arg", "expected"), [
    ("workloads[0].lifetime=soon", "--set workloads[0].lifetime=soon: workloads[0].lifetime:"),
    ("sweep.replicates=0", "--set sweep.replicates=0: sweep.replicates: expected an integer"),
])
def test_a_bad_set_value_of_a_sweep_is_named_by_its_argument(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], arg: str, expected: str) -> None:
    assert main(["sweep", str(SMALL), "-o", str(tmp_path / "o"), "-q", "--set", arg]) == 2
    assert capsys.readouterr().err.startswith(f"allocsim: error: {expected}")
