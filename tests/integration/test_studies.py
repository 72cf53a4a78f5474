"""Every study in ``configs/`` runs at a small size, with its baseline, into study.md; the
command line prints study.md, resumes both sweeps, and names a bad study: key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from allocsim.cli import main
from allocsim.sweep.runner import plan_sweep, run_sweep
from allocsim.sweep.studyrun import STUDY_FILE, baseline_dir, plan_study, write_study

REPO = Path(__file__).resolve().parents[2]
STUDIES = sorted(p for p in (REPO / "configs").glob("*.yaml")
                 if "study" in (yaml.safe_load(p.read_text(encoding="utf-8")) or {}))
SMALL_STUDY = REPO / "tests" / "data" / "sweep" / "study_small.yaml"


def _two_nodes(*points: tuple[str, dict[str, object]]) -> list[dict[str, object]]:
    """Points setting both nodes' memory, and other values."""
    return [{"machine.nodes[0].memory": m, "machine.nodes[1].memory": m, **rest}
            for m, rest in points]


SHRINK: dict[str, list[tuple[str, object]]] = {
    "capacity_hugepages.yaml": [
        ("duration", "600ms"), ("actions[0].at", "400ms"), ("workloads[1].rate", "500/s"),
        ("workloads[4].max_requests", 10), ("workloads[5].max_requests", 10),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[0].size": "32MiB"}),
                                    ("256MiB", {"workloads[0].size": "32MiB"})))],
    "capacity_vmalloc.yaml": [
        ("duration", "400ms"), ("workloads[0].size", "32MiB"),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[4].rate": "25/s",
                                                "workloads[5].rate": "25/s"}),
                                    ("256MiB", {"workloads[4].rate": "25/s",
                                                "workloads[5].rate": "25/s"})))],
    "capacity_hugetlb_growth.yaml": [
        ("duration", "600ms"), ("workloads[1].rate", "500/s"),
        ("workloads[3].resize", [{"at": "300ms", "count": 32}, {"at": "400ms", "count": 64},
                                 {"at": "500ms", "count": 96},
                                 {"at": "550ms", "count": 128}]),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[0].size": "32MiB"}),
                                    ("256MiB", {"workloads[0].size": "32MiB"})))],
    "capacity_threads.yaml": [
        ("duration", "400ms"), ("workloads[0].size", "32MiB"),
        ("workloads[3].max_requests", 200), ("workloads[4].max_requests", 200),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[3].vmap_stack": True,
                                                "workloads[4].vmap_stack": True}),
                                    ("256MiB", {"workloads[3].vmap_stack": True,
                                                "workloads[4].vmap_stack": True})))],
    "capacity_nofree.yaml": [
        ("duration", "600ms"), ("actions[0].at", "400ms"), ("actions[1].at", "500ms"),
        ("workloads[0].size", "32MiB"), ("workloads[1].rate", "2000/s"),
        ("machine.nodes[0].memory", "128MiB"), ("machine.nodes[1].memory", "128MiB"),
        ("sweep.grid", {"workloads[2].mode": ["nofree", "scattered"]})],
    "capacity_page_cache.yaml": [
        ("duration", "400ms"), ("workloads[0].size", "32MiB"), ("workloads[1].size", "32MiB"),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[0].grow_by": "write",
                                                "workloads[1].grow_by": "write"}),
                                    ("256MiB", {"workloads[0].grow_by": "write",
                                                "workloads[1].grow_by": "write"})))],
    "capacity_thp.yaml": [
        ("duration", "400ms"),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[0].size": "32MiB"}),
                                    ("256MiB", {"workloads[0].size": "32MiB"})))],
    "capacity_slab.yaml": [
        ("duration", "500ms"), ("workloads[1].lifetime", {"fixed": "200ms"}),
        ("workloads[2].start", "300ms"), ("workloads[3].start", "300ms"),
        ("sweep.points", _two_nodes(("128MiB", {"workloads[0].max_requests": 2000,
                                                "workloads[1].max_requests": 2000}),
                                    ("256MiB", {"workloads[0].max_requests": 2000,
                                                "workloads[1].max_requests": 2000})))],
}
"""How each study shrinks for the suite: two points, two replicates, short runs."""


def test_every_study_has_a_small_size() -> None:
    assert sorted(SHRINK) == [p.name for p in STUDIES]
    assert "capacity_hugepages.yaml" in SHRINK


@pytest.mark.parametrize("path", STUDIES, ids=[p.name for p in STUDIES])
def test_a_study_runs_small(tmp_path: Path, path: Path) -> None:
    overrides = [*SHRINK[path.name], ("sweep.replicates", 2)]
    plan = plan_sweep(path, overrides)
    study = plan_study(plan, overrides)
    assert study is not None and len(plan.tasks) == 4
    main_result = run_sweep(plan, tmp_path, jobs=1)
    base = run_sweep(study.baseline.plan, baseline_dir(tmp_path), jobs=1)
    assert main_result.status == "ok" and base.status == "ok"
    text = write_study(study, main_result, base)
    assert (tmp_path / STUDY_FILE).read_text(encoding="utf-8") == text
    for i, question in enumerate(study.spec.questions, 1):
        assert f"\n## {i}. {question.ask}\n" in text
    last = len(study.spec.questions) + 1
    assert f"\n## {last}. When does each caller first fail, against a fresh box?\n" in text
    assert "(4 complete)" in text and "| CI |" in text
    nodes = [q for q in study.spec.questions if q.metric.startswith("hugetlb")
             or any(f".{g}." in f".{q.metric}." for g, _ in study.spec.per_node_callers)]
    if nodes:  # a per-node metric: the answer has a column per node
        assert "| node 0 |" in text or "| node 0 (limit" in text
        assert "node 1" in text


def test_more_memory_gives_more_huge_pages_on_the_fresh_box(tmp_path: Path) -> None:
    path = REPO / "configs" / "capacity_hugepages.yaml"
    overrides = [*SHRINK[path.name], ("sweep.replicates", 2)]
    plan = plan_sweep(path, overrides)
    study = plan_study(plan, overrides)
    assert study is not None
    base = run_sweep(study.baseline.plan, baseline_dir(tmp_path), jobs=1)
    got = base.summary[base.summary.metric == "hugetlb[0].obtained"].set_index("point")
    assert len(got) == 2 and got.loc[0, "n"] == 2
    assert got.loc[1, "mean"] > got.loc[0, "mean"] > 0  # 2 x 256MiB against 2 x 128MiB
    for n in (0, 1):
        per_node = base.summary[base.summary.metric == f"hugetlb[0].obtained.node{n}"]
        assert (per_node["mean"] > 0).all()


def test_cli_prints_study_md_and_resumes_both_sweeps(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sweep", str(SMALL_STUDY), "-o", str(tmp_path), "--jobs", "1", "-q"]
    assert main(args) == 0
    out = capsys.readouterr().out
    text = (tmp_path / STUDY_FILE).read_text(encoding="utf-8")
    assert text in out and text.startswith("# Study: study-small\n")
    assert "baseline: 2 runs complete (0 from an earlier attempt)" in out
    assert "## 1. How many huge pages does the write at 200 ms get?" in text
    assert "## 2. What is the smallest machine on which the churn never fails?" in text
    runs = pd.read_csv(tmp_path / "baseline" / "runs.csv")
    assert len(runs) == 2 and (runs.status == "ok").all()  # 2 points merged into 1, x 2
    assert json.loads((tmp_path / "baseline" / "sweep.json").read_text())["status"] == "ok"
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "4 runs complete (4 from an earlier attempt)" in again
    assert "baseline: 2 runs complete (2 from an earlier attempt)" in again
    assert (tmp_path / STUDY_FILE).read_text(encoding="utf-8") == text


def test_a_bad_study_key_is_one_error_before_anything_runs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL_STUDY.read_text(encoding="utf-8").replace(
        "key: machine.nodes[0].memory", "key: duration"))
    assert main(["sweep", str(bad), "-o", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    line = bad.read_text().splitlines().index("      key: duration") + 1
    assert f"{bad}:{line}: study.questions[1].key: expected a swept key" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert main(["validate", str(bad)]) == 2
    assert "study.questions[1].key" in capsys.readouterr().err
