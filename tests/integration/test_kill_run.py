"""SIGKILL a real ``allocsim run`` at random points: it leaves a complete run directory,
or one whose name says it is not, and ``allocsim report`` explains which (issue 13).

Each kill is drawn from a seeded generator (:func:`tests.crashkit.plan_kills`): one a
random part of the way into each phase (startup, simulation, writing the outputs,
loading the report's data, rendering, the forked renderer's pages, the final rename),
one of the renderer itself, one of a ``--no-report`` run, and more spread over the
whole run. ``tests/soak/test_kill_soak.py`` makes many more (``-m slow``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from allocsim.run import expected_outputs
from allocsim.rundir import tmp_dir_name, unfinished_run
from simcore.formats import trace_schema as ts
from tests.crashkit import (
    FINAL,
    PHASES,
    RUN_CONFIG,
    check_out_dir,
    kill_count,
    kill_run,
    plan_kills,
    report_cli,
    timeline,
)

SEED = 13
SPREAD = 3
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The config, and the phases of one uninterrupted run of it (in ``reference/``)."""
    root = tmp_path_factory.mktemp("kill")
    config = root / "killme.yaml"
    config.write_text(RUN_CONFIG)
    return config, timeline(config, root / "reference")


@pytest.mark.parametrize("index", range(kill_count(SPREAD)))
def test_sigkill_at_a_random_point(index: int, reference: tuple[Path, dict],
                                   tmp_path: Path) -> None:
    config, marks = reference
    kill = plan_kills(marks, SPREAD, SEED)[index]
    out = tmp_path / "out"
    landed = kill_run(config, out, kill)
    left = check_out_dir(out, config.parent / "reference" / FINAL, kill.report)
    print(f"kill {index}: {kill.label}: landed in {landed!r}, left {left}")
    if landed in PHASES:  # the kill came no earlier than its phase
        assert PHASES.index(landed) >= PHASES.index(kill.phase)
    if kill.victim == "renderer" or landed in ("finished", "exited", "renderer gone"):
        assert left == "complete"  # the run rendered the child's pages itself
    elif landed != "startup":
        assert left == "temporary"


def _fake_tmp_dir(root: Path, manifest: dict | None, pid: int) -> Path:
    run_dir = root / tmp_dir_name("x-seed1", pid)
    run_dir.mkdir(parents=True)
    if manifest is not None:
        (run_dir / ts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return run_dir


DEAD_PID = 2 ** 22 + 1  # above the kernel's largest pid_max: never a live process


@pytest.mark.parametrize(("manifest", "stage"), [
    (None, "starting"),
    ({"status": "running", "stage": "simulating"}, "simulating"),
    ({"status": "running", "stage": "writing outputs"}, "writing outputs"),
    ({"status": "ok", "report_requested": True}, "building the report"),
    ({"status": "ok", "report_requested": False}, "finishing"),
])
def test_report_on_a_killed_runs_directory_says_how_far_it_got(
        tmp_path: Path, manifest: dict | None, stage: str) -> None:
    run_dir = _fake_tmp_dir(tmp_path, manifest, DEAD_PID)
    code, err = report_cli(run_dir)
    assert code == 2 and err.count("\n") == 1, err
    assert f"the run was killed outright (SIGKILL, out of memory, power loss) while {stage}" \
        in err and "a complete run is renamed x-seed1" in err


def test_a_running_runs_directory_is_not_called_killed(tmp_path: Path) -> None:
    run_dir = _fake_tmp_dir(tmp_path, {"status": "running", "stage": "simulating"},
                            os.getpid())
    message = unfinished_run(run_dir)
    assert message is not None and f"still going (pid {os.getpid()}), simulating" in message
    assert unfinished_run(tmp_path / "x-seed1") is None  # a final name: not temporary


def test_the_readme_lists_the_files_expected_outputs_names() -> None:
    """The README's run-directory table and :func:`expected_outputs` (what the run checks
    before it takes its final name, and what the kill tests require) name the same files."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Run directory", 1)[1].split("\n### ", 1)[0]
    listed = set()
    for first_cell in re.findall(r"^\| (.+?) \| ", section, flags=re.MULTILINE):
        listed |= set(re.findall(r"`([^`]+)`", first_cell))
    names = expected_outputs(report=True)
    for name in names:  # each file, or its directory, is in the table
        parts = name.split("/")
        dirs = {"/".join(parts[:i]) + "/" for i in range(1, len(parts))}
        assert name in listed or dirs & listed, f"README does not list {name}"
    for entry in listed - {"proc/t=<seconds>s/"}:  # and the table lists nothing else
        assert any(n == entry or n.startswith(entry) for n in names), \
            f"README lists {entry}, which expected_outputs() does not name"


def test_the_listed_proc_files_are_the_files_a_snapshot_has() -> None:
    from allocsim.procsnap import PROC_FILES, proc_node_files
    from simcore.formats.procstate import proc_texts
    from tests.conftest import traced_machine

    machine, _ = traced_machine(nodes=2)
    assert set(proc_texts(machine.mm)) == {*PROC_FILES, *proc_node_files(0),
                                           *proc_node_files(1)}
