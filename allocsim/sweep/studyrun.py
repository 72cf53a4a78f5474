"""Running a study: the sweep, its fresh-box baseline, and ``study.md``.

``allocsim sweep CONFIG -o DIR`` on a file with a ``study:`` section
(:mod:`allocsim.sweep.study`) plans the baseline with the sweep, before anything runs
(:func:`plan_study`), runs it into ``DIR/baseline/`` after the sweep, and then writes
``DIR/study.md`` (:func:`write_study`): each answer as one sentence and a table, from the
two sweeps' tables, so a resumed study whose runs are all complete rewrites it at once;
and ``DIR/study.json``, the same answers for the study report
(:mod:`allocsim.sweep.studyjson`), with ``DIR/study_summary.csv``, the statistics of the
per-node callers' metrics (summary.csv's columns) the answers also read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from allocsim.sweep.answers import estimate, first_failures, threshold
from allocsim.sweep.baseline import BASELINE_DIR, BaselinePlan, plan_baseline
from allocsim.sweep.pernode import per_node_rows
from allocsim.sweep.runner import SweepPlan, SweepResult
from allocsim.sweep.spec import split_sweep
from allocsim.sweep.stats import summarize
from allocsim.sweep.study import StudySpec, parse_study
from allocsim.sweep.studyjson import study_record, write_study_json
from allocsim.sweep.studymd import StudyContext, render
from simcore.atomic import atomic_path, atomic_write_text
from simcore.config.override import scalar_text, set_value
from simcore.config.yamlio import read_yaml_lines, with_line
from simcore.errors import ConfigError

STUDY_FILE = "study.md"
PER_NODE_FILE = "study_summary.csv"
"""The statistics of the per-node callers' metrics (summary.csv's columns)."""


@dataclass(frozen=True)
class StudyPlan:
    """A sweep's study: its questions and its baseline's runs."""

    spec: StudySpec
    baseline: BaselinePlan
    name: str


def plan_study(plan: SweepPlan,
               overrides: Sequence[tuple[str, object]] = ()) -> StudyPlan | None:
    """The study of ``plan``'s file (None if it has no ``study:``), checked and planned.

    Raises:
        simcore.errors.ConfigError: The ``study:`` section or a baseline run is bad.
    """
    if plan.study is None:
        return None
    source = str(plan.source)
    doc, lines = read_yaml_lines(plan.source)
    for path, value in overrides:
        doc = set_value(doc, path, value, f"--set {path}={scalar_text(value)}")
    try:
        rest, _, raw = split_sweep(doc, source)
        spec = parse_study(raw, source, rest, plan.spec)
        hashes = {t.config_hash for t in plan.tasks}
        baseline = plan_baseline(plan.source, rest, plan.spec, spec.baseline, hashes)
    except ConfigError as exc:
        raise (with_line(exc, lines) if exc.source == source else exc) from None
    return StudyPlan(spec, baseline, str(rest.get("name", plan.source.stem)))


def baseline_dir(out: Path) -> Path:
    """Where a study's baseline sweep runs."""
    return out / BASELINE_DIR


def study_summary(out: Path, summary: pd.DataFrame, keys: Sequence[str],
                  spec: StudySpec) -> pd.DataFrame:
    """``summary`` with the statistics of the per-node callers' metrics added."""
    path = out / "sweep.parquet"
    if not spec.per_node_callers or summary.empty or not path.exists():
        return summary
    rows = pd.read_parquet(path)
    extra = per_node_rows(rows[~rows.wall], spec.per_node_callers)
    if extra.empty:
        return summary
    return pd.concat([summary, summarize(extra, list(keys))], ignore_index=True)


def write_study(study: StudyPlan, main: SweepResult, base: SweepResult) -> str:
    """Answer every question, write ``study.md`` into the sweep's directory; its text."""
    keys = list(main.spec.keys)
    summary = study_summary(main.out, main.summary, keys, study.spec)
    _write_per_node(main.out, summary.iloc[len(main.summary):])
    base_summary = study_summary(base.out, base.summary, list(base.spec.keys), study.spec)
    point_of: Mapping[int, int] = study.baseline.point_of
    answers: list[object] = []
    for q in study.spec.questions:
        if summary.empty:
            continue
        if q.kind == "estimate":
            answers.append(estimate(q, summary, keys, base_summary, point_of))
        else:
            answers.append(threshold(q, summary, keys))
    failures = first_failures(summary, keys, base_summary, point_of)
    text = render(_context(study, main, base), answers, failures)
    baseline = study.spec.baseline.describe()
    write_study_json(main.out, study_record(study.name, baseline, answers, failures))
    atomic_write_text(main.out / STUDY_FILE, text)
    return text


def _write_per_node(out: Path, rows: pd.DataFrame) -> None:
    """``study_summary.csv``: the per-node callers' rows, as summary.csv has the others."""
    path = out / PER_NODE_FILE
    if rows.empty:
        path.unlink(missing_ok=True)
        return
    with atomic_path(path) as tmp:
        rows.to_csv(tmp, index=False, float_format="%.10g")


def _context(study: StudyPlan, main: SweepResult, base: SweepResult) -> StudyContext:
    return StudyContext(
        study.name, str(study.baseline.plan.source), len(main.spec.points),
        main.spec.replicates, len(main.records) - len(main.failed), len(main.failed),
        study.spec.baseline.describe(), len(base.spec.points),
        len(base.records) - len(base.failed), len(base.failed))
