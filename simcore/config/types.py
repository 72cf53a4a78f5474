"""Frozen dataclasses for an experiment, as parsed once at the edge from YAML.

Inside the model, sizes are pages and time is integer nanoseconds, with the unit in the
name (``size_pages``, ``lifetime_ns``). Human units (``64MiB``, ``10ms``, ``200/s``,
``GFP_KERNEL|__GFP_COMP``) are parsed by :mod:`simcore.config.parse` before these are built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simcore.mm.constants import DEFAULT_MAX_ORDER, DEFAULT_PAGEBLOCK_ORDER


@dataclass(frozen=True)
class NodeConfig:
    """One NUMA node: its memory and CPUs.

    Nodes are laid out one after another in physical address order, starting at
    ``first_pfn`` for node 0. Zones follow x86_64 ``zone_sizes_init()``: DMA below
    16 MiB, DMA32 below 4 GiB, Normal above; ``movable_pages`` at the top of the node
    form ZONE_MOVABLE (like ``movablecore=``).
    """

    memory_pages: int
    cpus: int = 1
    movable_pages: int = 0
    reserved_pages: int = 0
    """Pages present but not managed (memblock reservations); taken from the lowest zone
    that can hold them. SIMPLIFICATION: the kernel scatters them."""


@dataclass(frozen=True)
class SysctlConfig:
    """``/proc/sys/vm`` knobs that shape the allocator (6.1 defaults)."""

    min_free_kbytes: int | None = None
    """None = derive as ``calculate_min_free_kbytes()`` (+THP raise) does."""
    watermark_scale_factor: int = 10
    watermark_boost_factor: int = 15000
    lowmem_reserve_ratio: tuple[int, ...] = (256, 256, 32, 0, 0)
    percpu_pagelist_high_fraction: int = 0
    extfrag_threshold: int = 500
    compaction_proactiveness: int = 20


@dataclass(frozen=True)
class MachineConfig:
    """The simulated machine: topology and build-time constants."""

    nodes: tuple[NodeConfig, ...]
    distance: tuple[tuple[int, ...], ...] | None = None
    """NUMA distance matrix; None = 10 on the diagonal, 20 elsewhere."""
    max_order: int = DEFAULT_MAX_ORDER
    pageblock_order: int = DEFAULT_PAGEBLOCK_ORDER
    first_pfn: int = 1
    """x86_64 never hands pfn 0 to the buddy allocator."""
    transparent_hugepage: str = "always"
    """``always``, ``madvise`` or ``never``: THP enables the order-9 pcp list and
    raises ``min_free_kbytes`` (``set_recommended_min_free_kbytes()``)."""
    cma: bool = False
    """``CONFIG_CMA`` (off on the oracle kernel): sets the migratetype numbering the user
    sees (ISOLATE is 4 without CMA, 5 with it) and the CMA column of pagetypeinfo."""


@dataclass(frozen=True)
class TraceConfig:
    """What the run records."""

    events: bool = True
    snapshot_interval_ns: int = 100_000_000


@dataclass(frozen=True)
class WorkloadConfig:
    """One workload instance: a registered generator function and its parameters.

    ``params`` holds the workload's own keys, already converted to internal units by the
    workload's parameter parser (see ``workloads.registry``).
    """

    name: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: one YAML file."""

    name: str
    seed: int
    duration_ns: int
    machine: MachineConfig
    sysctl: SysctlConfig = SysctlConfig()
    trace: TraceConfig = TraceConfig()
    workloads: tuple[WorkloadConfig, ...] = ()
    source: str = "<memory>"
    """Path of the YAML file, for error messages."""
