"""Fragmentation (figure 3), the pageblock map (figure 4), polluted pageblocks (figure 5)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from reports.aggregate import ZoneKey
from reports.style import (
    FIGSIZE,
    MIGRATETYPE_COLORS,
    TimeUnit,
    caption,
    new_figure,
    no_data,
    sampling_note,
    series_style,
    steps,
)
from simcore.formats import trace_schema as ts

PANELS = (
    ("unusable_9", "unusable_index at order 9 (unusable_free_index())",
     "(free pages − 2^9 · blocks of order ≥ 9 as order-9 blocks) / free pages"),
    ("extfrag_4", "extfrag_index at order 4 (__fragmentation_index())",
     "1 − (1 + free pages / 2^4) / free blocks;  −1: a free block of order ≥ 4 exists"),
    ("extfrag_9", "extfrag_index at order 9 (__fragmentation_index())",
     "1 − (1 + free pages / 2^9) / free blocks;  −1: a free block of order ≥ 9 exists"),
)
MAP_WIDTH = 64
"""Pageblocks per row of the pageblock map (doubled until a node fits in 64 rows)."""
MAP_ROWS = 64


def fragmentation_figure(per_zone: dict[ZoneKey, pd.DataFrame], score: pd.DataFrame,
                         proactiveness: int, end_s: float, unit: TimeUnit) -> Figure:
    """The kernel's fragmentation metrics over time, each panel with its formula."""
    fig = new_figure((FIGSIZE[0], 10.0), margins=False)
    fig.subplots_adjust(left=0.08, right=0.72, top=0.91, bottom=0.08, hspace=0.62)
    fig.suptitle("Fragmentation over time (mm/vmstat.c and mm/compaction.c formulas)")
    axes = fig.subplots(4, 1, sharex=True)
    if not per_zone:
        no_data(axes[0], "no buddyinfo snapshots")
        return fig
    for ax, (column, title, formula) in zip(axes, PANELS, strict=False):
        for i, (key, table) in enumerate(per_zone.items()):
            style = series_style(i)
            x = unit.scale(np.append(table.index.to_numpy(), end_s))
            steps(ax, table[column].to_numpy() / 1000, x, color=style["color"],
                      linestyle=style["linestyle"], label=f"node {key[0]} {key[1]}",
                      gid=f"{column} {key[0]} {key[1]}")
            ax.plot(unit.scale(table.index.to_numpy()), table[column].to_numpy() / 1000,
                    linestyle="none", marker=style["marker"], markersize=3,
                    color=style["color"], markevery=max(1, len(table) // 12))
        ax.set_title(f"{title}\n{formula}", loc="left", fontsize=9)
        ax.set_ylabel("index")
        ax.set_ylim(-0.02 if column.startswith("unusable") else -1.05, 1.02)
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="zone")
    ax = axes[3]
    for i, column in enumerate(score.columns):
        style = series_style(i)
        x = unit.scale(np.append(score.index.to_numpy(), end_s))
        steps(ax, score[column].to_numpy(), x, color=style["color"],
                  linestyle=style["linestyle"], label=column, gid=f"score {column}")
    low = max(100 - proactiveness, 5)
    ax.axhline(min(low + 10, 100), color="0.3", linestyle="--",
               label="high mark: kcompactd starts\nproactive compaction when\nthe node's "
                     "score is above it")
    ax.axhline(low, color="0.3", linestyle=":",
               label="low mark: a zone being\ncompacted proactively stops\nwhen its own "
                     "score is at\nor below it")
    ax.set_title("proactive-compaction fragmentation score per node "
                 "(fragmentation_score_node())\nΣ zones present / (node present + 1) · "
                 "extfrag_for_order(zone, 9), in %", loc="left", fontsize=9)
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_xlim(0, unit.scale(end_s))
    ax.set_xlabel(unit.label)
    first = next(iter(per_zone.values()))
    caption(fig, f"vm.compaction_proactiveness = {proactiveness}. "
            f"{sampling_note(first.index)}.")
    return fig


def map_width(blocks: int) -> int:
    """Pageblocks per row for a node of ``blocks`` pageblocks."""
    width = MAP_WIDTH
    while -(-blocks // width) > MAP_ROWS:
        width *= 2
    return width


def map_grid(blocks: pd.DataFrame, types: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One node's pageblocks as a grid of :func:`map_width` columns, in pfn order.

    Returns:
        ``(cells, mixed)``: ``cells`` holds ``2 * type index`` for a pageblock that holds
        something and ``2 * type index + 1`` for a wholly free one, -1 past the end;
        ``mixed`` is the (row, column) of each mixed pageblock.
    """
    blocks = blocks.sort_values("pfn", kind="stable")
    index = {mt: i for i, mt in enumerate(types)}
    code = blocks["migratetype"].astype(str).map(index).to_numpy(dtype=np.int64) * 2
    code += (blocks["census"].astype(str) == ts.CENSUS_FREE).to_numpy(dtype=np.int64)
    width = map_width(len(code))
    rows = -(-len(code) // width)
    cells = np.full(rows * width, -1, dtype=np.int64)
    cells[: len(code)] = code
    where = np.flatnonzero(blocks["mixed"].to_numpy() != 0)
    return cells.reshape(rows, width), np.column_stack([where // width, where % width])


def _light(color: str) -> tuple[float, float, float]:
    r, g, b = to_rgb(color)
    return (1 - 0.55 * (1 - r), 1 - 0.55 * (1 - g), 1 - 0.55 * (1 - b))


def pageblock_map_figure(pageblocks: pd.DataFrame) -> Figure:
    """Every pageblock at the end of the run, coloured by migratetype, mixed ones marked."""
    nodes = sorted(int(n) for n in pageblocks["nid"].unique())
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.5 + 3.0 * len(nodes))), margins=False)
    fig.subplots_adjust(left=0.14, right=0.74, top=1 - 0.8 / fig.get_figheight(),
                        bottom=0.6 / fig.get_figheight(), hspace=0.3)
    fig.suptitle("Pageblocks at the end of the run: migratetype "
                 "(get_pageblock_migratetype()) and mixed blocks (page_owner)")
    if pageblocks.empty:
        no_data(fig.add_subplot(), "no pageblock map in the run directory")
        return fig
    types = [mt for mt in MIGRATETYPE_COLORS if mt in set(pageblocks["migratetype"].astype(str))]
    colors: list[Any] = []
    for mt in types:
        colors += [MIGRATETYPE_COLORS[mt], _light(MIGRATETYPE_COLORS[mt])]
    cmap = ListedColormap(colors).with_extremes(under="white")
    axes = fig.subplots(len(nodes), 1, squeeze=False)[:, 0]
    for ax, nid in zip(axes, nodes, strict=True):
        mine = pageblocks[pageblocks["nid"] == nid]
        cells, mixed = map_grid(mine, types)
        ax.imshow(cells, cmap=cmap, vmin=0, vmax=len(colors) - 1, aspect="auto",
                  interpolation="nearest", gid=f"map node {nid}")
        ax.scatter(mixed[:, 1], mixed[:, 0], s=6, marker="x", color="black", linewidths=0.8,
                   gid=f"mixed node {nid}")
        counts = mine["migratetype"].astype(str).value_counts()
        n_mixed = int((mine["mixed"] != 0).sum())
        parts = ", ".join(f"{mt} {int(counts.get(mt, 0)):,}" for mt in types)
        ax.set_title(f"node {nid}: {len(mine):,} pageblocks ({parts}); {n_mixed:,} mixed",
                     loc="left", fontsize=9)
        width = cells.shape[1]
        ax.set_xlabel(f"pageblock within the row ({width} per row, pfn order)", fontsize=8)
        _row_labels(ax, mine, width)
    handles: list[Artist] = [Patch(facecolor=MIGRATETYPE_COLORS[mt], edgecolor="0.5", label=mt)
                             for mt in types]
    handles += [Patch(facecolor=_light(MIGRATETYPE_COLORS[mt]), edgecolor="0.5",
                      label=f"{mt}, wholly free") for mt in types]
    handles.append(Patch(facecolor="white", edgecolor="0.5", label="past the node's end"))
    handles.append(Line2D([], [], color="tab:purple", linewidth=2, linestyle=(0, (2, 1)),
                          label="a zone starts here"))
    handles.append(axes[0].scatter([], [], marker="x", color="black",
                                   label="mixed: holds an allocation\nof another migratetype"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.75, 1 - 0.8 /
               fig.get_figheight()), fontsize=8, title="pageblock")
    return fig


def _row_labels(ax: Axes, mine: pd.DataFrame, width: int) -> None:
    """Label rows with the pfn they start at; mark and name where each zone starts.

    A zone that starts inside a row (DMA32 after DMA's few pageblocks) gets a boundary
    line at its first pageblock and its name beside the row.
    """
    ordered = mine.sort_values("pfn", kind="stable")
    pfns = ordered["pfn"].to_numpy()
    zones = ordered["zone"].astype(str).to_numpy()
    rows = -(-len(pfns) // width)
    step = max(1, rows // 8)
    ticks = {r: f"pfn {pfns[r * width]:,}" for r in range(0, rows, step)}
    starts = np.flatnonzero(np.r_[True, zones[1:] != zones[:-1]])
    names: dict[int, list[str]] = {}
    for i in starts.tolist():
        r, c = divmod(i, width)
        names.setdefault(r, []).append(f"{zones[i]} from pfn {pfns[i]:,}")
        if c:
            ax.plot([c - 0.5, c - 0.5], [r - 0.7, r + 0.7], color="tab:purple", linewidth=2,
                    linestyle=(0, (2, 1)), clip_on=False, gid=f"zone start {zones[i]}")
    for r, parts in names.items():
        ticks[r] = "\n".join(parts)
    ax.set_yticks(list(ticks), list(ticks.values()), fontsize=7)


def pollution_figure(charges: pd.DataFrame, mixed_now: pd.DataFrame, end_s: float,
                     unit: TimeUnit) -> Figure:
    """Pageblocks each caller was the first to pollute, over time, and the mixed total."""
    fig = new_figure()
    fig.subplots_adjust(right=0.72)
    ax = fig.add_subplot()
    ax.set_title("Polluted pageblocks: the first allocation of another migratetype in a "
                 "pageblock, by the caller that made it", fontsize=10, loc="left")
    if charges.empty and (mixed_now.empty or not mixed_now.to_numpy().any()):
        no_data(ax, "no pageblock was polluted: every allocation stayed in a pageblock "
                    "of its own migratetype")
        return fig
    for i, (caller, rows) in enumerate(charges.groupby("caller", sort=True)):
        style = series_style(i)
        x = np.concatenate([[0.0], rows["time_s"].to_numpy(), [end_s]])
        y = np.concatenate([[0], rows["polluted"].to_numpy()])
        steps(ax, y, unit.scale(x), color=style["color"], linestyle=style["linestyle"],
                  linewidth=1.6, label=f"{caller}: {int(y[-1]):,} pageblock"
                                       f"{'' if int(y[-1]) == 1 else 's'} first polluted",
                  gid=f"polluted {caller}")
    if not mixed_now.empty:
        total = mixed_now.sum(axis=1)
        x = unit.scale(np.append(total.index.to_numpy(), end_s))
        steps(ax, total.to_numpy(), x, color="black", linewidth=2, gid="mixed total",
                  label="mixed now, all nodes (page_owner's count)")
    ax.set_xlim(0, unit.scale(end_s))
    ax.set_ylim(bottom=0)
    ax.set_xlabel(unit.label)
    ax.set_ylabel("pageblocks")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="caller")
    caption(fig, "Who polluted a block is simulator-only (the kernel does not record it). "
            "A caller's line counts the blocks it was the first to make mixed.")
    return fig
