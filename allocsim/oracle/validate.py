"""``allocsim validate-oracle DIR``: the model against every run of a real-data directory.

``DIR`` is laid out like ``../shared/oracle/``: one directory per run. For each run this
reports what its data allows (and null for the rest): the watermark check of its
``sNN-`` snapshots (:mod:`allocsim.oracle.watermarks`), the replay fidelity of its trace
and its slowpath activity (:func:`allocsim.oracle.replayval.replay_fidelity`), and each
huge-page request (:func:`allocsim.oracle.replayval.run_step`).

The same model and defaults serve every run: nothing here knows a scenario by name.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allocsim.oracle.replayval import Prepare, find_steps, replay_fidelity, run_step
from allocsim.oracle.watermarks import check_run
from allocsim.replay import replay_config
from simcore.errors import AllocsimError
from simcore.sim.initial_state import apply_initial_state
from simcore.sim.machine import Machine

JSON_KEYS = ("run", "watermarks_exact", "buddyinfo_l1_pct", "free_pages_sim",
             "free_pages_real", "pcp_share_sim", "pcp_share_real", "extfrag_sim",
             "extfrag_real", "hugepages_sim", "hugepages_real")
"""The keys of each run's object in ``--json`` (the issue's schema), in order; the
per-request results (``hugepage_steps``), the slowpath counts and the replay's own
counts follow them."""
TRACE_NAMES = ("trace.txt.xz", "trace.txt.gz", "trace.txt")


class OracleDirError(AllocsimError):
    """``DIR`` holds no run laid out like the oracle's (one line, exit 2)."""

    def __init__(self, path: Path, got: str) -> None:
        super().__init__(path, got)
        self.path, self.got = path, got

    def __str__(self) -> str:
        return (f"{self.path}: expected a directory of runs laid out like ../shared/oracle/ "
                f"(each with start/ and a trace, or sNN- snapshots), got {self.got}")


@dataclass
class RunResult:
    """One run's validation (:data:`JSON_KEYS` plus the details)."""

    run: str
    values: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    slowpath: dict[str, dict[str, int]] | None = None
    replay: dict[str, Any] | None = None
    mismatches: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The run's ``--json`` object."""
        out: dict[str, Any] = {k: self.values.get(k) for k in JSON_KEYS}
        out["run"] = self.run
        out["hugepage_steps"] = self.steps
        out["slowpath"] = self.slowpath
        out["replay"] = self.replay
        return out


def run_dirs(root: Path) -> list[Path]:
    """The runs of ``root``: directories with ``start/`` or ``sNN-`` snapshots.

    ``root`` itself if it is one.

    Raises:
        OracleDirError: There is none.
    """
    if not root.is_dir():
        raise OracleDirError(root, "no such directory")
    if _is_run(root):  # one run directory given on its own
        return [root]
    runs = sorted(p for p in root.iterdir() if p.is_dir() and _is_run(p))
    if not runs:
        raise OracleDirError(root, "no run directory in it")
    return runs


def _is_run(path: Path) -> bool:
    return (path / "start").is_dir() or any(
        c.is_dir() and c.name[:1] == "s" and c.name[1:3].isdigit() for c in path.iterdir())


def trace_of(run: Path) -> Path | None:
    """The run's ``kmem:`` trace, if it has one."""
    return next((run / n for n in TRACE_NAMES if (run / n).is_file()), None)


def validate_run(run: Path, prepare: Prepare | None, work: Path) -> RunResult:
    """Everything the run's data allows (see the module docstring)."""
    from simcore.formats.ftrace import import_trace

    result = RunResult(run.name)
    exact, mismatches, checked = check_run(run)
    result.values["watermarks_exact"] = exact
    result.mismatches = [f"{m.snapshot} {m.zone} {m.field}: sim {m.sim}, real {m.real}"
                         for m in mismatches]
    trace = trace_of(run)
    if trace is None or not (run / "start").is_dir():
        return result
    table = work / f"{run.name}.parquet"
    import_trace(trace, table)
    fid = replay_fidelity(run, table, work, prepare)
    result.values.update(
        buddyinfo_l1_pct=fid.buddyinfo_l1_pct, free_pages_sim=fid.free_pages_sim,
        free_pages_real=fid.free_pages_real, pcp_share_sim=_rounded(fid.pcp_share_sim),
        pcp_share_real=_rounded(fid.pcp_share_real), extfrag_sim=fid.extfrag_sim,
        extfrag_real=fid.extfrag_real)
    result.slowpath, result.replay = fid.slowpath, fid.replay
    pb_order = replay_config(run / "start", 0, run.name).machine.pageblock_order
    result.steps = [run_step(run, table, step, prepare)
                    for step in find_steps(run, table, pb_order)]
    if result.steps:
        result.values["hugepages_sim"] = result.steps[0]["hugepages_sim"]
        result.values["hugepages_real"] = result.steps[0]["hugepages_real"]
    return result


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def from_start_snapshot(machine: Machine, start: Path) -> None:
    """The default :data:`Prepare`: the ``start/`` snapshot's state.

    Its free lists, pageblocks and owners (:func:`simcore.sim.initial_state.
    apply_initial_state`); a snapshot without ``pagetypeinfo`` or ``meminfo`` leaves the
    machine fresh.
    """
    if (start / "pagetypeinfo").is_file() and (start / "meminfo").is_file():
        apply_initial_state(machine, start)


def validate_oracle(root: Path, prepare: Prepare | None = from_start_snapshot,
                    progress: Callable[[str], None] | None = None) -> list[RunResult]:
    """Validate every run of ``root``, in name order."""
    out = []
    with tempfile.TemporaryDirectory(prefix="allocsim-validate-") as tmp:
        for run in run_dirs(root):
            if progress is not None:
                progress(run.name)
            work = Path(tmp) / run.name
            work.mkdir()
            out.append(validate_run(run, prepare, work))
    return out


def format_table(results: list[RunResult]) -> str:
    """The results as a Markdown table (the README's validation table)."""
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, bool):
            return "exact" if v else "MISMATCH"
        if isinstance(v, float):
            return f"{v:.2f}" if v > 1 else f"{100 * v:.1f} %"
        return f"{v:,}"

    lines = ["| run | watermarks | buddyinfo L1 % | free pages sim / real | pcp share sim / "
             "real | extfrag sim / real | huge pages sim / real |", "|---|---|---|---|---|---|---|"]
    for r in results:
        v = r.values
        steps = "; ".join(f"{s['step']}: {s['hugepages_sim']} / {s['hugepages_real']}"
                          for s in r.steps) or "–"
        lines.append(
            f"| {r.run} | {cell(v.get('watermarks_exact'))} | {cell(v.get('buddyinfo_l1_pct'))} "
            f"| {cell(v.get('free_pages_sim'))} / {cell(v.get('free_pages_real'))} "
            f"| {cell(v.get('pcp_share_sim'))} / {cell(v.get('pcp_share_real'))} "
            f"| {cell(v.get('extfrag_sim'))} / {cell(v.get('extfrag_real'))} | {steps} |")
    return "\n".join(lines) + "\n"


LEGEND = """
watermarks: exact if every sNN- snapshot's recomputed min/low/high, protection and pcp
  high/batch equal the real zoneinfo ("-": the run has no snapshot taken after a sysctl
  write). Replay columns ("-": no trace or no start/ snapshot) come from a replay of the
  run's trace with --placement model from its start/ state, compared at the last
  buddyinfo.periodic sample in the trace: buddyinfo L1 = sum |sim - real| * 2^order over
  zones and orders / real free pages; pcp share and extfrag over the whole trace.
huge pages: per request, the pool after the model's own request from the state a
  --placement real replay rebuilt, against meta.txt. --json adds the slowpath counts and
  the replay's own counts. The README's Validation section says where and why the model
  disagrees.
"""


def to_json(results: list[RunResult]) -> str:
    """The ``--json`` output: one object per run."""
    return json.dumps([r.as_json() for r in results], indent=2) + "\n"
