"""Time series the report draws, computed from a run's snapshot tables and events.

Snapshots are instants: a value holds from its sample time until the next sample (the last
until the end of the run), so figures draw them as steps on the sample times and time
spent in a state is summed over those steps. The fragmentation indices use the kernel's own
formulas from :mod:`simcore.mm.fragmentation` (one implementation of each rule).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.aggregate import NS_PER_S, ZoneKey
from simcore.formats import trace_schema as ts
from simcore.mm.fragmentation import (
    extfrag_for_order,
    fragmentation_index,
    fragmentation_score_weighted,
    unusable_free_index,
)

COMPACTION_HPAGE_ORDER = 9
"""``COMPACTION_HPAGE_ORDER`` (mm/compaction.c): HPAGE_PMD_ORDER on x86_64."""


@dataclass(frozen=True)
class BlockMatrix:
    """One zone's free blocks per order and migratetype at each snapshot.

    Attributes:
        times_s: Snapshot times, ascending (seconds).
        orders: The orders, 0 .. max_order.
        by_type: ``{migratetype: array[order, snapshot]}`` of free block counts, in
            /proc/pagetypeinfo order; only migratetypes that ever had a free block.
    """

    times_s: np.ndarray
    orders: np.ndarray
    by_type: dict[str, np.ndarray]

    @property
    def total(self) -> np.ndarray:
        """Free blocks per order and snapshot, all migratetypes (``/proc/buddyinfo``)."""
        return sum(self.by_type.values(), np.zeros((len(self.orders), len(self.times_s)),
                                                   dtype=np.int64))

    @property
    def untouched(self) -> bool:
        """Whether the zone's free lists were the same at every snapshot."""
        total = self.total
        return bool((total == total[:, :1]).all())


def block_matrices(buddyinfo: pd.DataFrame) -> dict[ZoneKey, BlockMatrix]:
    """Free blocks per (order, snapshot) and migratetype, for each zone of BUDDYINFO_FILE."""
    out: dict[ZoneKey, BlockMatrix] = {}
    if buddyinfo.empty:
        return out
    max_order = int(buddyinfo["order"].max())
    frame = buddyinfo.assign(migratetype=buddyinfo["migratetype"].astype(str),
                             zone=buddyinfo["zone"].astype(str))
    for (nid, zone), rows in frame.groupby(["nid", "zone"], sort=False):
        times = np.sort(rows["time_ns"].unique())
        col = {t: i for i, t in enumerate(times.tolist())}
        by_type: dict[str, np.ndarray] = {}
        for mt, mine in rows.groupby("migratetype", sort=False):
            grid = np.zeros((max_order + 1, len(times)), dtype=np.int64)
            np.add.at(grid, (mine["order"].to_numpy(dtype=np.int64),
                             mine["time_ns"].map(col).to_numpy(dtype=np.int64)),
                      mine["nr_free"].to_numpy(dtype=np.int64))
            if grid.any():
                by_type[str(mt)] = grid
        out[(int(nid), str(zone))] = BlockMatrix(times / NS_PER_S,
                                                 np.arange(max_order + 1), by_type)
    return dict(sorted(out.items(), key=lambda kv: kv[0][0]))


def fragmentation_over_time(matrices: dict[ZoneKey, BlockMatrix],
                            present: dict[ZoneKey, int]) -> tuple[dict[ZoneKey, pd.DataFrame],
                                                                  pd.DataFrame]:
    """The kernel's fragmentation metrics at every snapshot.

    Args:
        matrices: :func:`block_matrices`.
        present: ``present_pages`` per zone (zoneinfo), for the proactive score's weights.

    Returns:
        ``(per_zone, score)``: per zone a table indexed by ``time_s`` with
        ``unusable_9`` (``unusable_free_index()`` at order 9, thousandths),
        ``extfrag_4`` and ``extfrag_9`` (``__fragmentation_index()``, thousandths; -1000
        means a free block of that order exists); ``score``: per node (columns ``node N``)
        the proactive-compaction ``fragmentation_score_node()`` (0..100).
    """
    per_zone: dict[ZoneKey, pd.DataFrame] = {}
    node_present: dict[int, int] = {}
    for (nid, _zone), pages in present.items():
        node_present[nid] = node_present.get(nid, 0) + pages
    scores: dict[int, pd.Series] = {}
    for key, m in matrices.items():
        total = m.total
        order = min(COMPACTION_HPAGE_ORDER, len(m.orders) - 1)
        columns = [total[:, i].tolist() for i in range(len(m.times_s))]
        table = pd.DataFrame({
            "unusable_9": [unusable_free_index(c, order) for c in columns],
            "extfrag_4": [fragmentation_index(c, min(4, order)) for c in columns],
            "extfrag_9": [fragmentation_index(c, order) for c in columns],
        }, index=pd.Index(m.times_s, name="time_s"))
        per_zone[key] = table
        nid = key[0]
        weighted = pd.Series([fragmentation_score_weighted(
            present.get(key, 0), node_present.get(nid, 0), extfrag_for_order(c, order))
            for c in columns], index=pd.Index(m.times_s, name="time_s"))
        scores[nid] = scores[nid].add(weighted, fill_value=0) if nid in scores else weighted
    score = pd.DataFrame({f"node {nid}": s for nid, s in sorted(scores.items())})
    return per_zone, score.sort_index().fillna(0).astype("int64")


def hold_durations(times_s: np.ndarray, end_s: float) -> np.ndarray:
    """How long each sample holds: until the next one, the last until ``end_s``."""
    times = np.asarray(times_s, dtype=float)
    if not len(times):
        return times
    return np.diff(np.append(times, max(end_s, float(times[-1]))))


def time_below_watermarks(zonestat: pd.DataFrame, end_s: float) -> pd.DataFrame:
    """Per zone, the time its free pages were below each (boosted) watermark.

    ``nr_free_pages < wmark`` with ``wmark`` as zonestat records it
    (``wmark_pages()``: the watermark plus ``watermark_boost``), sample by sample.

    Returns:
        Rows ``(nid, zone)``; columns ``below_min``, ``below_low``, ``below_high`` in
        seconds, and ``sampled`` (the seconds covered by samples).
    """
    rows = []
    frame = zonestat.assign(zone=zonestat["zone"].astype(str))
    for (nid, zone), mine in frame.groupby(["nid", "zone"], sort=False):
        mine = mine.sort_values("time_ns", kind="stable")
        held = hold_durations(mine["time_ns"].to_numpy() / NS_PER_S, end_s)
        free = mine["nr_free_pages"].to_numpy()
        row = {"nid": int(nid), "zone": str(zone)}
        for name in ("min", "low", "high"):
            row[f"below_{name}"] = float(held[free < mine[f"wmark_{name}"].to_numpy()].sum())
        row["sampled"] = float(held.sum())
        rows.append(row)
    return pd.DataFrame(rows, columns=["nid", "zone", "below_min", "below_low", "below_high",
                                       "sampled"])


def rate_bins(duration_s: float, snapshot_times: np.ndarray, target: int = 60) -> np.ndarray:
    """Bin edges (seconds) for rates over time, covering 0 .. the run's end.

    About ``target`` bins, never finer than the snapshot interval.
    """
    end = max(duration_s, 1e-9)
    width = end / target
    if len(snapshot_times) > 1:
        width = max(width, float(np.median(np.diff(snapshot_times))))
    count = max(1, int(np.ceil(end / width - 1e-9)))
    return np.linspace(0.0, count * width, count + 1)


def alloc_rows(events: pd.DataFrame) -> pd.DataFrame:
    """The ``mm_page_alloc`` rows of ``events``.

    The frame itself when they all are (as :func:`reports.load.load_run` reads them), so
    a million rows are not copied.
    """
    mask = (events["event"] == ts.MM_PAGE_ALLOC).to_numpy()
    return events if mask.all() else events[mask]


def rates_over_time(events: pd.DataFrame, edges: np.ndarray) -> pd.DataFrame:
    """Allocation and failure rates per caller and order in each time bin.

    Args:
        events: ``mm_page_alloc`` rows (``time_ns``, ``caller``, ``order``, ``outcome``).
        edges: Bin edges in seconds (:func:`rate_bins`).

    Returns:
        Index: the bins' start times (s). Columns: a MultiIndex ``(caller, order,
        outcome)`` with outcome ``ok`` or ``fail``; values: events per second.
    """
    allocs = alloc_rows(events)
    width = float(edges[1] - edges[0]) if len(edges) > 1 else 1.0
    index = pd.Index(edges[:-1], name="time_s")
    if allocs.empty:
        return pd.DataFrame(index=index)
    nbins = len(edges) - 1
    bins = np.clip(np.searchsorted(edges, allocs["time_ns"].to_numpy() / NS_PER_S,
                                   side="right") - 1, 0, nbins - 1)
    # one integer per (caller, order, outcome) group, then one bincount over group x bin:
    # a million events cost a few numpy passes, not a four-key group-by
    caller_codes, callers = codes(allocs["caller"])
    outcome_codes, outcomes = codes(allocs["outcome"])
    orders = allocs["order"].to_numpy(dtype=np.int64)
    order_span = int(orders.max()) + 1
    group = (caller_codes * order_span + orders) * len(outcomes) + outcome_codes
    ngroups = len(callers) * order_span * len(outcomes)
    counts = np.bincount(group * nbins + bins, minlength=ngroups * nbins).reshape(ngroups, nbins)
    present = np.flatnonzero(counts.sum(axis=1))
    counts = counts[present]
    columns = []
    for key in present.tolist():
        rest, outcome = divmod(key, len(outcomes))
        caller, order = divmod(rest, order_span)
        columns.append((str(callers[caller]), int(order), str(outcomes[outcome])))
    table = pd.DataFrame(counts.T.astype(float) / width,
                         index=index,
                         columns=pd.MultiIndex.from_tuples(columns,
                                                           names=["caller", "order", "outcome"]))
    return table.sort_index(axis=1)


def codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of a string column and the values they stand for."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(dtype=np.int64), np.asarray(column.cat.categories)
    found, values = pd.factorize(column.to_numpy())
    return found.astype(np.int64), np.asarray(values)


def pollution_over_time(spans: pd.DataFrame) -> pd.DataFrame:
    """Pageblocks each caller was the first to pollute, cumulative, at each charge.

    Returns:
        Columns ``time_s``, ``caller`` and ``polluted`` (the caller's running count), one
        row per ``pageblock_polluted`` instant, by time.
    """
    rows = spans[spans["name"].astype(str) == ts.SPAN_PAGEBLOCK_POLLUTED]
    rows = rows.sort_values("start_ns", kind="stable")
    out = pd.DataFrame({"time_s": rows["start_ns"].to_numpy() / NS_PER_S,
                        "caller": rows["caller"].astype(str).to_numpy()})
    out["polluted"] = out.groupby("caller").cumcount() + 1
    return out


def zonestat_by_node(zonestat: pd.DataFrame, column: str) -> pd.DataFrame:
    """A zonestat column summed over each node's zones: index ``time_s``, ``node N``."""
    table = zonestat.pivot_table(index="time_ns", columns="nid", values=column, aggfunc="sum",
                                 fill_value=0)
    table.index = pd.Index(table.index.astype("int64") / NS_PER_S, name="time_s")
    table.columns = [f"node {int(n)}" for n in table.columns]
    return table.sort_index().astype("int64")
