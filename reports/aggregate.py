"""The numbers the report plots, computed from a run's trace tables.

Each function takes a DataFrame as read by :mod:`reports.load` and returns a small table.
They are kept apart from the drawing code so tests can check the numbers against the
trace exactly. Time is converted from the trace's integer nanoseconds to float seconds.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from simcore.formats import trace_schema as ts

ALLOC_PATHS = (ts.PATH_PCP, ts.PATH_BUDDY, ts.PATH_FALLBACK)
"""Where a successful allocation was served from, in stacking order."""

WATERMARK_COLUMNS = ("wmark_min", "wmark_low", "wmark_high")

ZoneKey = tuple[int, str]
"""``(nid, zone name)``."""

NS_PER_S = 1_000_000_000


def _count_by(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Count ``rows`` per (order, ``column``): index ``order``, one int column per value."""
    counts = rows.groupby(["order", column], observed=True).size()
    table = counts.unstack(column, fill_value=0) if len(counts) else pd.DataFrame()
    table.columns = pd.Index([str(c) for c in table.columns], name=column)
    table.index = pd.Index([int(o) for o in table.index], name="order")
    return table.sort_index().astype("int64")


def _alloc_rows(events: pd.DataFrame, outcome: str) -> pd.DataFrame:
    """The ``mm_page_alloc`` rows of ``events`` with the given outcome."""
    mask = (events["event"] == ts.MM_PAGE_ALLOC) & (events["outcome"] == outcome)
    return events.loc[mask]


def allocations_by_order(events: pd.DataFrame) -> pd.DataFrame:
    """Count successful ``mm_page_alloc`` events per order, split by path.

    Args:
        events: Rows of EVENTS_FILE (at least ``event``, ``outcome``, ``order``, ``path``).

    Returns:
        Index ``order`` (only orders with at least one success, ascending); columns
        ``pcp``, ``buddy``, ``fallback`` in that order; int64 counts.
    """
    table = _count_by(_alloc_rows(events, ts.OUTCOME_OK), "path")
    return table.reindex(columns=list(ALLOC_PATHS), fill_value=0).rename_axis(columns="path")


def failures_by_order(events: pd.DataFrame) -> pd.DataFrame:
    """Count failed ``mm_page_alloc`` events (outcome ``fail``) per order, split by caller.

    Args:
        events: Rows of EVENTS_FILE (at least ``event``, ``outcome``, ``order``, ``caller``).

    Returns:
        Index ``order`` (only orders with a failure, ascending); one column per caller,
        sorted by name; int64 counts. Empty (no rows, no columns) if nothing failed.
    """
    table = _count_by(_alloc_rows(events, ts.OUTCOME_FAIL), "caller")
    return table.reindex(columns=sorted(table.columns))


def _zone_groups(frame: pd.DataFrame) -> list[tuple[ZoneKey, pd.DataFrame]]:
    """Split ``frame`` per (nid, zone): by nid, then zones in order of first appearance."""
    groups = [
        ((int(nid), str(zone)), rows)
        for (nid, zone), rows in frame.groupby(["nid", "zone"], sort=False, observed=True)
    ]
    return sorted(groups, key=lambda item: item[0][0])


def free_blocks_by_order(buddyinfo: pd.DataFrame) -> dict[ZoneKey, pd.DataFrame]:
    """Free blocks per order over time for each zone, summed over migratetypes.

    This is the ``/proc/buddyinfo`` view of the ``/proc/pagetypeinfo`` snapshots.

    Args:
        buddyinfo: Rows of BUDDYINFO_FILE.

    Returns:
        ``{(nid, zone): table}``; each table has index ``time_s`` (float seconds,
        ascending), one int64 column per order (ascending) and ``nr_free`` block counts.
    """
    result: dict[ZoneKey, pd.DataFrame] = {}
    for key, rows in _zone_groups(buddyinfo):
        table = rows.pivot_table(
            index="time_ns", columns="order", values="nr_free", aggfunc="sum", fill_value=0
        )
        table.index = pd.Index(table.index.astype("int64") / NS_PER_S, name="time_s")
        table.columns = pd.Index([int(o) for o in table.columns], name="order")
        result[key] = table.sort_index().sort_index(axis=1).astype("int64")
    return result


def zone_free_pages(zonestat: pd.DataFrame) -> dict[ZoneKey, pd.DataFrame]:
    """Free pages and the min/low/high watermarks over time for each zone.

    Args:
        zonestat: Rows of ZONESTAT_FILE.

    Returns:
        ``{(nid, zone): table}``; each table has index ``time_s`` (float seconds,
        ascending) and columns ``nr_free_pages``, ``wmark_min``, ``wmark_low``,
        ``wmark_high`` in pages.
    """
    columns = ["nr_free_pages", *WATERMARK_COLUMNS]
    result: dict[ZoneKey, pd.DataFrame] = {}
    for key, rows in _zone_groups(zonestat):
        table = rows.sort_values("time_ns", kind="stable")
        times = pd.Index(table["time_ns"].to_numpy() / NS_PER_S, name="time_s")
        result[key] = pd.DataFrame(table[columns].to_numpy(), index=times, columns=columns)
    return result


def summary_rows(manifest: dict[str, Any], summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The (label, value) rows of the title page's summary table, formatted for reading."""
    failures = sum(int(n) for n in summary["failures"].get("by_order", {}).values())
    return [
        ("status", str(manifest["status"])),
        ("seed", str(manifest["seed"])),
        ("simulated time", f"{float(summary['simulated_seconds']):.3f} s"),
        ("wall-clock time", f"{float(summary['wall_seconds']):.1f} s"),
        ("allocation requests", f"{int(summary['alloc_requests']):,}"),
        ("pages allocated", f"{int(summary['pages_allocated']):,}"),
        ("pages freed", f"{int(summary['pages_freed']):,}"),
        ("allocation failures", f"{failures:,}"),
        *_pressure_rows(summary),
        ("events traced", f"{int(summary['events_traced']):,}"),
        ("git commit", str(manifest.get("git_commit") or "unknown")),
    ]


def _pressure_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Title-page rows for reclaim, stalls, OOM kills and a kernel panic (if any)."""
    vmstat = summary.get("vmstat", {})
    rows = []
    if vmstat:
        stalls = sum(v for k, v in vmstat.items() if k.startswith("allocstall_"))
        rows.append(("direct reclaim (allocstall)", f"{stalls:,}"))
        rows.append(("pages reclaimed (kswapd / direct)",
                     f"{vmstat.get('pgsteal_kswapd', 0):,} / {vmstat.get('pgsteal_direct', 0):,}"))
    if vmstat.get("compact_stall") or vmstat.get("compact_daemon_wake"):
        rows.append(("direct compaction (stall / success / fail)",
                     f"{vmstat.get('compact_stall', 0):,} / {vmstat.get('compact_success', 0):,}"
                     f" / {vmstat.get('compact_fail', 0):,}"))
        rows.append(("pages migrated (pgmigrate_success / _fail)",
                     f"{vmstat.get('pgmigrate_success', 0):,} / "
                     f"{vmstat.get('pgmigrate_fail', 0):,}"))
    stall = summary.get("stall_ns")
    if stall:
        rows.append(("memory stall (PSI some)", f"{stall['some'] / 1e9:.3f} s "
                     f"({stall['some_percent']:.2f} %)"))
    kills = summary.get("oom_kills") or []
    if kills:
        victims = ", ".join(str(k["victim"]) for k in kills)
        rows.append(("OOM kills", f"{len(kills)}: {victims}"))
    panic = summary.get("panic")
    if panic:
        rows.append(("kernel panic", f"at {panic['time_ns'] / 1e9:.3f} s"))
    return rows
