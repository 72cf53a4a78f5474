"""Kill a real ``allocsim sweep`` (SIGINT, SIGKILL) at a random point, and resume it.

Shared by ``tests/integration/test_kill_sweep.py`` and ``tests/soak/test_kill_soak.py``.
After the kill (:func:`check_sweep_dir`): no result tables; ``sweep.json`` says
``interrupted`` (SIGINT) or ``running`` (SIGKILL); every run directory is complete under
its final name, or says it is not (``.interrupted``, a hidden temporary name after
SIGKILL), and each file in it with a final name is the reference sweep's; no worker
outlives the sweep; ``allocsim report`` on it exits 2 with one line. After the resume
(:func:`check_same_results`): the tables, ``runs.csv`` and every run's files are those
of the uninterrupted reference sweep.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd

from allocsim.cli import main
from allocsim.run import missing_outputs
from allocsim.sweep.runner import RESULT_TABLES
from simcore.formats import trace_schema as ts
from tests.crashkit import (
    TEMP_NAME,
    _files,
    assert_session_ends,
    check_final_file,
    is_temporary,
    report_cli,
    start,
)
from tests.rundiff import SWEEP_EXCLUDED, sweep_differences

SWEEP_CONFIG = """\
# A small sweep for the kill tests: 4 runs of about a second each, traced.
name: killsweep
seed: 5
duration: 600ms
machine:
  nodes:
    - {memory: 64MiB, cpus: 2}
trace: {events: true, snapshot_interval: 20ms}
workloads:
  - {name: churn, type: synthetic, rate: 3000/s, order: {0: 0.9, 2: 0.1},
     lifetime: 20ms, gfp: GFP_KERNEL}
sweep:
  grid:
    workloads[0].rate: [2000/s, 4000/s]
  replicates: 2
"""
RUNS = 4


def sweep_argv(config: Path, out: Path, jobs: int) -> list[str]:
    return ["sweep", str(config), "-o", str(out), "--jobs", str(jobs), "-q", "--no-report"]


def complete_runs(out: Path) -> int:
    runs = out / "runs"
    if not runs.is_dir():
        return 0
    return sum(1 for p in runs.iterdir() if not p.name.startswith(".") and "." not in p.name)


def runs_under_way(out: Path) -> int:
    runs = out / "runs"
    return len(list(runs.glob(".*.tmp-*"))) if runs.is_dir() else 0


def kill_sweep(config: Path, out: Path, sig: signal.Signals, jobs: int,
               rng: np.random.Generator, anywhere: bool = False) -> str:
    """Start a sweep; once a random number of its runs are complete and another is under
    way, wait a random time and send ``sig`` (SIGINT to the process group, as Ctrl-C in
    a terminal does; SIGKILL to the sweep's own process, as the OOM killer does). With
    ``anywhere``, the kill may also come as it starts or as it writes its tables. What
    the sweep was doing."""
    after = int(rng.integers(0, RUNS if anywhere else RUNS - 2))
    delay = float(rng.uniform(0, 1.5 if anywhere else 0.5))
    err_path = out.parent / f"{out.name}.stderr"
    with err_path.open("w") as err:
        proc = start(sweep_argv(config, out, jobs), config.parent, stderr=err)
    try:
        while proc.poll() is None and (complete_runs(out) < after or not (
                anywhere or runs_under_way(out))):
            time.sleep(0.01)
        time.sleep(delay)
        if proc.poll() is not None:
            return "finished"
        doing = f"{complete_runs(out)} of {RUNS} runs complete, {runs_under_way(out)} under way"
        if sig == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout=120)
        stderr = err_path.read_text()
        if sig == signal.SIGINT and code == -signal.SIGINT:
            # Python's handler is not in yet, or no more (it starts or exits): nothing
            # ran yet, or everything did (check_sweep_dir tells)
            doing += ", as python started or exited"
        elif sig == signal.SIGINT:
            assert code == 130 and "Traceback" not in stderr, (code, stderr)
            assert stderr.strip().splitlines()[-1] == "allocsim: interrupted", stderr
        time.sleep(0.2)  # a write under way in the kernel as a worker died completes
        before = tree_state(out)
        assert_session_ends(proc.pid, within_s=1.5)
        time.sleep(0.5)
        assert tree_state(out) == before, "something went on writing after the sweep ended"
        return doing
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time (ns)."""
    state = {}
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            state[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return state


def check_sweep_dir(out: Path, reference: Path, sig: signal.Signals) -> None:
    """What an interrupted or killed sweep leaves (see the module docstring)."""
    if not (out / "sweep.json").exists():  # stopped as it started: it ran nothing
        assert complete_runs(out) == 0 and runs_under_way(out) == 0
        return
    manifest = json.loads((out / "sweep.json").read_text())
    status = manifest["status"]
    if status in ("ok", "failed"):
        return  # it ended before the signal: the resume check covers it
    assert status == ("interrupted" if sig == signal.SIGINT else "running"), status
    if [t for t in RESULT_TABLES if (out / t).exists()]:  # killed as it wrote them
        assert sig == signal.SIGKILL and complete_runs(out) == RUNS, "tables of a stopped sweep"
    for run_dir in sorted((out / "runs").iterdir()):
        _check_run(run_dir, reference / "runs", sig)
    if sig == signal.SIGINT:
        runs = pd.read_csv(out / "runs.csv")
        for row in runs.itertuples():
            if row.status == "ok":
                assert not missing_outputs(out / str(row.run_dir), report=False)
    code, err = report_cli(out)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    how = "was interrupted" if sig == signal.SIGINT else "or was killed outright"
    assert how in err and "before its tables were written" in err, err


def _check_run(run_dir: Path, reference_runs: Path, sig: signal.Signals) -> None:
    name = run_dir.name
    temporary = TEMP_NAME.fullmatch(name)
    assert not temporary or sig == signal.SIGKILL, f"a temporary run after SIGINT: {name}"
    final = name.lstrip(".").split(".")[0]
    assert (reference_runs / final).is_dir(), f"not one of the sweep's runs: {name}"
    if not temporary and name != final:
        assert name == f"{final}.interrupted", name
        assert json.loads((run_dir / ts.MANIFEST_FILE).read_text())["status"] == "interrupted"
    for path in _files(run_dir):
        rel = path.relative_to(run_dir)
        if is_temporary(rel):
            assert temporary, f"a temporary file in {name}: {rel}"
            continue
        check_final_file(path, rel.as_posix(), reference_runs / final)
    if name == final:
        assert missing_outputs(run_dir, report=False) == []
        assert json.loads((run_dir / ts.MANIFEST_FILE).read_text())["status"] == "ok"


def resume(config: Path, out: Path) -> None:
    """The same ``allocsim sweep`` command again (in this process, one job)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(sweep_argv(config, out, 1)) == 0


def check_same_results(out: Path, reference: Path) -> None:
    """The resumed sweep is the uninterrupted one (:func:`tests.rundiff.sweep_differences`:
    its tables, ``runs.csv``, and every run directory file by file), its ``sweep.json``
    too but for the runs an earlier attempt left (``skipped``)."""
    differences = [d for d in sweep_differences(out, reference)
                   if not d.startswith("sweep.json")]
    assert not differences, "\n".join(differences)
    ours, theirs = (json.loads((d / "sweep.json").read_text()) for d in (out, reference))
    for key in (*SWEEP_EXCLUDED, "skipped"):
        ours.pop(key), theirs.pop(key)
    assert ours == theirs and ours["status"] == "ok"
