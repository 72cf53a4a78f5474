"""The cover page's facts and headline answers, computed from a run directory.

The answers come from the trace (events and spans) where the trace has them, so a test can
recompute them from the Parquet files; ``summary.json`` supplies what is not traced (the
request counts of a run with ``trace.events: false``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from reports.load import RunData
from reports.series import time_below_watermarks
from reports.style import format_bytes, format_ns, format_seconds
from simcore.formats import trace_schema as ts

_KV_RE = re.compile(r"(\w+)=(-?\d+)\b")
_SIZE_RE = re.compile(r"size=(\S+)")

KEY_SYSCTLS = ("min_free_kbytes", "watermark_scale_factor", "watermark_boost_factor",
               "lowmem_reserve_ratio", "compaction_proactiveness", "extfrag_threshold",
               "percpu_pagelist_high_fraction", "swappiness", "overcommit_memory",
               "nr_hugepages")


@dataclass(frozen=True)
class CallerLine:
    """One caller's outcome: requests, failures and when it first failed (ns, -1: never)."""

    name: str
    kind: str
    gfp: str
    requests: int
    failures: int
    first_failure_ns: int
    by_order: tuple[tuple[int, int, int], ...] = ()
    """``(order, failures, requests)`` for each order the caller failed at."""


def caller_lines(data: RunData) -> list[CallerLine]:
    """Every configured caller, failing or not, in config order (then any other caller)."""
    allocs = data.alloc_events
    fails = allocs[allocs["outcome"] == ts.OUTCOME_FAIL]
    # a categorical column counts its unused categories too: keep the callers with events
    requests = {str(k): int(v) for k, v in allocs["caller"].value_counts().items() if v}
    failures = {str(k): int(v) for k, v in fails["caller"].value_counts().items() if v}
    first = {str(k): int(v) for k, v in
             fails.groupby("caller", observed=True)["time_ns"].min().items()}
    per_order: dict[str, list[tuple[int, int, int]]] = {}
    if not fails.empty:
        asked = allocs.groupby(["caller", "order"], observed=True).size()
        failed = fails.groupby(["caller", "order"], observed=True).size()
        for (caller, order), n in failed.items():
            if n:
                per_order.setdefault(str(caller), []).append(
                    (int(order), int(n), int(asked[(caller, order)])))
    traced = not allocs.empty or (data.run_dir / ts.EVENTS_FILE).exists()
    by_summary = data.summary.get("requests", {}).get("by_caller", {})
    fail_summary = data.summary.get("failures", {})
    configured = data.manifest.get("config", {}).get("workloads", []) or []
    names = [str(w.get("name")) for w in configured]
    names += sorted(set(requests) - set(names) - {""})
    kinds = {str(w.get("name")): str(w.get("type", "")) for w in configured}
    gfps = {str(w.get("name")): str(w.get("gfp") or "") for w in configured}
    out = []
    for name in names:
        if traced:
            n_req, n_fail = int(requests.get(name, 0)), int(failures.get(name, 0))
            first_ns = int(first.get(name, -1))
        else:
            n_req = int(by_summary.get(name, 0))
            n_fail = int(fail_summary.get("by_caller", {}).get(name, 0))
            first_ns = int(fail_summary.get("first_ns", {}).get(name, -1))
        out.append(CallerLine(name, kinds.get(name, ""), gfps.get(name, ""), n_req, n_fail,
                              first_ns, tuple(sorted(per_order.get(name, [])))))
    return out


@dataclass(frozen=True)
class HugePages:
    """Huge-page (order >= pageblock order) requests and what they obtained.

    Attributes:
        requested: ``mm_page_alloc`` events at order >= pageblock order.
        obtained: Those that succeeded.
        pool_writes: Each ``nr_hugepages`` write: ``(time_s, caller, page size, node (-1:
            all), pages asked for, pages the pool of that size held after it)``.
    """

    requested: int
    obtained: int
    pool_writes: list[tuple[float, str, str, int, int, int]]


def huge_pages(data: RunData) -> HugePages:
    """Huge-page allocations and hugetlb pool writes of the run."""
    allocs = data.alloc_events
    huge = allocs[allocs["order"].to_numpy() >= data.pageblock_order]
    requested, obtained = len(huge), int((huge["outcome"] == ts.OUTCOME_OK).sum())
    if not (data.run_dir / ts.EVENTS_FILE).exists():  # trace.events off: summary.json's
        pb = data.pageblock_order
        asked = data.summary.get("requests", {}).get("by_caller_order", {})
        failed = data.summary.get("failures", {}).get("by_caller_order", {})
        requested = sum(int(n) for orders in asked.values() for o, n in orders.items()
                        if int(o) >= pb)
        obtained = requested - sum(int(n) for orders in failed.values()
                                   for o, n in orders.items() if int(o) >= pb)
    writes = []
    rows = data.spans[data.spans["name"].astype(str) == ts.SPAN_HUGETLB_RESIZE]
    for row in rows.sort_values("start_ns", kind="stable").itertuples():
        kv = {k: int(v) for k, v in _KV_RE.findall(str(row.detail))}
        size = _SIZE_RE.search(str(row.detail))
        writes.append((row.start_ns / 1e9, str(row.caller), size.group(1) if size else "?",
                       kv.get("node", -1), kv.get("count", -1), kv.get("nr_hugepages", -1)))
    return HugePages(requested, obtained, writes)


@dataclass(frozen=True)
class Stall:
    """The longest wait of the run: what, who, when and how long."""

    what: str
    caller: str
    start_ns: int
    duration_ns: int


def worst_stalls(data: RunData) -> list[Stall]:
    """The longest direct reclaim, the longest direct compaction and the slowest request."""
    out = []
    spans = data.spans
    for name, what in ((ts.SPAN_DIRECT_RECLAIM, "direct reclaim (try_to_free_pages)"),
                       (ts.SPAN_COMPACTION, "direct compaction (compact_zone)")):
        rows = spans[spans["name"].astype(str) == name]
        if name == ts.SPAN_COMPACTION:  # kcompactd and compact_memory stall nobody
            caller = rows["caller"].astype(str)
            rows = rows[(caller != "") & ~caller.str.startswith("kcompactd")]
        if rows.empty:
            continue
        took = (rows["end_ns"] - rows["start_ns"]).to_numpy()
        i = int(np.argmax(took))
        out.append(Stall(what, str(rows["caller"].iloc[i]), int(rows["start_ns"].iloc[i]),
                         int(took[i])))
    allocs = data.alloc_events
    if not allocs.empty and (allocs["latency_ns"] >= 0).any():
        i = int(np.argmax(allocs["latency_ns"].to_numpy()))
        out.append(Stall("slowest allocation request", str(allocs["caller"].iloc[i]),
                         int(allocs["time_ns"].iloc[i]), int(allocs["latency_ns"].iloc[i])))
    return out


def machine_text(data: RunData) -> str:
    """One line per node: memory, CPUs, and the zones with their sizes."""
    machine = data.manifest.get("config", {}).get("machine", {})
    lines = []
    zones = data.zones
    for nid, node in enumerate(machine.get("nodes", [])):
        mine = zones[zones["nid"] == nid]
        parts = ", ".join(f"{z.zone} {format_bytes(z.present * 4096)}"
                          for z in mine.itertuples())
        lines.append(f"node {nid}: {node.get('memory')}, {node.get('cpus')} CPUs; zones {parts}")
    extras = [f"pageblock_order {machine.get('pageblock_order', 9)}",
              f"MAX_ORDER {int(machine.get('max_order', 10)) + 1}",
              f"THP {machine.get('transparent_hugepage', '?')}",
              f"swap {machine.get('swap', '0B')}"]
    return "\n".join([*lines, ", ".join(extras)])


def sysctl_text(data: RunData) -> str:
    """The key ``vm.*`` sysctls of the run, as ``name = value`` pairs."""
    sysctl = data.manifest.get("config", {}).get("sysctl", {}) or {}
    keys = [k for k in KEY_SYSCTLS if k in sysctl] + sorted(set(sysctl) - set(KEY_SYSCTLS))
    return "   ".join(f"{k} = {sysctl[k]}" for k in keys)


def caller_text(line: CallerLine) -> str:
    """One caller's headline: failures and when the first one happened."""
    if not line.requests and line.kind == "hugetlb":
        return "its nr_hugepages writes allocate as caller 'hugetlb'"
    if line.failures:
        when = f"first at {format_seconds(line.first_failure_ns / 1e9)}"
        orders = "; ".join(f"order {o}: {n:,} of {asked:,}" for o, n, asked in line.by_order)
        return (f"{line.failures:,} of {line.requests:,} requests failed "
                f"({100 * line.failures / max(line.requests, 1):.2g} %), {when}"
                + (f" ({orders})" if orders else ""))
    return f"no failure in {line.requests:,} requests"


def watermark_text(data: RunData) -> list[str]:
    """Per zone that ever went below a watermark: the time below min, low and high."""
    table = time_below_watermarks(data.zonestat, data.duration_s)
    lines = []
    for row in table.itertuples():
        if row.below_high <= 0:
            lines.append(f"node {row.nid} {row.zone}: never below high")
            continue
        lines.append(f"node {row.nid} {row.zone}: below high {format_seconds(row.below_high)}, "
                     f"low {format_seconds(row.below_low)}, min {format_seconds(row.below_min)}"
                     f" (of {format_seconds(row.sampled)} sampled)")
    if not lines:
        lines.append("no zone snapshots")
    return lines


def work_text(data: RunData) -> list[str]:
    """What kswapd, direct reclaim and compaction did (``/proc/vmstat`` names)."""
    v = data.vmstat
    spans = data.spans
    runs = int((spans["name"] == ts.SPAN_KSWAPD_RUN).sum())
    stalls = sum(n for k, n in v.items() if k.startswith("allocstall_"))
    return [
        f"kswapd: {runs:,} balance_pgdat() runs, pgsteal_kswapd {v.get('pgsteal_kswapd', 0):,}",
        f"direct reclaim: allocstall {stalls:,}, pgsteal_direct {v.get('pgsteal_direct', 0):,}",
        f"compaction: compact_stall {v.get('compact_stall', 0):,} (success "
        f"{v.get('compact_success', 0):,}, fail {v.get('compact_fail', 0):,}), "
        f"compact_daemon_wake {v.get('compact_daemon_wake', 0):,}, "
        f"pgmigrate_success {v.get('pgmigrate_success', 0):,}",
        f"OOM kills: {v.get('oom_kill', 0):,}",
    ]


def stall_text(stalls: list[Stall]) -> list[str]:
    """One line per kind of stall."""
    if not stalls:
        return ["no request was traced"]
    return [f"{s.what}: {format_ns(s.duration_ns)} ({s.caller or 'kernel'}, "
            f"at {format_seconds(s.start_ns / 1e9)})" for s in stalls]


def huge_text(h: HugePages) -> list[str]:
    """Huge pages requested and obtained, and each hugetlb pool write."""
    lines = [f"allocation attempts at order >= pageblock: {h.obtained:,} succeeded of "
             f"{h.requested:,}" if h.requested else "no allocation at pageblock order or above"]
    for when, caller, size, node, asked, got in h.pool_writes:
        where = f" on node {node}" if node >= 0 else ""
        lines.append(f"nr_hugepages{where} = {asked:,} ({size}) by {caller} at "
                     f"{format_seconds(when)}: the {size} pool holds {got:,}")
    return lines


def run_facts(data: RunData) -> str:
    """Seed, simulated and wall time, events, build, commit."""
    m, s = data.manifest, data.summary
    build = "compiled" if m.get("compiled") else "pure Python"
    kernel = m.get("versions", {}).get("kernel_model", "6.1")
    return (f"Linux {kernel} page allocator model · seed {m['seed']} · "
            f"{format_seconds(data.duration_s)} simulated in "
            f"{format_seconds(float(s['wall_seconds']))} ({build}) · "
            f"{int(s['events_traced']):,} events · commit {str(m.get('git_commit') or '?')[:10]}")


def manifest_question(manifest: dict[str, Any]) -> str:
    """The config's opening comment, or a default naming the experiment."""
    question = str(manifest.get("question") or "").strip()
    return question or f"Experiment {manifest['name']!r} (its config has no opening comment)"
