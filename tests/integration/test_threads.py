"""Kernel thread stacks and fork page tables (kernel/fork.c of 6.1)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from conftest import CallLog

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.errors import ConfigError
from simcore.mm.constants import MT_UNMOVABLE
from simcore.mm.gfp import GFP, THREADINFO_GFP
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import MT_SHIFT, PG_HEAD
from simcore.sim.machine import Machine
from workloads.registry import load_experiment
from workloads.slab import kmem_cache_shrink
from workloads.synthetic_params import LifetimeSpec
from workloads.task_objects import CACHES_KEY
from workloads.threads import (
    ThreadsParams,
    _exit_later,
    alloc_thread_stack_node,
    cached_stacks,
    fork,
    free_thread_stack,
)

PAGES_128MIB = 128 * 1024 * 1024 // 4096
RCU = 10_000_000


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


def _invariants(m: Machine) -> None:
    m.apply_pending_frees()
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})


def test_vmap_stack_is_four_bulk_pages_then_the_cpu_cache_is_reused() -> None:
    """Behaviour 68: a new VMAP stack is a 16 KiB vmalloc area (4 order-0 pages from the
    bulk allocator: nothing traced) with GFP_KERNEL|__GFP_ZERO; a freed stack fills an
    empty slot of its CPU's cache, and the next fork there takes it without allocating."""
    m, tracer = _machine()
    stack = _run(m, alloc_thread_stack_node(m, "t", 0, None, True))
    assert stack is not None and len(stack) == 4 and all(h.order == 0 for h in stack)
    assert _allocs(tracer) == []  # 4 pages: one bulk call, untraced
    assert all(h.gfp & int(GFP.ZERO) and not h.gfp & int(GFP.ACCOUNT) for h in stack)
    free_thread_stack(m, 0, stack, True, RCU)
    assert cached_stacks(m, 0)[0] is stack
    before = m.stats.alloc_requests
    again = _run(m, alloc_thread_stack_node(m, "t", 0, None, True))
    assert again is stack and m.stats.alloc_requests == before  # no page allocation
    assert cached_stacks(m, 0) == [None, None]
    other = _run(m, alloc_thread_stack_node(m, "t", 1, None, True))
    assert other is not stack  # CPU 1's cache is its own


def test_with_both_slots_taken_a_stack_is_freed_after_an_rcu_grace_period() -> None:
    m, _ = _machine()
    stacks = [_run(m, alloc_thread_stack_node(m, "t", 0, None, True)) for _ in range(3)]
    for s in stacks:
        free_thread_stack(m, 0, s, True, RCU)
    assert cached_stacks(m, 0) == [stacks[0], stacks[1]]
    third = stacks[2]
    assert all(h.alive for h in third)  # waiting for the grace period
    m.env.run(until=m.env.now + RCU + 1)
    assert not any(h.alive for h in third)  # thread_stack_free_rcu(): cache full: vfree
    _invariants(m)


def test_the_rcu_callback_tries_the_cache_again() -> None:
    m, _ = _machine()
    stacks = [_run(m, alloc_thread_stack_node(m, "t", 0, None, True)) for _ in range(3)]
    for s in stacks:
        free_thread_stack(m, 0, s, True, RCU)
    _run(m, alloc_thread_stack_node(m, "t", 0, None, True))  # a fork empties slot 0
    m.env.run(until=m.env.now + RCU + 1)
    assert stacks[2] in cached_stacks(m, 0) and all(h.alive for h in stacks[2])


def test_without_vmap_stack_a_stack_is_one_order2_unmovable_block() -> None:
    """Behaviour 69: THREADINFO_GFP, order 2, non-compound, UNMOVABLE, freed after RCU."""
    m, tracer = _machine()
    stack = _run(m, alloc_thread_stack_node(m, "t", 0, None, False))
    assert stack is not None and len(stack) == 1
    (h,) = stack
    assert h.order == 2 and _allocs(tracer) == [(2, int(THREADINFO_GFP))]
    assert m.mm.pages.info[h.pfn] >> MT_SHIFT == MT_UNMOVABLE
    assert not m.mm.pages.flags[h.pfn] & 0x02  # not PG_head: no __GFP_COMP
    free_thread_stack(m, 0, stack, False, RCU)
    assert h.alive
    m.env.run(until=m.env.now + RCU + 1)
    assert not h.alive
    _invariants(m)


def test_a_process_fork_allocates_an_order1_pgd_with_pti_and_its_page_tables() -> None:
    m, tracer = _machine()
    p = ThreadsParams(rate_per_s=1.0, lifetime=LifetimeSpec("forever"), page_tables=3,
                      slab_objects=False)
    task = _run(m, fork(m, "t", 0, p))
    assert task is not None
    stack, tables, objects = task
    assert objects == []
    assert [h.order for h in tables] == [1, 0, 0, 0]
    assert [o for o, _ in _allocs(tracer)] == [1, 0, 0, 0]
    nopti = ThreadsParams(rate_per_s=1.0, lifetime=LifetimeSpec("forever"), pti=False,
                          page_tables=0, slab_objects=False)
    _, tables, _ = _run(m, fork(m, "t", 0, nopti))
    assert [h.order for h in tables] == [0]


def test_a_fork_allocates_its_slab_objects_and_exit_frees_them() -> None:
    m, _ = _machine()
    thread = ThreadsParams(rate_per_s=1.0, lifetime=LifetimeSpec("forever"), new_mm=False)
    process = ThreadsParams(rate_per_s=1.0, lifetime=LifetimeSpec("forever"), vmas=5)
    t = _run(m, fork(m, "t", 0, thread))
    assert sorted(cache.name for cache, _ in t[2]) == ["pid", "task_struct"]
    proc = _run(m, fork(m, "t", 0, process))
    names = Counter(cache.name for cache, _ in proc[2])
    assert names == {"task_struct": 1, "pid": 1, "cred_jar": 1, "files_cache": 1,
                     "sighand_cache": 1, "signal_cache": 1, "mm_struct": 1,
                     "vm_area_struct": 5, "anon_vma": 2, "anon_vma_chain": 4,
                     "maple_node": 2}
    # mas_expected_entries(): ceil(11 / 14) = 1 leaf + 1 internal node + 3 spare; the
    # 3 spare nodes go back at mas_destroy()
    assert m.extras[CACHES_KEY]["maple_node"].stats["objects"] == 5
    task_struct = m.extras[CACHES_KEY]["task_struct"]
    assert task_struct.stats["objects"] == 2
    # 6,208-byte objects on 2 CPUs: calculate_order() picks order 3, 5 per slab (the
    # slabinfo line of the oracle host), a compound UNMOVABLE slab charged to the cache
    assert task_struct.oo == (3, 5)
    (slab,) = [h for h in m.owner_of.values() if h.owner == "task_struct"]
    assert slab.order == 3 and m.mm.pages.flags[slab.pfn] & PG_HEAD
    assert not m.owners["task_struct"].killable
    for task in (t, proc):
        _run(m, _exit_later(m, 0, task, process, 1))
    for cache in m.extras[CACHES_KEY].values():
        kmem_cache_shrink(m, cache)
    assert not any(h.owner in m.extras[CACHES_KEY] for h in m.owner_of.values())
    _invariants(m)


THREADS_YAML = """\
name: th
seed: 3
duration: 1s
machine:
  nodes:
    - {memory: 256MiB, cpus: 2}
sysctl: {compaction_proactiveness: 0}
workloads:
  - name: forks
    type: threads
    rate: 500/s
    burst: {1: 0.8, 16: 0.2}
    lifetime: {exponential: 50ms}
"""


def test_threads_workload_runs(tmp_path: Path) -> None:
    from allocsim.run import simulate

    path = tmp_path / "th.yaml"
    path.write_text(THREADS_YAML)
    result = simulate(load_experiment(path), tmp_path / "out", report=False)
    s = result.summary
    assert s["alloc_requests"] > 0 and s["pages_freed"] > 0
    assert not s["failures"]["by_order"]
    stats = s["callers"]["forks"]
    assert stats["kind:threads"] == 1 and stats["forks"] > 300
    assert 0 < stats["stacks_from_cache"] < stats["forks"]  # the per-CPU caches work


@pytest.mark.parametrize("bad,key", [
    ("burst: {1: 0.5, 16: 0.2}", "workloads[0].burst"),
    ("burst: 0", "workloads[0].burst"),
    ("page_tables: -1", "workloads[0].page_tables"),
    ("vmap_stack: sometimes", "workloads[0].vmap_stack"),
])
def test_bad_threads_keys_name_the_key(tmp_path: Path, bad: str, key: str) -> None:
    text = THREADS_YAML.replace("    burst: {1: 0.8, 16: 0.2}\n", f"    {bad}\n")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert key in str(err.value)


def test_a_stack_whose_owner_was_oom_killed_never_fills_a_cache_slot() -> None:
    m, _ = _machine()
    m.register_owner("t")
    stack = _run(m, alloc_thread_stack_node(m, "t", 0, None, True))
    m._oom_kill("t")  # its pages are freed with everything else it holds
    assert all(h.gone for h in stack)
    free_thread_stack(m, 0, stack, True, RCU)
    assert cached_stacks(m, 0) == [None, None]
    _invariants(m)


def test_max_requests_counts_forks_even_inside_a_burst(tmp_path: Path) -> None:
    from allocsim.run import simulate

    text = THREADS_YAML.replace("    burst: {1: 0.8, 16: 0.2}\n",
                                "    burst: 4\n    max_requests: 10\n    oom_score_adj: -1000\n")
    path = tmp_path / "th.yaml"
    path.write_text(text)
    s = simulate(load_experiment(path), tmp_path / "out", report=False).summary
    assert s["callers"]["forks"]["forks"] == 10
