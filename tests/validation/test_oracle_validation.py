"""validate-oracle on the real data in tests/data/oracle, against the recorded baseline.

Fails if the watermark match breaks, or if any replay fidelity number (buddyinfo L1,
pcp share, huge pages per request) is further from the host than in
tests/data/validation-baseline.json; and if the README's table is not that baseline's.
"""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from allocsim.cli import main
from allocsim.oracle.baseline import (
    BASELINE,
    DATA,
    END,
    README,
    START,
    load_baseline,
    readme_with_table,
    regressions,
    results_from_json,
)
from allocsim.oracle.validate import JSON_KEYS, format_table


@pytest.fixture(scope="module")
def validation() -> list[dict]:
    """``allocsim validate-oracle tests/data/oracle --json``, parsed."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
        assert main(["validate-oracle", str(DATA), "--json"]) == 0
    return json.loads(buf.getvalue())


def test_json_schema(validation: list[dict]) -> None:
    assert [o["run"] for o in validation] == sorted(o["run"] for o in validation)
    for obj in validation:
        assert list(obj)[: len(JSON_KEYS)] == list(JSON_KEYS)
    by_run = {o["run"]: o for o in validation}
    assert by_run["wmark-recompute"]["watermarks_exact"] is True
    assert by_run["boot-idle-numa2"]["buddyinfo_l1_pct"] is None  # no trace: null


def test_no_regression_against_the_baseline(validation: list[dict]) -> None:
    assert regressions(validation, load_baseline()) == []


def test_regressions_are_caught() -> None:
    """The comparison itself: a worse L1 and a lost watermark match are reported."""
    base = load_baseline()
    worse = json.loads(json.dumps(base))
    for obj in worse:
        if obj["buddyinfo_l1_pct"] is not None:
            obj["buddyinfo_l1_pct"] += 1.0
        if obj["watermarks_exact"]:
            obj["watermarks_exact"] = False
    found = regressions(worse, base)
    assert any("buddyinfo_l1_pct" in f for f in found)
    assert any("watermarks no longer exact" in f for f in found)


def test_readme_table_is_the_baselines() -> None:
    readme = README.read_text(encoding="utf-8")
    table = format_table(results_from_json(load_baseline()))
    assert START in readme and END in readme
    assert readme_with_table(readme, table) == readme, (
        f"README's validation table differs from {BASELINE.name}: run "
        "python -m allocsim.oracle.baseline")


def test_one_run_directory_on_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    """validate-oracle also takes one run directory; the table has its legend."""
    assert main(["validate-oracle", str(DATA / "wmark-recompute")]) == 0
    out = capsys.readouterr().out
    assert "| wmark-recompute | exact |" in out and "buddyinfo L1 = sum" in out
    assert main(["validate-oracle", str(DATA / "wmark-recompute" / "s00-mfk128-wsf10")]) == 2
    assert "expected a directory of runs" in capsys.readouterr().err
