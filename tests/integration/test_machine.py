"""SimPy scenarios on :class:`simcore.sim.machine.Machine`: time, handles and a whole workload."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT
from simcore.sim.machine import Allocation, Machine
from workloads.registry import WORKLOADS, load_experiment

PAGES_256MIB = 256 * 1024 * 1024 // 4096


def _machine(cpus: int = 2) -> Machine:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_256MIB, cpus=cpus),))
    return Machine(cfg, SysctlConfig(), seed=1)


def _assert_accounted(m: Machine) -> None:
    """Free (buddy + pcp) plus live allocations cover every managed page, no bad pages."""
    mm = m.mm
    free = sum(z.nr_free_pages + z.pcp_pages for z in mm.zones)
    live = sum(1 << h.order for h in m.owner_of.values())
    assert free + live == mm.managed_pages
    assert mm.vm["bad_page"] == 0


def _drained_all_free(m: Machine) -> None:
    m.mm.drain_all_pages()
    assert not m.owner_of
    assert m.mm.nr_free_pages == m.mm.managed_pages
    assert sum(z.pcp_pages for z in m.mm.zones) == 0


def _fill(m: Machine, gfp: int, order: int) -> list[Allocation]:
    got = []
    while (h := m.alloc_now("hog", gfp, order, 0)) is not None:
        got.append(h)
    return got


def test_gfp_nowait_below_min_fails_without_advancing_time() -> None:
    m = _machine()
    # Blocking requests fail at MIN (nothing is reclaimable, and __GFP_NORETRY gives up
    # after one round rather than calling the OOM killer); GFP_ATOMIC (ALLOC_HIGH,
    # ALLOC_HARDER) then digs below MIN until it fails too.
    noretry = GFP_KERNEL | GFP.NORETRY
    held = _fill(m, noretry, 9) + _fill(m, noretry, 0) + _fill(m, GFP_ATOMIC, 0)
    assert held
    top = max(m.mm.zones, key=lambda z: z.zone_idx)
    assert top.nr_free_pages < top.wmark_pages(0), "not below the MIN watermark"
    fails_before = m.mm.vm["pgalloc_fail"]
    wakeups_before = m.mm.vm["kswapd_wakeup"]
    requests_before = m.stats.alloc_requests
    seen: dict[str, Any] = {}

    def caller() -> Generator[Any, Any, None]:
        yield m.env.timeout(1_234_567)
        seen["before"] = m.env.now
        seen["handle"] = yield from m.alloc("nowait", int(GFP_NOWAIT), 0, 1)
        seen["after"] = m.env.now

    m.env.run(until=m.env.process(caller()))  # kswapd goes on reclaiming after it
    assert seen["handle"] is None
    assert seen["before"] == seen["after"] == 1_234_567
    assert m.env.now == 1_234_567
    assert m.mm.vm["pgalloc_fail"] == fails_before + 1
    # kswapd ran at time 0, found nothing to reclaim 16 times in a row and gave up on
    # the node (behaviour 33): the GFP_NOWAIT request's wakeup is filtered out.
    assert m.mm.reclaim.kswapd[0].failures == 16
    assert m.mm.vm["kswapd_wakeup"] == wakeups_before
    assert m.stats.alloc_requests == requests_before + 1
    assert m.stats.failures_by_caller["nowait"] == 1
    assert m.stats.failures_by_order[0] >= 1
    _assert_accounted(m)
    for h in held:
        m.free(h)
    _drained_all_free(m)


def test_double_free_goes_on_and_allocator_stays_consistent() -> None:
    m = _machine()
    a = m.alloc_now("w", GFP_KERNEL, 2, 0)
    b = m.alloc_now("w", GFP_KERNEL, 0, 1)
    assert a is not None and b is not None
    m.free(a)
    assert not a.alive
    freed = m.stats.pages_freed
    m.free(a)  # a double free: the count of the block on the pcp list goes below 0
    m.free(a, cpu=1)
    assert m.mm.pages.ref[a.pfn] == -2
    assert m.stats.pages_freed == freed
    assert m.stats.free_requests == 3
    # The allocator still works: the pcp list hands the block out again, and the
    # allocation resets its count (check_new_pcp() checks nothing without DEBUG_VM).
    c = m.alloc_now("w", GFP_KERNEL, 2, 0)
    assert c is not None and c.pfn == a.pfn and m.mm.pages.ref[c.pfn] == 1
    m.free(c)
    m.free(b)
    _assert_accounted(m)
    _drained_all_free(m)


def test_owner_of_maps_pfn_to_handle() -> None:
    m = _machine()
    handles = [m.alloc_now(f"w{i}", GFP_KERNEL, i % 4, i % 2) for i in range(12)]
    assert all(h is not None for h in handles)
    live = [h for h in handles if h is not None]
    assert len({h.pfn for h in live}) == len(live)
    for h in live:
        assert m.owner_of[h.pfn] is h
        assert h.alive
    assert len(m.owner_of) == len(live)
    for h in live[::2]:
        m.free(h)
        assert h.pfn not in m.owner_of
    assert set(m.owner_of.values()) == set(live[1::2])
    for h in live[1::2]:
        m.free(h)
    _drained_all_free(m)


@pytest.mark.parametrize("order", [1, 3, 9])
def test_split_gives_freeable_order0_handles(order: int) -> None:
    m = _machine()
    h = m.alloc_now("w", GFP_KERNEL, order, 0)
    assert h is not None and not h.gfp & GFP.COMP
    parts = m.split(h)
    assert len(parts) == 1 << order
    assert not h.alive
    assert [p.pfn for p in parts] == list(range(h.pfn, h.pfn + (1 << order)))
    assert all(p.order == 0 and p.alive and p.owner == "w" for p in parts)
    for p in parts:
        assert m.owner_of[p.pfn] is p
    _assert_accounted(m)
    freed = m.stats.pages_freed
    # Free in a scrambled order; each sub-page goes back on its own.
    for p in parts[1::2] + parts[::2]:
        m.free(p)
        assert p.pfn not in m.owner_of
    assert m.stats.pages_freed == freed + (1 << order)
    _assert_accounted(m)
    _drained_all_free(m)


WORKLOAD_YAML = """\
# max_requests with a fixed lifetime.
name: fixed
seed: 3
duration: 10s
machine:
  nodes:
    - memory: 256MiB
      cpus: 2
sysctl:
  compaction_proactiveness: 0  # kcompactd then sleeps until woken: env.run() can end
workloads:
  - name: w
    type: synthetic
    rate: 2000/s
    order: {0: 0.7, 2: 0.2, 4: 0.1}
    lifetime: {fixed: 7ms}
    gfp: GFP_KERNEL
    max_requests: 500
    start: 3ms
"""


def test_synthetic_max_requests_and_fixed_lifetime(tmp_path: Path) -> None:
    path = tmp_path / "fixed.yaml"
    path.write_text(WORKLOAD_YAML)
    cfg = load_experiment(path)
    (spec,) = cfg.workloads
    from conftest import SpyMachine

    m = SpyMachine.from_config(cfg)
    allocs: list[tuple[int, Allocation]] = []
    frees: list[tuple[int, Allocation]] = []

    def on_alloc(h: Allocation | None) -> None:
        assert h is not None, "the machine is large enough never to fail"
        allocs.append((m.now_ns, h))

    m.on_alloc = on_alloc
    m.on_free = lambda h: frees.append((m.now_ns, h))
    (rng,) = m.spawn_rngs(1)
    m.env.process(WORKLOADS[spec.kind].run(m, spec, rng))
    m.env.run()  # until no event is left: the workload has freed everything and ended

    lifetime = 7_000_000
    assert len(allocs) == m.stats.alloc_requests == 500
    assert len(frees) == m.stats.free_requests == 500
    assert allocs[0][0] >= 3_000_000  # start: 3ms
    assert [t for t, _ in allocs] == sorted(t for t, _ in allocs)
    freed_at = {id(h): t for t, h in frees}
    assert len(freed_at) == 500  # every handle freed exactly once
    for t, h in allocs:
        assert freed_at[id(h)] == t + lifetime
        assert not h.alive
    assert m.env.now == allocs[-1][0] + lifetime == max(t for t, _ in frees)
    assert m.stats.pages_allocated == m.stats.pages_freed == sum(1 << h.order for _, h in allocs)
    assert {h.order for _, h in allocs} == {0, 2, 4}
    _drained_all_free(m)


def test_failure_event_carries_the_warn_alloc_line() -> None:
    """Behaviour 54: a failed allocation reports the 6.1 warn_alloc() text, unless
    __GFP_NOWARN suppresses it."""
    from simcore.mm.tracepoints import Tracer

    class Capture(Tracer):
        enabled = True

        def __init__(self) -> None:
            self.reasons: list[str] = []

        def mm_page_alloc_fail(self, nid: int, order: int, gfp: int, mt: int,
                               reason: str) -> None:
            self.reasons.append(reason)

    tracer = Capture()
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=16 << 8, cpus=1),))
    machine = Machine(cfg, SysctlConfig(), seed=0, tracer=tracer)
    # 16 MiB has three order-10 blocks; the watermark stops the allocations before.
    while machine.alloc_now("kworker", int(GFP_KERNEL), 10, cpu=0) is not None:
        pass
    assert machine.alloc_now("quiet", int(GFP_KERNEL | GFP.NOWARN), 10, cpu=0) is None
    assert tracer.reasons[0].endswith(
        "kworker: page allocation failure: order:10, mode:0xcc0(GFP_KERNEL), nodemask=(null)")
    assert tracer.reasons[1].endswith("warn_alloc suppressed by __GFP_NOWARN")
    assert "page allocation failure" not in tracer.reasons[1]
