"""Deferred frees: ``Machine.defer_free`` and ``apply_pending_frees``, and what they cost.

A deferred free must reach the allocator exactly as a SimPy event at its expiry would
have: before any allocator call or snapshot at or after that time, in (expiry, deferral)
order, with its trace events stamped with the expiry. The synthetic workload relies on
this to spend at most one SimPy event per request.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import pytest

from allocsim.run import simulate
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm.gfp import GFP_KERNEL
from simcore.mm.tracepoints import Tracer
from simcore.sim.machine import Allocation, Machine
from simcore.sim.recorder import SnapshotRecorder
from workloads.registry import WORKLOADS, load_experiment

if TYPE_CHECKING:
    from simcore.mm.zone import Zone

PAGES_256MIB = 256 * 1024 * 1024 // 4096
KERNEL = int(GFP_KERNEL)


class Clocked(Tracer):
    """Keeps ``(time, tracepoint, pfn)`` of every alloc and free, time from ``clock``."""

    enabled = True

    def __init__(self) -> None:
        self.clock: Callable[[], int] = lambda: -1
        self.log: list[tuple[int, str, int]] = []

    def mm_page_alloc(self, zone: Zone | None, pfn: int, *args: Any) -> None:  # noqa: D102
        self.log.append((self.clock(), "alloc", pfn))

    def mm_page_free(self, zone: Zone, pfn: int, order: int) -> None:  # noqa: D102
        self.log.append((self.clock(), "free", pfn))


def _machine(tracer_type: type[Clocked] = Clocked) -> tuple[Machine, Clocked]:
    tracer = tracer_type()
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_256MIB, cpus=2),))
    # no proactive compaction: kcompactd would wake every 500 ms up to the huge times
    m = Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1, tracer=tracer)
    tracer.clock = m.trace_now
    return m, tracer


def _at(m: Machine, t_ns: int, step: Callable[[], object]) -> None:
    """Run ``step`` in a SimPy process at ``t_ns`` (and stop the clock right after it:
    the machine's kswapd processes wake later on their own)."""
    def proc() -> Generator[Any, Any, None]:
        yield m.env.timeout(t_ns - m.env.now)
        step()
    m.env.run(until=m.env.process(proc()))


def _alloc(m: Machine, cpu: int = 0) -> Allocation:
    h = m.alloc_now("w", KERNEL, 0, cpu)
    assert h is not None
    return h


def test_due_frees_run_before_the_next_alloc_in_expiry_order_with_their_expiry() -> None:
    m, tracer = _machine()
    a, b, c, d, e = (_alloc(m, cpu=i % 2) for i in range(5))
    m.defer_free(a, 300)
    m.defer_free(b, 100)
    m.defer_free(c, 300)  # same expiry as a, deferred later: freed after a
    m.defer_free(d, 200)
    m.defer_free(e, 301)  # after the allocation at 300: stays pending
    tracer.log.clear()
    assert m.pending_frees == 5
    _at(m, 300, lambda: _alloc(m))
    frees = [(t, pfn) for t, kind, pfn in tracer.log if kind == "free"]
    assert frees == [(100, b.pfn), (200, d.pfn), (300, a.pfn), (300, c.pfn)]
    assert tracer.log[-1][:2] == (300, "alloc")  # the free at 300 came first
    assert [h.alive for h in (a, b, c, d, e)] == [False, False, False, False, True]
    assert m.pending_frees == 1 and e.pfn in m.owner_of
    assert m.stats.free_requests == 4
    assert m.trace_now() == m.now_ns == 300  # the stamp is gone once the frees are done


def test_free_and_split_apply_due_frees_first() -> None:
    m, tracer = _machine()
    a, b = _alloc(m), _alloc(m)
    big = m.alloc_now("w", KERNEL, 2, 0)
    assert big is not None
    m.defer_free(a, 50)
    tracer.log.clear()
    _at(m, 60, lambda: m.free(b))
    assert [(t, pfn) for t, _, pfn in tracer.log] == [(50, a.pfn), (60, b.pfn)]
    m.defer_free(_alloc(m), 70)
    _at(m, 70, lambda: m.split(big))
    assert m.pending_frees == 0


def test_apply_pending_frees_stops_at_now_and_the_recorder_catches_up() -> None:
    m, tracer = _machine()
    a, b = _alloc(m), _alloc(m)
    m.defer_free(a, 1_000)
    m.defer_free(b, 1_001)
    recorder = SnapshotRecorder(m.mm, m.apply_pending_frees)
    _at(m, 1_000, lambda: recorder.take(m.now_ns))
    assert not a.alive and b.alive
    assert m.pending_frees == 1
    assert tracer.log[-1] == (1_000, "free", a.pfn)


def test_defer_free_into_the_past_is_refused() -> None:
    m, _ = _machine()
    h = _alloc(m)
    _at(m, 500, lambda: None)
    with pytest.raises(ValueError, match="before now"):
        m.defer_free(h, 499)
    with pytest.raises(TypeError, match="not integer ns"):
        m.defer_free(h, 600.5)  # simulated time is integer nanoseconds
    m.defer_free(h, 500)  # due now: applied by the next allocator call
    _alloc(m)
    assert not h.alive


class Warned(Clocked):
    """Also keeps ``(time, "warning", pfn)`` of every ``sim_warning``."""

    def sim_warning(self, zone: Zone | None, pfn: int, order: int,  # noqa: D102
                    reason: str) -> None:
        self.log.append((self.clock(), "warning", pfn))


def test_a_deferred_handle_freed_twice_is_a_double_free_at_its_expiry() -> None:
    m, tracer = _machine(Warned)
    h = _alloc(m)
    m.defer_free(h, 10)
    m.defer_free(h, 20)
    _at(m, 30, m.apply_pending_frees)  # the second free goes on, as a double free
    assert m.pending_frees == 0
    assert m.mm.pages.ref[h.pfn] == -1  # still on the pcp list, its count below 0
    assert (20, "warning", h.pfn) in tracer.log
    assert m.trace_now() == 30


MIXED = """\
# SimPy events per request: a mix of lifetimes.
name: mixed
seed: 7
duration: 10s
machine:
  nodes:
    - memory: 256MiB
      cpus: 2
sysctl:
  compaction_proactiveness: 0  # kcompactd then sleeps until woken: env.run() can end
workloads:
  - name: fixed
    type: synthetic
    rate: 3000/s
    order: {0: 0.8, 2: 0.2}
    lifetime: {fixed: 5ms}
    gfp: GFP_KERNEL
    max_requests: 1500
  - name: exp
    type: synthetic
    rate: 2000/s
    order: 0
    lifetime: {exponential: 20ms}
    gfp: GFP_HIGHUSER_MOVABLE
    max_requests: 1000
  - name: lognormal
    type: synthetic
    rate: 2000/s
    order: {0: 0.9, 1: 0.1}
    lifetime: {lognormal: {median: 3ms, sigma: 1.2}}
    gfp: GFP_KERNEL
    max_requests: 1000
    start: 2ms
  - name: pinned
    type: synthetic
    rate: 500/s
    order: 0
    lifetime: forever
    gfp: GFP_KERNEL
    max_requests: 200
"""


def test_synthetic_spends_at_most_one_simpy_event_per_request(tmp_path: Path) -> None:
    """Counted by wrapping ``env.schedule``: every SimPy event passes through it.

    Besides one event per arrival, a workload process has a fixed cost: its start (the
    process's Initialize event, plus one timeout for ``start:``), with ``max_requests``
    one timeout to wait for its last free, and its end (the Process event). Frees
    themselves cost none (before deferred frees, each cost one: about 1.9 per request).
    """
    path = tmp_path / "mixed.yaml"
    path.write_text(MIXED)
    cfg = load_experiment(path)
    m = Machine.from_config(cfg)
    scheduled = 0
    schedule = m.env.schedule

    def counting_schedule(*args: Any, **kwargs: Any) -> None:
        nonlocal scheduled
        scheduled += 1
        schedule(*args, **kwargs)

    m.env.schedule = counting_schedule  # type: ignore[method-assign]
    for spec, rng in zip(cfg.workloads, m.spawn_rngs(len(cfg.workloads)), strict=True):
        m.env.process(WORKLOADS[spec.kind].run(m, spec, rng))
    m.env.run()  # until every workload has issued its requests and freed what it frees

    requests = m.stats.alloc_requests
    assert requests == 1500 + 1000 + 1000 + 200
    assert m.stats.failures_by_order == {}
    assert m.stats.free_requests == requests - 200  # all but the forever ones
    assert m.pending_frees == 0
    fixed_cost = 3 * len(cfg.workloads) + 1  # start, last-free wait, end each; one start:
    assert scheduled <= requests + fixed_cost
    assert (scheduled - fixed_cost) / requests <= 1.0


END_RUN = """\
# End-of-run deferred frees.
name: edge
seed: 2
duration: {duration_ns}ns
machine:
  nodes:
    - memory: 64MiB
      cpus: 1
trace:
  events: true
  snapshot_interval: 1s
workloads:
  - name: once
    type: synthetic
    rate: 1000/s
    order: 0
    lifetime: {{fixed: 1ms}}
    gfp: GFP_KERNEL
    max_requests: 1
"""


def _frees_of(tmp_path: Path, duration_ns: int) -> tuple[int, list[int]]:
    """(time of the allocation, times of the frees) in a run of ``duration_ns``."""
    path = tmp_path / f"edge{duration_ns}.yaml"
    path.write_text(END_RUN.format(duration_ns=duration_ns))
    run = simulate(load_experiment(path), tmp_path / f"out{duration_ns}", report=False)
    events = pq.read_table(run.run_dir / ts.EVENTS_FILE).to_pylist()
    (alloc_ns,) = [e["time_ns"] for e in events
                   if e["event"] == ts.MM_PAGE_ALLOC and e["caller"] == "once"]
    return alloc_ns, [e["time_ns"] for e in events if e["event"] == ts.MM_PAGE_FREE]


def test_frees_due_by_the_end_of_the_run_are_applied_later_ones_are_not(
    tmp_path: Path,
) -> None:
    alloc_ns, frees = _frees_of(tmp_path, 1_000_000_000)
    expiry = alloc_ns + 1_000_000
    assert frees == [expiry]
    # The workload's own wait for that free is at `end` and does not run; the run applies it.
    assert _frees_of(tmp_path, expiry)[1] == [expiry]
    assert _frees_of(tmp_path, expiry - 1)[1] == []


def test_pending_frees_order_by_expiry_then_deferral_across_huge_times() -> None:
    """Frees come out ordered by expiry, then by the order they were deferred (the heap
    holds expiry times; each time keeps its frees in a list), also for huge expiries."""
    m, tracer = _machine()
    handles = [_alloc(m) for _ in range(6)]
    expiries = [5, 1 << 50, 7, 1 << 50, 7, 3]
    for h, expiry in zip(handles, expiries, strict=True):
        m.defer_free(h, expiry)
    assert m.pending_frees == 6
    _at(m, 1 << 50, lambda: None)
    m.apply_pending_frees()
    freed = [(t, pfn) for t, what, pfn in tracer.log if what == "free"]
    want = sorted(range(6), key=lambda i: expiries[i])  # stable: deferral order at ties
    assert freed == [(expiries[i], handles[i].pfn) for i in want]
    assert m.pending_frees == 0


def test_freeing_none_is_a_type_error_in_both_builds() -> None:
    """A failed alloc() returns None; freeing it must raise, not crash the compiled build."""
    m, _ = _machine()
    with pytest.raises(TypeError, match="free\\(\\) of None"):
        m.free(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="defer_free\\(\\) of None"):
        m.defer_free(None, 10)  # type: ignore[arg-type]
