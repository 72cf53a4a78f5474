"""Figure 2: free memory per zone against its watermarks, with pcp pages and kswapd."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from reports.aggregate import ZoneKey
from reports.style import (
    FIGSIZE,
    PAGE_SIZE,
    TimeUnit,
    bottom_legend,
    caption,
    format_bytes,
    new_figure,
    no_data,
    plain_log_ticks,
    sampling_note,
    size_unit,
    steps,
)
from simcore.formats import trace_schema as ts

BAND_COLORS = (("min", "#d73027"), ("low", "#fc8d59"), ("high", "#fee090"))
ZOOM = 4.0
"""A linear y axis reaches ZOOM times the highest (boosted) high watermark, so the bands
fill at least a quarter of it; free memory that stays above that gets a log axis."""


def y_range(table: pd.DataFrame) -> tuple[str, float, float]:
    """A zone's y axis in pages, ``(scale, bottom, top)``: the bands readable.

    Linear from 0 when free memory comes within ZOOM times the high watermark; otherwise
    a log axis from half the min watermark, which shows the bands and free memory both.
    """
    high = float(table["wmark_high"].max())
    lowest_free = float(table["nr_free_pages"].min())
    highest = float(max(table["nr_free_pages"].max(), table["pcp_pages"].max(), high, 1))
    if high > 0 and lowest_free > ZOOM * high:
        bottom = max(float(table["wmark_min"].min()) / 2, 1.0)
        return "log", bottom, highest * 2
    return "linear", 0.0, min(highest * 1.05, max(high * ZOOM, lowest_free * 1.15)) or 1.0


def _kswapd_spans(ax: Axes, spans: pd.DataFrame, nid: int, unit: TimeUnit) -> bool:
    runs = spans[(spans["name"] == ts.SPAN_KSWAPD_RUN) & (spans["nid"] == nid)]
    if runs.empty:
        return False
    start = unit.scale(runs["start_ns"].to_numpy() / 1e9)
    width = np.maximum(unit.scale(runs["end_ns"].to_numpy() / 1e9) - start, 0.0)
    ax.broken_barh(list(zip(start, width, strict=True)), (0, 1), facecolors="tab:green",
                   alpha=0.18, linewidth=0, transform=ax.get_xaxis_transform(),
                   gid=f"kswapd {nid}")
    return True


def _zone_axes(ax: Axes, key: ZoneKey, table: pd.DataFrame, spans: pd.DataFrame,
               protection: str, end_s: float, unit: TimeUnit) -> None:
    times = table.index.to_numpy()
    x = unit.scale(np.append(times, end_s))
    yscale, bottom_pages, top_pages = y_range(table)
    name, scale = size_unit(top_pages * PAGE_SIZE / (2 if yscale == "log" else 1))
    mib = PAGE_SIZE / scale

    def stairs(column: str, **kw: object) -> None:
        steps(ax, table[column].to_numpy() * mib, x, gid=f"{column} {key[0]} {key[1]}",
                  **kw)  # type: ignore[arg-type]

    below = np.full(len(table), bottom_pages)
    for band, color in BAND_COLORS:
        level = table[f"wmark_{band}"].to_numpy()
        steps(ax, level * mib, x, baseline=below * mib, fill=True, color=color, alpha=0.45,
                  label=f"below {band} watermark (incl. boost)",
                  gid=f"wmark_{band} {key[0]} {key[1]}")
        below = level
    if table["watermark_boost"].any():
        base = (table["wmark_high"] - table["watermark_boost"]).to_numpy()
        steps(ax, base * mib, x, color="0.35", linestyle="--", label="high watermark without boost")
    if table["nr_reserved_highatomic"].any():
        stairs("nr_reserved_highatomic", color="tab:purple", linestyle="-.",
               label="nr_reserved_highatomic (HIGHATOMIC\npageblocks' pages, free or used)")
    stairs("pcp_pages", color="tab:blue", linestyle=":", linewidth=1.6,
           label="pages on per-CPU (pcp) lists")
    stairs("nr_free_pages", color="black", linewidth=1.8, label="free pages (NR_FREE_PAGES)")
    kswapd = _kswapd_spans(ax, spans, key[0], unit)
    if kswapd:
        ax.axvspan(0, 0, color="tab:green", alpha=0.18, label="kswapd running (this node)")
    ax.set_yscale(yscale)
    if yscale == "log":
        plain_log_ticks(ax.yaxis)
    ax.set_ylim(bottom_pages * mib, top_pages * mib)
    over = table["nr_free_pages"].max()
    if over > top_pages:
        ax.annotate(f"free up to {format_bytes(over * PAGE_SIZE)} (above the axis)",
                    (0.99, 0.97), xycoords="axes fraction", ha="right", va="top", fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"})
    ax.set_title(f"node {key[0]} {key[1]}   lowmem_reserve {protection}", loc="left",
                 fontsize=9)
    ax.set_ylabel(name + (" (log scale)" if yscale == "log" else ""))
    ax.grid(True, alpha=0.3)


def protection_text(zones: pd.DataFrame, key: ZoneKey) -> str:
    """A zone's ``protection:`` (lowmem_reserve) array in pages, as zoneinfo prints it."""
    mine = zones[(zones["nid"] == key[0]) & (zones["zone"] == key[1])]
    if mine.empty:
        return "(unknown)"
    values = mine["protection"].iloc[0]
    return "(" + ", ".join(f"{v:,}" for v in values) + ") pages"


def free_memory_figure(tables: dict[ZoneKey, pd.DataFrame], zones: pd.DataFrame,
                       spans: pd.DataFrame, end_s: float, unit: TimeUnit,
                       collapsed: set[ZoneKey]) -> Figure:
    """Free memory per zone over time, zoomed to the min/low/high bands.

    Args:
        tables: Per zone, zonestat rows indexed by ``time_s``.
        zones: RunData.zones (for each zone's lowmem_reserve).
        spans: The run's spans (kswapd runs).
        end_s: The end of the run (seconds).
        unit: The time axis unit.
        collapsed: Zones left out (their free lists never changed).
    """
    shown = {k: t for k, t in tables.items() if k not in collapsed}
    rows = max(len(shown), 1)
    fig = new_figure((FIGSIZE[0], max(FIGSIZE[1], 1.3 + 2.2 * rows)), margins=False)
    fig.subplots_adjust(left=0.08, right=0.97, top=1 - 0.7 / fig.get_figheight(),
                        bottom=1.35 / fig.get_figheight(), hspace=0.4)
    fig.suptitle("Free memory per zone and its watermarks (zoomed to the bands)")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    if not shown:
        no_data(axes[0], "no zone snapshots, or no zone's free memory changed")
        return fig
    for ax, (key, table) in zip(axes, shown.items(), strict=True):
        _zone_axes(ax, key, table, spans, protection_text(zones, key), end_s, unit)
    axes[-1].set_xlim(0, unit.scale(end_s))
    axes[-1].set_xlabel(unit.label)
    bottom_legend(fig, axes, ncols=4, inches=0.3)
    left_out = ", ".join(f"node {n} {z}" for n, z in sorted(collapsed))
    boosted = any(t["watermark_boost"].any() for t in shown.values())
    caption(fig, sampling_note(next(iter(shown.values())).index)
            + ("" if boosted else "; watermark_boost was 0 at every snapshot (a boost "
               "lasts until kswapd's next balance_pgdat() run)")
            + (f". Not drawn (unchanged): {left_out}" if left_out else ""))
    return fig
