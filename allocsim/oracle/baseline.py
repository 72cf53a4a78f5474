"""The recorded validation baseline and the README table made from it.

``python -m allocsim.oracle.baseline`` runs ``validate-oracle`` on ``tests/data/oracle``,
writes ``tests/data/validation-baseline.json`` and regenerates the README's validation
table from it (between the ``validation-table`` markers). The test suite reruns the
validation and fails if the watermark match breaks or a fidelity number gets worse than
the baseline (:func:`regressions`), and if the README's table is not the baseline's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from allocsim.oracle.validate import RunResult, format_table, to_json, validate_oracle
from simcore.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "oracle"
BASELINE = ROOT / "tests" / "data" / "validation-baseline.json"
README = ROOT / "README.md"
START, END = "<!-- validation-table:start -->\n", "<!-- validation-table:end -->\n"


def load_baseline(path: Path = BASELINE) -> list[dict[str, Any]]:
    """The recorded ``--json`` objects."""
    data: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def results_from_json(objs: list[dict[str, Any]]) -> list[RunResult]:
    """``--json`` objects back as results (for the table)."""
    out = []
    for obj in objs:
        r = RunResult(obj["run"], {k: v for k, v in obj.items()
                                   if k not in ("hugepage_steps", "slowpath", "replay")})
        r.steps, r.slowpath, r.replay = obj["hugepage_steps"], obj["slowpath"], obj["replay"]
        out.append(r)
    return out


def _gaps(obj: dict[str, Any]) -> dict[str, float]:
    """The distances to the host that must not grow, by name."""
    out: dict[str, float] = {}
    if obj.get("buddyinfo_l1_pct") is not None:
        out["buddyinfo_l1_pct"] = obj["buddyinfo_l1_pct"]
    if obj.get("pcp_share_sim") is not None and obj.get("pcp_share_real") is not None:
        out["pcp_share_points"] = abs(obj["pcp_share_sim"] - obj["pcp_share_real"]) * 100
    for step in obj.get("hugepage_steps") or []:
        out[f"hugepages_pct[{step['step']}]"] = (
            abs(step["hugepages_sim"] - step["hugepages_real"]) * 100 / step["hugepages_real"])
    return out


def regressions(now: list[dict[str, Any]], base: list[dict[str, Any]]) -> list[str]:
    """What got worse than the baseline: lost watermark matches and grown distances."""
    current = {o["run"]: o for o in now}
    out = []
    for b in base:
        o = current.get(b["run"])
        if o is None:
            out.append(f"{b['run']}: not validated any more")
            continue
        if b["watermarks_exact"] and not o["watermarks_exact"]:
            out.append(f"{b['run']}: watermarks no longer exact")
        gaps = _gaps(o)
        for name, was in _gaps(b).items():
            if name not in gaps:
                out.append(f"{b['run']}: {name} no longer measured")
            elif gaps[name] > was + 1e-6:
                out.append(f"{b['run']}: {name} {gaps[name]:.3f}, baseline {was:.3f}")
    return out


def readme_with_table(readme: str, table: str) -> str:
    """``readme`` with the text between the markers replaced by ``table``."""
    head, sep, rest = readme.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError("README.md has no validation-table markers")
    return head + START + table + END + tail


def main() -> int:
    """Validate, write the baseline and the README table, print the table."""
    results = validate_oracle(DATA)
    atomic_write_text(BASELINE, to_json(results))
    table = format_table(results)
    atomic_write_text(README, readme_with_table(README.read_text(encoding="utf-8"), table))
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
