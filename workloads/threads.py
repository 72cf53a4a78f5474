"""The ``threads`` caller: forks and exits, with their kernel stacks and page tables.

Mirrors kernel/fork.c of 6.1 (``alloc_thread_stack_node()``, ``free_thread_stack()``):

- with ``CONFIG_VMAP_STACK`` (``vmap_stack: true``, the x86_64 default) a stack is a
  ``THREAD_SIZE`` (16 KiB) vmalloc area of order-0 pages with ``THREADINFO_GFP &
  ~__GFP_ACCOUNT`` (``GFP_KERNEL | __GFP_ZERO``; vmalloc adds NOWARN and HIGHMEM). A fork
  first takes a stack from the forking CPU's cache (``cached_stacks[2]``): no page
  allocation. An exiting task's stack goes into a free slot of the cache of the CPU it
  exits on (drawn from the workload's CPUs: the scheduler may have moved it); if both
  are taken it is freed after an RCU grace period (``call_rcu()``), whose callback tries
  that cache once more before ``vfree()`` (spec behaviour 68);
- without it (``vmap_stack: false``) a stack is one non-compound order-2 block
  (``alloc_pages_node(node, THREADINFO_GFP, THREAD_SIZE_ORDER)``; UNMOVABLE,
  pcp-eligible, spec behaviour 69), freed after an RCU grace period.

A fork of a process (``new_mm: true``) also allocates its page tables: the PGD
(``pgd_alloc()``: order 1 with ``CONFIG_PAGE_TABLE_ISOLATION``, ``pti: true``, even when
PTI is off at boot; order 0 without) and ``page_tables`` more order-0 pages (the
PUD/PMD/PTE pages ``copy_page_range()`` builds for the parent's anonymous VMAs: at
least 6 for a heap and a stack in separate PGD slots), all with ``GFP_PGTABLE_USER``
(``GFP_KERNEL_ACCOUNT | __GFP_ZERO``), freed at exit.

A fork also allocates its slab objects (``slab_objects: true``, the default):
``task_struct`` and ``pid`` for a thread, plus credentials, ``files_struct``,
``sighand_struct``, ``signal_struct``, ``mm_struct``, one ``vm_area_struct`` per parent
VMA (``vmas``, default 16) and the anonymous VMAs' ``anon_vma`` links for a process, from
machine-wide SLUB caches (:mod:`workloads.task_objects`).

SIMPLIFICATIONS: see :mod:`workloads.task_objects` for the slab objects; the page tables
of a process stay at their fork-time count; the RCU grace period is a fixed time
(``rcu_grace``), and the callback's ``vfree()`` frees at once (in the kernel it runs in
softirq and defers the pages to a workqueue); CPU hot-unplug does not empty caches;
cached stacks stay charged to the workload that allocated them and die with it if it is
OOM-killed (the kernel's belong to no task).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_bool,
    expect_duration_ns,
    expect_int,
    expect_mapping,
    expect_number,
    expect_rate_per_s,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate
from simcore.errors import ConfigError
from simcore.mm.gfp import GFP, THREADINFO_GFP
from simcore.sim.machine import Allocation, Machine
from workloads.schema import THREADS
from workloads.stats import caller_stats
from workloads.synthetic import FOREVER, _lifetimes, issuing_cpus, poisson_arrivals
from workloads.synthetic_params import (
    WEIGHT_SUM_TOLERANCE,
    LifetimeSpec,
    _cpus,
    _dump_lifetime,
    _lifetime,
    _optional_int,
    check_cpus_and_node,
)
from workloads.task_objects import TaskObjects, alloc_task_objects, free_task_objects
from workloads.vmalloc import vfree, vmalloc

THREADS_KEYS = names(THREADS)
THREADS_REQUIRED = required(THREADS)
THREAD_SIZE_ORDER = 2
"""x86_64 without KASAN: 16 KiB stacks."""
NR_CACHED_STACKS = 2
STACK_GFP = int(THREADINFO_GFP) & ~int(GFP.ACCOUNT)
"""``THREADINFO_GFP & ~__GFP_ACCOUNT``: a VMAP stack's mask (memcg is charged by hand)."""
PGTABLE_GFP = int(THREADINFO_GFP)
"""``GFP_PGTABLE_USER`` = ``GFP_KERNEL_ACCOUNT | __GFP_ZERO`` (the same bits)."""
Task = tuple[list[Allocation], list[Allocation], TaskObjects]
"""What a live task holds: its stack, its page tables, its slab objects."""
CACHE_KEY = "cached_stacks"
"""Where the per-CPU stack caches live in :attr:`Machine.extras` (shared by all callers)."""


@dataclass(frozen=True)
class ThreadsParams:
    """Parsed parameters of one ``threads`` workload.

    Attributes:
        rate_per_s: Poisson arrival rate of fork bursts.
        burst_weights: ``(forks, probability)``: how many forks an arrival makes at once.
        lifetime: How long a thread lives before it exits.
        vmap_stack: ``CONFIG_VMAP_STACK``.
        new_mm: Each fork is a process with its own page tables (else a thread).
        pti: ``CONFIG_PAGE_TABLE_ISOLATION``: the PGD is an order-1 block.
        page_tables: Order-0 page-table pages below the PGD per process.
        slab_objects: A fork allocates its slab objects (``task_struct``, ...; see
            :mod:`workloads.task_objects`).
        vmas: VMAs of the forking process (one ``vm_area_struct`` each in the child).
        rcu_grace_ns: The RCU grace period before a deferred stack free.
        nid: The node of the ``task_struct`` and stack (``tsk_fork_get_node()``: what a
            ``kthread_create_on_node()`` fork asks for); None: ``NUMA_NO_NODE``, as for
            every user fork. The other allocations use the forking CPU's node.
        cpus, start_ns, oom_score_adj: As for the synthetic workload.
        max_requests: Stop after this many forks (a burst stops there too).
    """

    rate_per_s: float
    lifetime: LifetimeSpec
    oom_score_adj: int = 0
    burst_weights: tuple[tuple[int, float], ...] = ((1, 1.0),)
    vmap_stack: bool = True
    new_mm: bool = True
    pti: bool = True
    page_tables: int = 6
    slab_objects: bool = True
    vmas: int = 16
    rcu_grace_ns: int = 10_000_000
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0


def _burst(value: object, key: str, source: str) -> tuple[tuple[int, float], ...]:
    if not isinstance(value, Mapping):
        return ((expect_int(value, key, source, 1, 100_000), 1.0),)
    if not value:
        raise ConfigError(source, key, "at least one {forks: weight} entry", value)
    weights = {expect_int(int(k) if isinstance(k, str) and k.isdecimal() else k,
                          child(key, str(k)), source, 1, 100_000):
               expect_number(w, child(key, str(k)), source, above=0)
               for k, w in value.items()}
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ConfigError(source, key, f"weights summing to 1 (within "
                          f"{WEIGHT_SUM_TOLERANCE:g}); these sum to {total:.9g}", value)
    return tuple(sorted(weights.items()))


def parse_threads_params(raw: Mapping[str, object], key_prefix: str,
                         source: str) -> Mapping[str, object]:
    """Parse a ``threads`` workload's keys; ``rate`` and ``lifetime`` are required."""
    data = expect_mapping(raw, key_prefix, source, THREADS_KEYS, THREADS_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    return {"params": ThreadsParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        lifetime=_lifetime(data["lifetime"], key("lifetime"), source),
        burst_weights=_burst(data.get("burst", 1), key("burst"), source),
        vmap_stack=expect_bool(data.get("vmap_stack", True), key("vmap_stack"), source),
        new_mm=expect_bool(data.get("new_mm", True), key("new_mm"), source),
        pti=expect_bool(data.get("pti", True), key("pti"), source),
        page_tables=expect_int(data.get("page_tables", 6), key("page_tables"), source, 0, 64),
        slab_objects=expect_bool(data.get("slab_objects", True), key("slab_objects"), source),
        vmas=expect_int(data.get("vmas", 16), key("vmas"), source, 1, 65530),
        rcu_grace_ns=expect_duration_ns(data.get("rcu_grace", "10ms"), key("rcu_grace"),
                                        source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
        oom_score_adj=expect_int(data.get("oom_score_adj", 0), key("oom_score_adj"), source,
                                 -1000, 1000),
    )}


def check_threads_params(params: Mapping[str, object], machine: MachineConfig,
                         key_prefix: str, source: str) -> None:
    """Reject CPUs or a node the machine does not have."""
    p = params["params"]
    assert isinstance(p, ThreadsParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)


def dump_threads_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_threads_params`, in human units."""
    p = params["params"]
    if not isinstance(p, ThreadsParams):
        raise TypeError(f"expected ThreadsParams under 'params', got {p!r}")
    burst = dict(p.burst_weights)
    return {
        "rate": format_rate(p.rate_per_s),
        "burst": next(iter(burst)) if len(burst) == 1 else burst,
        "lifetime": _dump_lifetime(p.lifetime),
        "vmap_stack": p.vmap_stack,
        "new_mm": p.new_mm,
        "pti": p.pti,
        "page_tables": p.page_tables,
        "slab_objects": p.slab_objects,
        "vmas": p.vmas,
        "rcu_grace": format_duration(p.rcu_grace_ns),
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
        "oom_score_adj": p.oom_score_adj,
    }


# -- kernel/fork.c ------------------------------------------------------------------------
def cached_stacks(machine: Machine, cpu: int) -> list[list[Allocation] | None]:
    """``per_cpu(cached_stacks, cpu)``: the CPU's two slots (None = empty)."""
    caches: dict[int, list[list[Allocation] | None]] = machine.extras.setdefault(CACHE_KEY, {})
    if cpu not in caches:
        caches[cpu] = [None] * NR_CACHED_STACKS
    return caches[cpu]


def free_vm_stack_cache(machine: Machine, cpu: int) -> None:
    """``free_vm_stack_cache()``: ``vfree()`` the CPU's cached stacks (CPU hot-unplug)."""
    slots = cached_stacks(machine, cpu)
    for i in range(NR_CACHED_STACKS):
        stack = slots[i]
        slots[i] = None
        if stack is not None and not any(h.gone for h in stack):
            vfree(machine, stack)


def try_release_thread_stack_to_cache(machine: Machine, cpu: int,
                                      stack: list[Allocation]) -> bool:
    """``try_release_thread_stack_to_cache()``: the first empty slot takes the stack."""
    if any(h.gone for h in stack):
        return True  # its owner was OOM-killed: the pages are already free
    slots = cached_stacks(machine, cpu)
    for i in range(NR_CACHED_STACKS):
        if slots[i] is None:
            slots[i] = stack
            return True
    return False


def alloc_thread_stack_node(machine: Machine, owner: str, cpu: int, nid: int | None,
                            vmap_stack: bool, stats: Counter[str] | None = None
                            ) -> Generator[Any, Any, list[Allocation] | None]:
    """``alloc_thread_stack_node()``: a cached stack, else a new one (None: -ENOMEM).

    ``stats`` counts ``stacks_from_cache``.
    """
    if not vmap_stack:
        handle = yield from machine.alloc(owner, int(THREADINFO_GFP), THREAD_SIZE_ORDER, cpu,
                                          nid)
        return None if handle is None else [handle]
    slots = cached_stacks(machine, cpu)
    for i in range(NR_CACHED_STACKS):
        stack = slots[i]
        if stack is not None:
            slots[i] = None
            if any(h.gone for h in stack):  # SIMPLIFICATION: its owner was OOM-killed
                continue
            if stats is not None:
                stats["stacks_from_cache"] += 1
            return stack
    area = yield from vmalloc(machine, owner, 1 << THREAD_SIZE_ORDER, STACK_GFP, nid, False,
                              cpu)
    return area


def free_thread_stack(machine: Machine, cpu: int, stack: list[Allocation],
                      vmap_stack: bool, rcu_grace_ns: int) -> None:
    """``free_thread_stack()``: to the CPU's cache, else after an RCU grace period."""
    if vmap_stack and try_release_thread_stack_to_cache(machine, cpu, stack):
        return
    machine.env.process(_thread_stack_free_rcu(machine, cpu, stack, vmap_stack,
                                               rcu_grace_ns))


def _thread_stack_free_rcu(machine: Machine, cpu: int, stack: list[Allocation],
                           vmap_stack: bool, rcu_grace_ns: int) -> Generator[Any, Any, None]:
    """``thread_stack_free_rcu()``: after the grace period, the cache again, else free."""
    yield machine.env.timeout(rcu_grace_ns)
    if not vmap_stack:
        machine.free(stack[0])  # __free_pages(page, THREAD_SIZE_ORDER)
        return
    if try_release_thread_stack_to_cache(machine, cpu, stack):
        return
    vfree(machine, stack)


def fork(machine: Machine, owner: str, cpu: int, p: ThreadsParams,
         stats: Counter[str] | None = None) -> Generator[Any, Any, Task | None]:
    """One fork: the slab objects, the stack, then the page tables (``dup_mm()``).

    SIMPLIFICATION: ``copy_process()`` allocates the stack right after the ``task_struct``
    (``dup_task_struct()``), before the other objects.

    Returns ``(stack, page tables, slab objects)``, or None when it fails (all undone).
    """
    objects: TaskObjects = []
    if p.slab_objects:
        got = yield from alloc_task_objects(machine, cpu, p.nid, p.new_mm, p.vmas)
        if got is None:
            return None
        objects = got
    stack = yield from alloc_thread_stack_node(machine, owner, cpu, p.nid, p.vmap_stack,
                                               stats)
    if stack is None:
        free_task_objects(machine, objects)
        return None
    tables: list[Allocation] = []
    if p.new_mm:
        orders = [1 if p.pti else 0] + [0] * p.page_tables
        for order in orders:
            # pgd_alloc(), pte_alloc_one(): the forking task's node
            handle = yield from machine.alloc(owner, PGTABLE_GFP, order, cpu, None)
            if handle is None:
                for h in tables:
                    machine.free(h)
                free_thread_stack(machine, cpu, stack, p.vmap_stack, p.rcu_grace_ns)
                free_task_objects(machine, objects)
                return None
            tables.append(handle)
    return stack, tables, objects


def threads_workload(machine: Machine, spec: WorkloadConfig,
                     rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: bursts of forks; each task exits after its lifetime.

    A task exits on a CPU drawn uniformly from the workload's CPUs (the scheduler places
    and moves tasks; the kernel frees the stack on the CPU the task last ran on).
    """
    p: ThreadsParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, oom_score_adj=p.oom_score_adj)
    stats = caller_stats(machine, name, "threads")
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    arrivals = poisson_arrivals(p.rate_per_s, p.burst_weights, cpus, rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    issued = 0
    while p.max_requests is None or issued < p.max_requests:
        gap, forks, cpu = next(arrivals)
        yield env.timeout(gap)
        for _ in range(forks):
            if p.max_requests is not None and issued >= p.max_requests:
                return
            task = yield from fork(machine, name, cpu, p, stats)
            issued += 1
            stats["forks"] += 1
            if machine.oom_killed(name):
                return
            if task is None:
                stats["failed"] += 1
                continue
            life = next(lifetimes)
            if life != FOREVER:
                exit_cpu = cpus[int(rng.integers(0, len(cpus)))]
                env.process(_exit_later(machine, exit_cpu, task, p, life))


def _exit_later(machine: Machine, cpu: int, task: Task, p: ThreadsParams,
                life_ns: int) -> Generator[Any, Any, None]:
    yield machine.env.timeout(life_ns)
    stack, tables, objects = task
    for h in tables:
        machine.free(h)
    free_thread_stack(machine, cpu, stack, p.vmap_stack, p.rcu_grace_ns)
    free_task_objects(machine, objects)
