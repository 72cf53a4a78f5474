"""The numbers the report plots, computed from a run's trace tables.

Each function takes a DataFrame as read by :mod:`reports.load` and returns a small table.
They are kept apart from the drawing code so tests can check the numbers against the
trace exactly. Time is converted from the trace's integer nanoseconds to float seconds.
"""

from __future__ import annotations

import pandas as pd

WATERMARK_COLUMNS = ("wmark_min", "wmark_low", "wmark_high")

ZoneKey = tuple[int, str]
"""``(nid, zone name)``."""

NS_PER_S = 1_000_000_000


def _zone_groups(frame: pd.DataFrame) -> list[tuple[ZoneKey, pd.DataFrame]]:
    """Split ``frame`` per (nid, zone): by nid, then zones in order of first appearance."""
    groups = [
        ((int(nid), str(zone)), rows)
        for (nid, zone), rows in frame.groupby(["nid", "zone"], sort=False, observed=True)
    ]
    return sorted(groups, key=lambda item: item[0][0])


ZONE_SERIES = ("nr_free_pages", *WATERMARK_COLUMNS, "pcp_pages", "watermark_boost",
               "nr_reserved_highatomic", "managed_pages")


def zone_free_pages(zonestat: pd.DataFrame) -> dict[ZoneKey, pd.DataFrame]:
    """Free pages, pcp pages and the watermarks over time for each zone.

    Args:
        zonestat: Rows of ZONESTAT_FILE.

    Returns:
        ``{(nid, zone): table}``; each table has index ``time_s`` (float seconds,
        ascending) and the :data:`ZONE_SERIES` columns, in pages. The watermarks include
        the boost (``wmark_pages()``).
    """
    columns = [c for c in ZONE_SERIES if c in zonestat.columns]
    result: dict[ZoneKey, pd.DataFrame] = {}
    for key, rows in _zone_groups(zonestat):
        table = rows.sort_values("time_ns", kind="stable")
        times = pd.Index(table["time_ns"].to_numpy() / NS_PER_S, name="time_s")
        result[key] = pd.DataFrame(table[columns].to_numpy(), index=times, columns=columns)
    return result
