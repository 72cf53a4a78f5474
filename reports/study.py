"""Build a sweep's (or a capacity study's) report: ``study.pdf`` and one PNG per figure.

``build_study_report(sweep_dir)`` reads what ``allocsim sweep`` wrote
(:mod:`reports.sweep_load`) and writes ``<sweep_dir>/report/``:

- a cover: the sweep's name and question (the file's opening comment), its swept
  parameters and their values, replicates, runs and executor, and for a study each
  answer as ``study.md`` states it (``study.json``, :mod:`allocsim.sweep.studyjson`);
- for a study, one figure per question: its metric against the question's key (the
  machine's size for a threshold), one line per value of the other parameters (the
  intensity), for the whole machine and each node, with the limit and the answer drawn;
- one figure per metric that varies: its mean and 95 % CI against each swept parameter;
- a last page listing the metrics that are the same at every point or never recorded.

Everything is drawn before anything is written, and the files are written all or none,
the PNGs rendered beside the PDF in a second process (:func:`reports.render.write_report`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from allocsim.sweep.studymd import fmt
from reports.render import write_report
from reports.study_cover import cover_blocks, text_page, unplotted_blocks
from reports.study_figures import (
    answer_panel,
    metric_figure,
    panel_figure,
    panel_title,
    pin_labels,
)
from reports.sweep_load import SweepData, load_sweep
from reports.sweep_tables import (
    Line,
    Param,
    metric_lines,
    point_rows,
    split_metrics,
    swept_params,
)

PDF_NAME = "study.pdf"
REPORT_DIR = "report"
_STEM = re.compile(r"[^A-Za-z0-9_.-]+")
_QUESTION_ENDS = ("Run it", "Expect")


def build_study_report(sweep_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Build the report of one sweep directory.

    Args:
        sweep_dir: A directory ``allocsim sweep`` wrote (``sweep.json``, ``summary.csv``).
        out_dir: Where to write; default ``<sweep_dir>/report/`` (created if missing).

    Returns:
        The paths written: ``study.pdf`` first, then one PNG per figure in page order.

    Raises:
        reports.load.ReportInputError: An input file is missing or malformed. Nothing
            is written in that case.
    """
    data = load_sweep(Path(sweep_dir))
    out = Path(out_dir) if out_dir is not None else data.sweep_dir / REPORT_DIR
    pages = draw_study(data)
    out.mkdir(parents=True, exist_ok=True)
    stems = {stem for stem, _ in pages if stem}
    for old in [*out.glob("answer_*.png"), *out.glob("metric_*.png")]:
        if old.stem not in stems:  # a previous build's figure of a metric gone since
            old.unlink()
    return write_report(out, pages, f"allocsim study report: {sweep_name(data)}",
                        pdf_name=PDF_NAME)


def draw_study(data: SweepData) -> list[tuple[str, Figure]]:
    """Every page in order, each with its PNG stem (``""``: a text page, no PNG)."""
    summary = data.summary
    params = swept_params(point_rows(summary, data.keys), data.keys) if len(summary) else []
    varying = [p for p in params if len(p.values) > 1] or params
    split = split_metrics(summary)
    answers = [] if data.study is None else list(data.study["answers"])
    pages: list[tuple[str, Figure]] = [("", cover(data, params, answers, split))]
    by_metric = {str(m): rows for m, rows in summary.groupby("metric")}
    for i, answer in enumerate(answers, 1):
        if "metric" in answer and answer["metric"] in by_metric:
            pages.append((stem("answer", f"{i}_{answer['metric']}"),
                          answer_figure(i, answer, by_metric, params, varying)))
    for metric in split.plotted:
        panels = [(p, [o for o in varying if o is not p],
                   metric_lines(by_metric[metric], p, [o for o in varying if o is not p]))
                  for p in varying]
        pages.append((stem("metric", metric), metric_figure(metric, panels)))
    if split.constant or split.same or split.empty:
        constant = [(m, fmt(v, m)) for m, v in split.constant]
        pages.append(("", text_page(unplotted_blocks(constant, split.same, split.empty))))
    return pages


def stem(kind: str, name: str) -> str:
    """A PNG file stem: ``kind_`` and ``name`` with anything but ``[A-Za-z0-9_.-]`` as _."""
    return f"{kind}_" + _STEM.sub("_", name).strip("_")


def sweep_name(data: SweepData) -> str:
    """The experiment's name (the config file's stem, or the directory's, without one)."""
    config = str(data.manifest.get("config") or "")
    return str(data.manifest.get("name") or (data.study or {}).get("name")
               or (Path(config).stem if config else data.sweep_dir.name))


def question(data: SweepData) -> str:
    """What the sweep asks: its file's opening comment up to "Run it:" or "Expect"."""
    text = str(data.manifest.get("description") or "")
    kept = []
    for line in text.splitlines():
        if line.startswith(_QUESTION_ENDS):
            break
        kept.append(line)
    return " ".join(" ".join(kept).split()) or sweep_name(data)


def cover(data: SweepData, params: Sequence[Param], answers: Sequence[dict[str, Any]],
          split: Any) -> Figure:
    """The cover page (see :func:`reports.study_cover.cover_blocks`)."""
    shown = [(str(a["title"]), str(a["sentence"])) for a in answers]
    notes = [f"Each point of a figure is the mean over the point's replicates, with its "
             f"95 % confidence interval (summary.csv). {len(split.plotted)} metrics vary "
             f"and are drawn against each swept parameter"
             + (f"; {len(split.constant)} are the same at every point, "
                f"{len(split.same)} the same as one drawn and {len(split.empty)} never "
                "recorded (listed on the last page)."
                if split.constant or split.same or split.empty else ".")]
    kind = "study" if data.study is not None else "sweep"
    blocks = cover_blocks(kind, sweep_name(data), question(data), facts(data, params),
                          shown, notes)
    return text_page(blocks)


def facts(data: SweepData, params: Sequence[Param]) -> list[str]:
    """The cover's lines about the sweep: parameters, runs, executor, file."""
    m = data.manifest
    lines = [f"Swept: {p.describe()}" for p in params] or \
        [f"Swept: {', '.join(data.keys)}"]
    points, replicates = len(m["points"]), m["replicates"]
    runs = m.get("runs", points * replicates)
    done = f": {m['completed']} complete, {m.get('failed', 0)} failed" \
        if "completed" in m else ""
    lines.append(f"{points} points × {replicates} replicates = {runs} runs{done} "
                 f"(status {m.get('status', 'unknown')})")
    lines.append(f"Executor: {executor_text(m.get('executor'))}")
    if m.get("config"):
        sha = str(m.get("config_sha256", ""))[:12]
        lines.append(f"Config: {m['config']}" + (f" (SHA-256 {sha}…)" if sha else ""))
    if m.get("git_commit"):
        lines.append(f"Source commit: {m['git_commit']}")
    return lines


def executor_text(executor: object) -> str:
    """``{"jobs": 2}`` -> ``2 local processes``; ``{"scheduler": A}`` -> a Dask cluster."""
    if isinstance(executor, dict) and executor.get("scheduler"):
        return f"a Dask cluster (scheduler {executor['scheduler']})"
    if isinstance(executor, dict) and isinstance(executor.get("jobs"), int):
        jobs = executor["jobs"]
        return f"{jobs} local process{'es' if jobs != 1 else ''}"
    return "unknown"


def answer_param(answer: dict[str, Any], params: Sequence[Param],
                 varying: Sequence[Param]) -> Param:
    """The x axis of an answer: a threshold's key, else memory if swept, else the first."""
    if answer["kind"] == "threshold":
        key = answer["keys"][0]
        found = [p for p in params if key in p.keys]
        if found:
            return found[0]
    memory = [p for p in varying if any(k.endswith(".memory") for k in p.keys)]
    return (memory or list(varying))[0]


def answer_figure(number: int, answer: dict[str, Any], by_metric: dict[str, pd.DataFrame],
                  params: Sequence[Param], varying: Sequence[Param]) -> Figure:
    """A question's metric against its key: whole machine and per node, limit, answers."""
    metric = str(answer["metric"])
    param = answer_param(answer, params, varying)
    others = [p for p in varying if p is not param]
    nodes = sorted(int(m.rsplit("node", 1)[1]) for m in by_metric
                   if m.startswith(metric + ".node") and m[len(metric) + 5:].isdigit())
    fig, axes = panel_figure(1 + len(nodes), f"{number}. {answer['title']}")
    for i, ax in enumerate(axes):
        name = metric if i == 0 else f"{metric}.node{nodes[i - 1]}"
        lines = metric_lines(by_metric[name], param, others)
        limit, marks = None, []
        if answer["kind"] == "threshold":
            value = float(answer["limit"] if i == 0 else answer["node_limit"])
            limit = (value, bool(answer["below"]))
            marks = answer_marks(answer, lines, param, others, None if i == 0 else i - 1)
        answer_panel(ax, name, lines, param, others, limit, marks)
        where = "whole machine" if i == 0 else f"node {nodes[i - 1]}"
        panel_title(ax, f"{name} ({where}) against {param.name}")
    pin_labels(fig)
    return fig


def answer_marks(answer: dict[str, Any], lines: Sequence[Line], param: Param,
                 others: Sequence[Param], node: int | None) -> list[tuple[float, float]]:
    """``(x, mean)`` of each group's answer (the smallest value that qualifies)."""
    marks = []
    for group in answer["groups"]:
        value = group["whole"] if node is None else (group["nodes"] or [None] * (node + 1))[node]
        if value is None:
            continue
        fixed = dict(zip(answer["other_keys"], group["others"], strict=False))
        wanted = tuple(fixed.get(p.keys[0]) for p in others)
        for line in lines:
            if all(w is None or w == v for w, v in zip(wanted, line.others, strict=True)):
                at = np.flatnonzero(line.x == param.position(str(value[0])))
                marks += [(float(line.x[j]), float(line.mean[j])) for j in at]
    return marks

