"""``study.md``: each answer of a study as one sentence and a table (Markdown)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from allocsim.sweep.answers import (
    Cell,
    EstimateAnswer,
    EstimateRow,
    FailureRow,
    FirstFailureAnswer,
    ThresholdAnswer,
    ThresholdGroup,
    qualifies,
)
from allocsim.sweep.metrics import is_rate
from allocsim.sweep.stats import BOOTSTRAP_RESAMPLES, NEAR_BOUND

METHODS = {
    "t": "Student's t over the replicates (mean ± t(0.975, n-1)·s/√n)",
    "bootstrap": f"a percentile bootstrap of {BOOTSTRAP_RESAMPLES:,} resamples (a rate "
                 f"whose mean is within {NEAR_BOUND} of 0 or 1)",
    "none": "no interval (fewer than two values)",
}


@dataclass(frozen=True)
class StudyContext:
    """What study.md says about the sweep behind the answers."""

    name: str
    config: str
    points: int
    replicates: int
    completed: int
    failed: int
    baseline: str
    baseline_points: int
    baseline_completed: int
    baseline_failed: int


def render(ctx: StudyContext, answers: Sequence[object],
           failures: FirstFailureAnswer) -> str:
    """The whole of study.md."""
    parts = [_header(ctx)]
    for i, answer in enumerate(answers, 1):
        if isinstance(answer, EstimateAnswer):
            parts.append(render_estimate(i, answer))
        elif isinstance(answer, ThresholdAnswer):
            parts.append(render_threshold(i, answer))
    parts.append(render_first_failures(len(answers) + 1, failures, ctx.baseline))
    return "\n\n".join(parts) + "\n"


def _header(ctx: StudyContext) -> str:
    runs = ctx.points * ctx.replicates
    base_runs = ctx.baseline_points * ctx.replicates
    failed = f", {ctx.failed} failed" if ctx.failed else ""
    base_failed = f", {ctx.baseline_failed} failed" if ctx.baseline_failed else ""
    methods = "; ".join(f"**{k}**: {v}" for k, v in METHODS.items())
    return (f"# Study: {ctx.name}\n\n"
            f"Sweep `{ctx.config}`: {ctx.points} points × {ctx.replicates} replicates = "
            f"{runs} runs ({ctx.completed} complete{failed}). Fresh-box baseline: "
            f"{ctx.baseline}, {ctx.baseline_points} points × {ctx.replicates} replicates = "
            f"{base_runs} runs in `baseline/` ({ctx.baseline_completed} complete"
            f"{base_failed}).\n\n"
            f"Every interval is a 95 % confidence interval of the mean over a point's "
            f"replicates, by the method its row names: {methods}.")


def fmt(value: float, metric: str) -> str:
    """A number as the tables print it: rates in percent, others to 4 digits."""
    if math.isnan(value):
        return "–"
    if is_rate(metric):
        return f"{100 * value:.3g} %"
    return f"{value:.4g}"


def fmt_cell(cell: Cell | None, metric: str) -> str:
    """``mean (low–high)``; ``–`` without values."""
    if cell is None or cell.n == 0:
        return "–"
    if cell.method == "none":
        return fmt(cell.mean, metric)
    return f"{fmt(cell.mean, metric)} ({fmt(cell.ci_low, metric)}–{fmt(cell.ci_high, metric)})"


def _ci_text(cell: Cell | None, metric: str, unit: str = "") -> str:
    if cell is None or cell.n == 0:
        return "no value"
    if cell.method == "none":
        return f"{fmt(cell.mean, metric)}{unit} (one value, no interval)"
    return (f"{fmt(cell.mean, metric)}{unit} (95 % CI {fmt(cell.ci_low, metric)} to "
            f"{fmt(cell.ci_high, metric)}{unit}, {cell.method})")


def _methods(cells: Sequence[Cell | None]) -> str:
    seen = [c.method for c in cells if c is not None and c.n]
    return ", ".join(dict.fromkeys(seen)) or "–"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def where(keys: Sequence[str], values: Sequence[str]) -> str:
    """``key=value, ...`` (or ``every point`` without keys)."""
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "every point"


def estimate_title(ans: EstimateAnswer) -> str:
    """The estimate's heading: its question."""
    return ans.question.ask or f"What is {ans.question.metric} at each point?"


def estimate_sentence(ans: EstimateAnswer) -> str:
    """The estimate's answer in one sentence."""
    metric = ans.question.metric
    valued = [r for r in ans.rows if r.whole is not None and r.whole.n]
    if not valued:
        return f"No completed run recorded `{metric}`."
    if len(valued) == 1:
        r = valued[0]
        return (f"At {where(ans.keys, r.values)}, `{metric}` is "
                f"{_ci_text(r.whole, metric)} for the whole machine{_nodes_text(ans, r)}.")
    lo = min(valued, key=lambda r: r.whole.mean)  # type: ignore[union-attr]
    hi = max(valued, key=lambda r: r.whole.mean)  # type: ignore[union-attr]
    return (f"For the whole machine, `{metric}` is lowest at "
            f"{_at(ans, valued, lo)}, {_ci_text(lo.whole, metric)}, and "
            f"highest at {_at(ans, valued, hi)}, {_ci_text(hi.whole, metric)}"
            f"{_baseline_text(valued, metric)}.")


def render_estimate(number: int, ans: EstimateAnswer) -> str:
    """One estimate: its sentence and table."""
    metric = ans.question.metric
    title, sentence = estimate_title(ans), estimate_sentence(ans)
    header = [*ans.keys, "whole machine", *(f"node {n}" for n in ans.nodes),
              "fresh-box baseline", "CI"]
    rows = [[*r.values, fmt_cell(r.whole, metric), *(fmt_cell(c, metric) for c in r.nodes),
             fmt_cell(r.baseline, metric), _methods([r.whole, *r.nodes, r.baseline])]
            for r in ans.rows]
    return f"## {number}. {title}\n\n{sentence}\n\n{table(header, rows)}"


def _at(ans: EstimateAnswer, rows: Sequence[EstimateRow], row: EstimateRow) -> str:
    """Where ``row`` is, and how many other points have the same mean."""
    assert row.whole is not None
    same = sum(r.whole is not None and r.whole.mean == row.whole.mean for r in rows) - 1
    also = "" if not same else f" (and {same} other point{'s' if same > 1 else ''})"
    return where(ans.keys, row.values) + also


def _nodes_text(ans: EstimateAnswer, row: object) -> str:
    nodes = getattr(row, "nodes", ())
    parts = [f"{fmt(c.mean, ans.question.metric)} on node {n}"
             for n, c in zip(ans.nodes, nodes, strict=True) if c is not None and c.n]
    return "" if not parts else " (" + ", ".join(parts) + ")"


def _baseline_text(rows: Sequence[object], metric: str) -> str:
    means = [r.baseline.mean for r in rows  # type: ignore[attr-defined]
             if r.baseline is not None and r.baseline.n]  # type: ignore[attr-defined]
    if not means:
        return ""
    span = fmt(min(means), metric) if min(means) == max(means) else \
        f"{fmt(min(means), metric)} to {fmt(max(means), metric)}"
    return f" (the fresh-box baseline: {span})"


def threshold_title(ans: ThresholdAnswer) -> str:
    """The threshold's heading: its question."""
    q = ans.question
    side = "below" if q.below else "above"
    return q.ask or (f"What is the smallest {', '.join(q.keys)} for which {q.metric} "
                     f"stays {side} {fmt(q.limit, q.metric)}?")


def threshold_sentence(ans: ThresholdAnswer) -> str:
    """The threshold's answer in one sentence: the smallest value per group."""
    q = ans.question
    bound = "upper" if q.below else "lower"
    side = "below" if q.below else "above"
    clauses = [_group_clause(ans, g) for g in ans.groups]
    return (f"The smallest {', '.join(q.keys)} from which on the {bound} bound of the 95 % "
            f"CI of `{q.metric}` (whole machine) stays {side} {fmt(q.limit, q.metric)} is "
            + "; ".join(clauses) + ".")


def render_threshold(number: int, ans: ThresholdAnswer) -> str:
    """One threshold: its sentence, the answer per group, and the evidence per point."""
    q = ans.question
    bound = "upper" if q.below else "lower"
    side = "below" if q.below else "above"
    key = ", ".join(q.keys)
    title, sentence = threshold_title(ans), threshold_sentence(ans)
    node_limit = "" if q.node_limit == q.limit else \
        f" (limit {fmt(q.node_limit, q.metric)})"
    header = [*ans.other_keys, f"smallest {key}: whole machine",
              *(f"node {n}{node_limit}" for n in ans.nodes)]
    rows = [[*g.others, _answer_text(ans, g, g.whole),
             *(_answer_text(ans, g, i) for i in g.nodes)] for g in ans.groups]
    return (f"## {number}. {title}\n\n{sentence}\n\n{table(header, rows)}\n\n"
            f"Per point (✓: the {bound} bound is {side} the limit):\n\n"
            + _evidence(ans))


def _group_clause(ans: ThresholdAnswer, group: ThresholdGroup) -> str:
    prefix = f"for {where(ans.other_keys, group.others)}: " if ans.other_keys else ""
    if group.whole is None:
        first, last = group.points[0], group.points[-1]
        return (f"{prefix}none of the swept values ({ans.value_text(first)} to "
                f"{ans.value_text(last)}) qualifies")
    return prefix + ans.value_text(group.points[group.whole])


def _answer_text(ans: ThresholdAnswer, group: ThresholdGroup, index: int | None) -> str:
    return "none qualifies" if index is None else ans.value_text(group.points[index])


def _evidence(ans: ThresholdAnswer) -> str:
    q = ans.question
    names = [q.metric, *(f"{q.metric}.node{n}" for n in ans.nodes)]
    header = [*ans.other_keys, ", ".join(q.keys), "whole machine",
              *(f"node {n}" for n in ans.nodes), "CI"]
    rows = []
    for g in ans.groups:
        for p in g.points:
            found = [ans.cells.get((p, name)) for name in names]
            limits = [q.limit, *(q.node_limit for _ in ans.nodes)]
            marks = [f"{fmt_cell(c, q.metric)} {_mark(c, limit, q.below)}"
                     for c, limit in zip(found, limits, strict=True)]
            rows.append([*g.others, ans.value_text(p), *marks, _methods(found)])
    return table(header, rows)


def _mark(cell: Cell | None, limit: float, below: bool) -> str:
    return "✓" if qualifies(cell, limit, below) else "✗"


FIRST_FAILURES_TITLE = "When does each caller first fail, against a fresh box?"


def first_failures_sentence(ans: FirstFailureAnswer, baseline: str) -> str:
    """Which callers fail, and the earliest, in the study and on the baseline."""
    study = _earliest(ans.rows, study=True)
    base = _earliest(ans.rows, study=False)
    failing = {r.caller for r in ans.rows if r.study.n}
    base_failing = {r.caller for r in ans.rows if r.baseline is not None and r.baseline.n}
    if not failing and not base_failing:
        return (f"No caller fails in any run of the study or of its fresh-box baseline "
                f"({baseline}).")
    return (f"In the study {len(failing)} of {len(ans.callers)} callers fail in some "
            "run" + (f", the first {_failure_text(ans, study, True)}" if study else "")
            + f"; on the fresh-box baseline ({baseline}) {len(base_failing)} of "
            f"{len(ans.baseline_callers)} do"
            + (f", the first {_failure_text(ans, base, False)}" if base else "") + ".")


def render_first_failures(number: int, ans: FirstFailureAnswer, baseline: str) -> str:
    """Every caller's first failure against the fresh-box baseline."""
    title = f"## {number}. {FIRST_FAILURES_TITLE}"
    text = first_failures_sentence(ans, baseline)
    note = ("Times are simulated seconds from the start of the run: the mean over the "
            "runs in which the caller failed (\"failed in\" counts them; the others never "
            "failed, so the mean is over the earliest failures only).")
    if not ans.rows:
        return f"{title}\n\n{text}"
    header = [*ans.keys, "caller", "failed in", "first failure, s", "baseline: failed in",
              "baseline: first failure, s", "study − baseline, s", "CI"]
    rows = [[*r.values, f"`{r.caller}`", _runs(r.study), fmt_cell(r.study, "s"),
             _runs(r.baseline), fmt_cell(r.baseline, "s"), _difference(r),
             _methods([r.study, r.baseline])] for r in ans.rows]
    never = ("\n\nNever failed, in the study or on the baseline: "
             + ", ".join(f"`{c}`" for c in ans.never) + ".") if ans.never else ""
    return f"{title}\n\n{text}\n\n{table(header, rows)}\n\n{note}{never}"


def _earliest(rows: Sequence[FailureRow], study: bool) -> FailureRow | None:
    def cell(r: FailureRow) -> Cell | None:
        return r.study if study else r.baseline

    failed = [r for r in rows if (c := cell(r)) is not None and c.n]
    return min(failed, key=lambda r: cell(r).mean) if failed else None  # type: ignore[union-attr]


def _failure_text(ans: FirstFailureAnswer, row: FailureRow, study: bool) -> str:
    cell = row.study if study else row.baseline
    assert cell is not None
    return (f"`{row.caller}` after a mean of {_ci_text(cell, 's', ' s')} at "
            f"{where(ans.keys, row.values)}")


def _runs(cell: Cell | None) -> str:
    return "not run" if cell is None else f"{cell.n}/{cell.n + cell.missing}"


def _difference(row: FailureRow) -> str:
    if row.baseline is None or not row.baseline.n or not row.study.n:
        return "–"
    return f"{row.study.mean - row.baseline.mean:+.4g}"
