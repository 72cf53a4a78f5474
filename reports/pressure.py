"""The memory-pressure page: kswapd activity, direct reclaim stalls and latency by stage.

Reads ``trace/spans.parquet`` (kswapd runs, direct reclaim) and the ``latency_ns``,
``stall_ns``, ``oom_kills`` and ``panic`` sections of ``summary.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.figures import TIME_LABEL, _no_data, new_figure
from simcore.formats import trace_schema as ts

STAGE_ORDER = ts.STAGES
QUANTILES = (("p50", "median"), ("p99", "99th percentile"), ("p999", "99.9th percentile"))
QUANTILE_COLORS = ("tab:blue", "tab:orange", "tab:red")


def _spans(spans: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = spans[spans["name"].astype(str) == name].copy()
    rows["start_s"] = rows["start_ns"] / 1e9
    rows["duration_s"] = (rows["end_ns"] - rows["start_ns"]) / 1e9
    return rows


def _kswapd_axes(ax: Axes, spans: pd.DataFrame, nodes: list[int]) -> None:
    runs = _spans(spans, ts.SPAN_KSWAPD_RUN)
    wakes = _spans(spans, ts.SPAN_WAKEUP_KSWAPD)
    ax.set_title("kswapd: balance_pgdat() runs per node (bar length = time reclaiming)",
                 loc="left")
    if runs.empty and wakes.empty:
        _no_data(ax, "kswapd never ran: free memory stayed above the LOW watermarks")
        return
    labels = []
    for y, nid in enumerate(nodes):
        mine = runs[runs["nid"] == nid]
        width = np.maximum(mine["duration_s"].to_numpy(), 0.0)
        ax.broken_barh(list(zip(mine["start_s"], width, strict=True)), (y - 0.3, 0.6),
                       facecolors="tab:green")
        woke = wakes[wakes["nid"] == nid]
        ax.plot(woke["start_s"], np.full(len(woke), y + 0.4), "|", color="tab:purple",
                markersize=6, label="wakeup_kswapd() by an allocation" if y == 0 else None)
        labels.append(f"node {nid}\n{len(mine):,} runs\n{int(mine['pages'].sum()):,} pages")
    ax.set_yticks(range(len(nodes)), labels)
    ax.set_ylim(-0.6, len(nodes) - 0.4)
    ax.grid(True, axis="x", alpha=0.3)
    if not wakes.empty:
        ax.legend(loc="upper left", fontsize=8)


def _stall_axes(ax: Axes, spans: pd.DataFrame, summary: dict[str, Any]) -> None:
    direct = _spans(spans, ts.SPAN_DIRECT_RECLAIM)
    kills = summary.get("oom_kills") or []
    some = summary.get("stall_ns", {}).get("some_percent", 0.0)
    ax.set_title(f"Direct reclaim stalls by caller (memory pressure, PSI some: {some:.2f} % "
                 "of the run)", loc="left")
    if direct.empty and not kills and not summary.get("panic"):
        _no_data(ax, "no caller entered direct reclaim")
        return
    for caller, rows in direct.groupby(direct["caller"].astype(str), sort=True):
        ax.scatter(rows["start_s"], rows["duration_s"] * 1e6, s=10, label=caller, alpha=0.7)
    panic = summary.get("panic")
    if panic:
        ax.axvline(panic["time_ns"] / 1e9, color="black", linewidth=2)
        ax.annotate("kernel panic", (panic["time_ns"] / 1e9, 1.0),
                    xycoords=("data", "axes fraction"), rotation=90, va="top", ha="right",
                    fontsize=9, weight="bold")
    for kill in kills:
        when = kill["time_ns"] / 1e9
        ax.axvline(when, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(f"OOM kill: {kill['victim']}", (when, 1.0), xycoords=("data", "axes fraction"),
                    rotation=90, va="top", ha="right", fontsize=8, color="tab:red")
    if not direct.empty:
        ax.set_yscale("log")
        ax.legend(loc="upper left", fontsize=8, title="caller", ncols=2)
    ax.set_ylabel("stall per call (µs, log)")
    ax.grid(True, alpha=0.3)


def _latency_axes(ax: Axes, summary: dict[str, Any]) -> None:
    latency = summary.get("latency_ns", {})
    stages = [s for s in STAGE_ORDER if s in latency]
    ax.set_title("Allocation latency by stage (deepest step each request reached)",
                 loc="left")
    if not stages:
        _no_data(ax, "no allocation latency recorded")
        return
    x = np.arange(len(stages))
    width = 0.26
    for i, ((key, label), color) in enumerate(zip(QUANTILES, QUANTILE_COLORS, strict=True)):
        values = [max(latency[s][key], 1) / 1e3 for s in stages]
        ax.bar(x + (i - 1) * width, values, width, label=label, color=color)
    ax.set_xticks(x, [f"{s}\n{_requests(latency[s]['count'])}" for s in stages])
    ax.set_yscale("log")
    ax.set_ylabel("latency (µs, log)")
    ax.legend(loc="upper left", fontsize=8, ncols=3)
    ax.grid(True, axis="y", alpha=0.3)


def _requests(count: int) -> str:
    return f"{count:,} request" + ("" if count == 1 else "s")


def pressure_figure(spans: pd.DataFrame, summary: dict[str, Any], nodes: list[int]) -> Figure:
    """Kswapd runs per node, direct reclaim stalls over time, and latency by stage.

    Args:
        spans: ``trace/spans.parquet``.
        summary: ``summary.json``.
        nodes: The machine's node ids (one kswapd lane each).
    """
    fig = new_figure((10.0, 11.0))
    fig.suptitle("Memory pressure: kswapd, direct reclaim stalls, allocation latency")
    top, middle, bottom = fig.subplots(3, 1, height_ratios=(1.0, 1.3, 1.3))
    _kswapd_axes(top, spans, nodes)
    _stall_axes(middle, spans, summary)
    middle.sharex(top)
    end = float(summary.get("simulated_seconds", 0.0))
    if end > 0:  # the whole run, not just the part with activity
        top.set_xlim(0.0, end)
    middle.set_xlabel(TIME_LABEL)
    _latency_axes(bottom, summary)
    return fig
