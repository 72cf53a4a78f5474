"""tests/rundiff.py: what "the same run" leaves out, and everything it does not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.rundiff import run_differences

MANIFEST = {"compiled": True, "config_source": "a.yaml", "finished": "2026-01-01T00:00:01",
            "seed": 3, "started": "2026-01-01T00:00:00", "timings": {"build_seconds": 0.1},
            "versions": {"engine_build": "compiled engine (Cython)", "numpy": "2.0"},
            "wall_seconds": 1.5}
SUMMARY = {"alloc_requests": 10, "simulated_seconds": 0.3, "vmstat": {"pgscan_direct": 4},
           "wall_seconds": 0.9}


def _write_json(path: Path, doc: dict[str, object]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


@pytest.fixture
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a"
    (a / "trace").mkdir(parents=True)
    (a / "report").mkdir()
    _write_json(a / "manifest.json", MANIFEST)
    _write_json(a / "summary.json", SUMMARY)
    (a / "config.yaml").write_text("name: x\nseed: 3\n")
    pq.write_table(pa.table({"time_ns": [1, 2, 3], "pfn": [10, 11, 12]}),
                   a / "trace" / "events.parquet")
    (a / "report" / "report.pdf").write_bytes(b"%PDF created now")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    return a, b


def _edit_json(path: Path, *keys: str, value: object) -> None:
    doc = json.loads(path.read_text())
    node = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    _write_json(path, doc)


def test_wall_clock_fields_and_the_report_are_left_out(runs: tuple[Path, Path]) -> None:
    a, b = runs
    for keys, value in ((("started",), "x"), (("finished",), "y"),
                        (("timings", "build_seconds"), 9.0), (("wall_seconds",), 7.0)):
        _edit_json(b / "manifest.json", *keys, value=value)
    _edit_json(b / "summary.json", "wall_seconds", value=3.0)
    (b / "report" / "report.pdf").write_bytes(b"%PDF created later")
    (b / "report" / "01_free_blocks.png").write_bytes(b"png")
    assert run_differences(a, b) == []


@pytest.mark.parametrize(("rel", "keys", "value"), [
    ("manifest.json", ("seed",), 4),
    ("manifest.json", ("config_source",), "b.yaml"),
    ("manifest.json", ("versions", "numpy"), "2.1"),
    ("summary.json", ("simulated_seconds",), 0.4),
    ("summary.json", ("vmstat", "pgscan_direct"), 5),
    ("summary.json", ("alloc_requests",), 10.0),  # same number, other spelling
])
def test_every_other_json_field_counts(runs: tuple[Path, Path], rel: str,
                                       keys: tuple[str, ...], value: object) -> None:
    a, b = runs
    _edit_json(b / rel, *keys, value=value)
    (difference,) = run_differences(a, b)
    assert difference.startswith(f"{rel}: line ")


def test_key_order_counts(runs: tuple[Path, Path]) -> None:
    a, b = runs
    (b / "summary.json").write_text(json.dumps(dict(reversed(SUMMARY.items()))))
    assert [d.split(":")[0] for d in run_differences(a, b)] == ["summary.json"]


def test_the_build_fields_count_except_across_builds(runs: tuple[Path, Path]) -> None:
    a, b = runs
    _edit_json(b / "manifest.json", "compiled", value=False)
    _edit_json(b / "manifest.json", "versions", "engine_build", value="pure Python")
    assert len(run_differences(a, b)) == 1
    assert run_differences(a, b, across_builds=True) == []


def test_a_trace_value_a_file_and_a_byte_count(runs: tuple[Path, Path]) -> None:
    a, b = runs
    pq.write_table(pa.table({"time_ns": [1, 2, 3], "pfn": [10, 13, 12]}),
                   b / "trace" / "events.parquet")
    assert run_differences(a, b) == [
        "trace/events.parquet: column 'pfn', first at row 1: 11 != 13"]
    shutil.copy(a / "trace" / "events.parquet", b / "trace" / "events.parquet")
    (b / "config.yaml").write_text("name: x\nseed: 3\n\n")
    assert run_differences(a, b) == ["config.yaml: 2 lines != 3 lines"]
    (b / "config.yaml").write_text("name: x\nseed: 3\n")
    (b / "trace" / "spans.parquet").write_bytes(b"")
    (difference,) = run_differences(a, b)
    assert "trace/spans.parquet" in difference
