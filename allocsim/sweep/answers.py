"""A study's answers, computed from its sweep's per-point statistics.

Every function here reads summary tables as :func:`allocsim.sweep.stats.summarize` makes
them (``point``, one column per swept key, ``metric``, ``n``, ``missing``, ``mean``,
``std``, ``ci_low``, ``ci_high``, ``method``), so the answers use the same intervals as
``summary.csv``. Per-node values are the metric's ``.nodeN`` variants where the summary
has them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from allocsim.sweep.study import Question, magnitude

_NODE = re.compile(r"\.node(\d+)$")
_FIRST = "first_failure_s."


@dataclass(frozen=True)
class Cell:
    """A metric's statistics at one point: ``n`` values, ``missing`` NaN ones."""

    n: int
    missing: int
    mean: float
    ci_low: float
    ci_high: float
    method: str


Cells = Mapping[tuple[int, str], Cell]


def cells(summary: pd.DataFrame) -> dict[tuple[int, str], Cell]:
    """The summary's rows by ``(point, metric)``."""
    out = {}
    for row in summary.itertuples(index=False):
        out[(int(row.point), str(row.metric))] = Cell(
            int(row.n), int(row.missing), float(row.mean), float(row.ci_low),
            float(row.ci_high), str(row.method))
    return out


def point_values(summary: pd.DataFrame, keys: Sequence[str]) -> dict[int, tuple[str, ...]]:
    """Each point's swept values (as text), in ``keys`` order, by point number."""
    out: dict[int, tuple[str, ...]] = {}
    for _, row in summary.drop_duplicates("point").sort_values("point").iterrows():
        out[int(row["point"])] = tuple(str(row[k]) for k in keys)
    return out


def node_ids(summary: pd.DataFrame, metric: str) -> tuple[int, ...]:
    """The nodes ``N`` for which the summary has ``metric.nodeN``."""
    found = set()
    for name in summary["metric"].unique():
        name = str(name)
        match = _NODE.search(name)
        if match and name[:match.start()] == metric:
            found.add(int(match[1]))
    return tuple(sorted(found))


@dataclass(frozen=True)
class EstimateRow:
    """One point of an estimate: the whole machine, each node, and the baseline."""

    point: int
    values: tuple[str, ...]
    whole: Cell | None
    nodes: tuple[Cell | None, ...]
    baseline: Cell | None


@dataclass(frozen=True)
class EstimateAnswer:
    """A metric's mean and interval at every point."""

    question: Question
    keys: tuple[str, ...]
    nodes: tuple[int, ...]
    rows: tuple[EstimateRow, ...]


def estimate(question: Question, summary: pd.DataFrame, keys: Sequence[str],
             baseline: pd.DataFrame | None = None,
             point_of: Mapping[int, int] | None = None) -> EstimateAnswer:
    """``question``'s metric at every point, per node too; the baseline's beside it."""
    metric = question.metric
    have, nodes = cells(summary), node_ids(summary, metric)
    base = cells(baseline) if baseline is not None else {}
    rows = []
    for point, values in point_values(summary, keys).items():
        base_cell = base.get((point_of[point], metric)) if point_of else None
        rows.append(EstimateRow(point, values, have.get((point, metric)),
                                tuple(have.get((point, f"{metric}.node{n}")) for n in nodes),
                                base_cell))
    return EstimateAnswer(question, tuple(keys), nodes, tuple(rows))


def qualifies(cell: Cell | None, limit: float, below: bool) -> bool:
    """The cell's interval lies wholly below (or above) ``limit``; False without one."""
    if cell is None or cell.method == "none" or cell.n < 2:
        return False
    bound = cell.ci_high if below else cell.ci_low
    if math.isnan(bound):
        return False
    return bound < limit if below else bound > limit


def smallest_from(ordered: Sequence[bool]) -> int | None:
    """The first index from which every entry is True; None if the last is False."""
    start = None
    for i in range(len(ordered) - 1, -1, -1):
        if not ordered[i]:
            break
        start = i
    return start


@dataclass(frozen=True)
class ThresholdGroup:
    """One combination of the other swept keys: the answer, whole machine and per node.

    ``points`` are its points from the smallest value of the key to the largest;
    ``whole`` and ``nodes`` the index in ``points`` of the answer (None: no value).
    """

    others: tuple[str, ...]
    points: tuple[int, ...]
    whole: int | None
    nodes: tuple[int | None, ...]


@dataclass(frozen=True)
class ThresholdAnswer:
    """The smallest swept value that keeps the metric within its limit, per group."""

    question: Question
    other_keys: tuple[str, ...]
    nodes: tuple[int, ...]
    values: Mapping[int, tuple[str, ...]]
    """Each point's values of the threshold key(s)."""
    cells: Cells
    groups: tuple[ThresholdGroup, ...]

    def value_text(self, point: int) -> str:
        """The threshold key's value(s) at ``point``."""
        return ", ".join(self.values[point])


def threshold(question: Question, summary: pd.DataFrame,
              keys: Sequence[str]) -> ThresholdAnswer:
    """Answer a threshold question (see :mod:`allocsim.sweep.study`)."""
    metric = question.metric
    others = tuple(k for k in keys if k not in question.keys)
    have, nodes = cells(summary), node_ids(summary, metric)
    by_point = point_values(summary, keys)
    key_values = {p: tuple(v[keys.index(k)] for k in question.keys)
                  for p, v in by_point.items()}
    grouped: dict[tuple[str, ...], list[int]] = {}
    for point, values in by_point.items():
        grouped.setdefault(tuple(values[keys.index(k)] for k in others), []).append(point)
    groups = []
    for other, points in grouped.items():
        points.sort(key=lambda p: tuple(magnitude(v) for v in key_values[p]))
        limits = [(metric, question.limit),
                  *((f"{metric}.node{n}", question.node_limit) for n in nodes)]
        found = [smallest_from([qualifies(have.get((p, name)), limit, question.below)
                                for p in points])
                 for name, limit in limits]
        groups.append(ThresholdGroup(other, tuple(points), found[0], tuple(found[1:])))
    return ThresholdAnswer(question, others, nodes, key_values, have, tuple(groups))


@dataclass(frozen=True)
class FailureRow:
    """A caller's first failure at one point, in the study and on the baseline."""

    point: int
    values: tuple[str, ...]
    caller: str
    study: Cell
    baseline: Cell | None


@dataclass(frozen=True)
class FirstFailureAnswer:
    """Each caller's time to its first failure, against the baseline.

    ``rows`` holds the callers that failed in some run of the study or the baseline;
    ``never`` the others (they made requests and none failed); ``callers`` and
    ``baseline_callers`` every caller of each.
    """

    keys: tuple[str, ...]
    rows: tuple[FailureRow, ...]
    never: tuple[str, ...]
    callers: tuple[str, ...]
    baseline_callers: tuple[str, ...]


def _callers(summary: pd.DataFrame) -> list[str]:
    names = (str(m) for m in summary["metric"].unique())
    return sorted({m[len(_FIRST):] for m in names
                   if m.startswith(_FIRST) and not _NODE.search(m)})


def first_failures(summary: pd.DataFrame, keys: Sequence[str], baseline: pd.DataFrame,
                   point_of: Mapping[int, int]) -> FirstFailureAnswer:
    """Every caller's first failure per point, with the baseline point's beside it."""
    have, base = cells(summary), cells(baseline)
    callers, base_callers = _callers(summary), _callers(baseline)
    rows = []
    failed = set()
    for caller in callers:
        metric = _FIRST + caller
        per_point = []
        for point, values in point_values(summary, keys).items():
            cell = have.get((point, metric))
            if cell is None:
                continue
            b = base.get((point_of[point], metric))
            per_point.append(FailureRow(point, values, caller, cell, b))
            if cell.n or (b is not None and b.n):
                failed.add(caller)
        if caller in failed:
            rows.extend(per_point)
    never = tuple(c for c in callers if c not in failed)
    return FirstFailureAnswer(tuple(keys), tuple(rows), never, tuple(callers),
                              tuple(base_callers))
