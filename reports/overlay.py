"""Overlay a run (typically an ``allocsim replay``) on a real host's ``buddyinfo.periodic``.

``buddyinfo.periodic`` is ``/proc/buddyinfo`` sampled about once a second, each sample
headed by ``t=<uptime seconds>`` (the oracle's layout). A replay's clock follows the
trace's timestamps, which use the same clock: shifted by the trace time of its first
event, the two series share the time axis.

One figure per zone: free pages over time, all orders and in blocks of at least a
pageblock (what a huge-page or THP request can take at once), the model as lines and the
host as markers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from reports.aggregate import ZoneKey
from reports.load import ReportInputError
from reports.style import fix_positions, new_figure

THOUSANDS = "{x:,.0f}"

_T_RE = re.compile(r"^t=([0-9]{1,12}(?:\.[0-9]{1,12})?)$")
_ROW_RE = re.compile(r"^Node ([0-9]{1,4}), zone\s+(\S+)((?:\s+[0-9]{1,20})+)\s*$")
MAX_BYTES = 64 << 20
"""Largest file read: a sample a second of a 4-zone host is about 1 MiB an hour."""
MAX_FREE_PAGES = 1 << 40
"""Most free pages a row can count: every pfn of a 52-bit physical address space."""


def read_buddyinfo_periodic(path: Path) -> pd.DataFrame:
    """Rows ``time_s, nid, zone, order, nr_free`` of a ``buddyinfo.periodic`` file.

    Raises:
        ReportInputError: naming the file and line, if a line is neither ``t=SECONDS``
            nor a ``/proc/buddyinfo`` row, or a row comes before any ``t=`` line.
    """
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ReportInputError(f"{path}: cannot read: {exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data.count(b"\n", 0, exc.start) + 1
        raise ReportInputError(f"{path}:{bad}: expected UTF-8 text, got the byte(s) "
                               f"{data[exc.start:exc.start + 4]!r}") from None
    if len(data) > MAX_BYTES:
        raise ReportInputError(f"{path}: expected a file of at most {MAX_BYTES >> 20} MiB "
                               "(days of samples), got a larger one")
    rows: list[tuple[float, int, str, int, int]] = []
    now: float | None = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if (t := _T_RE.match(line.strip())) is not None:
            now = float(t.group(1))
            continue
        row = _ROW_RE.match(line)
        if row is None or now is None:
            expected = "a 't=SECONDS' line" if now is None else \
                "'t=SECONDS' or a /proc/buddyinfo row 'Node N, zone NAME counts...'"
            raise ReportInputError(f"{path}:{lineno}: expected {expected}, got {line[:60]!r}")
        counts = [int(v) for v in row.group(3).split()]
        if sum(n << order for order, n in enumerate(counts)) > MAX_FREE_PAGES:
            raise ReportInputError(f"{path}:{lineno}: expected free block counts of at most "
                                   f"{MAX_FREE_PAGES:,} pages in all (52-bit physical "
                                   f"addresses), got {line[:60]!r}")
        rows += [(now, int(row.group(1)), row.group(2), order, n)
                 for order, n in enumerate(counts)]
    if not rows:
        raise ReportInputError(f"{path}: expected buddyinfo samples, found none")
    return pd.DataFrame(rows, columns=["time_s", "nid", "zone", "order", "nr_free"])


def free_page_series(frame: pd.DataFrame, pageblock_order: int) -> dict[ZoneKey, pd.DataFrame]:
    """Per zone: ``total`` free pages and ``huge`` (in blocks >= pageblock order) by time."""
    sizes = frame["nr_free"].to_numpy(dtype=np.int64) << frame["order"].to_numpy(dtype=np.int64)
    pages = frame.assign(pages=sizes,
                         huge=np.where(frame["order"].to_numpy() >= pageblock_order, sizes, 0))
    out: dict[ZoneKey, pd.DataFrame] = {}
    for (nid, zone), rows in pages.groupby(["nid", "zone"], sort=False):
        table = rows.groupby("time_s")[["pages", "huge"]].sum().sort_index()
        out[(int(nid), str(zone))] = table.rename(columns={"pages": "total"})
    return out


def overlay_figure(key: ZoneKey, sim: pd.DataFrame | None, real: pd.DataFrame,
                   what: str = "model run") -> Figure:
    """Free pages of one zone over time: the run (steps) against the host (markers).

    The run's line holds each sample's value until the next sample (``steps-post``), as
    the state it samples does; ``what`` names the run in the legend and title.
    """
    fig = new_figure()
    ax = fig.add_subplot()
    styles = (("total", "all free pages", "tab:blue"),
              ("huge", "free in blocks >= one pageblock", "tab:orange"))
    for column, label, color in styles:
        if sim is not None and not sim.empty:
            ax.plot(sim.index, sim[column], color=color, drawstyle="steps-post",
                    label=f"{what}: {label}")
        ax.plot(real.index, real[column], color=color, linestyle="none", marker="o",
                markersize=7, markeredgecolor="black", label=f"host: {label}")
    ax.set_xlabel("time (s since boot, the trace's clock)")
    ax.set_ylabel("free pages (4 KiB)")
    ax.yaxis.set_major_formatter(StrMethodFormatter(THOUSANDS))
    ax.set_ylim(bottom=0)
    ax.legend(loc="best")
    fix_positions(fig)
    nid, zone = key
    note = "" if sim is not None and not sim.empty else " (the run has no such zone)"
    ax.set_title(f"Node {nid}, zone {zone}: {what} vs host buddyinfo{note}")
    if sim is not None and len(sim.index) > 1:
        step = float(np.median(np.diff(sim.index.to_numpy())))
        ax.text(0.01, 0.01, f"run sampled every {step * 1000:g} ms; host samples: "
                f"{len(real.index)} (markers)", transform=ax.transAxes, fontsize=8,
                va="bottom", ha="left", color="dimgray")
    return fig


def overlay_pages(sim_buddyinfo: pd.DataFrame, real_path: Path, pageblock_order: int,
                  start_s: float = 0.0, what: str = "model run",
                  ) -> list[tuple[str, Figure]]:
    """The overlay figures (PNG stem, figure) of a run against ``real_path``.

    ``sim_buddyinfo`` holds the run's BUDDYINFO_FILE rows (``time_ns``, ``nid``,
    ``zone``, ``order``, ``nr_free``, summed here over migratetypes). ``start_s`` is the
    trace time of the run's time 0 (a replay's first event; ``summary.json``'s
    ``replay.trace_start_ns``).
    """
    real = free_page_series(read_buddyinfo_periodic(real_path), pageblock_order)
    sim_rows = sim_buddyinfo.assign(
        time_s=sim_buddyinfo["time_ns"].astype("int64") / 1e9 + start_s)
    sim_rows = sim_rows.groupby(["time_s", "nid", "zone", "order"], observed=True,
                                as_index=False)["nr_free"].sum()
    sim = free_page_series(sim_rows, pageblock_order)
    return [(f"overlay_node{nid}_{zone}",
             overlay_figure((nid, zone), sim.get((nid, zone)), table, what))
            for (nid, zone), table in real.items()]
