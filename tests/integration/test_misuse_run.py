"""Misuse mid-run: a buggy caller among well-behaved ones, through a Machine and SimPy.

The buggy caller double-frees, touches freed memory, drops references on tail pages and
frees a frozen page while another caller allocates and frees on a timer. The trace has
the misuse events, the run goes on to its end, and the allocator is consistent after it.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.sim.audit import check_machine
from simcore.sim.machine import Machine
from simcore.sim.tracer import RecordingTracer

KERNEL = int(GFP_KERNEL)
COMP = int(GFP_KERNEL | GFP.COMP)


def _steady(m: Machine, rounds: int, done: list[int]) -> Generator[Any, Any, None]:
    """A well-behaved caller: allocate, hold 1 us, free."""
    for i in range(rounds):
        h = yield from m.alloc("steady", KERNEL, i % 3, i % 2)
        assert h is not None
        yield m.env.timeout(1_000)
        m.free(h)
        done.append(i)


def _buggy(m: Machine) -> Generator[Any, Any, None]:
    """Every misuse of issue 13.4, spaced out in time."""
    env = m.env
    yield env.timeout(5_000)
    a = yield from m.alloc("buggy", KERNEL, 0, 0)
    m.free(a)
    m.free(a)  # double free
    m.touch(a)  # use after free
    yield env.timeout(5_000)
    comp = yield from m.alloc("buggy", COMP, 2, 1)
    m.put_page(comp, 3)  # a compound tail: legal, frees the block
    plain = yield from m.alloc("buggy", KERNEL, 2, 1)
    m.put_page(plain, 2)  # a non-compound tail: -1, caught at the free
    yield env.timeout(5_000)
    m.free(plain)
    frozen = yield from m.alloc("buggy", KERNEL, 0, 0)
    assert m.mm.page_ref_freeze(frozen.pfn, 1)
    m.free(frozen)  # a frozen page: -1, the freezer below gets it back
    yield env.timeout(5_000)
    m.tracer.set_context("freezer", 0)  # whoever froze it (a direct allocator call)
    m.mm.page_ref_unfreeze(frozen.pfn, 1)
    m.mm.put_page(frozen.pfn, 0)
    m.owner_exit("buggy")


def test_a_buggy_caller_mid_run_leaves_events_and_the_run_completes(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    tracer = RecordingTracer(path, clock=lambda: 0)
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=32768, cpus=2),))
    m = Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1, tracer=tracer)
    tracer.clock = m.trace_now
    done: list[int] = []
    steady = m.env.process(_steady(m, 40, done))
    buggy = m.env.process(_buggy(m))
    m.env.run(until=steady & buggy)
    m.mm.drain_all_pages()  # the pcp drain finds any page left below 0
    tracer.close()
    assert done == list(range(40))
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})
    check_machine(m)  # the --check-invariants audit: refcounts, reverse map, owners' pages

    events = pq.read_table(path).to_pandas()
    warnings = events[events.event == ts.SIM_WARNING]
    kinds = [ts.misuse_kind(r) for r in warnings.reason]
    assert kinds == [ts.MISUSE_DOUBLE_FREE, ts.MISUSE_USE_AFTER_FREE, ts.MISUSE_TAIL_PAGE,
                     ts.MISUSE_FROZEN_PAGE, ts.MISUSE_FROZEN_PAGE]
    assert list(warnings.caller) == ["buggy"] * 4 + ["freezer"]
    assert list(warnings.time_ns) == [5_000, 5_000, 10_000, 15_000, 20_000]
    bad = events[events.event == ts.BAD_PAGE]
    assert list(bad.reason) == ["nonzero _refcount"] * len(bad) and len(bad) >= 1
    assert list(bad.time_ns)[0] == 15_000  # the non-compound block's free
    assert m.mm.vm["bad_page"] == len(bad)
    frees_after = events[(events.event == ts.MM_PAGE_FREE) & (events.time_ns > 20_000)]
    assert set(frees_after.caller) == {"steady"}  # the run went on after the misuse
