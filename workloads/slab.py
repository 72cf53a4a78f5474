"""The ``slab`` caller: one SLUB cache whose objects arrive at a rate and live a lifetime.

Mirrors the page-allocator side of mm/slub.c of 6.1.20 (the cache model is in
:mod:`workloads.slub`):

- the cache's order is what ``calculate_order()`` chooses for its ``s->size`` on this
  machine's CPU count (``oo``), with ``min`` at ``get_order(s->size)``;
- ``kmem_cache_alloc()`` takes an object from the CPU's slab, else from a partial slab
  (``get_partial()``), else allocates a slab (``new_slab()`` → ``allocate_slab()``):
  first at ``oo``'s order with ``(flags | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_NOFAIL``,
  and, when that may reclaim directly and ``oo`` is above ``min``, with
  ``__GFP_NOMEMALLOC`` and no reclaim at all; on failure at ``min``'s order with the
  cache's own flags (``order_fallback``). ``flags`` is the caller's mask restricted to
  ``GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK`` plus ``s->allocflags``: ``__GFP_COMP``
  when ``oo``'s order is above 0 (every slab of such a cache is compound, the fallback
  too), ``__GFP_RECLAIMABLE`` for ``reclaimable: true`` (``SLAB_RECLAIM_ACCOUNT``).
  Slab pages are therefore UNMOVABLE or RECLAIMABLE, never MOVABLE;
- ``kmem_cache_free()`` at the end of an object's lifetime: a slab page goes back to the
  buddy allocator only when its last object is freed (and its node already has
  ``min_partial`` partial slabs, or at ``kmem_cache_shrink()`` when the caller stops);
- a reclaimable cache's pages are on the node's slab shrinker list
  (:mod:`simcore.mm.vmscan`): reclaim may take a page with its objects.

Slab is kernel memory: the OOM killer never picks the cache (``killable=False``).
``summary.json`` ``callers`` counts, under SLUB's ``CONFIG_SLUB_STATS`` names where one
exists: ``objects`` (successful ``kmem_cache_alloc()`` calls), ``failed`` (calls that
returned NULL), ``alloc_slab`` (new slabs; ``order_fallback`` of them at ``min``'s order,
the rest at ``oo``'s), ``alloc_from_partial``, ``free_slab`` (slabs discarded),
``slabs_reclaimed`` / ``objects_reclaimed`` (taken by the shrinker), and the cache's
shape as ``/proc/slabinfo`` prints it: ``objsize``, ``objperslab``, ``pagesperslab``.

SIMPLIFICATIONS: see :mod:`workloads.slub`; objects arrive one at a time (Poisson); a
discarded slab page is freed on the CPU that allocated it (to its pcp list); the objects
a shrinker takes are counted when the cache next touches their slab.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_bool,
    expect_int,
    expect_mapping,
    expect_rate_per_s,
    expect_unit,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate, parse_size_bytes
from simcore.errors import ConfigError
from simcore.mm.constants import PAGE_SIZE
from simcore.mm.gfp import GFP_KERNEL
from simcore.mm.lru import KIND_SLAB
from simcore.sim.machine import Allocation, Machine
from workloads.schema import SLAB
from workloads.slub import (
    GFP_SLAB_BUG_MASK,
    SLUB_MAX_ORDER,
    KmemCache,
    cache_size,
    calculate_order,
    first_attempt_gfp,
    new_slab_flags,
)
from workloads.stats import caller_stats
from workloads.synthetic import FOREVER, _lifetimes, issuing_cpus, poisson_arrivals
from workloads.synthetic_params import (
    LifetimeSpec,
    _dump_lifetime,
    _gfp,
    _lifetime,
    check_cpus_and_node,
    parse_placement,
)

SLAB_KEYS = names(SLAB)
SLAB_REQUIRED = required(SLAB)
MAX_OBJECT_SIZE = 4 << 20
"""Largest ``object_size`` accepted (an order-10 slab of one object)."""
ROW_BITS = 32
"""A pending free is one int: ``expiry_ns << ROW_BITS | row``."""


@dataclass(frozen=True)
class SlabParams:
    """Parsed parameters of one ``slab`` workload (one cache, named after the workload).

    Attributes:
        object_size_bytes: The object size (``/proc/slabinfo``'s ``<objsize>`` is the
            aligned ``s->size``: give that to reproduce a real cache).
        rate_per_s: Poisson rate of ``kmem_cache_alloc()`` calls.
        lifetime: How long an object lives before ``kmem_cache_free()``.
        align_bytes: The cache's alignment (a power of two, at least 8).
        reclaimable: ``SLAB_RECLAIM_ACCOUNT`` (dentries, inodes): ``__GFP_RECLAIMABLE``
            slabs the shrinker may free.
        gfp: The caller's mask (default ``GFP_KERNEL``).
        slub_max_order: The ``slub_max_order=`` boot parameter (default 3).
        cpus, nid, start_ns: As for the synthetic workload (``nid`` is
            ``kmem_cache_alloc_node()``'s node; None: ``NUMA_NO_NODE``).
        max_requests: Stop after this many ``kmem_cache_alloc()`` calls; the caller then
            waits for its objects to be freed and shrinks the cache.
    """

    object_size_bytes: int
    rate_per_s: float
    lifetime: LifetimeSpec
    align_bytes: int = 8
    reclaimable: bool = False
    gfp: int = int(GFP_KERNEL)
    slub_max_order: int = SLUB_MAX_ORDER
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0

    @property
    def size(self) -> int:
        """``s->size``: the object size aligned."""
        return cache_size(self.object_size_bytes, self.align_bytes)


def _align(value: object, key: str, source: str) -> int:
    align = expect_int(value, key, source, 8, PAGE_SIZE)
    if align & (align - 1):
        raise ConfigError(source, key, f"a power of two in 8..{PAGE_SIZE}", value)
    return align


def parse_slab_params(raw: Mapping[str, object], key_prefix: str,
                      source: str) -> Mapping[str, object]:
    """Parse a ``slab`` workload's keys (``object_size``, ``rate``, ``lifetime`` required).

    Raises:
        ConfigError: Naming e.g. ``workloads[0].object_size``.
    """
    data = expect_mapping(raw, key_prefix, source, SLAB_KEYS, SLAB_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    size = expect_unit(parse_size_bytes, data["object_size"], key("object_size"), source)
    if not 1 <= size <= MAX_OBJECT_SIZE:
        raise ConfigError(source, key("object_size"), f"a size in 1..{MAX_OBJECT_SIZE} "
                          "bytes", data["object_size"])
    gfp = _gfp(data.get("gfp", "GFP_KERNEL"), key("gfp"), source)
    if gfp & GFP_SLAB_BUG_MASK:
        raise ConfigError(source, key("gfp"), "a mask without __GFP_DMA32 or __GFP_HIGHMEM "
                          "(GFP_SLAB_BUG_MASK: slab pages must be kernel-mapped)",
                          data["gfp"])
    return {"params": SlabParams(
        object_size_bytes=size,
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        lifetime=_lifetime(data["lifetime"], key("lifetime"), source),
        align_bytes=_align(data.get("align", 8), key("align"), source),
        reclaimable=expect_bool(data.get("reclaimable", False), key("reclaimable"), source),
        gfp=gfp,
        slub_max_order=expect_int(data.get("slub_max_order", SLUB_MAX_ORDER),
                                  key("slub_max_order"), source, 0),
        **parse_placement(data, key_prefix, source),
    )}


def check_slab_params(params: Mapping[str, object], machine: MachineConfig,
                      key_prefix: str, source: str) -> None:
    """Reject what the machine cannot run.

    That is CPUs or a node it lacks, a ``slub_max_order`` above its ``max_order``, and
    an object no slab order of this machine can hold.
    """
    p = params["params"]
    assert isinstance(p, SlabParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)
    if p.slub_max_order > machine.max_order:
        raise ConfigError(source, child(key_prefix, "slub_max_order"),
                          f"an order in 0..{machine.max_order} (machine.max_order)",
                          p.slub_max_order)
    nr_cpus = sum(node.cpus for node in machine.nodes)
    if calculate_order(p.size, nr_cpus, p.slub_max_order, machine.max_order) < 0:
        raise ConfigError(source, child(key_prefix, "object_size"),
                          f"an object that fits an order-{machine.max_order} slab",
                          p.object_size_bytes)


def dump_slab_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_slab_params` (sizes in bytes)."""
    from simcore.mm.gfp import format_gfp

    p = params["params"]
    if not isinstance(p, SlabParams):
        raise TypeError(f"expected SlabParams under 'params', got {p!r}")
    return {
        "object_size": p.object_size_bytes,
        "align": p.align_bytes,
        "reclaimable": p.reclaimable,
        "rate": format_rate(p.rate_per_s),
        "lifetime": _dump_lifetime(p.lifetime),
        "gfp": format_gfp(p.gfp),
        "slub_max_order": p.slub_max_order,
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
    }


# -- mm/slub.c against the machine ----------------------------------------------------------
def kmem_cache_create(machine: Machine, name: str, p: SlabParams) -> KmemCache:
    """The cache of workload ``name`` on this machine (its CPUs and node distances)."""
    stats = caller_stats(machine, name, "slab")
    node_order = [list(node.node_order) for node in machine.mm.nodes]
    cache = KmemCache(name, p.size, machine.nr_cpus, node_order, p.reclaimable, stats,
                      p.slub_max_order, machine.mm.max_order)
    stats["objsize"] = cache.size
    stats["objperslab"] = cache.oo[1]
    stats["pagesperslab"] = 1 << cache.oo[0]
    return cache


def allocate_slab(machine: Machine, cache: KmemCache, gfp: int, cpu: int, nid: int | None
                  ) -> Generator[Any, Any, tuple[Allocation | None, int]]:
    """``new_slab()`` → ``allocate_slab()``: ``(page, objects)``, or ``(None, 0)``."""
    flags = new_slab_flags(gfp, cache.allocflags)
    (oo_order, oo_objects), (min_order, min_objects) = cache.oo, cache.min
    page = yield from machine.alloc(cache.name, first_attempt_gfp(flags, oo_order, min_order),
                                    oo_order, cpu, nid)
    if page is not None:
        return page, oo_objects
    page = yield from machine.alloc(cache.name, flags, min_order, cpu, nid)
    if page is None:
        return None, 0
    cache.stats["order_fallback"] += 1
    return page, min_objects


def kmem_cache_alloc(machine: Machine, cache: KmemCache, gfp: int, cpu: int,
                     nid: int | None) -> Generator[Any, Any, int]:
    """``kmem_cache_alloc_node()``: the row of the slab holding the new object, or -1."""
    sid = cache.take_object(cpu, nid, machine.cpu_node(cpu))
    free_discarded(machine, cache)
    if sid >= 0:
        return sid
    page, objects = yield from allocate_slab(machine, cache, gfp, cpu, nid)
    if page is None:
        return -1
    return cache.install(page, objects, cpu, machine.mm.page_zone(page.pfn).nid)


def kmem_cache_free(machine: Machine, cache: KmemCache, sid: int) -> None:
    """``kmem_cache_free()`` of one object of row ``sid``."""
    cache.free_object(sid)
    free_discarded(machine, cache)


def kmem_cache_shrink(machine: Machine, cache: KmemCache) -> None:
    """``kmem_cache_shrink()``: CPU slabs given up, empty slabs freed."""
    cache.shrink()
    free_discarded(machine, cache)


def free_discarded(machine: Machine, cache: KmemCache) -> None:
    """``__free_slab()`` → ``__free_pages()`` of every slab the cache discarded."""
    for page in cache.pop_discarded():
        machine.free(page)


# -- the workload ---------------------------------------------------------------------------
class ObjectFrees:
    """The cache's pending ``kmem_cache_free()`` calls.

    A heap of ints and a SimPy process that wakes at the earliest (or when an earlier
    one is pushed).
    """

    def __init__(self, machine: Machine, cache: KmemCache) -> None:
        self.machine = machine
        self.cache = cache
        self.heap: list[int] = []
        self.closing = False
        self._wake: Any = None
        self._deadline = -1
        self.process = machine.env.process(self._run())

    def push(self, expiry_ns: int, sid: int) -> None:
        """Free an object of row ``sid`` at ``expiry_ns``."""
        heapq.heappush(self.heap, expiry_ns << ROW_BITS | sid)
        if self._wake is not None and (self._deadline < 0 or expiry_ns < self._deadline):
            self._poke()

    def close(self) -> None:
        """No more objects will come: the process ends once the heap is empty."""
        self.closing = True
        if self._wake is not None:
            self._poke()

    def _poke(self) -> None:
        if not self._wake.triggered:
            self._wake.succeed()

    def _run(self) -> Generator[Any, Any, None]:
        env, heap, mask = self.machine.env, self.heap, (1 << ROW_BITS) - 1
        while True:
            now = env.now
            while heap and heap[0] >> ROW_BITS <= now:
                kmem_cache_free(self.machine, self.cache, heapq.heappop(heap) & mask)
            if not heap and self.closing:
                return
            self._wake = env.event()
            self._deadline = heap[0] >> ROW_BITS if heap else -1
            if heap:
                yield self._wake | env.timeout(self._deadline - now)
            else:
                yield self._wake
            self._wake = None


def slab_workload(machine: Machine, spec: WorkloadConfig,
                  rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: ``kmem_cache_alloc()`` calls; each object freed at expiry.

    With ``max_requests`` the caller waits for its objects' frees and then shrinks the
    cache (``kmem_cache_shrink()``), so every slab of objects that died is freed.
    """
    p: SlabParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, KIND_SLAB if p.reclaimable else -1, killable=False)
    cache = kmem_cache_create(machine, name, p)
    stats = cache.stats
    frees = ObjectFrees(machine, cache)
    env = machine.env
    arrivals = poisson_arrivals(p.rate_per_s, ((1, 1.0),), issuing_cpus(machine, p.cpus), rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    issued = 0
    while p.max_requests is None or issued < p.max_requests:
        gap, _, cpu = next(arrivals)
        yield env.timeout(gap)
        sid = yield from kmem_cache_alloc(machine, cache, p.gfp, cpu, p.nid)
        issued += 1
        if sid < 0:
            stats["failed"] += 1
            continue
        stats["objects"] += 1
        life = next(lifetimes)
        if life != FOREVER:
            frees.push(int(env.now) + life, sid)
    frees.close()
    yield frees.process
    kmem_cache_shrink(machine, cache)
    machine.owner_exit(name)
