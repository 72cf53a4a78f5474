"""What the timed layer records under memory pressure: owners, spans, latency, stalls.

- :class:`SpanRecorder`: ``trace/spans.parquet`` (kswapd runs, direct reclaim, OOM
  kills, scheduled actions), schema in :data:`simcore.formats.trace_schema.SPAN_COLUMNS`.
- :class:`LatencyStats`: allocation latency by stage, as counts per distinct value, so
  a million fast-path hits cost three integers.
- :class:`StallClock`: memory stall time per caller and the machine's PSI ``some``
  (time during which at least one caller was stalled, ``/proc/pressure/memory``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from simcore.formats import trace_schema as ts
from simcore.sim.recorder import _Columns


class SpanRecorder:
    """Rows of ``trace/spans.parquet``, kept as columns until the run writes them."""

    def __init__(self) -> None:
        self.columns = _Columns(ts.SPAN_COLUMNS)
        self.rows = 0

    def add(self, name: str, nid: int, caller: str, start_ns: int, end_ns: int, pages: int,
            detail: str) -> None:
        """Append one span (``end_ns == start_ns`` for an instant)."""
        c = self.columns.cols
        c["name"].append(name)
        c["nid"].append(nid)
        c["caller"].append(caller)
        c["start_ns"].append(start_ns)
        c["end_ns"].append(end_ns)
        c["pages"].append(pages)
        c["detail"].append(detail)
        self.rows += 1

    def write(self, path: Path) -> None:
        """Write the Parquet file atomically."""
        self.columns.write(path)


class LatencyStats:
    """Allocation latencies by stage, as ``latency -> count``."""

    def __init__(self) -> None:
        self.by_stage: dict[str, Counter[int]] = {stage: Counter() for stage in ts.STAGES}

    def add(self, stage: str, latency_ns: int, count: int = 1) -> None:
        """Record ``count`` requests of ``stage`` that took ``latency_ns``."""
        self.by_stage[stage][latency_ns] += count

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per stage with requests: ``count``, ``p50``, ``p99`` and ``p999`` (ns)."""
        out: dict[str, dict[str, Any]] = {}
        for stage, counts in self.by_stage.items():
            total = sum(counts.values())
            if not total:
                continue
            out[stage] = {"count": total, **{
                name: _quantile(counts, total, q)
                for name, q in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999))}}
        return out


def _quantile(counts: Counter[int], total: int, q: float) -> int:
    """The smallest value with at least ``q`` of the requests at or below it."""
    need = q * total
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= need:
            return value
    return max(counts)


class StallClock:
    """Memory stalls: per caller, and PSI ``some`` for the machine.

    Attributes:
        some_ns: Time with at least one caller stalled (``/proc/pressure/memory`` some).
        stalled: Callers stalled right now.
    """

    def __init__(self) -> None:
        self.some_ns = 0
        self.stalled = 0
        self._since = 0

    def enter(self, now_ns: int) -> None:
        """``psi_memstall_enter()``."""
        if not self.stalled:
            self._since = now_ns
        self.stalled += 1

    def leave(self, now_ns: int) -> None:
        """``psi_memstall_leave()``."""
        self.stalled -= 1
        if not self.stalled:
            self.some_ns += now_ns - self._since

    def some_at(self, now_ns: int) -> int:
        """``some`` up to ``now_ns``, counting a stall still in progress."""
        return self.some_ns + (now_ns - self._since if self.stalled else 0)


def pressure_summary(machine: Any) -> dict[str, Any]:
    """``summary.json``'s pressure sections for a machine at the end of its run.

    ``latency_ns`` by stage (the fast path's counts come from the allocator),
    ``vmstat`` (every modelled ``/proc/vmstat`` line under its kernel name, with the
    simulator-only counters apart in ``vmstat_simulator``), ``stall_ns`` per caller and
    PSI ``some``, the OOM kills, the owners' footprints, and the ``__GFP_NOFAIL``
    requests stalled past ``limits.nofail_stall`` (those still stalled at the end too),
    and, once the hugetlb pool has been used, ``hugetlb``
    (:meth:`simcore.sim.hugetlb.HugetlbPool.summary`).
    """
    from simcore.mm.vmstat import KERNEL_EVENTS, SIM_ONLY  # the formats, not the model

    mm = machine.mm
    now = machine.now_ns
    latency = LatencyStats()
    for stage, counts in machine.latency.by_stage.items():
        latency.by_stage[stage].update(counts)
    for cost, hits in zip(mm.path_cost, mm.fast_hits, strict=True):
        if hits:
            latency.add(ts.STAGE_FAST, cost, hits)
    counters = mm.vm.as_dict()
    vmstat = {"nr_free_pages": mm.nr_free_pages, **mm.reclaim.node_stats(),
              **{name: counters[name] for name in KERNEL_EVENTS}}
    cols = machine.spans.columns.cols
    kills = [{"time_ns": cols["start_ns"][i], "caller": cols["caller"][i],
              "victim": cols["detail"][i].split()[0].removeprefix("victim="),
              "pages": cols["pages"][i], "detail": cols["detail"][i]}
             for i, name in enumerate(cols["name"]) if name == ts.SPAN_OOM_KILL]
    some = machine.stalls.some_at(now)
    limit = machine.limits.nofail_stall_ns
    still = [{"caller": who, "since_ns": start, "stall_ns": now - start, "order": order,
              "gfp": gfp, "still_stalled": True}
             for who, start, gfp, order, nofail in machine.in_slowpath.values()
             if nofail and now - start > limit]
    extras = machine.extras
    hugetlb = {"hugetlb": extras["hugetlb"].summary()} if "hugetlb" in extras else {}
    return {
        **hugetlb,
        "latency_ns": latency.summary(),
        "vmstat": vmstat,
        "vmstat_simulator": {name: counters[name] for name in SIM_ONLY},
        "stall_ns": {
            "by_caller": {o.name: o.stall_ns for o in machine.owners.values()},
            "some": some,
            "some_percent": round(100 * some / now, 3) if now else 0.0,
        },
        "oom_kills": kills,
        "owners": {o.name: {"pages": o.pages, "swap_pages": o.swap_pages,
                            "oom_killed_ns": o.killed_ns} for o in machine.owners.values()},
        "swap_used_pages": mm.reclaim.swap_used,
        "nofail_stalls": [*machine.nofail_stalls, *still],
        "callers": {name: dict(sorted(counts.items()))
                    for name, counts in machine.extras.get("caller_stats", {}).items()},
    }
