"""The ``atomic_bursts`` caller: network-like ``GFP_ATOMIC`` bursts (softirq RX refill).

Bursts arrive at a Poisson rate, each on one CPU (the RX queue's); a burst is ``burst``
allocations in quick succession (``spacing`` apart; default 0: one NAPI poll, all at the
same instant), each freed after a short lifetime (``Machine.defer_free``: no SimPy event
per free). Softirq context cannot sleep, so the mask must not allow direct reclaim; the
allocations go through :meth:`Machine.alloc_now` and never advance the caller's clock.
Two kinds of allocation:

- plain pages (``order``, default 0): ``alloc_pages_node(nid, gfp, order)``, as a
  driver's RX ring refill with ``dev_alloc_pages()`` (``GFP_ATOMIC | __GFP_NOWARN``
  plus ``__GFP_COMP | __GFP_MEMALLOC``: write that mask to mirror it);
- ``page_frag: true``: ``__page_frag_cache_refill()`` of mm/page_alloc.c (6.1.20), what
  ``napi_alloc_frag()``/``netdev_alloc_frag()`` do when their per-CPU page is used up:
  order ``PAGE_FRAG_CACHE_MAX_ORDER`` (3: 32 KiB) with ``gfp | __GFP_COMP | __GFP_NOWARN
  | __GFP_NORETRY | __GFP_NOMEMALLOC``, then order 0 with ``gfp`` alone.

The high-order atomic reserve (spec behaviour 40): every request with ``__GFP_ATOMIC``
and without ``__GFP_NOMEMALLOC`` gets ``ALLOC_HARDER`` (a lower min watermark,
``gfp_to_alloc_flags()``). For order > 0 it also matters twice: a success made in the
slow path may turn its pageblock MIGRATE_HIGHATOMIC, and ``rmqueue_buddy()`` tries the
MIGRATE_HIGHATOMIC lists first (after the pcp list, for pcp orders). Order-0 requests and
page_frag's order-3 attempt (``__GFP_NOMEMALLOC``) never do either. page_frag refills
ask for ``NUMA_NO_NODE`` whatever ``nid`` says (``__page_frag_cache_refill()``).

``summary.json`` ``callers`` counts ``bursts``, ``allocs`` (allocations, or page_frag
refills), ``pages``, ``failed`` (allocations or refills that got nothing), per order the
failed page-allocation attempts (``failed_order3``: for page_frag, the order-3 first
attempts that failed, whether or not the order-0 fallback then succeeded),
``frag_fallbacks`` (refills served at order 0), ``highatomic_reserved`` (pageblocks this
caller's successes turned MIGRATE_HIGHATOMIC) and ``from_highatomic`` (entitled requests
during which the MIGRATE_HIGHATOMIC free lists shrank and no new block was reserved:
pages taken from the reserve's buddy lists; a pcp page that came from a reserved block
is not counted).

SIMPLIFICATIONS: the fragments carved from a page_frag page and its refcount bias
(``pagecnt_bias``) are not modelled: each refill is one allocation held for a drawn
lifetime, as if its last fragment were freed then (the kernel frees the page when the
cache has moved on and every fragment's ``put_page()`` has come).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_bool,
    expect_duration_ns,
    expect_mapping,
    expect_rate_per_s,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate
from simcore.errors import ConfigError
from simcore.mm.constants import MIGRATE_TYPES, MT_HIGHATOMIC
from simcore.mm.gfp import GFP, GFP_ATOMIC
from simcore.sim.machine import Allocation, Machine
from workloads.schema import ATOMIC_BURSTS
from workloads.stats import caller_stats
from workloads.synthetic import BATCH, FOREVER, _lifetimes, issuing_cpus, poisson_arrivals
from workloads.synthetic_params import (
    LifetimeSpec,
    _dump_lifetime,
    _gfp,
    _lifetime,
    _order_weights,
    check_cpus_and_node,
    parse_placement,
)
from workloads.threads import _burst

ATOMIC_KEYS = names(ATOMIC_BURSTS)
ATOMIC_REQUIRED = required(ATOMIC_BURSTS)
NAPI_POLL_WEIGHT = 64
"""The default NAPI budget: packets (and so RX buffers) per poll, the default burst."""
PAGE_FRAG_CACHE_MAX_ORDER = 3
"""``get_order(PAGE_FRAG_CACHE_MAX_SIZE)``: 32 KiB with 4 KiB pages."""
PAGE_FRAG_GFP = int(GFP.COMP | GFP.NOWARN | GFP.NORETRY | GFP.NOMEMALLOC)
"""What ``__page_frag_cache_refill()`` ORs into its high-order attempt."""
_DIRECT_RECLAIM = int(GFP.DIRECT_RECLAIM)
_ATOMIC, _NOMEMALLOC = int(GFP.ATOMIC), int(GFP.NOMEMALLOC)


@dataclass(frozen=True)
class AtomicBurstsParams:
    """Parsed parameters of one ``atomic_bursts`` workload.

    Attributes:
        rate_per_s: Poisson arrival rate of bursts.
        lifetime: How long each allocation is held (short: a packet's time in the stack).
        burst_weights: ``(allocations, probability)``: the size of a burst.
        order_weights: ``(order, probability)`` of plain allocations.
        page_frag: Each allocation is a ``__page_frag_cache_refill()`` instead.
        gfp: The mask (default ``GFP_ATOMIC``); it must not allow direct reclaim.
        spacing_ns: Time between the allocations of a burst.
        cpus, nid, start_ns: As for the synthetic workload.
        max_requests: Stop after this many bursts.
    """

    rate_per_s: float
    lifetime: LifetimeSpec
    burst_weights: tuple[tuple[int, float], ...] = ((NAPI_POLL_WEIGHT, 1.0),)
    order_weights: tuple[tuple[int, float], ...] = ((0, 1.0),)
    page_frag: bool = False
    gfp: int = int(GFP_ATOMIC)
    spacing_ns: int = 0
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0


def parse_atomic_bursts_params(raw: Mapping[str, object], key_prefix: str,
                               source: str) -> Mapping[str, object]:
    """Parse an ``atomic_bursts`` workload's keys; ``rate`` and ``lifetime`` are required.

    Raises:
        ConfigError: Naming e.g. ``workloads[0].gfp`` for a mask that may sleep.
    """
    data = expect_mapping(raw, key_prefix, source, ATOMIC_KEYS, ATOMIC_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    gfp = _gfp(data.get("gfp", "GFP_ATOMIC"), key("gfp"), source)
    if gfp & _DIRECT_RECLAIM:
        raise ConfigError(source, key("gfp"), "a mask without __GFP_DIRECT_RECLAIM (softirq "
                          "context cannot sleep), e.g. GFP_ATOMIC", data["gfp"])
    page_frag = expect_bool(data.get("page_frag", False), key("page_frag"), source)
    if page_frag and "order" in data:
        raise ConfigError(source, key("order"), "no order with page_frag: true (a refill "
                          f"is order {PAGE_FRAG_CACHE_MAX_ORDER}, then 0)", data["order"])
    return {"params": AtomicBurstsParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        lifetime=_lifetime(data["lifetime"], key("lifetime"), source),
        burst_weights=_burst(data.get("burst", NAPI_POLL_WEIGHT), key("burst"), source),
        order_weights=_order_weights(data.get("order", 0), key("order"), source),
        page_frag=page_frag,
        gfp=gfp,
        spacing_ns=expect_duration_ns(data.get("spacing", "0ns"), key("spacing"), source),
        **parse_placement(data, key_prefix, source),
    )}


def check_atomic_bursts_params(params: Mapping[str, object], machine: MachineConfig,
                               key_prefix: str, source: str) -> None:
    """Reject CPUs, a node or an order the machine does not have."""
    p = params["params"]
    assert isinstance(p, AtomicBurstsParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)
    top = PAGE_FRAG_CACHE_MAX_ORDER if p.page_frag else max(o for o, _ in p.order_weights)
    if top > machine.max_order:
        raise ConfigError(source, child(key_prefix, "page_frag" if p.page_frag else "order"),
                          f"orders 0..{machine.max_order} (machine.max_order)", top)


def dump_atomic_bursts_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_atomic_bursts_params`, in human units."""
    from simcore.mm.gfp import format_gfp

    p = params["params"]
    if not isinstance(p, AtomicBurstsParams):
        raise TypeError(f"expected AtomicBurstsParams under 'params', got {p!r}")
    burst, orders = dict(p.burst_weights), dict(p.order_weights)
    out: dict[str, object] = {
        "rate": format_rate(p.rate_per_s),
        "burst": next(iter(burst)) if len(burst) == 1 else burst,
        "page_frag": p.page_frag,
        "lifetime": _dump_lifetime(p.lifetime),
        "gfp": format_gfp(p.gfp),
        "spacing": format_duration(p.spacing_ns),
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
    }
    if not p.page_frag:
        out["order"] = next(iter(orders)) if len(orders) == 1 else orders
    return out


# -- the allocations ------------------------------------------------------------------------
def highatomic_free_pages(machine: Machine) -> int:
    """Pages on the MIGRATE_HIGHATOMIC free lists of every zone."""
    total = 0
    for zone in machine.mm.zones:
        counts = zone.free_area.count_np.reshape(-1, MIGRATE_TYPES)[:, MT_HIGHATOMIC]
        total += int((counts << np.arange(len(counts))).sum())
    return total


def alloc_harder(gfp: int, order: int) -> bool:
    """Whether the request may reserve and take MIGRATE_HIGHATOMIC pageblocks.

    Order > 0 with ``__GFP_ATOMIC`` and no ``__GFP_NOMEMALLOC``: the slow path then has
    ``ALLOC_HARDER`` (``gfp_to_alloc_flags()``), which ``rmqueue_buddy()`` and
    ``reserve_highatomic_pageblock()`` need for an order > 0 request.
    """
    return bool(order and gfp & _ATOMIC and not gfp & _NOMEMALLOC)


def atomic_alloc(machine: Machine, owner: str, gfp: int, order: int, cpu: int,
                 nid: int | None, stats: Counter[str]) -> Allocation | None:
    """``alloc_pages_node(nid, gfp, order)`` that cannot sleep, with the reserve counts.

    For a request entitled to the reserve (:func:`alloc_harder`), a success that turned
    a pageblock MIGRATE_HIGHATOMIC counts ``highatomic_reserved``, and one that took its
    block from the MIGRATE_HIGHATOMIC free lists counts ``from_highatomic`` (the two
    exclude each other: ``reserve_highatomic_pageblock()`` leaves a HIGHATOMIC block
    alone, and nothing else during a request that cannot sleep adds to or takes from
    those lists once the due frees are applied).
    """
    entitled = alloc_harder(gfp, order)
    if entitled:
        machine.apply_pending_frees()
        reserved, reserve_free = machine.mm.vm["highatomic_reserved"], highatomic_free_pages(
            machine)
    page = machine.alloc_now(owner, gfp, order, cpu, nid)
    if page is None:
        stats[f"failed_order{order}"] += 1
        return None
    if entitled:
        newly = machine.mm.vm["highatomic_reserved"] - reserved
        if newly:
            stats["highatomic_reserved"] += newly
        elif highatomic_free_pages(machine) < reserve_free:
            stats["from_highatomic"] += 1
    stats["pages"] += 1 << order
    return page


def page_frag_cache_refill(machine: Machine, owner: str, gfp: int, cpu: int,
                           nid: int | None, stats: Counter[str]) -> Allocation | None:
    """``__page_frag_cache_refill()``: a 32 KiB compound page, else one page."""
    page = atomic_alloc(machine, owner, gfp | PAGE_FRAG_GFP, PAGE_FRAG_CACHE_MAX_ORDER, cpu,
                        nid, stats)
    if page is not None:
        return page
    page = atomic_alloc(machine, owner, gfp, 0, cpu, nid, stats)
    if page is not None:
        stats["frag_fallbacks"] += 1
    return page


def _orders(p: AtomicBurstsParams, rng: np.random.Generator) -> Iterator[int]:
    values = np.array([o for o, _ in p.order_weights], dtype=np.int64)
    probs = np.array([w for _, w in p.order_weights], dtype=np.float64)
    while True:
        yield from values[rng.choice(len(values), BATCH, p=probs)].tolist()


# -- the workload ---------------------------------------------------------------------------
def atomic_bursts_workload(machine: Machine, spec: WorkloadConfig,
                           rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: bursts of atomic allocations, each freed after its lifetime."""
    p: AtomicBurstsParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, killable=False)  # kernel memory: no task to kill
    stats = caller_stats(machine, name, "atomic_bursts")
    env = machine.env
    arrivals = poisson_arrivals(p.rate_per_s, p.burst_weights,
                                issuing_cpus(machine, p.cpus), rng)
    orders = _orders(p, rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    last_expiry = bursts = 0
    while p.max_requests is None or bursts < p.max_requests:
        gap, size, cpu = next(arrivals)
        yield env.timeout(gap)
        bursts += 1
        stats["bursts"] += 1
        for i in range(size):
            if i and p.spacing_ns:
                yield env.timeout(p.spacing_ns)
            if p.page_frag:  # __page_frag_cache_refill() asks for NUMA_NO_NODE
                page = page_frag_cache_refill(machine, name, p.gfp, cpu, None, stats)
            else:
                page = atomic_alloc(machine, name, p.gfp, next(orders), cpu, p.nid, stats)
            stats["allocs"] += 1
            if page is None:
                stats["failed"] += 1
                continue
            life = next(lifetimes)
            if life != FOREVER:
                last_expiry = max(last_expiry, int(env.now) + life)
                machine.defer_free(page, int(env.now) + life)
    if last_expiry > env.now:
        yield env.timeout(last_expiry - env.now)
    machine.apply_pending_frees()
    machine.owner_exit(name)
