"""Every shipped ``configs/*.yaml`` validates and explains itself; the small ones run.

Parametrized over the files found, so a new config is covered without touching this file.
A file with a ``sweep:`` section (a study) is validated here run by run, and smoke-run at
a small size in ``test_studies.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from allocsim.run import simulate
from allocsim.sweep.plan import task_config
from allocsim.sweep.runner import plan_sweep
from allocsim.sweep.studyrun import plan_study
from simcore.config.types import ExperimentConfig, TraceConfig
from simcore.errors import ConfigError
from simcore.formats import trace_schema as ts
from workloads.hugetlb import HugetlbParams
from workloads.registry import load_experiment
from workloads.speculative_refs import SpeculativeRefsParams

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SWEEPS = [p for p in CONFIGS if "sweep" in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})]
RUNS = [p for p in CONFIGS if p not in SWEEPS]
MAX_REQUESTS_IN_SUITE = 150_000
"""Configs expected to issue more allocation requests (or caller calls) than this are only
validated."""


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def expected_requests(cfg: ExperimentConfig) -> float:
    """Mean number of allocation requests (for the named callers: of calls, forks, ...)
    a run of ``cfg`` issues; inf if unknown."""
    total = 0.0
    memory = sum(node.memory_pages for node in cfg.machine.nodes)
    for spec in cfg.workloads:
        params = spec.params.get("params")
        if isinstance(params, SpeculativeRefsParams):
            continue  # takes references, allocates nothing
        if isinstance(params, HugetlbParams):  # one allocation per huge page, at most
            total += sum(min(r.count, memory // params.size_pages) for r in params.resizes)
            continue
        estimate = getattr(params, "expected_requests", None)
        if estimate is not None:  # a kind that estimates its own requests
            total += estimate(cfg.duration_ns)
            continue
        if not hasattr(params, "rate_per_s"):
            return float("inf")  # a workload kind this estimate does not know
        active_s = max(0, cfg.duration_ns - getattr(params, "start_ns", 0)) / 1e9
        n = params.rate_per_s * active_s
        if getattr(params, "max_requests", None) is not None:
            n = min(n, params.max_requests)
        total += n
    return total


def test_there_are_configs() -> None:
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=_ids(CONFIGS))
def test_config_validates_and_opens_with_a_comment(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 3, f"{path.name} must open with a comment"
    if path in SWEEPS:
        plan = plan_sweep(path)
        study = plan_study(plan)
        assert study is not None and study.spec.questions, f"{path.name}: no questions"
        assert "Expect" in path.read_text(encoding="utf-8"), f"{path.name}: no answer"
        tasks = [*plan.tasks, *study.baseline.plan.tasks]
        assert all(task_config(t).workloads for t in tasks if t.replicate == 0)
        return
    cfg = load_experiment(path)
    assert cfg.workloads, f"{path.name} has no workloads"
    assert cfg.source == str(path)


def _is_small(path: Path) -> bool:
    try:
        return expected_requests(load_experiment(path)) < MAX_REQUESTS_IN_SUITE
    except ConfigError:
        return True  # run it anyway, so the error shows up as a failing test, not at import


SMALL = [p for p in RUNS if _is_small(p)]


@pytest.mark.parametrize("path", SMALL, ids=_ids(SMALL))
def test_small_config_runs_end_to_end(tmp_path: Path, path: Path) -> None:
    cfg = load_experiment(path)
    cfg = dataclasses.replace(cfg, trace=TraceConfig(
        events=True, snapshot_interval_ns=cfg.trace.snapshot_interval_ns))
    result = simulate(cfg, tmp_path)
    assert result.status == "ok"
    run_dir = result.run_dir
    manifest = json.loads((run_dir / ts.MANIFEST_FILE).read_text())
    assert manifest["status"] == "ok"
    summary = json.loads((run_dir / ts.SUMMARY_FILE).read_text())
    assert summary == result.summary
    assert summary["alloc_requests"] > 0
    assert summary["bad_page"] == 0
    assert summary["simulated_seconds"] == pytest.approx(cfg.duration_ns / 1e9)
    events = pq.read_metadata(run_dir / ts.EVENTS_FILE)
    assert events.num_rows == summary["events_traced"] >= summary["alloc_requests"]
    for name in (ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE):
        assert pq.read_metadata(run_dir / name).num_rows > 0
