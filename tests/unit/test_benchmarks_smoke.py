"""Smoke test of ``python -m benchmarks`` at tiny sizes: the JSON it prints, and that each
ratio is its figure over its R. No timing is asserted (the machine is noisy)."""

import contextlib
import io
import json
import statistics

import pytest

from benchmarks import run
from benchmarks.table import format_table

TINY = run.Plan(r_steps=200, core_steps=300, core_rounds=1, e2e_duration_ms=50,
                e2e_rounds=1, sizes_gib=(4, 16), child_steps=200, child_rounds=1,
                child_passes=2, sweep_run_seconds=0.05, sweep_runs=2,
                report_sizes=(2_000,), report_rounds=1)
REQUIRED = {"R_events_per_s", "bare_core_ops_per_s", "bare_core_ratio", "e2e_requests_per_s",
            "e2e_ratio", "bytes_per_page_1tib", "growth_16g_to_1t", "compiled"}


@pytest.fixture(scope="module")
def printed() -> str:
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(run, "QUICK", TINY)
        assert run.main(["--quick", "--json"]) == 0
    return out.getvalue()


@pytest.fixture(scope="module")
def results(printed: str) -> dict:
    return json.loads(printed)


def test_json_is_one_object_with_the_required_keys(printed: str, results: dict) -> None:
    assert printed.lstrip().startswith("{") and printed.rstrip().endswith("}")
    assert REQUIRED <= results.keys()
    assert isinstance(results["compiled"], bool)
    assert results["quick"] is True


def test_ratios_are_figure_over_r(results: dict) -> None:
    for name, unit in (("bare_core", "ops_per_s"), ("e2e", "requests_per_s")):
        figure, r = results[f"{name}_{unit}"], results[f"{name}_R_events_per_s"]
        assert results[f"{name}_ratio"] == pytest.approx(figure / r)
        assert r == pytest.approx(statistics.median(results[f"{name}_R_samples"]))


def test_sweep_speedup_is_jobs1_over_jobs2(results: dict) -> None:
    assert results["sweep_runs"] == 2
    assert results["sweep_speedup"] == pytest.approx(
        results["sweep_jobs1_seconds"] / results["sweep_jobs2_seconds"])
    assert results["sweep_pass"] is None  # --quick: too short to judge


def test_memory_and_growth_follow_their_definitions(results: dict) -> None:
    peak, base = results["memory_peak_rss_kib"], results["memory_import_rss_kib"]
    pages = results["memory_pages"]
    assert results["memory_gib"] == 16 and pages == 16 << 18
    assert results["bytes_per_page_1tib"] == pytest.approx((peak - base) * 1024 / pages)
    assert results["bytes_per_page_1tib_absolute"] == pytest.approx(peak * 1024 / pages)
    ns = results["ns_per_op_by_gib"]
    assert (results["growth_from_gib"], results["growth_to_gib"]) == (4, 16)
    assert results["growth_16g_to_1t"] == pytest.approx(ns["16"] / ns["4"])


def test_the_runs_did_real_work(results: dict) -> None:
    assert results["e2e_failures"] == 0 and results["e2e_alloc_requests"] > 0
    assert results["e2e_events_traced"] > 0 and results["e2e_snapshots"] > 0
    assert results["bare_core_failed_slots"] == 0
    assert all(s["failed_slots"] == 0 and s["children"] == 2 for s in results["scaling"])


def test_report_time_is_held_to_its_budget(results: dict) -> None:
    (size,) = results["report_sizes"]
    assert size["requests"] > 0 and size["report_seconds"] > 0
    assert size["budget_seconds"] == max(0.25 * size["run_wall_seconds"], 3.0)
    assert results["report_over_budget"] == pytest.approx(
        size["report_seconds"] / size["budget_seconds"])
    assert results["report_pass"] == (results["report_over_budget"] <= 1.0)


def test_table_names_every_figure_with_a_verdict(results: dict) -> None:
    rows = format_table(results).splitlines()
    for prefix in ("1. bare core", "2. end to end", "3. memory", "4. ns/op growth",
                   "6. report time"):
        (row,) = [r for r in rows if r.startswith(prefix)]
        assert row.endswith(("pass", "short"))
