"""Write small synthetic run directories that follow simcore.formats.trace_schema exactly.

The numbers are fixed so report tests can check aggregates against them:
- 7 order-0 allocations served from the pcp lists (caller "kbuild"),
- 2 order-3 allocations served by fallback (caller "slab"),
- 1 order-9 allocation from the buddy lists (caller "thp"),
- 3 order-9 failures from caller "hugetlb" and 1 order-2 failure from caller "slab",
- 4 frees and one mm_page_alloc_extfrag event (which the allocation counts must ignore).
Zones: node 0 DMA and Normal, 3 snapshots each at t = 0, 0.5 s, 1 s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from simcore.formats import trace_schema as ts

EXPECTED_ALLOCATIONS = {
    0: {"pcp": 7, "buddy": 0, "fallback": 0},
    3: {"pcp": 0, "buddy": 0, "fallback": 2},
    9: {"pcp": 0, "buddy": 1, "fallback": 0},
}
EXPECTED_FAILURES = {2: {"hugetlb": 0, "slab": 1}, 9: {"hugetlb": 3, "slab": 0}}
ZONES = ((0, "DMA"), (0, "Normal"))
SNAPSHOT_NS = (0, 500_000_000, 1_000_000_000)
MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable")
MAX_ORDER = 10


def arrow_schema(columns: tuple[tuple[str, str], ...]) -> pa.Schema:
    """Arrow schema for a trace_schema column list; strings dictionary-encoded."""
    types = {"string": pa.dictionary(pa.int32(), pa.string())}
    return pa.schema([(name, types.get(kind) or pa.type_for_alias(kind)) for name, kind in columns])


def write_table(
    path: Path, columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = arrow_schema(columns)
    data = {name: [row[name] for row in rows] for name, _ in columns}
    pq.write_table(pa.Table.from_pydict(data, schema=schema), path)


def _event(
    time_ns: int, event: str, caller: str, order: int, outcome: str, path: str, zone: str = "Normal"
) -> dict[str, Any]:
    failed = outcome == ts.OUTCOME_FAIL
    return {
        "time_ns": time_ns,
        "event": event,
        "caller": caller,
        "cpu": 0,
        "nid": 0,
        "zone": "" if failed else zone,
        "order": order,
        "gfp": 0xCC0,
        "migratetype": 0,
        "pfn": -1 if failed else 4096 + time_ns % 1000,
        "outcome": outcome,
        "path": path,
        "fallback_order": -1,
        "fallback_migratetype": -1,
        "change_ownership": -1,
        "percpu_refill": -1,
        "reason": "no memory" if failed else "",
        "stage": (ts.STAGE_FAIL if failed else ts.STAGE_FAST) if event == ts.MM_PAGE_ALLOC else "",
        "latency_ns": (100 if event == ts.MM_PAGE_ALLOC else -1),
    }


def event_rows() -> list[dict[str, Any]]:
    """The synthetic events, in time order."""
    alloc, ok, fail = ts.MM_PAGE_ALLOC, ts.OUTCOME_OK, ts.OUTCOME_FAIL
    specs = (
        [("kbuild", 0, ok, ts.PATH_PCP)] * 7
        + [("slab", 3, ok, ts.PATH_FALLBACK)] * 2
        + [("thp", 9, ok, ts.PATH_BUDDY)]
        + [("hugetlb", 9, fail, ts.PATH_FAILURE)] * 3
        + [("slab", 2, fail, ts.PATH_FAILURE)]
    )
    rows = [_event(1000 * i, alloc, *spec) for i, spec in enumerate(specs)]
    rows += [_event(50_000 + i, ts.MM_PAGE_FREE, "kbuild", 0, ok, ts.PATH_NONE) for i in range(4)]
    extfrag = _event(60_000, ts.MM_PAGE_ALLOC_EXTFRAG, "slab", 3, ok, ts.PATH_FALLBACK)
    extfrag.update(fallback_order=9, fallback_migratetype=1, change_ownership=1)
    return [*rows, extfrag]


def nr_free(snapshot: int, zone: str, migratetype: str, order: int) -> int:
    """Free blocks in the synthetic buddyinfo; order 10 has none in DMA."""
    if zone == "DMA" and order == MAX_ORDER:
        return 0
    base = 1000 if zone == "Normal" else 10
    return max(0, base // (order + 1) - 3 * snapshot) + len(migratetype) % 3


def buddyinfo_rows() -> list[dict[str, Any]]:
    return [
        {
            "time_ns": t,
            "nid": nid,
            "zone": zone,
            "migratetype": mt,
            "order": order,
            "nr_free": nr_free(i, zone, mt, order),
        }
        for i, t in enumerate(SNAPSHOT_NS)
        for nid, zone in ZONES
        for mt in MIGRATETYPES
        for order in range(MAX_ORDER + 1)
    ]


def zonestat_rows() -> list[dict[str, Any]]:
    managed = {"DMA": 3976, "Normal": 1_000_000}
    return [
        {
            "time_ns": t,
            "nid": nid,
            "zone": zone,
            "managed_pages": managed[zone],
            "nr_free_pages": managed[zone] // (2 + i),
            "pcp_pages": 64 * i,
            "wmark_min": managed[zone] // 100,
            "wmark_low": managed[zone] // 80,
            "wmark_high": managed[zone] // 66,
            "watermark_boost": 0,
            "nr_reserved_highatomic": 0,
            "pageblocks_movable_only": 3 + i,
            "pageblocks_unmovable": 2,
            "pageblocks_mixed": i,
        }
        for i, t in enumerate(SNAPSHOT_NS)
        for nid, zone in ZONES
    ]


PAGEBLOCK_TYPES = ("Movable", "Movable", "Unmovable", "Movable", "Reclaimable", "Movable")
"""The synthetic pageblock map: node 0, DMA's one block then Normal's five."""
ORACLE_ZONEINFO = Path(__file__).parent / "data" / "oracle" / "boot-idle" / "end" / "zoneinfo"


def pageblock_rows() -> list[dict[str, Any]]:
    """Six pageblocks; the third (Unmovable) is mixed, charged to ``slab``."""
    return [{"nid": 0, "zone": "DMA" if i == 0 else "Normal", "pfn": 512 * i,
             "migratetype": mt, "census": ts.CENSUS_FREE if i == 5 else ts.CENSUS_MOVABLE_ONLY,
             "mixed": int(i == 2), "caller": "slab" if i == 2 else ""}
            for i, mt in enumerate(PAGEBLOCK_TYPES)]


def write_run_dir(run_dir: Path, *, status: str = "ok") -> Path:
    """Write a complete synthetic run directory and return it."""
    write_table(run_dir / ts.PAGEBLOCKS_FILE, ts.PAGEBLOCKS_COLUMNS, pageblock_rows())
    (run_dir / "zoneinfo.txt").write_text(ORACLE_ZONEINFO.read_text())
    (run_dir / ts.VMSTAT_FILE).write_text("nr_free_pages 1000\npgsteal_kswapd 700\n"
                                          "allocstall_normal 2\ncompact_stall 0\n")
    write_table(run_dir / ts.EVENTS_FILE, ts.EVENT_COLUMNS, event_rows())
    write_table(run_dir / ts.BUDDYINFO_FILE, ts.BUDDYINFO_COLUMNS, buddyinfo_rows())
    write_table(run_dir / ts.ZONESTAT_FILE, ts.ZONESTAT_COLUMNS, zonestat_rows())
    write_table(run_dir / ts.SPANS_FILE, ts.SPAN_COLUMNS, span_rows())
    summary = {
        "simulated_seconds": 1.0,
        "wall_seconds": 0.25,
        "alloc_requests": 14,
        "pages_allocated": 7 + 2 * 8 + 512,
        "pages_freed": 4,
        "events_traced": 19,
        "failures": {"by_order": {"2": 1, "9": 3}, "by_caller": {"hugetlb": 3, "slab": 1},
                     "by_caller_order": {"hugetlb": {"9": 3}, "slab": {"2": 1}}},
        "requests": {"by_caller": {"kbuild": 7, "slab": 3, "thp": 1, "hugetlb": 3},
                     "by_caller_order": {"kbuild": {"0": 7}, "slab": {"2": 1, "3": 2},
                                         "thp": {"9": 1}, "hugetlb": {"9": 3}}},
        "latency_ns": {ts.STAGE_FAST: {"count": 10, "p50": 100, "p99": 400, "p999": 400},
                       ts.STAGE_SLOW_RECLAIM: {"count": 2, "p50": 43_600, "p99": 90_000,
                                               "p999": 90_000}},
        "stall_ns": {"by_caller": {"slab": 133_600}, "some": 133_600, "some_percent": 0.013},
        "vmstat": {"allocstall_normal": 2, "pgsteal_kswapd": 700, "pgsteal_direct": 64},
        "oom_kills": [{"time_ns": 900_000_000, "caller": "slab", "victim": "hugetlb",
                       "pages": 300,
                       "detail": "victim=hugetlb order=0 gfp=GFP_KERNEL"}],
    }
    manifest = {
        "name": "synthetic-fragmentation",
        "seed": 42,
        "status": status,
        "config": {"machine": {"nodes": [{"memory": "4GiB", "cpus": 2}]},
                   "sysctl": {"min_free_kbytes": 67584, "compaction_proactiveness": 20},
                   "workloads": [{"name": n, "type": "synthetic", "gfp": "GFP_KERNEL"}
                                 for n in ("kbuild", "slab", "thp", "hugetlb")]},
        "question": "What does a synthetic run look like?",
        "versions": {"python": "3.11"},
        "git_commit": "0123abcd",
        "started": "2024-01-01T00:00:00Z",
        "finished": "2024-01-01T00:00:01Z",
    }
    (run_dir / ts.SUMMARY_FILE).write_text(json.dumps(summary))
    (run_dir / ts.MANIFEST_FILE).write_text(json.dumps(manifest))
    return run_dir


def span_rows() -> list[dict[str, Any]]:
    """kswapd on node 0 (a wakeup, one 2 ms run), two direct reclaims, one OOM kill."""
    def span(name: str, caller: str, start: int, end: int, pages: int, detail: str = ""
             ) -> dict[str, Any]:
        return {"name": name, "nid": 0, "caller": caller, "start_ns": start, "end_ns": end,
                "pages": pages, "detail": detail}
    return [
        span(ts.SPAN_WAKEUP_KSWAPD, "slab", 100_000_000, 100_000_000, 0),
        span(ts.SPAN_KSWAPD_WAKE, "kswapd0", 100_000_000, 100_000_000, 0),
        span(ts.SPAN_KSWAPD_RUN, "kswapd0", 100_000_000, 102_000_000, 700),
        span(ts.SPAN_DIRECT_RECLAIM, "slab", 200_000_000, 200_043_600, 32),
        span(ts.SPAN_DIRECT_RECLAIM, "slab", 800_000_000, 800_090_000, 32),
        span(ts.SPAN_OOM_KILL, "slab", 900_000_000, 910_000_000, 300, "victim=hugetlb"),
        span(ts.SPAN_PAGEBLOCK_POLLUTED, "slab", 300_000_000, 300_000_000, 512,
             "pfn=1024 zone=Normal"),
    ]
