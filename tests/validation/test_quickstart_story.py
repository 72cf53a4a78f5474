"""The quickstart still tells its story (``configs/quickstart.yaml``'s opening comment).

Mixed callers fragment a 2-node box: page cache fills it and kswapd reclaims; kcompactd and
direct compaction migrate pages; unmovable and reclaimable allocations leave mixed
pageblocks; the THP heap is the first caller to fail, before the late hugetlb write; that
write gets fewer huge pages than the same write on the fresh box. A change to the model or
the config that loses any of these fails here; the exact numbers are the golden digests'
business. The run is the session's one quickstart run (``conftest.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from simcore.config.units import parse_duration_ns, parse_size_pages
from simcore.formats import trace_schema as ts
from tests.golden import CONFIGS

CONFIG = yaml.safe_load(CONFIGS["quickstart"].read_text(encoding="utf-8"))
DB = next(w for w in CONFIG["workloads"] if w["type"] == "hugetlb")
HUGE_PAGE_PAGES = parse_size_pages(DB["size"])
MEMORY_PAGES = sum(parse_size_pages(node["memory"]) for node in CONFIG["machine"]["nodes"])


@pytest.fixture(scope="module")
def summary(quickstart_run: Path) -> dict[str, Any]:
    return json.loads((quickstart_run / ts.SUMMARY_FILE).read_text())


@pytest.fixture(scope="module")
def vmstat(quickstart_run: Path) -> dict[str, int]:
    lines = (quickstart_run / "vmstat.txt").read_text().splitlines()
    return {name: int(value) for name, value in (line.split() for line in lines)}


@pytest.fixture(scope="module")
def spans(quickstart_run: Path) -> pd.DataFrame:
    df = pq.read_table(quickstart_run / ts.SPANS_FILE).to_pandas()
    df["name"] = df["name"].astype(str)
    return df


def test_the_run_stays_small_enough_to_be_quick(summary: dict[str, Any]) -> None:
    # The compiled run takes about 3 s for these; the report draws on every snapshot.
    assert 50 <= summary["snapshots"] <= 100
    assert summary["events_traced"] < 1_000_000


def test_page_cache_fills_the_box_and_kswapd_reclaims(vmstat: dict[str, int],
                                                      summary: dict[str, Any]) -> None:
    assert vmstat["pgsteal_kswapd"] > MEMORY_PAGES // 5
    assert vmstat["pgsteal_kswapd"] > vmstat["pgsteal_direct"]
    assert summary["pages_oom_killed"] == 0


def test_kcompactd_and_direct_compaction_migrate_pages(vmstat: dict[str, int]) -> None:
    assert vmstat["compact_daemon_wake"] > 0
    assert vmstat["compact_stall"] > 0
    assert vmstat["pgmigrate_success"] > 1000


def test_mixed_callers_leave_mixed_pageblocks(summary: dict[str, Any]) -> None:
    pollution = summary["pollution"]
    assert pollution["mixed_pageblocks"] > 0
    assert sum(pollution["extfrag_by_caller"].values()) > 0
    assert set(pollution["charged_by_caller"]) & {"rx", "dentry", "pipes"}


def test_thp_heap_fails_first_after_memory_fills(summary: dict[str, Any],
                                                 spans: pd.DataFrame) -> None:
    failures = summary["failures"]
    first = failures["first_ns"]
    assert min(first, key=first.__getitem__) == "heap"
    assert set(failures["by_caller_order"]["heap"]) == {"9"}  # THP faults, not 4 KiB
    kswapd_wakes = spans.loc[spans["name"] == ts.SPAN_KSWAPD_WAKE, "start_ns"]
    late_write_ns = parse_duration_ns(DB["resize"][-1]["at"])
    assert kswapd_wakes.min() < first["heap"] < late_write_ns
    others = set(failures["by_caller"]) - {"heap", "hugetlb"}
    assert not others, f"callers other than heap and the pool failed: {others}"


def test_the_late_pool_gets_fewer_huge_pages_than_the_fresh_box(
        spans: pd.DataFrame, summary: dict[str, Any]) -> None:
    writes = spans[spans["name"] == ts.SPAN_HUGETLB_RESIZE].sort_values("start_ns")
    asked = [r["count"] for r in DB["resize"]]
    assert len(writes) == len(asked) and asked[0] == asked[-1] > 0
    fresh, late = writes["pages"].iloc[0], writes["pages"].iloc[-1]
    assert fresh == asked[0] * HUGE_PAGE_PAGES  # the fresh box has them all
    assert 0 < late < 0.75 * fresh
    requests = summary["hugetlb"]["requests"]
    assert requests[0]["obtained"] == asked[0] > requests[-1]["obtained"] > 0

