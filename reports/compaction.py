"""The compaction page: huge-page availability per node over time, and what compacted it.

Reads the ``buddyinfo.parquet`` snapshots (free blocks per order) and the
``mm_compaction`` spans of ``trace/spans.parquet`` (who compacted: a caller's direct
compaction, kcompactd, or a ``compact_memory`` action), plus the ``action`` spans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.aggregate import ZoneKey
from reports.figures import TIME_LABEL, _no_data, new_figure
from simcore.formats import trace_schema as ts

WHO_COLORS = {"direct compaction": "tab:red", "kcompactd": "tab:blue",
              "compact_memory": "tab:green"}


def huge_blocks(tables: dict[ZoneKey, pd.DataFrame], pageblock_order: int) -> pd.DataFrame:
    """Free huge-page-sized blocks per node over time.

    Args:
        tables: :func:`reports.aggregate.free_blocks_by_order` of the run.
        pageblock_order: The huge-page order (``pageblock_order``, 9 on x86_64).

    Returns:
        Index ``time_s``; one column per node: the number of free order-``pageblock_order``
        blocks the free lists hold (a free order-10 block counts as two).
    """
    per_node: dict[int, pd.Series] = {}
    for (nid, _zone), table in tables.items():
        blocks = sum(table[o] * (1 << (o - pageblock_order)) for o in table.columns
                     if o >= pageblock_order)
        if isinstance(blocks, int):  # no order >= pageblock_order column
            blocks = pd.Series(0, index=table.index)
        per_node[nid] = per_node[nid].add(blocks, fill_value=0) if nid in per_node else blocks
    frame = pd.DataFrame({f"node {nid}": s for nid, s in sorted(per_node.items())})
    return frame.sort_index().fillna(0).astype("int64")


def _who(caller: str) -> str:
    if caller.startswith("kcompactd"):
        return "kcompactd"
    return "compact_memory" if caller == "" else "direct compaction"


def _availability_axes(ax: Axes, huge: pd.DataFrame, spans: pd.DataFrame,
                       pageblock_order: int) -> None:
    size_mib = (1 << pageblock_order) * 4096 // (1 << 20)
    ax.set_title(f"Huge-page availability: free {size_mib} MiB blocks per node (buddy "
                 f"order >= {pageblock_order}; pcp pages not counted)", loc="left")
    if huge.empty:
        _no_data(ax, "no buddyinfo snapshots (trace.snapshot_interval is off)")
        return
    for column in huge.columns:
        ax.step(huge.index, huge[column], where="post", label=column)
    actions = spans[(spans["name"].astype(str) == ts.SPAN_ACTION)
                    & spans["detail"].astype(str).str.startswith("compact_memory")]
    for i, start in enumerate(actions["start_ns"] / 1e9):
        ax.axvline(start, color="tab:green", linestyle="--",
                   label="compact_memory action" if i == 0 else None)
    ax.set_ylabel("free blocks")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def _migrated_axes(ax: Axes, spans: pd.DataFrame, end_s: float) -> None:
    runs = spans[spans["name"].astype(str) == ts.SPAN_COMPACTION].copy()
    if runs.empty:
        ax.set_title("Pages migrated by compaction", loc="left")
        _no_data(ax, "no compaction ran")
        return
    runs["start_s"] = runs["start_ns"] / 1e9
    runs["who"] = runs["caller"].astype(str).map(_who)
    top = max(end_s, float(runs["start_s"].max()), 1e-9)
    edges = np.linspace(0.0, top, 51)
    width = edges[1] - edges[0]
    ax.set_title(f"Pages migrated by compaction, by who compacted (per {width * 1e3:g} ms)",
                 loc="left")
    bottom = np.zeros(len(edges) - 1)
    for who, color in WHO_COLORS.items():
        mine = runs[runs["who"] == who]
        if mine.empty:
            continue
        counts, _ = np.histogram(mine["start_s"], bins=edges, weights=mine["pages"])
        ax.bar(edges[:-1], counts, width=width, align="edge", bottom=bottom, color=color,
               label=f"{who}: {len(mine):,} zone runs, {int(mine['pages'].sum()):,} pages")
        bottom += counts
    ax.set_ylabel("pages migrated")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)


def _counter_text(summary: dict[str, Any]) -> str:
    v = summary.get("vmstat", {})
    return (f"compact_stall {v.get('compact_stall', 0):,}   "
            f"compact_success {v.get('compact_success', 0):,}   "
            f"compact_fail {v.get('compact_fail', 0):,}   "
            f"compact_daemon_wake {v.get('compact_daemon_wake', 0):,}   "
            f"pgmigrate_success {v.get('pgmigrate_success', 0):,}   "
            f"pgmigrate_fail {v.get('pgmigrate_fail', 0):,}")


def compaction_figure(tables: dict[ZoneKey, pd.DataFrame], spans: pd.DataFrame,
                      summary: dict[str, Any], pageblock_order: int) -> Figure:
    """Huge-page availability over time, and the pages each kind of compaction moved.

    Args:
        tables: Free blocks per order and zone (:func:`reports.aggregate.free_blocks_by_order`).
        spans: ``trace/spans.parquet``.
        summary: ``summary.json`` (the ``compact_*`` and ``pgmigrate_*`` counters).
        pageblock_order: The machine's pageblock order.
    """
    fig = new_figure((10.0, 8.0))
    fig.suptitle("Compaction: huge-page availability and migration")
    top, bottom = fig.subplots(2, 1, sharex=True)
    _availability_axes(top, huge_blocks(tables, pageblock_order), spans, pageblock_order)
    end = float(summary.get("simulated_seconds", 0.0))
    _migrated_axes(bottom, spans, end)
    if end > 0:
        top.set_xlim(0.0, end)
    bottom.set_xlabel(TIME_LABEL)
    bottom.text(0.99, 0.97, _counter_text(summary).replace("   ", "\n"), fontsize=8,
                transform=bottom.transAxes, ha="right", va="top",
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
    return fig
