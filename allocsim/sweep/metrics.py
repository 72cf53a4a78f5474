"""The numbers a sweep keeps of each run, read from its ``summary.json``.

Every metric is one number per run (NaN where the run has none, e.g. the time to the
first failure of a caller that never failed). Names use the kernel's where one exists:

=================================  ===========================================================
``requests``, ``failures``          allocation requests and failures, all callers
``requests.CALLER``                 one caller's requests (``failures.CALLER``, its failures)
``failure_rate.CALLER``             failures / requests (a rate: see :mod:`.stats`)
``failure_rate.CALLER.orderN``      the same for its order-N requests
``requests.CALLER.orderN``          its order-N requests (``failures.CALLER.orderN``, failed)
``first_failure_s.CALLER``          simulated seconds to its first failure (NaN: none)
``hugetlb[I].obtained``             huge pages the I-th pool resize obtained
``hugetlb[I].obtained.nodeN``       of which on node N
``free_pageblocks.nodeN``           wholly free pageblocks of node N at the end
``free_pageblocks``                 of the whole machine
``free_pages``                      ``nr_free_pages`` at the end
``mixed_pageblocks``                pageblocks holding more than one migratetype's pages
``stall_some_percent``              PSI-like share of time some caller stalled
``stall_s.CALLER``                  simulated seconds the caller spent stalled
``latency_p99_ns.PATH``             99th percentile allocation latency of a path
VMSTAT names                        ``pgsteal_kswapd``, ``pgsteal_direct``, ``allocstall``,
                                    ``compact_stall``, ``compact_success``,
                                    ``pgmigrate_success``, ``oom_kill``, ``kswapd_wakeup``
``wall_seconds``                    wall-clock time of the run (a wall metric)
=================================  ===========================================================

Wall metrics (:data:`WALL_METRICS`) describe the machine the sweep ran on, not the model:
they are kept, marked ``wall`` in ``sweep.parquet``, and left out of every comparison of
results (resume, executors, reruns).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

WALL_METRICS = frozenset({"wall_seconds"})
VMSTAT_METRICS = ("pgsteal_kswapd", "pgsteal_direct", "compact_stall", "compact_success",
                  "pgmigrate_success", "oom_kill")


_CALLER = r"[^.]+"
_FAMILIES = re.compile("|".join((
    rf"(requests|failures)(\.{_CALLER}(\.order\d+)?)?",
    rf"failure_rate\.{_CALLER}(\.order\d+)?(\.node\d+)?",
    rf"first_failure_s\.{_CALLER}(\.node\d+)?",
    r"hugetlb\[\d+\]\.obtained(\.node\d+)?",
    r"free_pageblocks(\.node\d+)?",
    rf"stall_s\.{_CALLER}(\.node\d+)?",
    r"latency_p99_ns\.[^.]+",
    "free_pages|mixed_pageblocks|stall_some_percent|allocstall|kswapd_wakeup|wall_seconds",
    "|".join(VMSTAT_METRICS),
)))
"""The metric names above (``.nodeN`` also on a per-node caller's, see
:mod:`allocsim.sweep.study`)."""


def is_known_metric(name: str) -> bool:
    """A name :func:`run_metrics` (or a study's per-node callers) can give."""
    return _FAMILIES.fullmatch(name) is not None


def is_rate(name: str) -> bool:
    """A metric bounded by 0 and 1 (its interval may need the bootstrap)."""
    return name.startswith("failure_rate")


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``summary.json``."""
    data: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return data


def run_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Every metric of one run (see the module docstring), by name."""
    out: dict[str, float] = {}
    requests = summary.get("requests", {})
    failures = summary.get("failures", {})
    out["requests"] = float(summary.get("alloc_requests", 0))
    out["failures"] = float(sum(failures.get("by_order", {}).values()))
    by_caller_order = failures.get("by_caller_order", {})
    first = failures.get("first_ns", {})
    for caller, n in sorted(requests.get("by_caller", {}).items()):
        failed = failures.get("by_caller", {}).get(caller, 0)
        out[f"requests.{caller}"] = float(n)
        out[f"failures.{caller}"] = float(failed)
        out[f"failure_rate.{caller}"] = failed / n if n else math.nan
        out[f"first_failure_s.{caller}"] = (first[caller] / 1e9 if caller in first
                                            else math.nan)
        for order, asked in sorted(requests.get("by_caller_order", {}).get(caller, {}).items(),
                                   key=lambda kv: int(kv[0])):
            lost = by_caller_order.get(caller, {}).get(order, 0)
            out[f"requests.{caller}.order{order}"] = float(asked)
            out[f"failures.{caller}.order{order}"] = float(lost)
            out[f"failure_rate.{caller}.order{order}"] = lost / asked if asked else math.nan
    for i, req in enumerate((summary.get("hugetlb") or {}).get("requests", [])):
        out[f"hugetlb[{i}].obtained"] = float(req["obtained"])
        for nid, n in enumerate(req.get("obtained_by_node") or []):
            out[f"hugetlb[{i}].obtained.node{nid}"] = float(n)
    pollution = summary.get("pollution", {})
    by_node = sorted(pollution.get("by_node", {}).items(), key=lambda kv: int(kv[0]))
    for nid, counts in by_node:
        out[f"free_pageblocks.node{nid}"] = float(counts.get("free", 0))
    if by_node:
        out["free_pageblocks"] = float(sum(c.get("free", 0) for _, c in by_node))
    if "mixed_pageblocks" in pollution:
        out["mixed_pageblocks"] = float(pollution["mixed_pageblocks"])
    vmstat = summary.get("vmstat", {})
    if "nr_free_pages" in vmstat:
        out["free_pages"] = float(vmstat["nr_free_pages"])
    for name in VMSTAT_METRICS:
        if name in vmstat:
            out[name] = float(vmstat[name])
    out["allocstall"] = float(sum(v for k, v in vmstat.items() if k.startswith("allocstall_")))
    sim = summary.get("vmstat_simulator", {})
    if "kswapd_wakeup" in sim:
        out["kswapd_wakeup"] = float(sim["kswapd_wakeup"])
    stall = summary.get("stall_ns", {})
    out["stall_some_percent"] = float(stall.get("some_percent", 0.0))
    for caller, ns in sorted(stall.get("by_caller", {}).items()):
        if caller in requests.get("by_caller", {}):
            out[f"stall_s.{caller}"] = ns / 1e9
    for path, lat in sorted(summary.get("latency_ns", {}).items()):
        if isinstance(lat, dict) and "p99" in lat:
            out[f"latency_p99_ns.{path}"] = float(lat["p99"])
    out["wall_seconds"] = float(summary.get("wall_seconds", math.nan))
    return out
