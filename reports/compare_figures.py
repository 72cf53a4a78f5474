"""The comparison report's pages: the run report's series overlaid, and the metric table."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.compare import MetricRow, Variant, mean_band, metric_table
from reports.fig_blocks import huge_free_blocks
from reports.fig_callers import cdf_steps
from reports.load import RunData
from reports.series import block_matrices, fragmentation_over_time
from reports.style import (
    FIGSIZE,
    PAGE_SIZE,
    TimeUnit,
    caption,
    fix_positions,
    format_ns,
    new_figure,
    no_data,
    plain_log_ticks,
    series_style,
    size_unit,
    steps,
    time_unit,
)
from simcore.formats import trace_schema as ts

Extract = Callable[[RunData], pd.Series]
TABLE_LINES = 52


def _zonestat_total(column: str) -> Extract:
    def extract(run: RunData) -> pd.Series:
        total = run.zonestat.groupby("time_ns")[column].sum()
        return pd.Series(total.to_numpy(), index=total.index.to_numpy() / 1e9)
    return extract


def _huge_free(run: RunData) -> pd.Series:
    return huge_free_blocks(block_matrices(run.buddyinfo), run.pageblock_order).sum(axis=1)


def _score(nid: int) -> Extract:
    def extract(run: RunData) -> pd.Series:
        matrices = block_matrices(run.buddyinfo)
        present = {(int(r.nid), str(r.zone)): int(r.present) for r in run.zones.itertuples()}
        _, score = fragmentation_over_time(matrices, present)
        column = f"node {nid}"
        return score[column] if column in score else pd.Series(dtype=float)
    return extract


def _failures(caller: str) -> Extract:
    def extract(run: RunData) -> pd.Series:
        ev = run.alloc_events
        mine = ev[(ev["caller"].astype(str) == caller)
                  & (ev["outcome"].astype(str) == ts.OUTCOME_FAIL)]
        times = np.sort(mine["time_ns"].to_numpy()) / 1e9
        return pd.Series(np.concatenate([[0], np.arange(1, len(times) + 1)]),
                         index=np.concatenate([[0.0], times])).groupby(level=0).max()
    return extract


def _overlay(ax: Axes, variants: list[Variant], extract: Extract, unit: TimeUnit, end_s: float,
             scale: float = 1.0, gid: str = "") -> None:
    """Each variant's mean as steps, with its 95 % band over replicates.

    A ``scale`` of 0 means pages: they are drawn in the binary unit that suits the data,
    which the y label then names.
    """
    bands = []
    for variant in variants:
        series = [s for s in (extract(run) for run in variant.runs) if len(s)]
        top = 100.0 if "score" in gid else math.inf  # fragmentation_score_node(): 0..100
        bands.append((mean_band(series, high=top), len(series)) if series else (None, 0))
    if scale == 0:
        peak = max((float(b["high"].max()) for b, _ in bands if b is not None), default=1.0)
        name, size = size_unit(max(peak, 1.0) * PAGE_SIZE)
        scale = PAGE_SIZE / size
        ax.set_ylabel(name)
    top = 0.0
    for i, (variant, (band, n)) in enumerate(zip(variants, bands, strict=True)):
        if band is None:
            continue
        band = band * scale
        top = max(top, float(band["high"].max()))
        style = series_style(i)
        x = unit.scale(np.append(band.index.to_numpy(dtype=float), end_s))
        steps(ax, band["mean"].to_numpy(), x, color=style["color"], linestyle=style["linestyle"],
                  linewidth=1.6, label=f"{variant.label} (n={n})", gid=f"{gid} {i}")
        if n > 1:
            steps(ax, band["high"].to_numpy(), x, baseline=band["low"].to_numpy(), fill=True,
                      color=style["color"], alpha=0.2, gid=f"{gid} band {i}")
    ax.set_xlim(0, unit.scale(end_s))
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), top * 1.12 or 1.0)
    ax.grid(True, alpha=0.3)


def _series_page(title: str, panels: list[tuple[str, str, Extract, float]],
                 variants: list[Variant], end_s: float, unit: TimeUnit) -> Figure:
    rows = max(len(panels), 1)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.4 + 2.3 * rows)), margins=False)
    fig.subplots_adjust(left=0.09, right=0.71, top=1 - 0.75 / fig.get_figheight(),
                        bottom=0.8 / fig.get_figheight(), hspace=0.45)
    fig.suptitle(title)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if not panels:
        no_data(axes[0], "nothing to compare")
        return fig
    for ax, (name, ylabel, extract, scale) in zip(axes, panels, strict=True):
        ax.set_ylabel(ylabel)
        _overlay(ax, variants, extract, unit, end_s, scale, gid=name)
        ax.set_title(name, loc="left", fontsize=9)
    axes[-1].set_xlabel(unit.label)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, [textwrap.fill(t, 38) for t in labels], loc="upper left",
               bbox_to_anchor=(0.73, 1 - 0.75 / fig.get_figheight()), fontsize=7.5,
               title="variant (replicates)")
    caption(fig, "Lines: the mean over a variant's replicates at each snapshot (steps); "
            "bands: the 95 % t interval where there are two or more, clipped to the "
            "quantity's range (never below 0).")
    return fig


def series_pages(variants: list[Variant]) -> list[tuple[str, Figure]]:
    """The overlaid time series, page by page, with their PNG stems."""
    runs = [r for v in variants for r in v.runs]
    end_s = max(r.duration_s for r in runs)
    unit = time_unit(end_s)
    nodes = sorted({int(n) for r in runs for n in r.zonestat["nid"].unique()})
    callers = sorted({str(c) for r in runs for c in r.alloc_events.loc[
        r.alloc_events["outcome"].astype(str) == ts.OUTCOME_FAIL, "caller"].astype(str)})
    pages = [
        ("01_memory", _series_page("Free memory and huge-page availability, whole machine", [
            ("free memory (NR_FREE_PAGES, all zones)", "", _zonestat_total("nr_free_pages"), 0),
            ("min watermark, all zones (incl. boost)", "", _zonestat_total("wmark_min"), 0),
            ("free blocks of order >= pageblock order (huge pages now)", "blocks",
             _huge_free, 1.0),
            ("movable-only pageblocks (what compaction could free)", "pageblocks",
             _zonestat_total("pageblocks_movable_only"), 1.0),
        ], variants, end_s, unit)),
        ("02_fragmentation", _series_page("Fragmentation", [
            *((f"fragmentation score, node {nid} (fragmentation_score_node())", "score (%)",
               _score(nid), 1.0) for nid in nodes),
            ("mixed (polluted) pageblocks, whole machine", "pageblocks",
             _zonestat_total("pageblocks_mixed"), 1.0),
        ], variants, end_s, unit)),
        ("03_failures", _series_page("Allocation failures over time (cumulative)", [
            (f"{caller or '(kernel)'}: failed allocations so far", "failures",
             _failures(caller), 1.0) for caller in callers], variants, end_s, unit)),
        ("04_latency", latency_page(variants)),
    ]
    for _, fig in pages:
        fix_positions(fig)
    return pages


def latency_page(variants: list[Variant]) -> Figure:
    """The latency CDF of all requests, replicates pooled, one line per variant."""
    fig = new_figure()
    fig.subplots_adjust(right=0.7)
    ax = fig.add_subplot()
    fig.suptitle("Allocation latency, all requests (replicates pooled)")
    drawn = False
    for i, variant in enumerate(variants):
        lat = np.sort(np.concatenate([r.alloc_events["latency_ns"].to_numpy(dtype=float)
                                      for r in variant.runs]))
        lat = lat[lat >= 0] / 1e3
        if not len(lat):
            continue
        style = series_style(i)
        x, cdf = cdf_steps(lat)
        ax.step(x, cdf, where="post", color=style["color"], linestyle=style["linestyle"],
                label=f"{variant.label} ({len(lat):,} requests)", gid=f"cdf {i}")
        drawn = True
    if not drawn:
        no_data(ax, "no allocation latency traced")
        return fig
    ax.set_xscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [textwrap.fill(t, 38) for t in labels], loc="upper left",
              bbox_to_anchor=(1.01, 1.0), fontsize=7.5)
    return fig


def _value(metric: str, value: float) -> str:
    """A metric's value in its unit: ns and s metrics as durations, others as numbers."""
    if math.isnan(value):
        return "-"
    if metric.startswith("latency_") or metric.endswith("_ns") or "_ns." in metric:
        return format_ns(value)
    if metric.startswith(("stall_s.", "first_failure_s.")):
        return format_ns(value * 1e9)
    return _num(value)


def _num(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value != 0 and (abs(value) >= 1e12 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def table_blocks(variants: list[Variant], rows: list[MetricRow]) -> list[list[str]]:
    """The metric table as text, one block of lines per metric.

    Per metric, each variant's mean [95 % CI, clipped at 0: no metric is negative] and
    its difference from the baseline [Welch 95 % CI]; ``*`` marks a difference whose
    interval excludes 0. Durations are in their unit. Metrics with one value in every
    run are named together in a last block.
    """
    blocks = []
    same = [row.metric for row in rows if _unchanged(row)]
    for row in rows:
        if _unchanged(row):
            continue
        m = row.metric
        block = [m]
        for i in range(len(variants)):
            diff = "baseline" if i == 0 else (
                f"Δ {_signed(m, row.diffs[i])}{_ci_of(m, row.diff_lows[i], row.diff_highs[i])}"
                + (" *" if not math.isnan(row.diff_lows[i])
                   and (row.diff_lows[i] > 0 or row.diff_highs[i] < 0) else ""))
            ci = _ci_of(m, max(row.lows[i], 0.0), row.highs[i])
            block.append(f"  {i + 1}. n={row.ns[i]:<3} {_value(m, row.means[i]):>12}{ci:<28} "
                         f"{diff}")
        blocks.append(block)
    if same:
        blocks.append(["", "the same in every run (left out above):",
                       *textwrap.wrap(", ".join(same), 95, initial_indent="  ",
                                      subsequent_indent="  ")])
    return blocks


def table_lines(variants: list[Variant], rows: list[MetricRow]) -> list[str]:
    """:func:`table_blocks` as one list of lines."""
    return [line for block in table_blocks(variants, rows) for line in block]


def _signed(metric: str, value: float) -> str:
    text = _value(metric, abs(value))
    return text if math.isnan(value) or value >= 0 else f"-{text}"


def _ci_of(metric: str, low: float, high: float) -> str:
    if math.isnan(low):
        return ""
    return f" [{_signed(metric, low)}, {_signed(metric, high)}]"


def _unchanged(row: MetricRow) -> bool:
    """Whether a metric had one value in every run of every variant (or none at all)."""
    values = [(m, lo, hi) for m, lo, hi in zip(row.means, row.lows, row.highs, strict=True)
              if not math.isnan(m)]
    return all(v == values[0][0] and (math.isnan(lo) or lo == hi == v)
               for v, lo, hi in values)


def table_pages(variants: list[Variant]) -> tuple[list[tuple[str, Figure]], list[MetricRow]]:
    """The metric table, as many pages as it takes (two columns of text each)."""
    rows = metric_table(variants)
    blocks = table_blocks(variants, rows)
    legend = [f"{i + 1}. {v.label}" + (" (baseline)" if i == 0 else "")
              for i, v in enumerate(variants)]
    columns: list[list[str]] = [[]]
    for block in blocks:  # a metric's lines stay in one column
        if columns[-1] and len(columns[-1]) + len(block) > TABLE_LINES:
            columns.append([])
        columns[-1].extend(block)
    pages: list[tuple[str, Figure]] = []
    for start in range(0, len(columns), 2):
        fig = new_figure(margins=False)
        fig.text(0.03, 0.965, "Metrics per variant: mean [95 % CI over replicates], "
                 "difference from the baseline [Welch 95 % CI]; * : the interval excludes 0",
                 fontsize=10, weight="bold", va="top")
        fig.text(0.03, 0.935, "\n".join(textwrap.shorten(t, 160) for t in legend[:6]),
                 fontsize=7.5, va="top", family="monospace")
        for col, part in enumerate(columns[start:start + 2]):
            fig.text(0.02 + 0.49 * col, 0.86, "\n".join(part), family="monospace",
                     fontsize=6.3, va="top", gid=f"metrics {start // 2} {col}")
        pages.append((f"{5 + len(pages):02d}_metrics", fig))
    return pages, rows


def write_metric_csv(path: Path, variants: list[Variant], rows: list[MetricRow]) -> None:
    """``compare.csv``: one row per metric and variant, every number of the table."""
    from simcore.atomic import atomic_write_text

    out = []
    for row in rows:
        for i, variant in enumerate(variants):
            out.append({"metric": row.metric, "variant": i + 1, "label": variant.label,
                        "n": row.ns[i], "mean": row.means[i], "ci_low": row.lows[i],
                        "ci_high": row.highs[i], "diff": row.diffs[i],
                        "diff_ci_low": row.diff_lows[i], "diff_ci_high": row.diff_highs[i]})
    atomic_write_text(path, pd.DataFrame(out).to_csv(index=False))
