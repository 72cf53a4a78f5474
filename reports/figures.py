"""The report's figures, drawn with matplotlib's Agg canvas.

One function per figure; each takes the tables from :mod:`reports.aggregate` and returns a
:class:`~matplotlib.figure.Figure`. Figures are built without ``pyplot`` so no global
figure state is kept, and each is attached to an Agg canvas explicitly.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

from reports.aggregate import ALLOC_PATHS, WATERMARK_COLUMNS, ZoneKey

FIGSIZE = (10.0, 6.0)
TIME_LABEL = "simulated time (s)"
PATH_COLORS = {"pcp": "tab:blue", "buddy": "tab:green", "fallback": "tab:orange"}
PATH_LABELS = {
    "pcp": "pcp (per-CPU list)",
    "buddy": "buddy (requested migratetype)",
    "fallback": "fallback (stolen from another migratetype)",
}
WMARK_STYLES = {"wmark_min": "tab:red", "wmark_low": "tab:orange", "wmark_high": "tab:green"}
THOUSANDS = "{x:,.0f}"  # tick format; a Formatter instance must not be shared by axes
WIDE_RANGE = 50.0  # max/min ratio of positive values above which the y axis goes symlog
FEW_POINTS = 30  # series with at most this many samples get markers, so one sample shows
# Neighbouring orders get near-identical viridis colours, so styles tell overlapping lines apart.
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def new_figure(
    figsize: tuple[float, float] = FIGSIZE, layout: Literal["constrained"] | None = "constrained"
) -> Figure:
    """A figure on its own Agg canvas, independent of ``pyplot``."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _no_data(ax: Axes, text: str) -> None:
    """Say on the axes that there is nothing to plot, rather than leave them blank."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=16, transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _maybe_symlog(ax: Axes, values: np.ndarray) -> str:
    """Use a symlog y axis when the positive values span a wide range (zeros stay visible).

    Returns:
        A suffix for the y label that names the scale, or ``""`` for a linear axis.
    """
    positive = values[values > 0]
    if positive.size and positive.max() / positive.min() > WIDE_RANGE:
        ax.set_yscale("symlog", linthresh=1.0)
        ax.set_ylim(bottom=0)
        return " (symlog scale)"
    return ""


def free_blocks_figure(key: ZoneKey, table: pd.DataFrame) -> Figure:
    """Free blocks per order over time in one zone, one line per order.

    Args:
        key: ``(nid, zone)``.
        table: One entry of :func:`reports.aggregate.free_blocks_by_order`.
    """
    nid, zone = key
    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_title(f"Free blocks per order, node {nid} zone {zone} (all migratetypes)")
    colors = colormaps["viridis"].resampled(max(len(table.columns), 2))
    few = len(table) <= FEW_POINTS
    for i, order in enumerate(table.columns):
        pages = 2 ** int(order)
        ax.plot(
            table.index,
            table[order],
            color=colors(i),
            linestyle=LINESTYLES[i % len(LINESTYLES)],
            marker=MARKERS[i % len(MARKERS)] if few else None,
            label=f"{order} ({pages} page{'s' if pages > 1 else ''})",
        )
    scale = _maybe_symlog(ax, table.to_numpy())
    ax.set_xlabel(TIME_LABEL)
    ax.set_ylabel("free blocks of that order" + scale)
    ax.grid(True, alpha=0.3)
    ax.legend(title="order", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _stacked_bars(
    ax: Axes,
    table: pd.DataFrame,
    colors: dict[str, Any],
    labels: dict[str, str],
    legend_title: str,
) -> None:
    """Draw ``table`` (index order, one column per stack part) as stacked bars with totals."""
    orders = table.index.to_numpy()
    bottom = np.zeros(len(table), dtype=np.int64)
    for column in table.columns:
        values = table[column].to_numpy()
        if values.any():
            ax.bar(orders, values, bottom=bottom, color=colors[column], label=labels[column])
        bottom += values
    for order, total in zip(orders, bottom, strict=True):
        ax.annotate(
            f"{total:,}",
            (order, total),
            ha="center",
            va="bottom",
            xytext=(0, 2),
            textcoords="offset points",
        )
    ax.set_xticks(range(0, int(orders.max()) + 1))
    ax.set_xlim(-0.6, int(orders.max()) + 0.6)
    ax.set_ylim(0, max(int(bottom.max()), 1) * 1.12)  # headroom for the total labels
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(StrMethodFormatter(THOUSANDS))
    ax.legend(title=legend_title)


def _order_bars_axes(title: str, ylabel: str) -> tuple[Figure, Axes]:
    """A new figure with one axes titled and labelled for counts per order."""
    fig = new_figure()
    ax = fig.add_subplot()
    ax.set_title(title)
    ax.set_xlabel("order (block of 2^order pages)")
    ax.set_ylabel(ylabel)
    return fig, ax


def allocations_figure(table: pd.DataFrame) -> Figure:
    """Successful allocations per order, stacked by the path that served them.

    Args:
        table: :func:`reports.aggregate.allocations_by_order`.
    """
    fig, ax = _order_bars_axes(
        "Successful allocations by order and path (mm_page_alloc, outcome ok)",
        "allocations (events)",
    )
    if table.empty:
        _no_data(ax, "no successful allocations traced")
        return fig
    _stacked_bars(ax, table[list(ALLOC_PATHS)], PATH_COLORS, PATH_LABELS, "path")
    return fig


def failures_figure(table: pd.DataFrame) -> Figure:
    """Failed allocations per order, stacked by caller.

    Args:
        table: :func:`reports.aggregate.failures_by_order`.
    """
    fig, ax = _order_bars_axes(
        "Allocation failures by order and caller (mm_page_alloc, outcome fail)",
        "failed allocations (events)",
    )
    if table.empty or not table.to_numpy().any():
        _no_data(ax, "no allocation failures")
        return fig
    palette = colormaps["tab10"]
    callers = list(table.columns)
    colors = {caller: palette(i % palette.N) for i, caller in enumerate(callers)}
    labels = {caller: caller or "(kernel)" for caller in callers}
    _stacked_bars(ax, table, colors, labels, "caller")
    return fig


def _plot_zone(ax: Axes, key: ZoneKey, table: pd.DataFrame) -> None:
    """One zone's free pages as a solid line and its watermarks as dashed lines."""
    marker = "o" if len(table) <= FEW_POINTS else None
    ax.plot(
        table.index,
        table["nr_free_pages"],
        color="black",
        marker=marker,
        label="free pages (NR_FREE_PAGES, pcp excluded)",
    )
    for column in WATERMARK_COLUMNS:
        name = column.removeprefix("wmark_")
        ax.plot(
            table.index,
            table[column],
            color=WMARK_STYLES[column],
            linestyle="--",
            drawstyle="steps-post",
            label=f"{name} watermark",
        )
    ax.set_title(f"node {key[0]} zone {key[1]}", loc="left")
    ax.set_ylabel("pages")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(StrMethodFormatter(THOUSANDS))
    ax.grid(True, alpha=0.3)


def free_pages_figure(zones: dict[ZoneKey, pd.DataFrame]) -> Figure:
    """Free pages over time per zone, with the zone's min/low/high watermarks dashed.

    Args:
        zones: :func:`reports.aggregate.zone_free_pages`.
    """
    rows = max(len(zones), 1)
    fig = new_figure((FIGSIZE[0], 1.5 + 2.5 * rows))
    fig.suptitle("Free pages and watermarks per zone")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if not zones:
        _no_data(axes[0], "no zone snapshots traced")
        return fig
    for ax, (key, table) in zip(axes, zones.items(), strict=True):
        _plot_zone(ax, key, table)
    axes[-1].set_xlabel(TIME_LABEL)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4)
    return fig


def title_page(name: str, rows: list[tuple[str, str]]) -> Figure:
    """The report's first page: the experiment name and a table of run facts.

    Args:
        name: The experiment name from the manifest.
        rows: ``(label, value)`` pairs, e.g. from :func:`reports.aggregate.summary_rows`.
    """
    fig = new_figure(layout=None)
    fig.text(0.5, 0.90, "allocsim run report", ha="center", fontsize=14, color="0.35")
    fig.text(0.5, 0.82, name, ha="center", fontsize=22, weight="bold")
    ax = fig.add_axes((0.38, 0.08, 0.45, 0.66))  # row labels extend left of the axes
    ax.axis("off")
    table = ax.table(
        cellText=[[value] for _, value in rows],
        rowLabels=[label for label, _ in rows],
        loc="center",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(12)
    table.scale(1.0, 1.8)
    return fig
