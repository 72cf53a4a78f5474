"""Physical memory layout and zonelists.

Mirrors x86_64 ``zone_sizes_init()`` (arch/x86/mm/init.c) for zone boundaries, and
``build_zonelists()``/``find_next_best_node()``/``build_zonerefs_node()`` in
mm/page_alloc.c (6.1) for the fallback order.

Pure functions: they compute pfn ranges and node orders, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from simcore.config.types import MachineConfig
from simcore.mm.constants import (
    LOCAL_DISTANCE,
    PAGE_SIZE,
    REMOTE_DISTANCE,
    ZoneType,
    kernel_migrate_types,
)

MAX_DMA_PFN = (16 << 20) >> 12
"""First pfn above ZONE_DMA (16 MiB)."""
MAX_DMA32_PFN = (4 << 30) >> 12
"""First pfn above ZONE_DMA32 (4 GiB)."""
MAX_NUMNODES = 1 << 10
"""``CONFIG_NODES_SHIFT=10`` (Debian's x86_64 kernel); scales node_load ties."""
PENALTY_FOR_NODE_WITH_CPUS = 1


@dataclass(frozen=True)
class ZoneSpan:
    """Where one zone lies: ``[zone_start_pfn, zone_start_pfn + spanned_pages)``."""

    nid: int
    zone_idx: int
    zone_start_pfn: int
    spanned_pages: int
    present_pages: int
    managed_pages: int
    reserved_start_pfn: int
    """Pages ``[zone_start_pfn, reserved_start_pfn + reserved)`` are not managed."""
    reserved_pages: int


def layout_node(
    nid: int, start_pfn: int, memory_pages: int, movable_pages: int, reserved_pages: int
) -> list[ZoneSpan]:
    """Split one node's memory into zones as x86_64 does.

    DMA below 16 MiB, DMA32 below 4 GiB, Normal above; the top ``movable_pages`` form
    ZONE_MOVABLE (``movablecore=``). The first ``reserved_pages`` of the node are
    present but not managed (SIMPLIFICATION: the kernel scatters memblock reservations).
    """
    end = start_pfn + memory_pages
    movable_start = end - movable_pages
    bounds = [
        (ZoneType.DMA, start_pfn, min(end, MAX_DMA_PFN)),
        (ZoneType.DMA32, max(start_pfn, MAX_DMA_PFN), min(end, MAX_DMA32_PFN)),
        (ZoneType.NORMAL, max(start_pfn, MAX_DMA32_PFN), end),
    ]
    spans = []
    reserved_left = reserved_pages
    for zone_type, lo, hi in bounds:
        hi = min(hi, movable_start)
        if hi > lo:
            reserved = min(reserved_left, hi - lo)
            reserved_left -= reserved
            spans.append(ZoneSpan(nid, zone_type, lo, hi - lo, hi - lo, hi - lo - reserved,
                                  lo, reserved))
    if movable_pages:
        spans.append(ZoneSpan(nid, ZoneType.MOVABLE, movable_start, movable_pages,
                              movable_pages, movable_pages, movable_start, 0))
    return spans


def layout_machine(cfg: MachineConfig) -> list[ZoneSpan]:
    """Lay out every node one after another, each starting on a max-order boundary."""
    align = 1 << cfg.max_order
    spans: list[ZoneSpan] = []
    start = 0
    for nid, node in enumerate(cfg.nodes):
        # Node 0's first ``first_pfn`` pages are a hole: x86_64 never gives pfn 0 to
        # the buddy allocator, so ZONE_DMA starts at pfn 1 as on real hardware.
        hole = cfg.first_pfn if nid == 0 else 0
        spans.extend(layout_node(nid, start + hole, node.memory_pages - hole,
                                 node.movable_pages, node.reserved_pages))
        start = -(-(start + node.memory_pages) // align) * align
    return spans


STRUCT_PAGE_SIZE = 64
"""``sizeof(struct page)`` on x86_64, for the boot-time memmap estimate."""


def boot_managed_estimate(span: ZoneSpan) -> int:
    """``zone->managed_pages`` as free_area_init_core() first sets it, before memblock frees.

    Present pages minus the memmap estimate of calc_memmap_size() (SPARSEMEM, as on
    x86_64: spanned pages, or present pages when holes exceed 1/16), and in zone 0
    minus ``dma_reserve``, which x86's memblock_set_dma_reserve() sets to the DMA
    zone's present pages that memblock holds reserved. build_all_zonelists() runs on
    this estimate, before mm_init() frees memory to the buddy allocator.
    """
    pages = span.spanned_pages
    if pages > span.present_pages + (span.present_pages >> 4):
        pages = span.present_pages
    memmap = -(-pages * STRUCT_PAGE_SIZE // PAGE_SIZE)
    free = span.present_pages
    if free >= memmap:
        free -= memmap
    dma_reserve = span.present_pages - span.managed_pages
    if span.zone_idx == ZoneType.DMA and free > dma_reserve:
        free -= dma_reserve
    return free


def mobility_grouping_min_pages(cfg: MachineConfig) -> int:
    """Fewest pages with which 6.1 keeps grouping pages by mobility.

    build_all_zonelists() sets ``page_group_by_mobility_disabled`` when
    ``nr_free_zone_pages(gfp_zone(GFP_HIGHUSER_MOVABLE))`` (at boot: the sum of
    :func:`boot_managed_estimate` over all zones, since no watermark is set yet) is
    below ``pageblock_nr_pages * MIGRATE_TYPES``: 2560 pages (10 MiB) with 2 MiB
    pageblocks and no CMA. Then every pageblock is labelled UNMOVABLE and every steal
    claims the whole pageblock. The model does not simulate that mode, so the config
    refuses machines below this.
    """
    return (1 << cfg.pageblock_order) * kernel_migrate_types(cfg.cma)


def distance_matrix(cfg: MachineConfig) -> list[list[int]]:
    """The NUMA distance table: the configured one or 10/20 by default."""
    n = len(cfg.nodes)
    if cfg.distance is not None:
        return [list(row) for row in cfg.distance]
    return [[LOCAL_DISTANCE if i == j else REMOTE_DISTANCE for j in range(n)] for i in range(n)]


def build_node_orders(
    distance: Sequence[Sequence[int]], has_memory: Sequence[bool], has_cpus: Sequence[bool]
) -> list[list[int]]:
    """Fallback node order of every node, as build_zonelists() builds them at boot.

    ``node_load[]`` is shared across the builds of all nodes (done in node order), so
    equidistant nodes are spread round-robin, as in the kernel.
    """
    n = len(distance)
    node_load = [0] * n
    orders = []
    for local in range(n):
        used: set[int] = set()
        order: list[int] = []
        prev = local
        while True:
            node = _find_next_best_node(local, used, distance, has_memory, has_cpus, node_load)
            if node < 0:
                break
            if distance[local][node] != distance[local][prev]:
                node_load[node] += 1
            order.append(node)
            prev = node
        orders.append(order)
    return orders


def _find_next_best_node(
    node: int,
    used: set[int],
    distance: Sequence[Sequence[int]],
    has_memory: Sequence[bool],
    has_cpus: Sequence[bool],
    node_load: list[int],
) -> int:
    """``find_next_best_node()``: the local node first, then the cheapest unused one."""
    if node not in used:
        used.add(node)
        return node
    best, min_val = -1, None
    for n in range(len(distance)):
        if n in used or not has_memory[n]:
            continue
        val = distance[node][n] + (1 if n < node else 0)
        if has_cpus[n]:
            val += PENALTY_FOR_NODE_WITH_CPUS
        val = val * MAX_NUMNODES + node_load[n]
        if min_val is None or val < min_val:
            min_val, best = val, n
    if best >= 0:
        used.add(best)
    return best
