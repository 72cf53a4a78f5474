"""A sweep's study: the study: section, the answers' logic on hand-made summary tables,
the per-node callers' metrics, the baseline's points, and study.md."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocsim.sweep.answers import (
    estimate,
    first_failures,
    qualifies,
    smallest_from,
    threshold,
)
from allocsim.sweep.baseline import _baseline_points, remap_key
from allocsim.sweep.pernode import group_metrics
from allocsim.sweep.spec import parse_sweep
from allocsim.sweep.study import Question, magnitude, parse_limit, parse_study, value_kind
from allocsim.sweep.studymd import StudyContext, render
from simcore.errors import ConfigError

MEM = "machine.nodes[0].memory"
RATE = "workloads[0].rate"
KEYS = [MEM, RATE]
DOC = {"workloads": [{"name": "cache"}, {"name": "thp0", "nid": 0},
                     {"name": "thp1", "nid": 1}]}
SWEEP = parse_sweep({"grid": {MEM: ["2GiB", "512MiB", "1GiB"], RATE: ["10/s", "40/s"]},
                     "replicates": 3}, "x.yaml")


def row(point: int, mem: str, rate: str, metric: str, mean: float, lo: float, hi: float,
        n: int = 3, missing: int = 0, method: str = "t") -> dict[str, object]:
    return {"point": point, MEM: mem, RATE: rate, "metric": metric, "n": n,
            "missing": missing, "mean": mean, "std": 0.0, "ci_low": lo, "ci_high": hi,
            "method": method}


def summary(rows: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


# --- the study: section ------------------------------------------------------------

def _study(**extra: object) -> dict[str, object]:
    return {"baseline": {"remove": ["cache"]}, **extra}


def test_a_study_section_parses() -> None:
    spec = parse_study(_study(
        per_node_callers={"thp": ["thp0", "thp1"]},
        questions=[{"estimate": "hugetlb[0].obtained", "ask": "How many?"},
                   {"threshold": "failure_rate.thp.order9", "key": MEM, "below": "1%"},
                   {"threshold": "hugetlb[0].obtained", "key": [MEM], "above": 700,
                    "node_limit": 350}]), "x.yaml", DOC, SWEEP)
    assert spec.baseline.remove == ("cache",) and spec.per_node_callers == (
        ("thp", ("thp0", "thp1")),)
    est, below, above = spec.questions
    assert (est.kind, est.metric, est.ask) == ("estimate", "hugetlb[0].obtained", "How many?")
    assert below.keys == (MEM,) and below.limit == 0.01 and below.below
    assert below.node_limit == 0.01  # a rate's limit holds for each node too
    assert not above.below and above.limit == 700 and above.node_limit == 350


@pytest.mark.parametrize(("section", "key", "expected"), [
    ({}, "study.baseline", "this key is required"),
    ({"baseline": {}}, "study.baseline", "remove (workloads to leave out) or set"),
    ({"baseline": {"remove": ["nope"]}}, "study.baseline.remove[0]", "a workload of"),
    ({"baseline": {"remove": ["cache"], "bogus": 1}}, "study.baseline.bogus", "one of"),
    (_study(per_node_callers={"thp": ["thp1", "thp0"]}), "study.per_node_callers.thp[0]",
     "a workload pinned to node 0"),
    (_study(per_node_callers={"cache": ["thp0"]}), "study.per_node_callers.cache",
     "a name no workload has"),
    (_study(questions=[{"estimate": "x", "threshold": "y"}]), "study.questions[0]",
     "exactly one of estimate"),
    (_study(questions=[{"estimate": "bogus"}]), "study.questions[0].estimate",
     "a sweep metric"),
    (_study(questions=[{"estimate": "oom_kill", "key": MEM}]), "study.questions[0].key",
     "one of the keys"),
    (_study(questions=[{"threshold": "oom_kill", "key": "seed", "below": 1}]),
     "study.questions[0].key", "a swept key"),
    (_study(questions=[{"threshold": "oom_kill", "key": MEM}]), "study.questions[0]",
     "exactly one of below"),
    (_study(questions=[{"threshold": "oom_kill", "key": MEM, "below": "lots"}]),
     "study.questions[0].below", "a number or a percentage"),
])
def test_bad_study_sections(section: dict[str, object], key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_study(section, "x.yaml", DOC, SWEEP)
    assert info.value.source == "x.yaml" and info.value.key == key
    assert expected in info.value.expected


def test_a_threshold_key_must_have_ordered_values() -> None:
    sweep = parse_sweep({"grid": {"workloads[0].mode": ["nofree", "scattered"]}}, "x.yaml")
    with pytest.raises(ConfigError) as info:
        parse_study(_study(questions=[{"threshold": "oom_kill", "key": "workloads[0].mode",
                                       "below": 1}]), "x.yaml", DOC, sweep)
    assert "all sizes, all durations, all rates or all numbers" in info.value.expected


def test_limits_and_magnitudes() -> None:
    assert parse_limit("1%") == 0.01 and parse_limit(5) == 5.0 and parse_limit("2.5 %") == 0.025
    assert parse_limit(True) is None and parse_limit("x%") is None and parse_limit("1") is None
    assert parse_limit(math.inf) is None
    assert magnitude("512MiB") < magnitude("1GiB") < magnitude("2GiB")
    assert magnitude("10ms") < magnitude("1s") and magnitude("10/s") < magnitude("2/ms")
    assert value_kind(["1GiB", "512MiB"]) == "size" and value_kind(["1", "2.5"]) == "number"
    assert value_kind(["1GiB", "10ms"]) is None and value_kind(["true", "false"]) is None


# --- the answers -------------------------------------------------------------------

THP = "failure_rate.thp.order9"


def _threshold_table() -> pd.DataFrame:
    """Points listed out of order of size; at 10/s 1GiB has a mean below 1 % but an upper
    bound above it; node 1 never qualifies at 40/s; 40/s qualifies nowhere as a whole."""
    rows = []
    plan = {  # (mem, rate): (point, whole (mean, hi), node0 hi, node1 hi)
        ("2GiB", "10/s"): (0, (0.001, 0.004), 0.004, 0.004),
        ("2GiB", "40/s"): (1, (0.02, 0.03), 0.005, 0.05),
        ("512MiB", "10/s"): (2, (0.05, 0.08), 0.09, 0.07),
        ("512MiB", "40/s"): (3, (0.2, 0.3), 0.3, 0.3),
        ("1GiB", "10/s"): (4, (0.008, 0.02), 0.009, 0.02),
        ("1GiB", "40/s"): (5, (0.1, 0.2), 0.005, 0.2),
    }
    for (mem, rate), (p, (mean, hi), hi0, hi1) in plan.items():
        rows.append(row(p, mem, rate, THP, mean, 0.0, hi))
        rows.append(row(p, mem, rate, f"{THP}.node0", mean, 0.0, hi0))
        rows.append(row(p, mem, rate, f"{THP}.node1", mean, 0.0, hi1))
    return summary(rows)


def test_threshold_uses_the_upper_bound_in_order_of_size_per_node() -> None:
    q = Question("threshold", THP, keys=(MEM,), limit=0.01, below=True, node_limit=0.01)
    ans = threshold(q, _threshold_table(), KEYS)
    assert ans.other_keys == (RATE,) and ans.nodes == (0, 1)
    by_rate = {g.others: g for g in ans.groups}
    slow, fast = by_rate[("10/s",)], by_rate[("40/s",)]
    assert [ans.value_text(p) for p in slow.points] == ["512MiB", "1GiB", "2GiB"]
    # 1GiB's mean (0.8 %) is below 1 %, its upper bound (2 %) is not: 2GiB
    assert ans.value_text(slow.points[slow.whole]) == "2GiB"  # type: ignore[index]
    assert slow.nodes == (1, 2)  # node 0: 1GiB (0.9 %) qualifies; node 1 (2 %) does not
    assert fast.whole is None  # none qualifies: 3 % at the largest
    assert fast.nodes == (1, None)  # node 0 from 1GiB on; node 1 never


def test_threshold_needs_every_larger_value_to_qualify_and_an_interval() -> None:
    assert smallest_from([True, False, True, True]) == 2
    assert smallest_from([True, True]) == 0 and smallest_from([True, False]) is None
    assert smallest_from([]) is None
    from allocsim.sweep.answers import Cell

    good = Cell(3, 0, 0.001, 0.0, 0.002, "t")
    assert qualifies(good, 0.01, below=True) and not qualifies(good, 0.002, below=True)
    assert not qualifies(Cell(1, 2, 0.0, math.nan, math.nan, "none"), 0.01, below=True)
    assert not qualifies(None, 0.01, below=True)
    assert qualifies(Cell(3, 0, 800, 768, 820, "t"), 767, below=False)
    assert not qualifies(Cell(3, 0, 800, 760, 840, "t"), 767, below=False)


@given(st.lists(st.booleans(), max_size=12))
def test_smallest_from_is_the_start_of_the_last_run_of_trues(flags: list[bool]) -> None:
    i = smallest_from(flags)
    if not flags or not flags[-1]:
        assert i is None
    else:
        assert i is not None and all(flags[i:]) and (i == 0 or not flags[i - 1])


def test_threshold_above_with_a_node_limit() -> None:
    rows = []
    for p, mem, whole, node in ((0, "512MiB", 400, 200), (1, "1GiB", 768, 384)):
        rows.append(row(p, mem, "10/s", "hugetlb[3].obtained", whole, whole, whole))
        for n in (0, 1):
            rows.append(row(p, mem, "10/s", f"hugetlb[3].obtained.node{n}", node, node,
                            node))
    q = Question("threshold", "hugetlb[3].obtained", keys=(MEM,), limit=767, below=False,
                 node_limit=383)
    (group,) = threshold(q, summary(rows), KEYS).groups
    assert group.whole == 1 and group.nodes == (1, 1)
    q = Question("threshold", "hugetlb[3].obtained", keys=(MEM,), limit=767, below=False,
                 node_limit=767)  # the machine's limit on each node: none qualifies
    assert threshold(q, summary(rows), KEYS).groups[0].nodes == (None, None)


def test_estimate_per_node_with_its_baseline() -> None:
    metric = "hugetlb[0].obtained"
    rows = [row(0, "1GiB", "10/s", metric, 300, 290, 310),
            row(0, "1GiB", "10/s", f"{metric}.node0", 140, 130, 150),
            row(0, "1GiB", "10/s", f"{metric}.node1", 160, 150, 170),
            row(1, "2GiB", "10/s", metric, 800, 780, 820)]
    base = summary([row(0, "1GiB", "", metric, 450, 440, 460),
                    row(1, "2GiB", "", metric, 950, 940, 960)])
    ans = estimate(Question("estimate", metric), summary(rows), KEYS, base, {0: 0, 1: 1})
    assert ans.nodes == (0, 1)
    first, second = ans.rows
    assert first.values == ("1GiB", "10/s") and first.whole.mean == 300  # type: ignore[union-attr]
    assert [c.mean for c in first.nodes] == [140, 160]  # type: ignore[union-attr]
    assert first.baseline.mean == 450 and second.baseline.mean == 950  # type: ignore[union-attr]
    assert second.nodes == (None, None)


def test_first_failures_against_the_baseline() -> None:
    f = "first_failure_s."
    rows = [row(0, "1GiB", "10/s", f + "thp", 1.5, 1.0, 2.0, n=3),
            row(0, "1GiB", "10/s", f + "cache", math.nan, math.nan, math.nan, n=0,
                missing=3, method="none"),
            row(1, "2GiB", "10/s", f + "thp", math.nan, math.nan, math.nan, n=0, missing=3,
                method="none"),
            row(1, "2GiB", "10/s", f + "cache", math.nan, math.nan, math.nan, n=0,
                missing=3, method="none"),
            row(1, "2GiB", "10/s", f + "thp.node0", 2.0, 2.0, 2.0)]  # not a caller
    base = summary([row(0, "", "", f + "thp", 3.0, 2.5, 3.5)])
    ans = first_failures(summary(rows), KEYS, base, {0: 0, 1: 0})
    assert ans.never == ("cache",) and ans.callers == ("cache", "thp")
    assert ans.baseline_callers == ("thp",)
    assert [(r.point, r.caller) for r in ans.rows] == [(0, "thp"), (1, "thp")]
    assert ans.rows[0].study.mean == 1.5 and ans.rows[0].baseline.mean == 3.0  # type: ignore[union-attr]
    assert ans.rows[1].study.n == 0 and ans.rows[1].baseline.n == 3  # type: ignore[union-attr]


# --- per-node callers and the baseline's points ------------------------------------

def test_a_per_node_caller_pools_its_members() -> None:
    metrics = {
        "requests.thp0": 100.0, "failures.thp0": 10.0, "requests.thp0.order9": 50.0,
        "failures.thp0.order9": 10.0, "failure_rate.thp0.order9": 0.2,
        "first_failure_s.thp0": 2.0, "stall_s.thp0": 0.5,
        "requests.thp1": 300.0, "failures.thp1": 0.0, "requests.thp1.order9": 150.0,
        "failures.thp1.order9": 0.0, "failure_rate.thp1.order9": 0.0,
        "first_failure_s.thp1": math.nan, "stall_s.thp1": 0.25,
    }
    out = group_metrics(metrics, ["thp0", "thp1"], "thp")
    assert out["requests.thp.order9"] == 200 and out["failures.thp.order9"] == 10
    assert out["failure_rate.thp.order9"] == 0.05  # pooled, not the mean rate 0.1
    assert out["failure_rate.thp.order9.node0"] == 0.2
    assert out["failure_rate.thp.order9.node1"] == 0.0
    assert out["failure_rate.thp"] == 10 / 400
    assert out["first_failure_s.thp"] == 2.0 and out["first_failure_s.thp.node0"] == 2.0
    assert math.isnan(out["first_failure_s.thp.node1"])
    assert out["stall_s.thp"] == 0.75 and out["stall_s.thp.node1"] == 0.25
    none = group_metrics({"requests.thp0": 5.0, "failures.thp0": 0.0,
                          "first_failure_s.thp0": math.nan}, ["thp0", "thp1"], "thp")
    assert math.isnan(none["first_failure_s.thp"])


def test_the_baseline_drops_removed_workloads_keys_and_merges_points() -> None:
    assert remap_key("workloads[3].rate", [1], "x") == "workloads[2].rate"
    assert remap_key("workloads[1].rate", [1], "x") is None
    assert remap_key("workloads[0].rate", [1], "x") == "workloads[0].rate"
    assert remap_key("machine.nodes[0].memory", [0], "x") == "machine.nodes[0].memory"
    with pytest.raises(ConfigError):
        remap_key("workloads", [0], "x")
    sweep = parse_sweep({"grid": {MEM: ["1GiB", "2GiB"], RATE: ["10/s", "40/s"],
                                  "workloads[2].size": ["2MiB"]}}, "x.yaml")
    spec, point_of = _baseline_points(sweep, [0], set(), "x.yaml")
    assert spec.keys == (MEM, "workloads[1].size")  # workloads[0] is removed
    assert [dict(p.params) for p in spec.points] == [
        {MEM: "1GiB", "workloads[1].size": "2MiB"}, {MEM: "2GiB", "workloads[1].size": "2MiB"}]
    assert point_of == {0: 0, 1: 0, 2: 1, 3: 1}  # both rates of a memory: one point
    spec, point_of = _baseline_points(sweep, [], {MEM}, "x.yaml")  # a key set by set:
    assert spec.keys == (RATE, "workloads[2].size") and point_of == {0: 0, 1: 1, 2: 0, 3: 1}


# --- study.md ------------------------------------------------------------------------

def test_study_md_states_each_answer_with_its_method() -> None:
    q = Question("threshold", THP, "What is the smallest machine?", (MEM,), 0.01, True, 0.01)
    table = _threshold_table()
    failures = first_failures(table, KEYS, table.iloc[0:0], {})
    ctx = StudyContext("demo", "x.yaml", 6, 3, 18, 0, "the same points without `cache`", 2,
                       6, 0)
    text = render(ctx, [threshold(q, table, KEYS)], failures)
    assert text.startswith("# Study: demo\n")
    assert "6 points × 3 replicates = 18 runs (18 complete)" in text
    assert "**t**: Student's t over the replicates" in text and "**bootstrap**" in text
    assert "## 1. What is the smallest machine?" in text
    assert ("stays below 1 % is for workloads[0].rate=10/s: 2GiB; for workloads[0].rate="
            "40/s: none of the swept values (512MiB to 2GiB) qualifies.") in text
    assert "| 10/s | 2GiB | 1GiB | 2GiB |" in text  # whole machine, node 0, node 1
    assert "| 40/s | none qualifies | 1GiB | none qualifies |" in text
    assert "| 10/s | 1GiB | 0.8 % (0 %–2 %) ✗ | 0.8 % (0 %–0.9 %) ✓ |" in text
    assert "## 2. When does each caller first fail, against a fresh box?" in text
    assert "No caller fails in any run of the study or of its fresh-box baseline" in text


def test_study_md_estimates_and_first_failures() -> None:
    metric = "hugetlb[0].obtained"
    f = "first_failure_s."
    rows = summary([row(0, "1GiB", "10/s", metric, 300, 290, 310),
                    row(0, "1GiB", "10/s", f"{metric}.node0", 140, 130, 150),
                    row(1, "1GiB", "40/s", metric, 300, 280, 320),
                    row(2, "2GiB", "10/s", metric, 800, 780, 820),
                    row(0, "1GiB", "10/s", f + "thp", 1.5, 1.0, 2.0, n=2, missing=1),
                    row(1, "1GiB", "40/s", f + "thp", 0.5, 0.5, 0.5, n=1, missing=2,
                        method="none"),
                    row(2, "2GiB", "10/s", f + "thp", math.nan, math.nan, math.nan, n=0,
                        missing=3, method="none")])
    base = summary([row(0, "", "", metric, 450, 440, 460),
                    row(0, "", "", f + "thp", math.nan, math.nan, math.nan, n=0, missing=3,
                        method="none")])
    point_of = {0: 0, 1: 0, 2: 0}
    ans = estimate(Question("estimate", metric, "How many?"), rows, KEYS, base, point_of)
    ctx = StudyContext("demo", "x.yaml", 3, 3, 9, 0, "the same points without `cache`", 1,
                       3, 0)
    text = render(ctx, [ans], first_failures(rows, KEYS, base, point_of))
    assert ("lowest at machine.nodes[0].memory=1GiB, workloads[0].rate=10/s (and 1 other "
            "point), 300 (95 % CI 290 to 310, t), and highest at machine.nodes[0].memory="
            "2GiB, workloads[0].rate=10/s, 800 (95 % CI 780 to 820, t) (the fresh-box "
            "baseline: 450).") in text
    assert "| 1GiB | 10/s | 300 (290–310) | 140 (130–150) | 450 (440–460) | t |" in text
    assert "| 2GiB | 10/s | 800 (780–820) | – | 450 (440–460) | t |" in text
    assert ("In the study 1 of 1 callers fail in some run, the first `thp` after a mean of "
            "0.5 s (one value, no interval) at machine.nodes[0].memory=1GiB, "
            "workloads[0].rate=40/s; on the fresh-box baseline (the same points without "
            "`cache`) 0 of 1 do.") in text
    assert "| 1GiB | 10/s | `thp` | 2/3 | 1.5 (1–2) | 0/3 | – | – | t |" in text
