"""``--check-invariants[=N]``: the audit finds a broken machine at the first bad event,
stops the run and keeps the trace; a sound run is audited without changing its trace.

The broken machines are made by a process that corrupts one piece of state (a refcount,
a free-list counter, a handle's pfn) at a chosen time: each check the audit makes must
catch its own kind of corruption.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from allocsim.cli import main
from allocsim.run import simulate
from allocsim.soak import soak, soak_config
from simcore.formats import trace_schema as ts
from simcore.mm.invariants import InvariantError
from simcore.sim.audit import Audit, check_machine
from simcore.sim.machine import Machine
from workloads.registry import load_experiment

CONFIG = """\
# A small churn for the audit tests.
name: audited
seed: 5
duration: 20ms
machine:
  nodes:
    - {memory: 32MiB, cpus: 2}
trace: {events: true, snapshot_interval: 10ms}
workloads:
  - {name: churn, type: synthetic, rate: 20000/s, order: {0: 0.8, 2: 0.1, 4: 0.1},
     lifetime: 3ms, gfp: GFP_KERNEL}
  - {name: cache, type: page_cache, size: 8MiB, rate: 2000/s}
"""
CORRUPT_AT_NS = 6_000_000
REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "audited.yaml"
    path.write_text(CONFIG)
    return path


def _bump_refcount(m: Machine) -> None:
    handle = next(h for h in m.owner_of.values() if h.order == 0)
    m.mm.pages.ref[handle.pfn] += 1


def _miscount_free_area(m: Machine) -> None:
    m.mm.zones[-1].free_area.nr_free[0] += 1


def _stale_handle(m: Machine) -> None:
    handle = next(h for h in m.owner_of.values() if h.order == 0)
    handle.pfn += 1  # as if migration moved the block and forgot the handle


def _lose_owner_pages(m: Machine) -> None:
    next(iter(m.owners.values())).pages -= 1


CORRUPTIONS: dict[str, tuple[Callable[[Machine], None], str]] = {
    "refcount": (_bump_refcount, "has refcount 2, expected 1"),
    "nr_free": (_miscount_free_area, "free_area[0].nr_free"),
    "reverse map": (_stale_handle, "the handle says pfn"),
    "owner pages": (_lose_owner_pages, "counts"),
}


def _corrupter(fn: Callable[[Machine], None]) -> Callable[[Machine], None]:
    def setup(m: Machine) -> None:
        def corrupt_the_machine() -> Generator[Any, Any, None]:
            yield m.env.timeout(CORRUPT_AT_NS)
            m.apply_pending_frees()
            fn(m)

        m.env.process(corrupt_the_machine())
    return setup


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_each_check_catches_its_corruption(kind: str, tmp_path: Path) -> None:
    fn, rule = CORRUPTIONS[kind]
    result = simulate(load_experiment(_config(tmp_path)), tmp_path / "runs", report=False,
                      setup=_corrupter(fn), check_invariants=1)
    manifest = json.loads((result.run_dir / ts.MANIFEST_FILE).read_text())
    v = manifest["invariant_violation"]
    assert result.run_dir.name == "audited-seed5.failed"
    assert manifest["status"] == "failed" and v["pinned"]
    assert rule in v["rule"], v["rule"]
    assert v["time_ns"] == CORRUPT_AT_NS and "corrupt_the_machine" in v["process"]
    assert v["last_good_event"] == v["event"] - 1


def test_a_sparse_audit_is_pinned_to_the_first_bad_event(tmp_path: Path) -> None:
    """Checked every 250 events the run finds the corruption late, then replays to the
    event itself: the one a check after every event names."""
    cfg = load_experiment(_config(tmp_path))
    setup = _corrupter(_bump_refcount)
    every = simulate(cfg, tmp_path / "dense", report=False, setup=setup, check_invariants=1)
    sparse = simulate(cfg, tmp_path / "sparse", report=False, setup=setup,
                      check_invariants=250)
    dense_v = json.loads((every.run_dir / ts.MANIFEST_FILE).read_text())["invariant_violation"]
    manifest = json.loads((sparse.run_dir / ts.MANIFEST_FILE).read_text())
    v = manifest["invariant_violation"]
    assert v["pinned"] and v["event"] == dense_v["event"]
    assert v["trace_rows"] == dense_v["trace_rows"]
    audit = manifest["invariant_audit"]
    assert audit["every"] == 250
    # found at the next multiple of 250, after the corrupting event
    assert audit["events"] % 250 == 0 and 0 < audit["events"] - v["event"] < 250


def test_the_trace_up_to_the_violation_is_kept(tmp_path: Path) -> None:
    result = simulate(load_experiment(_config(tmp_path)), tmp_path / "runs", report=False,
                      setup=_corrupter(_bump_refcount), check_invariants=200)
    v = json.loads((result.run_dir / ts.MANIFEST_FILE).read_text())["invariant_violation"]
    events = pq.read_table(result.run_dir / ts.EVENTS_FILE)
    assert events.num_rows >= v["trace_rows"][1]
    times = events.column("time_ns").to_pylist()
    assert max(times) < 15_000_000  # stopped soon after it, not at the end (20 ms)
    assert (result.run_dir / ts.SUMMARY_FILE).is_file()
    assert not (result.run_dir / ts.REPORT_DIR).exists()


def test_auditing_does_not_change_the_trace(tmp_path: Path) -> None:
    cfg = load_experiment(_config(tmp_path))
    plain = simulate(cfg, tmp_path / "plain", report=False)
    audited = simulate(cfg, tmp_path / "audited", report=False, check_invariants=7)
    manifest = json.loads((audited.run_dir / ts.MANIFEST_FILE).read_text())
    assert manifest["status"] == "ok" and manifest["invariant_audit"]["checks"] > 50
    for name in (ts.EVENTS_FILE, "trace/zonestat.parquet", ts.SPANS_FILE):
        assert (plain.run_dir / name).read_bytes() == (audited.run_dir / name).read_bytes()


def test_cli_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert main(["run", str(config), "-o", str(tmp_path / "a"), "--no-report", "-q",
                 "--check-invariants"]) == 0
    manifest = json.loads((tmp_path / "a" / "audited-seed5" / ts.MANIFEST_FILE).read_text())
    assert manifest["invariant_audit"]["every"] == 1000
    with pytest.raises(SystemExit) as exc:
        main(["run", str(config), "--check-invariants=0"])
    assert exc.value.code == 2
    assert "expected a number of events N >= 1" in capsys.readouterr().err


def test_the_audit_checks_a_quiet_machine_too(tmp_path: Path) -> None:
    """A machine nobody touched passes; one stray PG_BUDDY page does not."""
    m = Machine.from_config(load_experiment(_config(tmp_path)))
    check_machine(m)
    audit = Audit(m, 1)
    audit.install()
    m.mm.pages.ref[m.mm.zones[-1].zone_start_pfn + 5] = 3  # a free page with references
    with pytest.raises(InvariantError, match="refcount"):
        check_machine(m)


SMALL_MACHINE_PAGES = 1 << 18
"""Configs whose machine has at most this many pages (1 GiB) are soaked in the suite;
``benchmarks/soak.py`` soaks every config for longer."""


def _small_configs() -> list[Path]:
    small = []
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = soak_config(path)
        if sum(node.memory_pages for node in cfg.machine.nodes) <= SMALL_MACHINE_PAGES:
            small.append(path)
    return small


SMALL = _small_configs()


def test_the_soak_covers_most_configs() -> None:
    assert len(SMALL) >= 8 and any(p.name == "quickstart.yaml" for p in SMALL)


@pytest.mark.parametrize("path", SMALL, ids=[p.name for p in SMALL])
def test_soak_small_config(path: Path) -> None:
    """Every small shipped config, audited every 50 events for its first 2,500."""
    result = soak(soak_config(path), every=50, max_events=2500)
    assert result.violation is None, result.violation
    assert result.checks >= result.events // 50 and result.events > 400


MIGRATING = """\
# Movable churn that leaves scattered pages, then compact_memory migrates them.
name: migrating
seed: 2
duration: 120ms
machine:
  nodes:
    - {memory: 32MiB, cpus: 2}
trace: {events: false, snapshot_interval: 50ms}
workloads:
  - {name: app, type: synthetic, rate: 200000/s, max_requests: 6000, order: 0,
     lifetime: {exponential: 30ms}, gfp: GFP_HIGHUSER_MOVABLE, memory: anon}
  - {name: keep, type: synthetic, rate: 20000/s, max_requests: 600, order: 0,
     lifetime: forever, gfp: GFP_HIGHUSER_MOVABLE, memory: anon}
actions:
  - {at: 100ms, do: compact_memory}
"""


def test_audit_follows_migrated_handles(tmp_path: Path) -> None:
    """compact_memory moves the scattered pages: each move rewrites a handle and the
    reverse map, and the audit checks both every 10 events to the end."""
    path = tmp_path / "migrating.yaml"
    path.write_text(MIGRATING)
    result = soak(load_experiment(path), every=10, max_events=10**9)
    assert result.violation is None, result.violation
    assert result.migrated > 100 and result.simulated_ns == 120_000_000
