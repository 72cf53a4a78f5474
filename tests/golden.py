"""Content digests of a run directory, to compare runs across engine rewrites.

``file_order`` hashes the events in the order they were written; ``multiset`` hashes
them sorted by time and then by every column, so two runs that differ only in the
order of events with equal timestamps share it. Snapshots and the summary counters
are hashed in full (the summary without its wall-clock fields, those
:data:`tests.rundiff.WALL_CLOCK` names).

Regenerate the stored digests (only when a change to the model is intended) with
``python -m tests.golden --write``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import pyarrow.parquet as pq

from tests.rundiff import WALL_CLOCK

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
CONFIGS = {
    "det": GOLDEN / "det.yaml",
    "quickstart": Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml",
    "atomic-reserves": Path(__file__).resolve().parents[1] / "configs" / "atomic-reserves.yaml",
}
SUMMARY_SKIP = WALL_CLOCK["summary.json"]
"""Top-level keys of ``summary.json`` left out of its digest."""


def _frame_digest(path: Path, sort: bool) -> str:
    df = pq.read_table(path).to_pandas()
    for col in df.columns:
        if str(df[col].dtype) == "category":
            df[col] = df[col].astype(str)
    if sort:
        df = df.sort_values(list(df.columns), kind="mergesort").reset_index(drop=True)
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def _strip(summary: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in summary.items() if k not in SUMMARY_SKIP}


def digests(run_dir: Path) -> dict[str, str]:
    """The content digests of one run directory."""
    out = {
        "events_file_order": _frame_digest(run_dir / "trace" / "events.parquet", sort=False),
        "events_multiset": _frame_digest(run_dir / "trace" / "events.parquet", sort=True),
        "buddyinfo": _frame_digest(run_dir / "trace" / "buddyinfo.parquet", sort=False),
        "zonestat": _frame_digest(run_dir / "trace" / "zonestat.parquet", sort=False),
    }
    summary = json.loads((run_dir / "summary.json").read_text())
    out["summary"] = hashlib.sha256(
        json.dumps(_strip(summary), sort_keys=True).encode()).hexdigest()
    for name in ("vmstat.txt", "buddyinfo.txt", "pagetypeinfo.txt", "zoneinfo.txt",
                 "extfrag_index.txt", "unusable_index.txt"):
        p = run_dir / name
        if p.exists():
            out[name] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_and_digest(name: str, out: Path) -> dict[str, str]:
    """Run one stored config (no report) and digest its run directory."""
    from allocsim.run import simulate
    from workloads.registry import load_experiment

    return digests(simulate(load_experiment(CONFIGS[name]), out, report=False).run_dir)


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CONFIGS:
            result[name] = run_and_digest(name, Path(tmp) / name)
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if args.write:
        (GOLDEN / "digests.json").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
