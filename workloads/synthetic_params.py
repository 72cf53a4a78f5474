"""Parameters of the ``synthetic`` workload: Poisson arrivals of page allocations.

Each request allocates ``2**order`` pages (order drawn from ``order_weights``) with the
given gfp mask and frees them after a lifetime drawn from :class:`LifetimeSpec`. This
module only parses and dumps the YAML keys (``rate``, ``order``, ``lifetime``, ``gfp``,
``cpus``, ``nid``, ``max_requests``, ``start``); the generator is ``workloads.synthetic``.

Example::

    - name: background
      type: synthetic
      rate: 200/s
      order: {0: 0.9, 1: 0.05, 3: 0.05}
      lifetime: {lognormal: {median: 10ms, sigma: 1.0}}
      gfp: GFP_KERNEL|__GFP_COMP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypedDict

from simcore.config.fields import (
    child,
    expect_duration_ns,
    expect_int,
    expect_list,
    expect_mapping,
    expect_number,
    expect_rate_per_s,
    expect_str,
)
from simcore.config.schema import key_named, names, required
from simcore.config.types import MachineConfig
from simcore.config.units import format_duration, format_rate
from simcore.errors import ConfigError
from workloads.schema import LIFETIME, SYNTHETIC

LifetimeKind = Literal["exponential", "fixed", "lognormal", "forever"]
MAX_REQUEST_ORDER = 16
"""Largest order a request may name; the machine's ``max_order`` is checked at run time."""
SYNTHETIC_KEYS = names(SYNTHETIC)
SYNTHETIC_REQUIRED = required(SYNTHETIC)
MEMORY_KINDS = ("unreclaimable", "anon", "file", "slab")
"""What a workload's pages are: kernel memory reclaim cannot take (the default),
anonymous memory (reclaimable with swap), page cache, or reclaimable slab."""
LIFETIME_FORMAT = ("a duration (exponential mean), 'forever', or one of {exponential: 50ms}, "
                   "{fixed: 10ms}, {lognormal: {median: 10ms, sigma: 1.0}}")
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class LifetimeSpec:
    """How long an allocation is held before it is freed.

    Attributes:
        kind: ``exponential`` (mean ``mean_ns``), ``fixed`` (exactly ``mean_ns``),
            ``lognormal`` (median ``median_ns``, shape ``sigma``) or ``forever``.
        mean_ns: Mean (exponential) or the lifetime itself (fixed).
        median_ns: Median of the lognormal, ``exp(mu)``.
        sigma: Standard deviation of the lognormal's underlying normal.
    """

    kind: LifetimeKind
    mean_ns: int | None = None
    median_ns: int | None = None
    sigma: float | None = None


@dataclass(frozen=True)
class SyntheticParams:
    """Parsed parameters of one synthetic workload.

    Attributes:
        rate_per_s: Poisson arrival rate of allocation requests, > 0.
        order_weights: ``(order, probability)`` pairs, sorted by order, summing to 1.
        lifetime: Holding time of each allocation.
        gfp: The gfp mask of each request (``simcore.mm.gfp.GFP`` bits).
        cpus: CPUs that issue requests (round robin); None = all CPUs.
        nid: Preferred node; None = the issuing CPU's node.
        max_requests: Stop after this many requests; None = until the run ends.
        start_ns: Simulated time of the first arrival process start.
        memory: One of :data:`MEMORY_KINDS`.
        dirty: Fraction of ``file`` pages that are dirty when allocated.
        hot: Fraction of reclaimable pages the caller keeps using (its working set):
            reclaim finds them referenced at every scan and keeps them.
        oom_score_adj: ``oom_score_adj`` of the caller (-1000: never OOM-killed).
    """

    rate_per_s: float
    order_weights: tuple[tuple[int, float], ...]
    lifetime: LifetimeSpec
    gfp: int
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0
    memory: str = "unreclaimable"
    dirty: float = 0.0
    hot: float = 0.0
    oom_score_adj: int = 0


def _order_weights(value: object, key: str, source: str) -> tuple[tuple[int, float], ...]:
    """``order: 3`` or ``order: {0: 0.9, 3: 0.1}``: the weights are probabilities.

    They must sum to 1 to within 1e-6: a mapping that does not is almost always a typo
    (a dropped digit), and silently rescaling it would change the experiment. Weights
    within that tolerance are kept as written, so dumping and re-parsing gives the same
    floats.
    """
    if not isinstance(value, Mapping):
        order = expect_int(value, key, source, 0, MAX_REQUEST_ORDER,
                           expected=f"an order in 0..{MAX_REQUEST_ORDER} or a mapping "
                                    "{order: weight}")
        return ((order, 1.0),)
    if not value:
        raise ConfigError(source, key, "at least one {order: weight} entry", value)
    weights = {
        expect_int(_int_key(order), child(key, str(order)), source, 0, MAX_REQUEST_ORDER):
            expect_number(weight, child(key, str(order)), source, above=0)
        for order, weight in value.items()
    }
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ConfigError(source, key, f"weights summing to 1 (within "
                          f"{WEIGHT_SUM_TOLERANCE:g}); these sum to {total:.9g}", value)
    return tuple(sorted(weights.items()))


def _int_key(order: object) -> object:
    """Mapping keys written as decimal strings ("0", as JSON must) mean the integer."""
    if isinstance(order, str) and order.isdecimal():
        return int(order)
    return order


def _lifetime(value: object, key: str, source: str) -> LifetimeSpec:
    if value == "forever":
        return LifetimeSpec("forever")
    if isinstance(value, str):
        return LifetimeSpec("exponential", mean_ns=expect_duration_ns(value, key, source, 1))
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ConfigError(source, key, LIFETIME_FORMAT, value)
    data = expect_mapping(value, key, source, names(LIFETIME.keys))
    (kind, raw), = data.items()
    sub = child(key, kind)
    if kind == "exponential":
        return LifetimeSpec("exponential", mean_ns=expect_duration_ns(raw, sub, source, 1))
    if kind == "fixed":
        return LifetimeSpec("fixed", mean_ns=expect_duration_ns(raw, sub, source, 1))
    forms = key_named(LIFETIME.keys, "lognormal").keys
    params = expect_mapping(raw, sub, source, names(forms), required(forms))
    return LifetimeSpec(
        "lognormal",
        median_ns=expect_duration_ns(params["median"], child(sub, "median"), source, 1),
        sigma=expect_number(params["sigma"], child(sub, "sigma"), source, above=0),
    )


def _gfp(value: object, key: str, source: str) -> int:
    from simcore.mm.gfp import GfpError, GfpParseError, gfp_zone, parse_gfp  # lazy

    text = expect_str(value, key, source, expected="gfp flags like 'GFP_KERNEL|__GFP_COMP'")
    try:
        gfp = int(parse_gfp(text))
    except GfpParseError as exc:
        raise ConfigError(source, key, f"gfp flags like 'GFP_KERNEL|__GFP_COMP' ({exc})",
                          value) from exc
    try:
        gfp_zone(gfp)  # a GFP_ZONE_BAD combination is the kernel's VM_BUG_ON: refused here
    except GfpError as exc:
        raise ConfigError(source, key, f"gfp flags with zone modifiers gfp_zone() accepts "
                          f"({exc})", value) from exc
    return gfp


def _cpus(value: object, key: str, source: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    items = expect_list(value, key, source, min_len=1)
    cpus = tuple(expect_int(cpu, child(key, i), source, 0) for i, cpu in enumerate(items))
    if len(set(cpus)) != len(cpus):
        raise ConfigError(source, key, "a list of distinct CPU numbers", value)
    return cpus


def _optional_int(value: object, key: str, source: str, lo: int) -> int | None:
    return None if value is None else expect_int(value, key, source, lo)


class Placement(TypedDict):
    """Where and when a caller issues its requests: its params dataclass's fields."""

    cpus: tuple[int, ...] | None
    nid: int | None
    max_requests: int | None
    start_ns: int


def parse_placement(data: Mapping[str, object], key_prefix: str, source: str) -> Placement:
    """The optional ``cpus``, ``nid``, ``max_requests`` and ``start`` keys of a caller."""
    return {
        "cpus": _cpus(data.get("cpus"), child(key_prefix, "cpus"), source),
        "nid": _optional_int(data.get("nid"), child(key_prefix, "nid"), source, 0),
        "max_requests": _optional_int(data.get("max_requests"),
                                      child(key_prefix, "max_requests"), source, 1),
        "start_ns": expect_duration_ns(data.get("start", "0ns"), child(key_prefix, "start"),
                                       source),
    }


def parse_synthetic_params(
    raw: Mapping[str, object], key_prefix: str, source: str
) -> Mapping[str, object]:
    """Parse a synthetic workload's own keys (a ``workload_parsers`` entry).

    ``rate`` and ``lifetime`` are required; ``order`` defaults to 0 and ``gfp`` to
    ``GFP_KERNEL``.

    Args:
        raw: The workload's mapping without ``name`` and ``type``.
        key_prefix: Its key path, e.g. ``workloads[0]``.
        source: File path for errors.

    Returns:
        ``{"params": SyntheticParams(...)}``.

    Raises:
        ConfigError: Naming e.g. ``workloads[0].lifetime.lognormal.sigma``.
    """
    data = expect_mapping(raw, key_prefix, source, SYNTHETIC_KEYS, SYNTHETIC_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    params = SyntheticParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        order_weights=_order_weights(data.get("order", 0), key("order"), source),
        lifetime=_lifetime(data["lifetime"], key("lifetime"), source),
        gfp=_gfp(data.get("gfp", "GFP_KERNEL"), key("gfp"), source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
        memory=expect_str(data.get("memory", "unreclaimable"), key("memory"), source,
                          expected=f"one of {', '.join(MEMORY_KINDS)}",
                          choices=MEMORY_KINDS),
        dirty=_fraction(data.get("dirty", 0.0), key("dirty"), source),
        hot=_fraction(data.get("hot", 0.0), key("hot"), source),
        oom_score_adj=expect_int(data.get("oom_score_adj", 0), key("oom_score_adj"), source,
                                 -1000, 1000),
    )
    if params.hot and params.memory == "unreclaimable":
        raise ConfigError(source, key("hot"), "0 unless memory is file, anon or slab (only "
                          "reclaimable memory is on the LRU lists)", params.hot)
    if params.dirty and params.memory != "file":
        raise ConfigError(source, key("dirty"), "0 unless memory is 'file' (only page "
                          "cache is dirty)", params.dirty)
    return {"params": params}


def _fraction(value: object, key: str, source: str) -> float:
    number = expect_number(value, key, source)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(source, key, "a fraction in 0..1", value)
    return float(number)


def check_synthetic_params(
    params: Mapping[str, object], machine: MachineConfig, key_prefix: str, source: str
) -> None:
    """Reject CPUs, a node or an order that the configured machine does not have.

    An order above ``machine.max_order`` is a config error rather than a run of
    failures: in 6.1 ``__alloc_pages()`` refuses it with a WARN before any tracepoint,
    so such a workload would measure nothing.

    Raises:
        ConfigError: Naming ``workloads[i].cpus``, ``workloads[i].nid`` or
            ``workloads[i].order``.
    """
    p = params["params"]
    assert isinstance(p, SyntheticParams)
    too_big = [order for order, _ in p.order_weights if order > machine.max_order]
    if too_big:
        raise ConfigError(source, child(key_prefix, "order"),
                          f"orders 0..{machine.max_order} (machine.max_order)", max(too_big))
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)


def check_cpus_and_node(cpus: tuple[int, ...] | None, nid: int | None,
                        machine: MachineConfig, key_prefix: str, source: str) -> None:
    """Reject a workload's ``cpus`` or ``nid`` that the machine does not have.

    Raises:
        ConfigError: Naming ``workloads[i].cpus`` or ``workloads[i].nid``.
    """
    nr_cpus = sum(node.cpus for node in machine.nodes)
    if any(cpu >= nr_cpus for cpu in cpus or ()):
        raise ConfigError(source, child(key_prefix, "cpus"),
                          f"CPUs of this machine (0..{nr_cpus - 1})", list(cpus or ()))
    if nid is not None and nid >= len(machine.nodes):
        raise ConfigError(source, child(key_prefix, "nid"),
                          f"a node of this machine (0..{len(machine.nodes) - 1})", nid)


def _dump_lifetime(lifetime: LifetimeSpec) -> object:
    if lifetime.kind == "forever":
        return "forever"
    if lifetime.kind == "lognormal":
        assert lifetime.median_ns is not None
        return {"lognormal": {"median": format_duration(lifetime.median_ns),
                              "sigma": lifetime.sigma}}
    assert lifetime.mean_ns is not None
    return {lifetime.kind: format_duration(lifetime.mean_ns)}


def dump_synthetic_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_synthetic_params`: every key, in human units."""
    from simcore.mm.gfp import format_gfp  # lazy, as in _gfp()

    spec = params["params"]
    if not isinstance(spec, SyntheticParams):
        raise TypeError(f"expected SyntheticParams under 'params', got {spec!r}")
    weights = spec.order_weights
    return {
        "rate": format_rate(spec.rate_per_s),
        "order": weights[0][0] if len(weights) == 1 else dict(weights),
        "lifetime": _dump_lifetime(spec.lifetime),
        "gfp": format_gfp(spec.gfp),
        "cpus": None if spec.cpus is None else list(spec.cpus),
        "nid": spec.nid,
        "max_requests": spec.max_requests,
        "start": format_duration(spec.start_ns),
        "memory": spec.memory,
        "dirty": spec.dirty,
        "hot": spec.hot,
        "oom_score_adj": spec.oom_score_adj,
    }
