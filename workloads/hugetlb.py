"""The ``hugetlb`` caller: a program that sizes the hugetlb pool and maps part of it.

At each of its ``resize`` times it writes ``nr_hugepages`` (the global file, or a node's),
waiting for the write to complete: the resize (``set_max_huge_pages()``,
:meth:`simcore.sim.hugetlb.HugetlbPool.resize`) takes the simulated time its
allocations spend in reclaim and compaction. After each write it faults pool pages in
until it maps ``use`` of the pool (``dequeue_huge_page_nodemask()`` from its CPU's node,
nearest node first; a fault that finds the pool empty fails, as with ``SIGBUS``). Pages
it maps stay in use, so a later shrink below them turns them into surplus pages; at
``release`` it unmaps them all (``put_page()``: ``free_huge_page()`` returns each to the
pool, or to the buddy allocator while its node has surplus pages).

SIMPLIFICATIONS: no reservations, overcommit or hugetlbfs files: a fault takes a free
pool page or fails; faults take no time (the kernel clears each page it maps).
``summary.json`` ``callers`` counts ``resizes``, ``faults``, ``fault_failed`` and
``released``; ``hugetlb.requests`` lists its writes (``by`` is the workload's name).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_duration_ns,
    expect_int,
    expect_list,
    expect_mapping,
    expect_size_pages,
)
from simcore.config.schema import key_named, names, required
from simcore.config.sections import HUGE_PAGE_SIZES
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_size
from simcore.errors import ConfigError
from simcore.sim.hugetlb import hugetlb_of
from simcore.sim.machine import Machine
from workloads.schema import HUGETLB
from workloads.stats import caller_stats
from workloads.synthetic import issuing_cpus
from workloads.synthetic_params import _cpus, _fraction, check_cpus_and_node

HUGETLB_KEYS = names(HUGETLB)
HUGETLB_REQUIRED = required(HUGETLB)
RESIZE_KEYS = names(key_named(HUGETLB, "resize").keys)


@dataclass(frozen=True)
class Resize:
    """One write to ``nr_hugepages``: at ``at_ns``, ``count`` pages (``node`` None: global)."""

    at_ns: int
    count: int
    node: int | None = None


@dataclass(frozen=True)
class HugetlbParams:
    """Parsed parameters of one ``hugetlb`` workload.

    Attributes:
        size_pages: The huge page size (512: 2 MiB, 262144: 1 GiB).
        resizes: Its ``nr_hugepages`` writes, in time order.
        use: The fraction of the pool it keeps mapped after each write.
        release_ns: When it unmaps everything (None: never).
        cpus: Its CPU (the first one is used; None: CPU 0).
    """

    size_pages: int
    resizes: tuple[Resize, ...]
    use: float = 0.0
    release_ns: int | None = None
    cpus: tuple[int, ...] | None = None


def _resizes(value: object, key: str, source: str) -> tuple[Resize, ...]:
    out = []
    for i, item in enumerate(expect_list(value, key, source, min_len=1)):
        sub = child(key, i)
        data = expect_mapping(item, sub, source, RESIZE_KEYS,
                              required(key_named(HUGETLB, "resize").keys))
        node = data.get("node")
        out.append(Resize(
            expect_duration_ns(data["at"], child(sub, "at"), source),
            expect_int(data["count"], child(sub, "count"), source, 0),
            None if node is None else expect_int(node, child(sub, "node"), source, 0)))
    return tuple(sorted(out, key=lambda r: r.at_ns))


def parse_hugetlb_params(raw: Mapping[str, object], key_prefix: str,
                         source: str) -> Mapping[str, object]:
    """Parse a ``hugetlb`` workload's keys; ``resize`` is required.

    Raises:
        ConfigError: Naming e.g. ``workloads[2].resize[0].count``.
    """
    data = expect_mapping(raw, key_prefix, source, HUGETLB_KEYS, HUGETLB_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    size = data.get("size", "2MiB")
    pages = expect_size_pages(size, key("size"), source, 1)
    if pages not in HUGE_PAGE_SIZES.values():
        raise ConfigError(source, key("size"), "a huge page size of x86_64: 2MiB or 1GiB",
                          size)
    release = data.get("release")
    return {"params": HugetlbParams(
        size_pages=pages,
        resizes=_resizes(data["resize"], key("resize"), source),
        use=_fraction(data.get("use", 0.0), key("use"), source),
        release_ns=None if release is None else expect_duration_ns(release, key("release"),
                                                                   source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
    )}


def check_hugetlb_params(params: Mapping[str, object], machine: MachineConfig,
                         key_prefix: str, source: str) -> None:
    """Reject CPUs or nodes the machine does not have."""
    p = params["params"]
    assert isinstance(p, HugetlbParams)
    check_cpus_and_node(p.cpus, None, machine, key_prefix, source)
    for i, r in enumerate(p.resizes):
        if r.node is not None and r.node >= len(machine.nodes):
            raise ConfigError(source, child(child(child(key_prefix, "resize"), i), "node"),
                              f"a node of this machine (0..{len(machine.nodes) - 1})", r.node)


def dump_hugetlb_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_hugetlb_params`, in human units."""
    p = params["params"]
    if not isinstance(p, HugetlbParams):
        raise TypeError(f"expected HugetlbParams under 'params', got {p!r}")
    resizes: list[dict[str, object]] = []
    for r in p.resizes:
        entry: dict[str, object] = {"at": format_duration(r.at_ns), "count": r.count}
        if r.node is not None:
            entry["node"] = r.node
        resizes.append(entry)
    return {
        "size": format_size(p.size_pages * 4096),
        "resize": resizes,
        "use": p.use,
        "release": None if p.release_ns is None else format_duration(p.release_ns),
        "cpus": None if p.cpus is None else list(p.cpus),
    }


def hugetlb_workload(machine: Machine, spec: WorkloadConfig,
                     rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: the writes, the faults after each, the release."""
    p: HugetlbParams = spec.params["params"]
    name = spec.name
    stats = caller_stats(machine, name, "hugetlb")
    pool = hugetlb_of(machine)
    env = machine.env
    cpu = issuing_cpus(machine, p.cpus)[0]
    nid = machine.cpu_node(cpu)
    order = p.size_pages.bit_length() - 1
    h = pool.state.hstates[order]
    mapped: list[int] = []
    events: list[tuple[int, Resize | None]] = [(r.at_ns, r) for r in p.resizes]
    if p.release_ns is not None:
        events.append((p.release_ns, None))
    for at_ns, resize in sorted(events, key=lambda e: e[0]):  # stable: a release goes last
        if at_ns > env.now:
            yield env.timeout(at_ns - env.now)
        if resize is None:
            for pfn in mapped:  # munmap(): the mapping's reference goes
                pool.put_page(pfn, cpu)
            stats["released"] += len(mapped)
            mapped = []
            continue
        yield from pool.resize(resize.count, resize.node, order, cpu, name)
        stats["resizes"] += 1
        while len(mapped) < int(p.use * h.nr_huge_pages):
            pfn = pool.state.dequeue_huge_page_nodemask(h, nid)
            if pfn < 0:
                stats["fault_failed"] += 1
                break
            mapped.append(pfn)
            stats["faults"] += 1
