"""Read a sweep directory (as ``allocsim sweep`` writes it) for the study report.

The report reads ``sweep.json`` (the sweep's manifest: name, opening comment, swept keys,
points, replicates, executor, counts), ``summary.csv`` (mean and 95 % interval per point
and metric, :mod:`allocsim.sweep.stats`) and, for a capacity study, ``study.json`` (the
answers ``study.md`` states, :mod:`allocsim.sweep.studyjson`). Each is checked here; a
missing or malformed one raises :class:`reports.load.ReportInputError` naming the file and
what was expected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from reports.load import ReportInputError, read_json

SWEEP_JSON = "sweep.json"
SUMMARY_CSV = "summary.csv"
STUDY_JSON = "study.json"
STUDY_MD = "study.md"
PER_NODE_CSV = "study_summary.csv"  # allocsim.sweep.studyrun.PER_NODE_FILE
SWEEP_KEYS = ("keys", "points", "replicates")
STAT_COLUMNS = ("point", "metric", "n", "missing", "mean", "std", "ci_low", "ci_high",
                "method")
NUMERIC_COLUMNS = ("point", "n", "missing", "mean", "std", "ci_low", "ci_high")
ANSWER_KEYS = {"estimate": ("metric", "title", "sentence"),
               "threshold": ("metric", "title", "sentence", "keys", "limit", "below",
                             "node_limit", "other_keys", "groups"),
               "first_failures": ("title", "sentence")}


@dataclass(frozen=True)
class SweepData:
    """What the study report reads from one sweep directory.

    Attributes:
        sweep_dir: The directory.
        manifest: ``sweep.json``.
        keys: The swept key paths, in the file's order.
        summary: ``summary.csv``; the key columns as text, as the file writes values.
        study: ``study.json`` (None: not a study).
    """

    sweep_dir: Path
    manifest: dict[str, Any]
    keys: tuple[str, ...]
    summary: pd.DataFrame
    study: dict[str, Any] | None


def is_sweep_dir(path: Path) -> bool:
    """Whether ``path`` is a sweep directory (it has ``sweep.json``), not a run's."""
    return (Path(path) / SWEEP_JSON).is_file()


def load_sweep(sweep_dir: Path) -> SweepData:
    """Read and check what the study report needs from ``sweep_dir``.

    Raises:
        ReportInputError: A file is missing, unreadable or not as ``allocsim sweep``
            writes it, or the sweep was interrupted before its tables were written.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ReportInputError(f"{sweep_dir}: not a sweep directory")
    manifest = read_json(sweep_dir, SWEEP_JSON, SWEEP_KEYS)
    keys = _keys(manifest)
    status = manifest.get("status")
    if status in ("interrupted", "running"):  # tables, if any, are not the sweep's results
        how = ("was interrupted" if status == "interrupted" else
               f"is still running (pid {manifest.get('host_pid')}) or was killed outright")
        raise ReportInputError(
            f"{sweep_dir}: the sweep {how} before its tables were written; run the same "
            "allocsim sweep command again to finish it")
    summary = read_summary_csv(sweep_dir / SUMMARY_CSV, keys)
    study = None
    if (sweep_dir / STUDY_JSON).exists():
        study = read_study_json(sweep_dir)
        if (sweep_dir / PER_NODE_CSV).exists():  # the per-node callers' statistics
            extra = read_summary_csv(sweep_dir / PER_NODE_CSV, keys, PER_NODE_CSV)
            summary = pd.concat([summary, extra], ignore_index=True)
    elif (sweep_dir / STUDY_MD).exists():
        raise ReportInputError(
            f"{STUDY_JSON}: missing beside {STUDY_MD} (expected the study's answers; "
            "run the same allocsim sweep command again: it resumes and writes it)")
    return SweepData(sweep_dir, manifest, keys, summary, study)


def _keys(manifest: dict[str, Any]) -> tuple[str, ...]:
    keys, points = manifest["keys"], manifest["points"]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ReportInputError(f"{SWEEP_JSON}: keys: expected a list of key paths, "
                               f"got {keys!r}")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise ReportInputError(f"{SWEEP_JSON}: points: expected a list of objects "
                               "(key path: value)")
    replicates = manifest["replicates"]
    if not isinstance(replicates, int) or isinstance(replicates, bool) or replicates < 1:
        raise ReportInputError(f"{SWEEP_JSON}: replicates: expected a number >= 1, "
                               f"got {replicates!r}")
    return tuple(keys)


def read_summary_csv(path: Path, keys: tuple[str, ...],
                     name: str = SUMMARY_CSV) -> pd.DataFrame:
    """``summary.csv`` with its columns checked and typed.

    Raises:
        ReportInputError: The file is missing, not CSV, lacks a column, or has a value
            that is not a number where one is expected.
    """
    expected = f"expected the per-point table allocsim sweep writes (columns point, " \
               f"{', '.join(keys) + ', ' if keys else ''}metric, n, missing, mean, std, " \
               "ci_low, ci_high, method)"
    if not path.is_file():
        raise ReportInputError(f"{name}: missing ({expected} at {path})")
    try:
        frame = pd.read_csv(path, dtype={k: str for k in keys}, keep_default_na=False,
                            na_values={c: ["", "nan", "NaN"] for c in NUMERIC_COLUMNS})
    except (OSError, UnicodeDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise ReportInputError(f"{name}: not readable as CSV ({exc}); "
                               f"{expected}") from exc
    missing = [c for c in (*STAT_COLUMNS, *keys) if c not in frame.columns]
    if missing:
        raise ReportInputError(f"{name}: missing columns {missing}; {expected}")
    for column in NUMERIC_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any() or (column in ("point", "n", "missing") and values.isna().any()):
            row = int(bad.idxmax()) if bad.any() else int(values.isna().idxmax())
            raise ReportInputError(f"{name}: line {row + 2}: column {column}: "
                                   f"expected a number, got {frame[column][row]!r}")
        frame[column] = values
    frame = frame.astype({"point": "int64", "n": "int64", "missing": "int64"})
    frame["metric"] = frame["metric"].astype(str)
    frame["method"] = frame["method"].astype(str)
    return frame


def read_study_json(sweep_dir: Path) -> dict[str, Any]:
    """``study.json``, checked: each answer of a known kind with its fields.

    Raises:
        ReportInputError: It is missing, not JSON, or an answer lacks a field.
    """
    study = read_json(sweep_dir, STUDY_JSON, ("name", "answers"))
    answers = study["answers"]
    if not isinstance(answers, list):
        raise ReportInputError(f"{STUDY_JSON}: answers: expected a list")
    for i, answer in enumerate(answers):
        kind = answer.get("kind") if isinstance(answer, dict) else None
        if kind not in ANSWER_KEYS:
            raise ReportInputError(f"{STUDY_JSON}: answers[{i}]: expected an object whose "
                                   f"kind is one of {', '.join(ANSWER_KEYS)}")
        lacking = [k for k in ANSWER_KEYS[kind] if k not in answer]
        if lacking:
            raise ReportInputError(f"{STUDY_JSON}: answers[{i}]: missing keys {lacking}")
        if kind == "threshold" and not (isinstance(answer["limit"], int | float)
                                        and math.isfinite(answer["limit"])):
            raise ReportInputError(f"{STUDY_JSON}: answers[{i}].limit: expected a number")
    return study
