"""Callers: rates over time (figure 6), outcomes (figure 7), latency (figure 8)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reports.series import alloc_rows, codes
from reports.style import (
    FIGSIZE,
    TimeUnit,
    caption,
    format_ns,
    format_seconds,
    new_figure,
    no_data,
    order_style,
    plain_log_ticks,
    series_style,
    steps,
)
from simcore.formats import trace_schema as ts
from simcore.mm.gfp import format_gfp

OUTCOME_BARS = (("success", "tab:green", ""), ("fallback", "tab:orange", "//"),
                ("failure", "tab:red", "xx"))
LATENCY_PATHS = (ts.PATH_PCP, ts.PATH_BUDDY, ts.PATH_FALLBACK, ts.PATH_FAILURE)
QUANTILES = (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999))


def rates_figure(rates: pd.DataFrame, edges: np.ndarray, unit: TimeUnit) -> Figure:
    """Allocation and failure rates over time, one panel per caller, one line per order."""
    callers = sorted({c for c, _, _ in rates.columns}) if len(rates.columns) else []
    rows = max(len(callers), 1)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.2 + 1.7 * rows)), margins=False)
    fig.subplots_adjust(left=0.09, right=0.8, top=1 - 0.75 / fig.get_figheight(),
                        bottom=0.8 / fig.get_figheight(), hspace=0.35)
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 0.0
    fig.suptitle("Allocations (lines) and failures (red, x) per second, by caller and order")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if not callers:
        no_data(axes[0], "no mm_page_alloc events traced (trace.events is off?)")
        return fig
    x = unit.scale(edges)
    for ax, caller in zip(axes, callers, strict=True):
        mine = rates[caller]
        for order in sorted({o for o, _ in mine.columns}):
            style = order_style(int(order))  # an order looks the same in every panel
            if (order, ts.OUTCOME_OK) in mine.columns:
                steps(ax, mine[(order, ts.OUTCOME_OK)].to_numpy(), x, color=style["color"],
                          linestyle=style["linestyle"], label=f"order {order}",
                          gid=f"rate {caller} {order} ok")
            if (order, ts.OUTCOME_FAIL) in mine.columns:
                fails = mine[(order, ts.OUTCOME_FAIL)].to_numpy()
                steps(ax, fails, x, color="tab:red", linestyle=style["linestyle"], linewidth=1.6,
                          gid=f"rate {caller} {order} fail")
                hit = fails > 0
                centres = (x[:-1] + x[1:]) / 2
                ax.plot(centres[hit], fails[hit], "x", color="tab:red", markersize=5,
                        label=f"order {order} failed")
        ax.set_yscale("symlog", linthresh=1.0)
        plain_log_ticks(ax.yaxis)
        ax.set_ylim(bottom=0)
        ax.set_title(caller or "(kernel)", loc="left", fontsize=9)
        ax.set_ylabel("per s")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, ncols=1)
    axes[-1].set_xlim(x[0], x[-1])
    axes[-1].set_xlabel(unit.label)
    caption(fig, f"Rates in bins of {format_seconds(width)} (symlog axis: linear below 1/s). "
            "A failed allocation is an mm_page_alloc with outcome fail (warn_alloc).")
    return fig


_alloc_rows = alloc_rows


def outcomes_table(events: pd.DataFrame) -> pd.DataFrame:
    """Requests per caller, order and gfp mask: successes, fallbacks and failures.

    Returns:
        Columns ``caller``, ``order``, ``gfp`` (the ftrace spelling), ``success`` (served
        from pcp or the requested migratetype), ``fallback`` (served by
        __rmqueue_fallback()) and ``failure``, sorted by caller, order and gfp.
    """
    allocs = _alloc_rows(events)
    columns = [name for name, _, _ in OUTCOME_BARS]
    if allocs.empty:
        return pd.DataFrame(columns=["caller", "order", "gfp", *columns])
    kind = np.where((allocs["path"] == ts.PATH_FALLBACK).to_numpy(), 1,
                    np.where((allocs["outcome"] == ts.OUTCOME_FAIL).to_numpy(), 2, 0))
    caller_codes, callers = codes(allocs["caller"])
    gfp_codes, gfps = codes(allocs["gfp"])
    orders = allocs["order"].to_numpy(dtype=np.int64)
    span = int(orders.max()) + 1
    key = (caller_codes * span + orders) * len(gfps) + gfp_codes
    counts = np.bincount(key * 3 + kind, minlength=len(callers) * span * len(gfps) * 3)
    counts = counts.reshape(-1, 3)
    rows = []
    for k in np.flatnonzero(counts.sum(axis=1)).tolist():
        rest, g = divmod(k, len(gfps))
        c, o = divmod(rest, span)
        rows.append((str(callers[c]), o, format_gfp(int(gfps[g])), *counts[k].tolist()))
    table = pd.DataFrame(rows, columns=["caller", "order", "gfp", *columns])
    table = table.groupby(["caller", "order", "gfp"], as_index=False).sum()  # same spelling
    return table.sort_values(["caller", "order", "gfp"], kind="stable").reset_index(drop=True)


def outcomes_figure(table: pd.DataFrame) -> Figure:
    """Outcomes per (caller, order, gfp mask) as grouped horizontal bars on a log axis."""
    rows = max(len(table), 1)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.6 + 0.42 * rows)), margins=False)
    fig.subplots_adjust(left=0.42, right=0.97, top=1 - 0.7 / fig.get_figheight(),
                        bottom=0.9 / fig.get_figheight())
    ax = fig.add_subplot()
    fig.suptitle("Outcomes by caller, order and gfp_mask (mm_page_alloc events)")
    if table.empty:
        no_data(ax, "no mm_page_alloc events traced")
        return fig
    y = np.arange(len(table))[::-1]
    height = 0.27
    for i, (name, color, hatch) in enumerate(OUTCOME_BARS):
        values = table[name].to_numpy()
        bars = ax.barh(y + (1 - i) * height, np.where(values > 0, values, np.nan), height,
                       color=color, hatch=hatch, edgecolor="0.25", linewidth=0.4, label=name,
                       gid=f"outcome {name}")
        ax.bar_label(bars, labels=[f"{v:,}" if v else "" for v in values], fontsize=6,
                     padding=2)
    labels = [f"{r.caller or '(kernel)'} · order {r.order} · {r.gfp}"
              for r in table.itertuples()]
    ax.set_yticks(y, [lbl if len(lbl) < 70 else lbl[:67] + "..." for lbl in labels],
                  fontsize=7)
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    peak = max(int(table[[n for n, _, _ in OUTCOME_BARS]].to_numpy().max()), 1)
    ax.set_xlim(0.8, peak * 4)
    ax.set_xlabel("allocation requests (log scale)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title="outcome")
    caption(fig, "success: served without a fallback (a pcp list, the requested "
            "migratetype's free lists, or the highatomic reserve); fallback: served after "
            "__rmqueue_fallback() took a block of another migratetype, directly or to refill "
            "a pcp list (mm_page_alloc_extfrag); failure: NULL.")
    return fig


def latency_counts(events: pd.DataFrame, column: str) -> dict[str, tuple[np.ndarray,
                                                                       np.ndarray]]:
    """Per value of ``column`` (path or stage): its distinct latencies and their counts.

    The model's latencies are sums of a few step costs, so a million requests have few
    distinct values; one group-by finds them all, sorted.
    """
    allocs = _alloc_rows(events)
    allocs = allocs[allocs["latency_ns"] >= 0]
    counts = allocs.groupby([allocs[column], allocs["latency_ns"]], observed=True).size()
    out = {}
    for name, group in counts.groupby(level=0, observed=True):
        values = group.index.get_level_values(1).to_numpy(dtype=np.int64)
        order = np.argsort(values, kind="stable")
        out[str(name)] = (values[order], group.to_numpy()[order])
    return out


def quantile(values: np.ndarray, counts: np.ndarray, q: float) -> int:
    """The smallest value with at least ``q`` of the requests at or below it."""
    cumulative = np.cumsum(counts)
    return int(values[np.searchsorted(cumulative, q * cumulative[-1], side="left")])


def latency_table(events: pd.DataFrame) -> pd.DataFrame:
    """Latency quantiles (ns) per path and per slow-path stage.

    Returns:
        Index ``"path pcp"`` .. ``"stage fail"`` (only those with requests); columns
        ``count``, ``p50``, ``p99``, ``p99.9``, ``max``.
    """
    rows = {}
    for column, names in (("path", LATENCY_PATHS), ("stage", ts.STAGES)):
        groups = latency_counts(events, column)
        for name in names:
            if name in groups:
                values, counts = groups[name]
                rows[f"{column} {name}"] = {"count": int(counts.sum()), **{
                    label: quantile(values, counts, q) for label, q in QUANTILES},
                    "max": int(values[-1])}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["count", *(lb for lb, _ in QUANTILES), "max"])


def latency_figure(events: pd.DataFrame, table: pd.DataFrame) -> Figure:
    """The allocation latency CDF by path, with the quantile table beside it."""
    fig = new_figure()
    fig.subplots_adjust(left=0.08, right=0.55, top=0.9, bottom=0.12)
    ax = fig.add_subplot()
    fig.suptitle("Allocation latency: cumulative distribution by path (__alloc_pages() "
                 "entry to return)")
    groups = latency_counts(events, "path")
    if not groups:
        no_data(ax, "no allocation latency traced")
        return fig
    for i, path in enumerate(LATENCY_PATHS):
        if path not in groups:
            continue
        values, counts = groups[path]
        style = series_style(i)
        # a log axis has no 0: a request that took no modelled time is drawn at 1 ns
        x, cdf = cdf_steps(np.maximum(values, 1) / 1e3, counts)
        ax.step(x, cdf, where="post", color=style["color"], linestyle=style["linestyle"],
                label=f"{path} ({int(counts.sum()):,})", gid=f"cdf {path}")
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    low, high = ax.get_xlim()
    ax.set_xlim(low / 1.5, high * 1.5)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, title="path (requests)")
    fig.text(0.565, 0.88, latency_text(table), family="monospace", fontsize=7, va="top",
             gid="latency table")
    caption(fig, "Latency is the model's cost of each step (config cost:), not a host "
            "measurement; path: where the page came from; stage: the deepest slow-path step. "
            "A latency of 0 is drawn at 1 ns.")
    return fig


def cdf_steps(values: np.ndarray, counts: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """The empirical CDF as steps: one point per distinct value, starting at 0.

    Args:
        values: The values, or (with ``counts``) the distinct values in ascending order.
        counts: How many times each distinct value occurs.

    Returns:
        ``(x, fraction at or below x)``: the first point is the smallest value at 0, then
        each distinct value with the fraction of values at or below it, so a million
        requests draw as few points as they have distinct latencies.
    """
    if counts is None:
        values, counts = np.unique(values, return_counts=True)
    cdf = np.cumsum(counts) / max(int(counts.sum()), 1)
    return np.concatenate([values[:1], values]), np.concatenate([[0.0], cdf])


def latency_text(table: pd.DataFrame) -> str:
    """The quantile table as monospace text."""
    head = f"{'':<22}{'count':>9}{'p50':>10}{'p99':>10}{'p99.9':>10}{'max':>10}"
    lines = [head]
    for name, row in table.iterrows():
        lines.append(f"{name:<22}{int(row['count']):>9,}" + "".join(
            f"{format_ns(row[c]):>10}" for c in ("p50", "p99", "p99.9", "max")))
    return "\n".join(lines)
