"""A simulated trace written as ftrace text and imported again gives the same events."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from allocsim.cli import main
from allocsim.run import simulate
from simcore.formats import trace_schema as ts
from simcore.formats.ftrace import PAGE_EVENTS
from workloads.registry import load_experiment

SMALL = """\
name: rt
seed: 5
duration: 300ms
machine:
  nodes:
    - {memory: 64MiB, cpus: 2}
sysctl: {compaction_proactiveness: 0}
trace: {events: true, snapshot_interval: 100ms}
workloads:
  - {name: kernel, type: synthetic, rate: 5000/s, order: {0: 0.8, 3: 0.2},
     lifetime: 20ms, gfp: GFP_KERNEL}
  - {name: user, type: synthetic, rate: 50000/s, order: 0, lifetime: 300ms,
     gfp: GFP_HIGHUSER_MOVABLE}
  - {name: huge, type: synthetic, rate: 200/s, order: 10, lifetime: 5ms,
     gfp: GFP_KERNEL|__GFP_NORETRY|__GFP_NOWARN}
  - {name: hog, type: synthetic, rate: 100000/s, max_requests: 15000, order: 0,
     lifetime: forever, gfp: GFP_NOWAIT}
"""


def test_export_then_import_gives_the_kernel_events_back(tmp_path: Path) -> None:
    cfg_path = tmp_path / "rt.yaml"
    cfg_path.write_text(SMALL)
    run = simulate(load_experiment(cfg_path), tmp_path / "runs", report=False).run_dir
    text, table = tmp_path / "rt.txt", tmp_path / "rt.parquet"
    assert main(["trace", "export", str(run), "-o", str(text)]) == 0
    assert main(["trace", "import", str(text), "-o", str(table)]) == 0
    original = [r for r in pq.read_table(run / ts.EVENTS_FILE).to_pylist()
                if r["event"] in PAGE_EVENTS]
    imported = pq.read_table(table).to_pylist()
    assert {r["event"] for r in original} >= {"mm_page_alloc", "mm_page_free",
                                             "mm_page_alloc_zone_locked",
                                             "mm_page_alloc_extfrag"}
    assert any(r["pfn"] < 0 for r in original)  # failures print pfn=0x0
    assert len(imported) == len(original)
    same = ("time_ns", "cpu", "event", "order", "migratetype", "percpu_refill",
            "fallback_order", "fallback_migratetype", "change_ownership")
    for sim, real in zip(original, imported, strict=True):
        assert {k: sim[k] for k in same} == {k: real[k] for k in same}
        assert real["pfn"] == max(sim["pfn"], 0) and real["comm"] == (sim["caller"] or "<idle>")
        if sim["event"] == "mm_page_alloc":
            assert real["gfp"] == sim["gfp"]
