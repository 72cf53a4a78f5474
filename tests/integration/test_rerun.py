"""``allocsim run --from RUN_DIR/manifest.json``: the same trace, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocsim.cli import main

SMALL = Path(__file__).resolve().parents[1] / "data" / "sweep" / "small.yaml"


def _config(tmp_path: Path) -> Path:
    text = SMALL.read_text().split("sweep:")[0].replace("events: false", "events: true")
    path = tmp_path / "one.yaml"
    path.write_text(text)
    return path


def test_a_rerun_from_the_manifest_writes_the_same_trace(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(_config(tmp_path)), "-o", str(tmp_path / "a"), "--no-report",
                 "-q", "--set", "seed=9"]) == 0
    first = tmp_path / "a" / "small-sweep-seed9"
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["compiled"] in (True, False) and manifest["wall_seconds"] > 0
    assert manifest["status"] == "ok" and manifest["seed"] == 9
    assert {"pandas", "matplotlib", "PyYAML", "numpy", "simpy"} <= manifest["versions"].keys()
    assert main(["run", "--from", str(first / "manifest.json"), "-o", str(tmp_path / "b"),
                 "--no-report", "-q"]) == 0
    second = tmp_path / "b" / "small-sweep-seed9"
    traces = sorted(p.name for p in (first / "trace").iterdir())
    assert "events.parquet" in traces
    for name in traces:
        assert (first / "trace" / name).read_bytes() == (second / "trace" / name).read_bytes()
    rerun = json.loads((second / "manifest.json").read_text())
    assert rerun["config"] == manifest["config"]
    # the question is the file's opening comment, and a rerun keeps it
    assert manifest["question"] == ("A small sweep for the tests: does a busier caller leave "
                                    "fewer free pageblocks?")
    assert rerun["question"] == manifest["question"]
    # a run directory works too, and --set still applies
    assert main(["run", "--from", str(first), "-o", str(tmp_path / "c"), "--no-report", "-q",
                 "--set", "duration=100ms"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "expected a run directory's manifest.json (JSON)"),
    ('{"config": 3}', "config: expected the effective config a run recorded"),
])
def test_a_bad_manifest_is_one_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     content: str, expected: str) -> None:
    bad = tmp_path / "manifest.json"
    bad.write_text(content)
    assert main(["run", "--from", str(bad), "-o", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_file_or_from_but_not_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "-o", str(tmp_path)]) == 2
    assert "expected an experiment file or --from" in capsys.readouterr().err
