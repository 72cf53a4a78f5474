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

    Its memory is ``present`` (pfn ranges, as a real host's memblock.memory), or
    ``memory_pages`` laid out by the machine's ``layout`` (see
    :func:`simcore.mm.topology.node_ranges`). Zones follow x86_64 ``zone_sizes_init()``:
    DMA below 16 MiB, DMA32 below 4 GiB, Normal above; ``movable_pages`` at the top of
    the node form ZONE_MOVABLE (like ``movablecore=``).
    """

    memory_pages: int
    cpus: int = 1
    movable_pages: int = 0
    reserved_pages: int = 0
    """Pages present but not managed (memblock reservations); taken from the lowest zone
    that can hold them. SIMPLIFICATION: the kernel scatters them (see
    :func:`simcore.mm.topology.zone_spans` for where the model puts them)."""
    present: tuple[tuple[int, int], ...] = ()
    """Present memory as half-open pfn ranges, sorted; empty = laid out from memory."""
    reserved_by_zone: tuple[int, ...] = ()
    """Reserved pages per zone type (DMA, DMA32, Normal, Movable), as a real host's
    ``present - managed``; empty = ``reserved_pages`` split lowest zone first."""
    reserved_at: tuple[tuple[int, int], ...] = ()
    """Pfn ranges known to be reserved (e.g. the kernel image in ``/proc/iomem``); they
    count toward each zone's reserved pages before the model places the rest."""


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
    swappiness: int = 60
    """``vm.swappiness``: the anon share of reclaim's scan balance (0..200)."""


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
    layout: str = "flat"
    """How nodes without ``present`` ranges are placed: ``flat`` (one after another) or
    ``x86`` (a PC's low memory with its holes, the rest above 4 GiB)."""
    below_4g_pages: int | None = None
    """``layout: x86``: RAM below 4 GiB (None = QEMU ``pc``'s rule)."""
    from_proc: str | None = field(default=None, compare=False)
    """The ``/proc`` snapshot directory the machine was imported from, if any (provenance
    only: two machines with the same layout are equal wherever they came from)."""
    transparent_hugepage: str = "always"
    """``always``, ``madvise`` or ``never``: THP enables the order-9 pcp list and
    raises ``min_free_kbytes`` (``set_recommended_min_free_kbytes()``)."""
    swap_pages: int = 0
    """Swap space (``swapon``), in pages. Anonymous memory is reclaimable only while some is
    free (``can_reclaim_anon_pages()``); 0, the default, means no swap."""
    cma: bool = False
    """``CONFIG_CMA`` (off on the oracle kernel): sets the migratetype numbering the user
    sees (ISOLATE is 4 without CMA, 5 with it) and the CMA column of pagetypeinfo."""


@dataclass(frozen=True)
class CostConfig:
    """What each step of an allocation costs, in ns (the ``cost:`` section).

    A simulator-only model: the kernel has no such table. The defaults are orders of
    magnitude for a current x86_64 server with NVMe storage, so that latencies and
    stalls come out in realistic proportions; measure your own hardware and set them.
    Fast-path costs are recorded as latency and never advance the caller's clock; the
    others are time a blocking caller (or kswapd) spends.
    """

    pcp_hit_ns: int = 100
    """An order-0..3 allocation served from a per-CPU list (``rmqueue_pcplist()``): the
    order of the page allocator microbenchmarks (mmtests ``pagealloc``) on x86_64."""
    buddy_ns: int = 400
    """A block taken from the buddy lists under ``zone->lock`` (``rmqueue_buddy()``)."""
    fallback_ns: int = 1_500
    """A ``__rmqueue_fallback()`` steal: moving a pageblock's free pages (512 pages)."""
    direct_reclaim_ns: int = 10_000
    """One ``try_to_free_pages()`` call, besides the pages it scans and frees: the walk
    of the zonelist and the LRU lock round trips."""
    reclaim_scan_ns: int = 50
    """Per page isolated and examined by reclaim (``shrink_folio_list()`` work)."""
    reclaim_clean_ns: int = 1_000
    """Per clean page-cache or slab page freed (unmap, delete from the page cache)."""
    reclaim_dirty_ns: int = 25_000
    """Per dirty page written back before it can be freed: 4 KiB at about 160 MB/s of
    small random writes."""
    reclaim_swap_ns: int = 30_000
    """Per anonymous page written to swap (``pageout()`` to an NVMe swap device)."""
    compact_scan_ns: int = 50
    """Per page either compaction scanner examines (isolate_*_block())."""
    compact_migrate_ns: int = 2_000
    """Per page migrated: copy 4 KiB and remap (migrate_pages())."""
    oom_kill_ns: int = 10_000_000
    """One ``out_of_memory()`` call that kills: selecting the victim, the kill and the
    oom_reaper freeing its memory (about 10 ms on a loaded box)."""
    hz: int = 250
    """``CONFIG_HZ`` (Debian's kernel: 250). One jiffy is what ``reclaim_throttle()``
    sleeps for a reclaimer that makes no progress; kswapd naps ``HZ/10``."""

    @property
    def jiffy_ns(self) -> int:
        """One jiffy in ns."""
        return 1_000_000_000 // self.hz


@dataclass(frozen=True)
class LimitsConfig:
    """What the run reports as a problem (the ``limits:`` section)."""

    nofail_stall_ns: int = 10_000_000_000
    """A ``__GFP_NOFAIL`` request stalled longer than this is reported by caller."""


@dataclass(frozen=True)
class ActionConfig:
    """One scheduled action (an entry of ``actions:``).

    Attributes:
        at_ns: When it happens.
        kind: ``sysctl``, ``drop_caches``, ``compact_memory`` or ``nr_hugepages``.
        args: The action's arguments (``sysctl``: name -> value).
    """

    at_ns: int
    kind: str
    args: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class TraceConfig:
    """What the run records."""

    events: bool = True
    snapshot_interval_ns: int = 100_000_000
    proc_snapshot_times_ns: tuple[int, ...] = ()
    """Simulated times at which the run writes a ``proc/t=<seconds>s/`` snapshot
    directory (``trace.proc_snapshots``), as listed; ``proc/start`` and ``proc/end`` are
    always written."""


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
    cost: CostConfig = CostConfig()
    limits: LimitsConfig = LimitsConfig()
    actions: tuple[ActionConfig, ...] = ()
    initial_state: str | None = None
    """The ``/proc`` snapshot directory (absolute) whose memory state the run starts from
    (``initial_state: {from_proc: DIR}``); None: a freshly booted machine."""
    source: str = "<memory>"
    """Path of the YAML file, for error messages."""
