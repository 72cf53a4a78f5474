"""``study.json``: a study's answers for machines, beside ``study.md`` for people.

Each question's heading and answer sentence are the very text ``study.md`` prints
(:mod:`allocsim.sweep.studymd`), with what a figure needs to draw the answer: the metric,
the threshold's key(s), limit and side, and its answer per combination of the other
swept keys (the keys' values at the smallest point that qualifies, or null: none does;
for the whole machine and each node). The study report (:mod:`reports.study`) reads
it, so its cover states the same answers as ``study.md`` without running the study
again.

::

    {"name": "...", "baseline": "the same points without ...",
     "answers": [
       {"kind": "estimate", "metric": "...", "title": "...", "sentence": "..."},
       {"kind": "threshold", "metric": "...", "title": "...", "sentence": "...",
        "keys": [...], "limit": 0.01, "below": true, "node_limit": 0.01,
        "other_keys": [...],
        "groups": [{"others": [...], "whole": ["1GiB", ...] or null,
                    "nodes": [...]}]},
       {"kind": "first_failures", "title": "...", "sentence": "..."}]}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from allocsim.sweep.answers import (
    EstimateAnswer,
    FirstFailureAnswer,
    ThresholdAnswer,
    ThresholdGroup,
)
from allocsim.sweep.studymd import (
    FIRST_FAILURES_TITLE,
    estimate_sentence,
    estimate_title,
    first_failures_sentence,
    threshold_sentence,
    threshold_title,
)
from simcore.atomic import atomic_write_text

STUDY_JSON = "study.json"
KINDS = ("estimate", "threshold", "first_failures")


def study_record(name: str, baseline: str, answers: Sequence[object],
                 failures: FirstFailureAnswer) -> dict[str, Any]:
    """The content of ``study.json`` (see the module docstring)."""
    out: list[dict[str, Any]] = []
    for answer in answers:
        if isinstance(answer, EstimateAnswer):
            out.append({"kind": "estimate", "metric": answer.question.metric,
                        "title": estimate_title(answer),
                        "sentence": estimate_sentence(answer)})
        elif isinstance(answer, ThresholdAnswer):
            out.append(_threshold(answer))
    out.append({"kind": "first_failures", "title": FIRST_FAILURES_TITLE,
                "sentence": first_failures_sentence(failures, baseline)})
    return {"name": name, "baseline": baseline, "answers": out}


def _threshold(ans: ThresholdAnswer) -> dict[str, Any]:
    q = ans.question
    return {"kind": "threshold", "metric": q.metric, "title": threshold_title(ans),
            "sentence": threshold_sentence(ans), "keys": list(q.keys), "limit": q.limit,
            "below": q.below, "node_limit": q.node_limit,
            "other_keys": list(ans.other_keys),
            "groups": [_group(ans, g) for g in ans.groups]}


def _group(ans: ThresholdAnswer, group: ThresholdGroup) -> dict[str, Any]:
    def value(index: int | None) -> list[str] | None:
        return None if index is None else list(ans.values[group.points[index]])

    return {"others": list(group.others), "whole": value(group.whole),
            "nodes": [value(i) for i in group.nodes]}


def write_study_json(out: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as ``out/study.json``, atomically; its path."""
    path = out / STUDY_JSON
    atomic_write_text(path, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    return path
