"""The ``vmalloc`` caller: ``vmalloc()``/``vmalloc_huge()`` areas with random sizes and lifetimes.

Mirrors mm/vmalloc.c of 6.1: ``__vmalloc_node_range()`` → ``__vmalloc_area_node()`` →
``vm_area_alloc_pages()``, and ``vfree()``:

- the area is backed by order-0 pages taken with the bulk allocator in chunks of at most
  100 (``alloc_pages_bulk_array_node()``; no ``mm_page_alloc`` for the pages it takes),
  stopping at the first short chunk; the pages still missing are then allocated one at
  a time (each a traced ``__alloc_pages()`` with the full slow path);
- an area larger than all managed memory fails at once (``totalram_pages()``);
- ``__vmalloc_area_node()`` ORs ``__GFP_NOWARN`` (6.1.20) and ``__GFP_HIGHMEM`` (unless
  DMA or DMA32 was asked for) into the mask, and the bulk chunks drop ``__GFP_NOFAIL``;
- with ``huge_vmap`` (``VM_ALLOW_HUGE_VMAP``, ``vmalloc_huge()``) and at least 2 MiB per
  node, the area is rounded up to 2 MiB and backed by order-9 blocks, each
  ``split_page()``'d into 512 pages of refcount 1; if one fails, the area is freed and
  the whole vmalloc starts again with order-0 pages (spec behaviour 67);
- if the area cannot be filled, every page obtained is freed (``__vfree()``, each page
  as order 0) and the call fails (spec behaviour 66);
- ``vfree()`` frees every page on its own, as order 0.

SIMPLIFICATIONS: no virtual address space (``__get_vm_area_node()`` never fails), no
``struct page *`` array allocation (it is a kmalloc or a nested vmalloc in the kernel),
no guard page. The OOM kill of the caller stands in for ``fatal_signal_pending()``: its
allocations return nothing at once (the bulk chunks too, which the kernel does not
check). The failure report of an area above ``totalram_pages()`` is not traced.
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
    expect_size_pages,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate, format_size
from simcore.errors import ConfigError
from simcore.mm.gfp import GFP
from simcore.sim.machine import Allocation, Machine
from workloads.schema import VMALLOC
from workloads.stats import caller_stats
from workloads.synthetic import FOREVER, _lifetimes, issuing_cpus, poisson_arrivals
from workloads.synthetic_params import (
    WEIGHT_SUM_TOLERANCE,
    LifetimeSpec,
    _cpus,
    _dump_lifetime,
    _gfp,
    _lifetime,
    _optional_int,
    check_cpus_and_node,
)

VMALLOC_KEYS = names(VMALLOC)
VMALLOC_REQUIRED = required(VMALLOC)
BULK_CHUNK = 100
"""``vm_area_alloc_pages()``: at most this many pages per bulk call."""
PMD_ORDER = 9
"""``PMD_SHIFT - PAGE_SHIFT`` on x86_64: the order of a huge vmalloc mapping."""
GFP_NOWARN = int(GFP.NOWARN)
GFP_NOFAIL = int(GFP.NOFAIL)
GFP_HIGHMEM = int(GFP.HIGHMEM)
GFP_DMA_ANY = int(GFP.DMA | GFP.DMA32)


@dataclass(frozen=True)
class VmallocParams:
    """Parsed parameters of one vmalloc workload.

    Attributes:
        rate_per_s: Poisson arrival rate of ``vmalloc()`` calls.
        size_weights: ``(pages, probability)`` pairs: the area sizes.
        lifetime: How long an area lives before ``vfree()``.
        gfp: The caller's mask (default ``GFP_KERNEL``).
        huge_vmap: ``vmalloc_huge()`` (``VM_ALLOW_HUGE_VMAP``) instead of ``vmalloc()``.
        cpus, nid, max_requests, start_ns, oom_score_adj: As for the synthetic workload
            (``nid`` None: ``NUMA_NO_NODE``, the calling CPU's node; ``max_requests``
            counts ``vmalloc()`` calls).
    """

    rate_per_s: float
    size_weights: tuple[tuple[int, float], ...]
    lifetime: LifetimeSpec
    gfp: int
    huge_vmap: bool = False
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0
    oom_score_adj: int = 0


def _size_weights(value: object, key: str, source: str) -> tuple[tuple[int, float], ...]:
    """``size: 64KiB`` or ``size: {16KiB: 0.5, 4MiB: 0.5}`` (weights summing to 1)."""
    if not isinstance(value, Mapping):
        return ((expect_size_pages(value, key, source, 1), 1.0),)
    if not value:
        raise ConfigError(source, key, "at least one {size: weight} entry", value)
    weights: dict[int, float] = {}
    for size, weight in value.items():
        sub = child(key, str(size))
        pages = expect_size_pages(size, sub, source, 1)
        weights[pages] = weights.get(pages, 0.0) + expect_number(weight, sub, source, above=0)
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ConfigError(source, key, f"weights summing to 1 (within "
                          f"{WEIGHT_SUM_TOLERANCE:g}); these sum to {total:.9g}", value)
    return tuple(sorted(weights.items()))


def parse_vmalloc_params(
    raw: Mapping[str, object], key_prefix: str, source: str
) -> Mapping[str, object]:
    """Parse a vmalloc workload's own keys; ``rate``, ``size`` and ``lifetime`` are required.

    Raises:
        ConfigError: Naming e.g. ``workloads[1].size.16KiB``.
    """
    data = expect_mapping(raw, key_prefix, source, VMALLOC_KEYS, VMALLOC_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    return {"params": VmallocParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        size_weights=_size_weights(data["size"], key("size"), source),
        lifetime=_lifetime(data["lifetime"], key("lifetime"), source),
        gfp=_gfp(data.get("gfp", "GFP_KERNEL"), key("gfp"), source),
        huge_vmap=expect_bool(data.get("huge_vmap", False), key("huge_vmap"), source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
        oom_score_adj=expect_int(data.get("oom_score_adj", 0), key("oom_score_adj"), source,
                                 -1000, 1000),
    )}


def check_sizes_fit(size_weights: tuple[tuple[int, float], ...], machine: MachineConfig,
                    key_prefix: str, source: str, what: str) -> None:
    """Reject sizes larger than the machine's memory (``what``: "areas", "regions")."""
    total = sum(node.memory_pages for node in machine.nodes)
    too_big = [pages for pages, _ in size_weights if pages > total]
    if too_big:
        raise ConfigError(source, child(key_prefix, "size"),
                          f"{what} no larger than the machine's memory ({total} pages)",
                          f"{max(too_big)} pages")


def dump_sizes(size_weights: tuple[tuple[int, float], ...]) -> object:
    """Invert :func:`_size_weights`: one size, or ``{size: weight}``."""
    sizes = {format_size(pages * 4096): w for pages, w in size_weights}
    return next(iter(sizes)) if len(sizes) == 1 else sizes


def check_vmalloc_params(params: Mapping[str, object], machine: MachineConfig,
                         key_prefix: str, source: str) -> None:
    """Reject CPUs or a node the machine lacks, and areas larger than its memory.

    ``__vmalloc_node_range()`` would fail every call for such an area before allocating.
    """
    p = params["params"]
    assert isinstance(p, VmallocParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)
    check_sizes_fit(p.size_weights, machine, key_prefix, source, "areas")


def dump_vmalloc_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_vmalloc_params`, in human units."""
    from simcore.mm.gfp import format_gfp

    p = params["params"]
    if not isinstance(p, VmallocParams):
        raise TypeError(f"expected VmallocParams under 'params', got {p!r}")
    return {
        "rate": format_rate(p.rate_per_s),
        "size": dump_sizes(p.size_weights),
        "lifetime": _dump_lifetime(p.lifetime),
        "gfp": format_gfp(p.gfp),
        "huge_vmap": p.huge_vmap,
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
        "oom_score_adj": p.oom_score_adj,
    }


# -- the kernel functions -------------------------------------------------------------------
def vfree(machine: Machine, pages: list[Allocation]) -> None:
    """``vfree()``/``__vfree()``: every page of the area freed on its own, as order 0."""
    for handle in pages:
        machine.free(handle)


def vm_area_alloc_pages(machine: Machine, owner: str, gfp: int, nid: int | None, order: int,
                        nr_pages: int, cpu: int) -> Generator[Any, Any, list[Allocation]]:
    """``vm_area_alloc_pages()``: the area's pages (possibly fewer than ``nr_pages``)."""
    pages: list[Allocation] = []
    if not order:
        bulk_gfp = gfp & ~GFP_NOFAIL
        while len(pages) < nr_pages:
            want = min(BULK_CHUNK, nr_pages - len(pages))
            got = yield from machine.alloc_bulk(owner, bulk_gfp, want, cpu, nid)
            pages.extend(got)
            if len(got) != want:
                break
    while len(pages) < nr_pages:
        handle = yield from machine.alloc(owner, gfp, order, cpu, nid)
        if handle is None:
            break
        pages.extend(machine.split(handle) if order else [handle])
    return pages


def vmalloc(machine: Machine, owner: str, nr_pages: int, gfp: int, nid: int | None,
            huge_vmap: bool, cpu: int,
            stats: Counter[str] | None = None) -> Generator[Any, Any, list[Allocation] | None]:
    """``__vmalloc_node_range()``: the area's order-0 page handles, or None on failure.

    A huge area (``huge_vmap`` and at least 2 MiB per node) is rounded up to 2 MiB and
    backed by split order-9 blocks; if that fails, everything is freed and the call
    starts again with order-0 pages. ``stats`` counts ``huge`` areas backed by order-9
    blocks and ``huge_fallbacks`` (a huge attempt that restarted with order 0).
    """
    if nr_pages > machine.mm.managed_pages:  # (size >> PAGE_SHIFT) > totalram_pages()
        return None
    nodes = len(machine.mm.nodes)
    per_node = nr_pages // nodes if nid is None else nr_pages
    order = PMD_ORDER if huge_vmap and per_node >= 1 << PMD_ORDER else 0
    area_gfp = gfp | GFP_NOWARN  # __vmalloc_area_node() (6.1.20)
    if not gfp & GFP_DMA_ANY:
        area_gfp |= GFP_HIGHMEM
    while True:
        size = -(-nr_pages >> order) << order  # rounded up to the mapping's granularity
        pages = yield from vm_area_alloc_pages(machine, owner, area_gfp, nid, order, size, cpu)
        if len(pages) >= size:
            if order and stats is not None:
                stats["huge"] += 1
            return pages
        vfree(machine, pages)
        if not order:
            return None
        if stats is not None:
            stats["huge_fallbacks"] += 1
        order = 0  # __vmalloc_node_range(): fail: retry from scratch with PAGE_SHIFT


# -- the workload -------------------------------------------------------------------------
def vmalloc_workload(machine: Machine, spec: WorkloadConfig,
                     rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body of one vmalloc workload: ``vmalloc()`` calls and ``vfree()``s.

    Each area lives for a drawn lifetime; its pages are freed together then (one SimPy
    event per area). ``summary.json`` ``callers`` has the per-call counts;
    ``alloc_requests`` counts the pages and the traced attempts, and the failure tables
    count each failed traced attempt (a
    huge attempt that restarts shows an order-9 failure even if the order-0 retry
    succeeds; a failed order-0 area usually shows two, the bulk fallback's and the
    single-page loop's, as in the kernel).
    """
    p: VmallocParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, oom_score_adj=p.oom_score_adj)
    stats = caller_stats(machine, name, "vmalloc")
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    calls = poisson_arrivals(p.rate_per_s, p.size_weights, cpus, rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    issued = 0
    while p.max_requests is None or issued < p.max_requests:
        gap, nr_pages, cpu = next(calls)
        yield env.timeout(gap)
        area = yield from vmalloc(machine, name, nr_pages, p.gfp, p.nid, p.huge_vmap, cpu,
                                  stats)
        issued += 1
        stats["calls"] += 1
        if machine.oom_killed(name):
            return
        if area is None:
            stats["failed"] += 1
            continue
        stats["pages"] += len(area)
        life = next(lifetimes)
        if life != FOREVER:
            env.process(_vfree_later(machine, area, life))


def _vfree_later(machine: Machine, area: list[Allocation],
                 life_ns: int) -> Generator[Any, Any, None]:
    yield machine.env.timeout(life_ns)
    vfree(machine, area)
