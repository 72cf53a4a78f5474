"""The ``synthetic`` workload: Poisson arrivals of page allocations with random lifetimes.

A stand-in caller that drives runs until the named callers (vmalloc, hugetlb, thread
stacks, ...) arrive. Each request picks an order from the configured distribution and a
CPU from the configured set, calls ``alloc_pages_node()`` with the configured gfp mask,
and frees the block with ``__free_pages()`` after a lifetime drawn from the configured
distribution (on the CPU that allocated it).

One SimPy process per workload instance waits for each arrival (one SimPy event per
request) and hands every allocation to :meth:`Machine.defer_free` with its expiry, so a
free costs no SimPy event: the machine applies it, stamped with its expiry, before the
next allocator call or snapshot. A free whose expiry equals an arrival's time is applied
before that allocation. With ``max_requests``, the process ends once the last of its
allocations has been freed (one more event). Random draws are made in batches from the
workload's own ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from simcore.config.types import WorkloadConfig
from simcore.mm.lru import KIND_ANON, KIND_FILE, KIND_SLAB
from simcore.sim.machine import LRU_DIRTY, LRU_HOT, Machine
from workloads.synthetic_params import LifetimeSpec, SyntheticParams

MEMORY_KIND = {"unreclaimable": -1, "anon": KIND_ANON, "file": KIND_FILE, "slab": KIND_SLAB}
BATCH = 4096
"""Random numbers drawn per batch (per stream)."""
FOREVER = -1


def _lifetimes(spec: LifetimeSpec, rng: np.random.Generator) -> Iterator[int]:
    """Endless lifetimes in ns (``FOREVER`` for allocations that are never freed)."""
    while True:
        if spec.kind == "forever":
            draws = np.full(BATCH, FOREVER, dtype=np.int64)
        elif spec.kind == "fixed":
            assert spec.mean_ns is not None
            draws = np.full(BATCH, spec.mean_ns, dtype=np.int64)
        elif spec.kind == "exponential":
            assert spec.mean_ns is not None
            draws = rng.exponential(spec.mean_ns, BATCH).astype(np.int64)
        else:
            assert spec.median_ns is not None and spec.sigma is not None
            draws = rng.lognormal(np.log(spec.median_ns), spec.sigma, BATCH).astype(np.int64)
        yield from draws.tolist()


def poisson_arrivals(
    rate_per_s: float, weights: tuple[tuple[int, float], ...], cpus: list[int],
    rng: np.random.Generator,
) -> Iterator[tuple[int, int, int]]:
    """Endless ``(interarrival_ns, value, cpu)`` triples: Poisson arrivals.

    Arrivals come at ``rate_per_s``, each with a value drawn from ``(value,
    probability)`` ``weights`` (an order, a size) and a CPU drawn uniformly from ``cpus``.
    """
    values = np.array([v for v, _ in weights], dtype=np.int64)
    probs = np.array([w for _, w in weights], dtype=np.float64)
    mean_gap_ns = 1e9 / rate_per_s
    while True:
        gaps = rng.exponential(mean_gap_ns, BATCH).astype(np.int64).tolist()
        picks = values[rng.choice(len(values), BATCH, p=probs)].tolist()
        which = rng.integers(0, len(cpus), BATCH).tolist()
        for gap, value, c in zip(gaps, picks, which, strict=True):
            yield gap, value, cpus[c]


def issuing_cpus(machine: Machine, cpus: tuple[int, ...] | None) -> list[int]:
    """The CPUs a workload issues its requests from: ``cpus``, or every CPU."""
    return list(cpus) if cpus else [c for n in machine.mm.nodes for c in n.cpus]


def exit_after(machine: Machine, name: str, last_expiry_ns: int) -> Generator[Any, Any, None]:
    """Wait for a caller's last deferred free (at ``last_expiry_ns``), then end it.

    The frees due by then are applied and the caller leaves the OOM candidates
    (:meth:`Machine.owner_exit`).
    """
    if last_expiry_ns > machine.env.now:
        yield machine.env.timeout(last_expiry_ns - int(machine.env.now))
    machine.apply_pending_frees()
    machine.owner_exit(name)


def check_params(machine: Machine, name: str, p: SyntheticParams) -> None:
    """Reject parameters this machine cannot honour (unknown CPU or node)."""
    bad_cpus = [c for c in p.cpus or () if not 0 <= c < machine.nr_cpus]
    if bad_cpus:
        raise ValueError(f"workload {name}: cpus {bad_cpus} do not exist "
                         f"(the machine has CPUs 0..{machine.nr_cpus - 1})")
    if p.nid is not None and not 0 <= p.nid < len(machine.mm.nodes):
        raise ValueError(f"workload {name}: node {p.nid} does not exist")


def _lru_flags(p: SyntheticParams, rng: np.random.Generator) -> Iterator[int]:
    """Endless ``lru_flags`` for the allocations (dirty and hot draws)."""
    if not p.dirty and not p.hot:
        while True:
            yield 0
    while True:
        dirty = rng.random(BATCH) < p.dirty
        hot = rng.random(BATCH) < p.hot
        flags = dirty * LRU_DIRTY + hot * LRU_HOT
        yield from flags.astype(np.int64).tolist()


def synthetic(
    machine: Machine, spec: WorkloadConfig, rng: np.random.Generator
) -> Generator[Any, Any, None]:
    """SimPy process body of one synthetic workload instance.

    The process ends early if the OOM killer kills the caller.
    """
    p: SyntheticParams = spec.params["params"]
    check_params(machine, spec.name, p)
    machine.register_owner(spec.name, MEMORY_KIND[p.memory], p.oom_score_adj)
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    requests = poisson_arrivals(p.rate_per_s, p.order_weights, cpus, rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    lru_flags = _lru_flags(p, rng)
    killed = machine.oom_killed
    name, gfp, nid, limit = spec.name, p.gfp, p.nid, p.max_requests
    alloc, defer_free, timeout = machine.alloc, machine.defer_free, env.timeout
    last_expiry = 0
    issued = 0
    if p.start_ns:
        yield timeout(p.start_ns)
    now = env.now  # read again after every yield: only then can time have passed
    gap, order, cpu = next(requests)
    next_arrival = now + gap
    while limit is None or issued < limit:
        if next_arrival > now:
            yield timeout(next_arrival - now)
            now = env.now
        handle = yield from alloc(name, gfp, order, cpu, nid, next(lru_flags))
        now = env.now
        issued += 1
        if handle is None and killed(name):
            return
        if handle is not None:
            life = next(lifetimes)
            if life != FOREVER:
                expiry = int(now) + life
                defer_free(handle, expiry)
                if expiry > last_expiry:
                    last_expiry = expiry
        gap, order, cpu = next(requests)
        next_arrival = now + gap
    if last_expiry > now:
        yield timeout(last_expiry - now)
    machine.apply_pending_frees()
    machine.owner_exit(name)
