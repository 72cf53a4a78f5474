"""How each sweep metric (:mod:`allocsim.sweep.metrics`) is shown on a y axis.

A metric's values are multiplied by ``factor`` to be in the axis unit: rates in percent,
times in s, min or h (ms or µs when shorter than a second), memory in binary units.
Counts (requests, pages, events) may go on a log axis when they span decades.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from reports.style import PAGE_SIZE, size_unit
from reports.sweep_tables import time_unit


@dataclass(frozen=True)
class MetricAxis:
    """The y axis of one metric.

    ``label`` names it with the unit, ``factor`` turns a value into that unit, and
    ``count`` says whether a log axis suits it.
    """

    label: str
    factor: float
    count: bool
    unit: str = ""

    def value_text(self, value: float) -> str:
        """A raw ``value`` in the axis unit, e.g. a limit: ``1 ms``, ``10 %``."""
        shown = f"{value * self.factor:.4g}"
        return f"{shown} {self.unit}" if self.unit else shown


_COUNTS = (
    (r"requests(\.[^.]+)?(\.order(\d+))?", "allocation requests", "requests"),
    (r"failures(\.[^.]+)?(\.order(\d+))?", "failed allocations", "requests"),
    (r"hugetlb\[\d+\]\.obtained(\.node\d+)?", "huge pages obtained", "huge pages"),
    (r"free_pageblocks(\.node\d+)?", "wholly free pageblocks at the end", "pageblocks"),
    (r"mixed_pageblocks", "pageblocks of more than one migratetype at the end",
     "pageblocks"),
    (r"pgsteal_kswapd|pgsteal_direct|pgmigrate_success", "", "pages"),
    (r"allocstall|compact_stall|compact_success|kswapd_wakeup|oom_kill", "", "events"),
)
_TIMES = (
    (r"first_failure_s\..*", "first failure (simulated time)", 1.0),
    (r"stall_s\..*", "time stalled (simulated)", 1.0),
    (r"latency_p99_ns\..*", "99th percentile allocation latency (simulated)", 1e-9),
    (r"wall_seconds", "wall-clock time of a run", 1.0),
)


def metric_axis(metric: str, largest: float) -> MetricAxis:
    """The axis of ``metric`` whose largest absolute value is ``largest`` (raw units)."""
    if metric.startswith("failure_rate."):
        return MetricAxis("failure rate (%)", 100.0, False, "%")
    if metric == "stall_some_percent":
        return MetricAxis("share of time some caller stalled, PSI some (%)", 1.0, False, "%")
    if metric == "free_pages":
        unit, size = size_unit(largest * PAGE_SIZE)
        return MetricAxis(f"free memory at the end, nr_free_pages ({unit})",
                          PAGE_SIZE / size, False, unit)
    for pattern, what, seconds in _TIMES:
        if re.fullmatch(pattern, metric):
            unit, scale = time_unit(largest * seconds)
            return MetricAxis(f"{what} ({unit})", seconds / scale, False, unit)
    for pattern, what, unit in _COUNTS:
        if re.fullmatch(pattern, metric):
            return MetricAxis(f"{what or metric} ({unit})", 1.0, True, unit)
    return MetricAxis(metric, 1.0, True)
