"""The sweep's per-point statistics: Student's t, the bootstrap near 0 and 1, and none."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocsim.sweep.metrics import run_metrics
from allocsim.sweep.stats import interval


def test_t_interval_matches_the_textbook() -> None:
    iv = interval(np.array([10.0, 12.0, 14.0]), "free_pages", 0)
    # mean 12, s = 2, t(0.975, 2) = 4.302652729911275
    assert iv.method == "t" and iv.mean == 12 and iv.std == 2
    assert iv.ci_high - 12 == pytest.approx(4.302652729911275 * 2 / math.sqrt(3))


def test_rates_near_a_bound_use_a_seeded_bootstrap_inside_the_bound() -> None:
    values = np.array([0.0, 0.0, 0.0, 0.02, 0.0])
    a = interval(values, "failure_rate.thp.order9", 3)
    b = interval(values, "failure_rate.thp.order9", 3)
    assert a.method == "bootstrap" and a == b
    assert 0.0 <= a.ci_low <= a.mean <= a.ci_high <= 0.02
    t = interval(values, "free_pages", 3)  # not a rate: t, which crosses 0
    assert t.method == "t" and t.ci_low < 0


def test_one_value_or_none_has_no_interval() -> None:
    assert interval(np.array([5.0]), "x", 0).method == "none"
    nan = interval(np.array([math.nan, math.nan]), "first_failure_s.a", 0)
    assert nan.n == 0 and nan.missing == 2 and math.isnan(nan.mean)


@settings(max_examples=50)
@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=2, max_size=30))
def test_the_interval_holds_the_mean(values: list[float]) -> None:
    iv = interval(np.array(values), "pages", 0)
    assert iv.ci_low <= iv.mean + 1e-6 and iv.mean - 1e-6 <= iv.ci_high
    assert iv.n == len(values)


def test_metrics_of_a_summary() -> None:
    summary = {
        "alloc_requests": 30, "wall_seconds": 1.5,
        "requests": {"by_caller": {"thp": 20, "slab": 10},
                     "by_caller_order": {"thp": {"0": 15, "9": 5}, "slab": {"0": 10}}},
        "failures": {"by_order": {"9": 4}, "by_caller": {"thp": 4},
                     "by_caller_order": {"thp": {"9": 4}}, "first_ns": {"thp": 2_500_000_000}},
        "hugetlb": {"requests": [{"obtained": 7, "obtained_by_node": [3, 4]}]},
        "pollution": {"by_node": {"0": {"free": 9}, "1": {"free": 4}}, "mixed_pageblocks": 2},
        "vmstat": {"nr_free_pages": 100, "allocstall_normal": 2, "allocstall_dma32": 1,
                   "compact_stall": 5},
        "stall_ns": {"some_percent": 1.25, "by_caller": {"thp": 2_000_000, "idle": 5}},
        "latency_ns": {"fast": {"p99": 100}},
    }
    m = run_metrics(summary)
    assert m["failure_rate.thp"] == 0.2 and m["failure_rate.thp.order9"] == 0.8
    assert m["failure_rate.thp.order0"] == 0 and m["failure_rate.slab"] == 0
    assert m["requests.thp.order9"] == 5 and m["failures.thp.order9"] == 4
    assert m["requests.thp.order0"] == 15 and m["failures.thp.order0"] == 0
    assert m["first_failure_s.thp"] == 2.5 and math.isnan(m["first_failure_s.slab"])
    assert m["hugetlb[0].obtained"] == 7 and m["hugetlb[0].obtained.node1"] == 4
    assert m["free_pageblocks.node0"] == 9 and m["allocstall"] == 3
    assert m["free_pageblocks.node1"] == 4 and m["free_pageblocks"] == 13
    assert m["stall_s.thp"] == 0.002
    assert "stall_s.idle" not in m and "stall_s.slab" not in m  # no request / no entry
    assert m["latency_p99_ns.fast"] == 100 and m["wall_seconds"] == 1.5


def test_a_rate_whose_t_interval_crosses_zero_gets_the_bootstrap() -> None:
    values = np.array([0.0138, 0.196, 0.0109])  # mean 0.07: the t interval goes below 0
    iv = interval(values, "failure_rate.thp.order9", 3)
    assert iv.method == "bootstrap" and 0.0 <= iv.ci_low <= iv.ci_high <= 1.0
    assert interval(values, "stall_s", 3).ci_low < 0  # not a rate: t as it is
