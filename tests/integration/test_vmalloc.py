"""The vmalloc caller (mm/vmalloc.c of 6.1): bulk chunks, fallbacks, huge mappings, vfree."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from conftest import CallLog

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.errors import ConfigError
from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.sim.machine import Machine
from workloads.registry import load_experiment
from workloads.vmalloc import BULK_CHUNK, vfree, vm_area_alloc_pages, vmalloc

PAGES_128MIB = 128 * 1024 * 1024 // 4096
KERNEL = int(GFP_KERNEL)


def _allocs(log: CallLog) -> list[tuple[int, int]]:
    """``(order, gfp)`` of every traced ``mm_page_alloc``."""
    return [(args[2], args[3]) for args in log.named("mm_page_alloc")]


def _machine() -> tuple[Machine, CallLog]:
    tracer = CallLog()
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_128MIB, cpus=2),))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1,
                   tracer=tracer), tracer


def _run(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


class FakeMachine:
    """Records what vm_area_alloc_pages() asks for; the bulk allocator delivers
    ``bulk_limit`` pages per call at most."""

    def __init__(self, bulk_limit: int) -> None:
        self.bulk_limit = bulk_limit
        self.calls: list[tuple[str, int]] = []

    def alloc_bulk(self, owner: str, gfp: int, nr: int, cpu: int,
                   nid: Any) -> Generator[Any, Any, list[object]]:
        self.calls.append(("bulk", nr))
        return [object() for _ in range(min(nr, self.bulk_limit))]
        yield

    def alloc(self, owner: str, gfp: int, order: int, cpu: int,
              nid: Any) -> Generator[Any, Any, object]:
        self.calls.append(("single", order))
        return object()
        yield


def test_vm_area_alloc_pages_chunks_of_100_stop_at_a_short_chunk() -> None:
    """Behaviour 66: bulk chunks of at most 100; the first short chunk ends the bulk
    loop and the rest come one page at a time."""
    full = FakeMachine(BULK_CHUNK)
    pages = _drive(vm_area_alloc_pages(full, "vm", KERNEL, None, 0, 250, 0))
    assert len(pages) == 250
    assert full.calls == [("bulk", 100), ("bulk", 100), ("bulk", 50)]
    short = FakeMachine(30)
    pages = _drive(vm_area_alloc_pages(short, "vm", KERNEL, None, 0, 250, 0))
    assert len(pages) == 250
    assert short.calls == [("bulk", 100)] + [("single", 0)] * 220


def _drive(gen: Generator[Any, Any, Any]) -> Any:
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


def _invariants(m: Machine) -> None:
    m.apply_pending_frees()
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})


def test_vmalloc_takes_bulk_chunks_of_100_untraced_and_a_single_traced_last_page() -> None:
    """Behaviour 66: 301 pages are 100 + 100 + 100 from the bulk allocator (no
    mm_page_alloc), then a chunk of 1, which the bulk allocator hands to one ordinary,
    traced __alloc_pages()."""
    m, tracer = _machine()
    area = _run(m, vmalloc(m, "vm", 301, KERNEL, None, False, 0))
    assert area is not None and len(area) == 301
    assert all(h.order == 0 and m.mm.pages.ref[h.pfn] == 1 for h in area)
    assert len({h.pfn for h in area}) == 301
    assert [o for o, _ in _allocs(tracer)] == [0]  # only the single-page fallback is traced
    vfree(m, area)
    _invariants(m)
    assert not m.owner_of


def test_gfp_account_makes_every_page_a_traced_single_allocation() -> None:
    """__alloc_pages_bulk() gives up at once for __GFP_ACCOUNT (kmem accounting is on):
    each call yields one traced page, the short chunk ends the bulk loop, and
    vm_area_alloc_pages() takes the rest one by one."""
    m, tracer = _machine()
    area = _run(m, vmalloc(m, "vm", 40, KERNEL | int(GFP.ACCOUNT), None, False, 0))
    assert area is not None and len(area) == 40
    assert [o for o, _ in _allocs(tracer)] == [0] * 40


def test_vmalloc_huge_uses_split_order9_blocks() -> None:
    """Behaviour 67: vmalloc_huge(4 MiB) on one node takes two order-9 blocks and
    split_page()s each into 512 pages of refcount 1, freed one by one by vfree()."""
    m, tracer = _machine()
    area = _run(m, vmalloc(m, "vm", 1024, KERNEL, None, True, 0))
    assert area is not None and len(area) == 1024
    assert [o for o, _ in _allocs(tracer)] == [9, 9]
    heads = sorted({h.pfn & ~511 for h in area})
    assert len(heads) == 2 and all(h.pfn & ~511 in heads for h in area)
    assert all(m.mm.pages.ref[h.pfn] == 1 and h.order == 0 for h in area)
    vfree(m, area)
    _invariants(m)


def test_vmalloc_huge_below_2mib_per_node_uses_order0() -> None:
    m, tracer = _machine()
    area = _run(m, vmalloc(m, "vm", 511, KERNEL, None, True, 0))
    assert area is not None and len(area) == 511 and 9 not in [o for o, _ in _allocs(tracer)]


def test_a_failed_huge_attempt_frees_everything_and_restarts_with_order0() -> None:
    """Behaviour 67: no order-9 block (and no way to make one without reclaim or
    compaction: GFP_NOWAIT-like mask) -> the area starts again from scratch with
    order-0 pages."""
    m, tracer = _machine()
    held = []
    while (h := m.alloc_now("filler", 0, 0, 0)) is not None:
        held.append(h)
    for h in held[::2]:  # every other page free: plenty of memory, no order-9 block
        m.free(h)
    m.mm.drain_all_pages()
    nowait = int(GFP.KSWAPD_RECLAIM)  # may not block: order 9 fails at once
    tracer.calls.clear()
    area = _run(m, vmalloc(m, "vm", 1024, nowait, None, True, 0))
    # the huge attempts are the only traced allocations: the last of them failed, and
    # the order-0 restart took every page from the bulk allocator
    orders = [o for o, _ in _allocs(tracer)]
    assert orders and set(orders) == {9} and len(orders) <= 2
    assert area is not None and len(area) == 1024 and all(h.order == 0 for h in area)
    vm_pages = [h for h in m.owner_of.values() if h.owner == "vm"]
    assert len(vm_pages) == 1024  # the split pages of the failed attempt were freed
    _invariants(m)


def test_a_partial_failure_frees_every_page_obtained_and_fails() -> None:
    """Behaviour 66: when the area cannot be filled, __vfree() frees what was obtained."""
    m, _ = _machine()
    nowait = int(GFP.KSWAPD_RECLAIM)
    free_before = sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones)
    area = _run(m, vmalloc(m, "vm", PAGES_128MIB, nowait, None, False, 0))
    assert area is None
    assert not [h for h in m.owner_of.values() if h.owner == "vm"]
    assert sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones) == free_before
    _invariants(m)


VMALLOC_YAML = """\
name: vm
seed: 2
duration: 2s
machine:
  nodes:
    - {memory: 256MiB, cpus: 2}
sysctl: {compaction_proactiveness: 0}
workloads:
  - name: modules
    type: vmalloc
    rate: 200/s
    size: {16KiB: 0.5, 400KiB: 0.4, 4MiB: 0.1}
    lifetime: {exponential: 200ms}
    huge_vmap: true
"""


def test_vmalloc_workload_runs_and_frees_its_areas(tmp_path: Path) -> None:
    from allocsim.run import simulate

    path = tmp_path / "vm.yaml"
    path.write_text(VMALLOC_YAML)
    cfg = load_experiment(path)
    result = simulate(cfg, tmp_path / "out", report=False)
    s = result.summary
    assert s["alloc_requests"] > 0 and s["pages_freed"] > 0
    assert not s["failures"]["by_order"]
    stats = s["callers"]["modules"]
    assert stats["kind:vmalloc"] == 1 and stats["calls"] > 100
    assert stats.get("failed", 0) == 0 and stats["huge"] > 0  # the 4 MiB areas
    assert stats["pages"] > stats["calls"]


@pytest.mark.parametrize("bad,key,expected", [
    ("size: 3KiB", "workloads[0].size", "pages"),
    ("size: {16KiB: 0.5, 4MiB: 0.6}", "workloads[0].size", "summing to 1"),
    ("huge_vmap: maybe", "workloads[0].huge_vmap", "true or false"),
    ("nid: 3", "workloads[0].nid", "a node of this machine"),
    ("size: 2GiB", "workloads[0].size", "no larger than the machine's memory"),
])
def test_bad_vmalloc_keys_name_the_key(tmp_path: Path, bad: str, key: str,
                                       expected: str) -> None:
    text = VMALLOC_YAML.replace("    huge_vmap: true\n", f"    {bad}\n") \
        if not bad.startswith("size") else VMALLOC_YAML.replace(
            "    size: {16KiB: 0.5, 400KiB: 0.4, 4MiB: 0.1}\n", f"    {bad}\n")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert key in str(err.value) and expected in str(err.value)


def test_the_area_mask_gets_nowarn_and_highmem_and_bulk_keeps_the_pcp_free_factor() -> None:
    """__vmalloc_area_node() ORs __GFP_NOWARN and __GFP_HIGHMEM into the mask (GFP_KERNEL
    is traced as 0x2cc2); the bulk path calls __rmqueue_pcplist() directly, so the pcp's
    free_factor (halved by every rmqueue_pcplist()) is left alone."""
    m, tracer = _machine()
    pcp = m.mm.zones[1].per_cpu_pageset[0]
    pcp.free_factor = 8
    area = _run(m, vmalloc(m, "vm", 101, KERNEL, None, False, 0))
    assert area is not None
    assert [g for _, g in _allocs(tracer)] == [KERNEL | int(GFP.NOWARN) | int(GFP.HIGHMEM)] \
        == [0x2CC2]
    assert pcp.free_factor == 8 >> 1  # only the single traced fallback halved it


def test_an_area_larger_than_all_memory_fails_at_once() -> None:
    m, tracer = _machine()
    total = m.mm.managed_pages
    assert _run(m, vmalloc(m, "vm", total + 1, KERNEL, None, False, 0)) is None
    assert _allocs(tracer) == [] and not m.owner_of
