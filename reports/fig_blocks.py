"""Free blocks per order (figure 1) and huge-page availability (figure 9)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.aggregate import ZoneKey
from reports.series import BlockMatrix, hold_durations
from reports.style import (
    FIGSIZE,
    TimeUnit,
    bottom_legend,
    caption,
    format_bytes,
    new_figure,
    no_data,
    sampling_note,
    steps,
)
from simcore.formats import trace_schema as ts

HEATMAP_CMAP = "viridis"


def _edges(times_s: np.ndarray, end_s: float) -> np.ndarray:
    """Cell edges on the time axis: each snapshot holds until the next (steps)."""
    return np.append(times_s, times_s[-1] + hold_durations(times_s, end_s)[-1] if len(times_s)
                     else end_s)


def collapsed_note(untouched: list[tuple[ZoneKey, BlockMatrix]]) -> str:
    """The line naming the zones left out because their free lists never changed."""
    if not untouched:
        return ""
    names = ", ".join(f"node {nid} {zone} ({int((m.total[:, 0] << m.orders).sum()):,} "
                      "free pages)" for (nid, zone), m in untouched)
    return f"Not drawn, unchanged over the whole run: {names}."


def free_blocks_figure(matrices: dict[ZoneKey, BlockMatrix], end_s: float,
                       unit: TimeUnit) -> Figure:
    """Figure 1: free blocks per order over time, per zone and migratetype (heatmaps).

    Untouched zones (the same free lists at every snapshot) are collapsed into one line.
    """
    touched = [(k, m) for k, m in matrices.items() if not m.untouched]
    untouched = [(k, m) for k, m in matrices.items() if m.untouched]
    types = [mt for mt in ts_migratetype_order()
             if any(mt in m.by_type for _, m in touched)]
    rows, cols = max(len(touched), 1), max(len(types), 1)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.2 + 1.9 * rows)), margins=False)
    fig.subplots_adjust(left=0.08, right=0.9, top=1 - 0.8 / fig.get_figheight(),
                        bottom=1.0 / fig.get_figheight(), hspace=0.45, wspace=0.12)
    fig.suptitle("Free blocks per order over time, by zone and migratetype "
                 "(/proc/pagetypeinfo; colour: free blocks, log scale)")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    if not touched:
        no_data(axes[0, 0], "no zone's free lists changed during the run")
        caption(fig, collapsed_note(untouched))
        return fig
    peak = max(int(m.by_type[mt].max()) for _, m in touched for mt in m.by_type)
    norm = LogNorm(vmin=1, vmax=max(peak, 2))
    mesh = None
    for r, (key, m) in enumerate(touched):
        x = unit.scale(_edges(m.times_s, end_s))
        y = np.append(m.orders, m.orders[-1] + 1) - 0.5
        for c, mt in enumerate(types):
            ax = axes[r, c]
            grid = m.by_type.get(mt, np.zeros((len(m.orders), len(m.times_s)), np.int64))
            mesh = ax.pcolormesh(x, y, np.ma.masked_equal(grid, 0), cmap=HEATMAP_CMAP,
                                 norm=norm, shading="flat", rasterized=True,
                                 gid=f"free_blocks {key[0]} {key[1]} {mt}")
            ax.set_facecolor("white")
            if r == 0:
                ax.set_title(mt, fontsize=10)
            if c == 0:
                ax.set_ylabel(f"node {key[0]} {key[1]}\norder", fontsize=9)
            ax.set_yticks(range(0, len(m.orders), 3))
    for ax in axes[-1]:
        ax.set_xlabel(unit.label)
        ax.xaxis.set_major_locator(MaxNLocator(4, prune="upper"))
    if mesh is not None:
        cax = fig.add_axes((0.92, 0.2, 0.015, 0.6))
        fig.colorbar(mesh, cax=cax, label="free blocks of that order (white: none)")
    first = touched[0][1]
    caption(fig, f"Each cell: the free blocks of one order, {sampling_note(first.times_s)}. "
            + collapsed_note(untouched))
    return fig


def ts_migratetype_order() -> tuple[str, ...]:
    """Migratetypes in /proc/pagetypeinfo column order."""
    from simcore.mm.constants import MIGRATETYPE_NAMES

    return tuple(MIGRATETYPE_NAMES)


def huge_free_blocks(matrices: dict[ZoneKey, BlockMatrix], pageblock_order: int) -> pd.DataFrame:
    """Free blocks of at least pageblock order per node over time, in pageblocks.

    Returns:
        Index ``time_s``; columns ``node N``: what the buddy lists could give as huge
        pages at once (a free order-10 block counts as two).
    """
    per_node: dict[int, pd.Series] = {}
    for (nid, _zone), m in matrices.items():
        total = m.total
        weights = np.where(m.orders >= pageblock_order,
                           np.left_shift(1, np.maximum(m.orders - pageblock_order, 0)), 0)
        series = pd.Series(weights @ total, index=pd.Index(m.times_s, name="time_s"))
        per_node[nid] = per_node[nid].add(series, fill_value=0) if nid in per_node else series
    frame = pd.DataFrame({f"node {nid}": s for nid, s in sorted(per_node.items())})
    return frame.sort_index().fillna(0).astype("int64")


def huge_figure(free: pd.DataFrame, movable_only: pd.DataFrame, spans: pd.DataFrame,
                pageblock_order: int, end_s: float, unit: TimeUnit) -> Figure:
    """Figure 9: per node, free huge-page blocks and what compaction could add on top.

    Args:
        free: :func:`huge_free_blocks`.
        movable_only: zonestat ``pageblocks_movable_only`` summed per node.
        spans: The run's spans (compaction runs, hugetlb pool writes).
        pageblock_order: The machine's pageblock order (the huge-page order).
        end_s: The end of the run (seconds).
        unit: The time axis unit.
    """
    rows = max(len(free.columns), 1)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.6 + 2.6 * rows)), margins=False)
    fig.subplots_adjust(left=0.08, right=0.97, top=1 - 0.75 / fig.get_figheight(),
                        bottom=1.5 / fig.get_figheight(), hspace=0.35)
    size = format_bytes((1 << pageblock_order) * 4096)
    fig.suptitle(f"Huge-page availability per node: free {size} blocks now, and movable-only "
                 "pageblocks compaction could empty")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if free.empty:
        no_data(axes[0], "no snapshots (trace.snapshot_interval is off)")
        return fig
    runs = spans[spans["name"].astype(str) == ts.SPAN_COMPACTION]
    pool = spans[spans["name"].astype(str) == ts.SPAN_HUGETLB_RESIZE]
    x = unit.scale(np.append(free.index.to_numpy(), end_s))
    for ax, column in zip(axes, free.columns, strict=True):
        nid = int(column.split()[-1])
        y = free[column].to_numpy()
        steps(ax, y, x, fill=True, color="tab:blue", alpha=0.8, gid=f"huge free {column}",
                  label=f"free blocks of order >= {pageblock_order} (a huge page each)")
        if column in movable_only.columns:
            extra = movable_only[column].reindex(free.index, method="ffill").fillna(0)
            steps(ax, y + extra.to_numpy(), x, baseline=y, fill=True, color="tab:orange",
                      alpha=0.35, hatch="//", gid=f"huge movable {column}",
                      label="+ movable-only pageblocks (compaction could free them)")
        mine = runs[runs["nid"] == nid]
        if not mine.empty:
            ax.plot(unit.scale(mine["start_ns"].to_numpy() / 1e9), np.zeros(len(mine)), "|",
                    color="black", markersize=14, clip_on=False,
                    label="a compact_zone() run (direct, kcompactd or compact_memory)")
        for j, start in enumerate(pool["start_ns"].to_numpy() / 1e9):
            ax.axvline(unit.scale(start), color="0.2", linestyle=":",
                       label="nr_hugepages write (hugetlb pool)" if j == 0 else None)
        ax.set_title(f"{column}: {len(mine):,} compact_zone() runs", loc="left", fontsize=10)
        ax.set_ylabel(f"pageblocks ({size})")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlim(0, unit.scale(end_s))
    axes[-1].set_xlabel(unit.label)
    bottom_legend(fig, axes, ncols=2, inches=0.35)
    caption(fig, f"Free blocks from /proc/pagetypeinfo, {sampling_note(free.index)}; pcp "
            "pages not counted. Movable-only: compaction migrates every allocation in the "
            "pageblock (order-0 LRU pages not pinned, __PageMovable() pages).")
    return fig
