"""Kill real ``allocsim run`` processes at random points, and check what they leave.

Issue 13's crash-safety checks, shared by ``tests/integration/test_kill_run.py`` (a few
kills in the default run) and ``tests/soak/test_kill_soak.py`` (many, ``-m slow``).

A reference run of :data:`RUN_CONFIG` is timed phase by phase (:func:`timeline`). Each
kill then waits for its phase to begin (:func:`phase_now` polls the output directory
and ``/proc``), sleeps a random part of that phase's reference length, drawn from a
seeded generator, and sends SIGKILL to the run (or to its forked report renderer).
:func:`check_out_dir` then checks the promises of the run directory (``allocsim.run``):

* a file with a final name anywhere is complete: it is byte for byte the reference
  run's file (the same config and seed give the same bytes), or, for the JSON files
  and the PDF, parses and agrees with it;
* anything else carries a temporary name (:data:`TEMP_NAME`, the renderer's staging
  directory), and only inside the run's hidden temporary directory;
* a directory with the final name holds every file :func:`allocsim.run.expected_outputs`
  lists (the README's table), the report unless ``--no-report``, and ``status: ok``;
* ``allocsim report`` on a hidden temporary directory exits 2 with one line saying the
  run was killed and while doing what;
* no process of the run outlives it (the renderer dies with its parent).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image
from pypdf import PdfReader

from allocsim.cli import main
from allocsim.run import expected_outputs, missing_outputs
from reports.render import STAGING_PREFIX
from simcore.formats import trace_schema as ts
from tests.rundiff import WALL_CLOCK, assert_same_run

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
FINAL = "killme-seed3"
RUN_CONFIG = """\
# A run for the kill tests: about a second of simulation, then outputs and a report.
name: killme
seed: 3
duration: 2s
machine:
  nodes:
    - {memory: 128MiB, cpus: 2}
trace: {events: true, snapshot_interval: 10ms}
workloads:
  - {name: churn, type: synthetic, rate: 4000/s, order: {0: 0.9, 3: 0.1},
     lifetime: 5ms, gfp: GFP_KERNEL}
"""
TEMP_NAME = re.compile(r"\..+\.tmp-\d+(-[0-9a-f]+)?")
"""A file or directory being written: ``simcore.atomic``'s ``.<name>.tmp-<pid>-<hex>``,
the event tracer's ``.<name>.tmp-<pid>``, the run's ``.<final>.tmp-<pid>``."""
PHASES = ("startup", "simulating", "writing outputs", "report: loading",
          "report: rendering", "report: renderer child", "final rename", "finished")
"""A run's phases in order, as :func:`phase_now` tells them apart from outside."""
POLL_S = 0.005


def as_from_a_shell() -> None:
    """``preexec_fn``: SIGINT and SIGTERM at their defaults and unblocked in the child,
    as a shell starts a foreground command, whatever this test process inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def start(argv: list[str], cwd: Path, stderr: int | io.TextIOBase = subprocess.DEVNULL
          ) -> subprocess.Popen[bytes]:
    """``python -m allocsim ARGV`` in a session of its own (so its children can be found)."""
    return subprocess.Popen([sys.executable, "-m", "allocsim", *argv], cwd=cwd, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=stderr,
                            start_new_session=True, preexec_fn=as_from_a_shell)


def run_argv(config: Path, out: Path, report: bool = True) -> list[str]:
    return ["run", str(config), "-o", str(out), "-q", *([] if report else ["--no-report"])]


# -- watching a run from outside ---------------------------------------------------------


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def renderer(pid: int) -> int | None:
    """The pid of the run's forked report renderer while one is alive (its children with
    its own command line: not the ``git`` it asks for the source commit)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    own = _cmdline(pid)
    return next((int(c) for c in children if _cmdline(int(c)) == own), None)


def session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (``/proc/PID/stat``'s sixth field)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _tmp_dir(out: Path) -> Path | None:
    return next(iter(out.glob(f".{FINAL}.tmp-*")), None) if out.is_dir() else None


def phase_now(out: Path, pid: int) -> str:
    """Which of :data:`PHASES` the run writing into ``out`` is in, seen from outside."""
    if (out / FINAL).exists():
        return "finished"
    tmp = _tmp_dir(out)
    if tmp is None:
        return "startup"
    try:
        manifest = json.loads((tmp / ts.MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return "startup"
    report = tmp / ts.REPORT_DIR
    if (report / "report.pdf").exists():
        return "final rename"
    if report.is_dir() and any(report.glob(f"{STAGING_PREFIX}*")):
        return "report: renderer child" if renderer(pid) else "report: rendering"
    if manifest["status"] != "running":
        return "report: loading" if manifest["report_requested"] else "final rename"
    return "writing outputs" if manifest.get("stage") == "writing outputs" else "simulating"


def timeline(config: Path, out: Path) -> dict[str, tuple[float, float]]:
    """Run to completion once: when (s after the start) each phase was first and last
    seen (``exit``: when the process ended)."""
    proc = start(run_argv(config, out), config.parent)
    t0, seen = time.monotonic(), {}
    while proc.poll() is None:
        phase, now = phase_now(out, proc.pid), time.monotonic() - t0
        seen[phase] = (seen.get(phase, (now, now))[0], now)
        time.sleep(POLL_S)
    seen["exit"] = (time.monotonic() - t0,) * 2
    assert proc.returncode == 0 and (out / FINAL).is_dir(), "the reference run failed"
    return seen


def phase_lengths(marks: dict[str, tuple[float, float]]) -> dict[str, float]:
    """How long after it began each phase was last seen in the reference run."""
    return {p: marks[p][1] - marks[p][0] if p in marks else 0.0 for p in PHASES}


# -- killing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kill:
    """One kill: wait for ``phase``, then ``delay_s``, then SIGKILL ``victim``."""

    phase: str
    delay_s: float
    victim: str = "run"
    """``run``, or ``renderer`` (the forked report child; the run must then finish)."""
    report: bool = True

    @property
    def label(self) -> str:
        extra = "" if self.report else ", --no-report"
        return f"{self.victim} in {self.phase!r} +{self.delay_s * 1000:.0f} ms{extra}"


def kill_count(spread: int) -> int:
    """How many kills :func:`plan_kills` plans (known before the reference run)."""
    return len(PHASES) - 2 + 3 + spread


def plan_kills(marks: dict[str, tuple[float, float]], spread: int, seed: int) -> list[Kill]:
    """Kills drawn from ``seed``: one in each phase of the run, a random part of the way
    into it (for the report's child: one kill of the run, one of the child); one as the
    finished report is renamed into place; one of a ``--no-report`` run as it writes its
    outputs and finishes; then ``spread`` kills at times spread over the whole run (one
    in each ``1/spread`` of it)."""
    rng = np.random.default_rng(seed)
    lengths = phase_lengths(marks)

    def into(phase: str, slack: float = 0.0) -> float:
        return float(rng.uniform(0, 0.8 * lengths[phase] + slack))

    kills = [Kill(p, into(p)) for p in PHASES[:-2]]
    kills.append(Kill("report: renderer child", into("report: renderer child"), "renderer"))
    kills.append(Kill("final rename", 0.0))
    kills.append(Kill("writing outputs", into("writing outputs", 0.3), report=False))
    total = marks["exit"][0]
    kills += [Kill("startup", float(total * (k + rng.uniform()) / spread))
              for k in range(spread)]
    return kills


def kill_run(config: Path, out: Path, kill: Kill) -> str:
    """Start a run, kill it as ``kill`` says; the phase it was in (the last one seen)."""
    proc = start(run_argv(config, out, kill.report), config.parent)
    try:
        target = PHASES.index(kill.phase)
        phase = phase_now(out, proc.pid)
        while PHASES.index(phase) < target and proc.poll() is None:
            time.sleep(POLL_S)
            phase = phase_now(out, proc.pid)
        deadline = time.monotonic() + kill.delay_s
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(POLL_S)
            phase = phase_now(out, proc.pid)
        if proc.poll() is not None:
            return "exited"
        victim = proc.pid if kill.victim == "run" else renderer(proc.pid)
        if victim is not None:
            with contextlib.suppress(ProcessLookupError):  # the renderer just ended
                os.kill(victim, signal.SIGKILL)
        if kill.victim == "renderer":  # the run goes on, and completes
            assert proc.wait(timeout=120) == 0, "the run failed after its renderer was killed"
            return phase if victim is not None else "renderer gone"
        proc.wait(timeout=60)
        assert_session_ends(proc.pid)
        return phase
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def assert_session_ends(sid: int, within_s: float = 1.0) -> None:
    """Every process the killed one started is gone within ``within_s`` (a renderer or a
    worker left running would go on writing beside whatever runs next)."""
    deadline = time.monotonic() + within_s
    while (left := session_members(sid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"processes of the killed run still alive: {left}"


# -- what a kill may leave ----------------------------------------------------------------


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def is_temporary(rel: Path) -> bool:
    """Whether a path in a run directory has (or is inside) a temporary name."""
    return any(TEMP_NAME.fullmatch(part) or part.startswith(STAGING_PREFIX)
               for part in rel.parts)


def check_final_file(path: Path, rel: str, reference: Path) -> None:
    """A file with a final name is complete: the reference run's bytes, or for the
    manifest, summary and PDF, a document that parses and agrees with it."""
    ref = reference / rel
    if rel == ts.MANIFEST_FILE:
        manifest, want = json.loads(path.read_text()), json.loads(ref.read_text())
        assert manifest["status"] in ("running", "ok", "interrupted"), manifest["status"]
        assert (manifest["name"], manifest["seed"]) == (want["name"], want["seed"])
    elif rel.endswith(".json"):
        got, want = json.loads(path.read_text()), json.loads(ref.read_text())
        for key in WALL_CLOCK.get(rel, ()):
            got.pop(key), want.pop(key)
        assert got == want, rel
    elif rel.endswith(".pdf"):
        assert len(PdfReader(path).pages) == len(PdfReader(ref).pages), rel
    else:
        if rel.endswith(".png"):
            Image.open(path).verify()
        elif rel.endswith(".parquet"):
            assert pq.read_table(path).num_rows == pq.read_table(ref).num_rows, rel
        assert path.read_bytes() == ref.read_bytes(), f"{rel} differs from the reference"


def check_rows_as_summary_says(run_dir: Path) -> None:
    """The Parquet tables have the rows ``summary.json`` counts."""
    summary = json.loads((run_dir / ts.SUMMARY_FILE).read_text())
    assert pq.read_table(run_dir / ts.EVENTS_FILE).num_rows == summary["events_traced"]
    for name in (ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE):
        times = pq.read_table(run_dir / name, columns=["time_ns"]).column(0)
        assert len(set(times.to_pylist())) == summary["snapshots"], name


def report_cli(run_dir: Path) -> tuple[int, str]:
    """``allocsim report RUN_DIR`` in this process: its exit status and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["report", str(run_dir)])
    return code, err.getvalue()


def check_out_dir(out: Path, reference: Path, report: bool) -> str:
    """Check everything a killed run left in ``out``; what it was (for the figures)."""
    if not out.exists():
        return "nothing"
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 1, f"one run, one directory: {names}"
    if not names:
        return "nothing"
    run_dir = out / names[0]
    final = names[0] == FINAL
    assert final or TEMP_NAME.fullmatch(names[0]), f"neither final nor temporary: {names}"
    allowed = set(expected_outputs(report=True))
    for path in _files(run_dir):
        rel = path.relative_to(run_dir)
        if is_temporary(rel):
            assert not final, f"a temporary file in a complete run directory: {rel}"
            continue
        assert rel.as_posix() in allowed, f"a file no list names: {rel}"
        check_final_file(path, rel.as_posix(), reference)
    if final:
        manifest = json.loads((run_dir / ts.MANIFEST_FILE).read_text())
        assert manifest["status"] == "ok" and manifest["report_requested"] is report
        assert missing_outputs(run_dir, report) == []
        assert report or not (run_dir / ts.REPORT_DIR).exists()
        check_rows_as_summary_says(run_dir)
        if report:  # the reference's manifest says report_requested too
            assert_same_run(run_dir, reference)
        return "complete"
    code, err = report_cli(run_dir)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"allocsim: error: {run_dir}: a run's temporary directory: "
                               "the run was killed outright"), lines[0]
    return "temporary"
