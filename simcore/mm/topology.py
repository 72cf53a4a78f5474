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
    SUBSECTION_PAGES,
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


Range = tuple[int, int]
"""A half-open pfn range ``[start, end)``."""

PC_HOLE = (0x9F, 0x100)
"""The legacy PC hole below 1 MiB (EBDA, VGA and BIOS ROM, 636 KiB..1 MiB): the e820 map
of every x86 PC (and QEMU's) leaves these pfns out of usable RAM."""
QEMU_PC_LOWMEM_LIMIT = (3 << 30) >> 12
"""QEMU's ``pc`` machine keeps 3 GiB below 4 GiB when it has 3.5 GiB of RAM or more
(pc_init1()); with less, all of it is below 4 GiB."""
QEMU_PC_SPLIT_THRESHOLD = (7 << 29) >> 12


@dataclass(frozen=True)
class ZoneSpan:
    """Where one zone lies: ``[zone_start_pfn, zone_start_pfn + spanned_pages)``.

    ``present_ranges`` are the parts of the span that hold memory (memblock.memory);
    the rest of the span is a hole. ``reserved_ranges`` are present but not managed
    (memblock reservations never freed to the buddy allocator). Empty tuples mean the
    legacy layout: the whole span is present and the unmanaged pages are
    ``[reserved_start_pfn, reserved_start_pfn + reserved_pages)``.
    """

    nid: int
    zone_idx: int
    zone_start_pfn: int
    spanned_pages: int
    present_pages: int
    managed_pages: int
    reserved_start_pfn: int
    """Pages ``[zone_start_pfn, reserved_start_pfn + reserved)`` are not managed."""
    reserved_pages: int
    present_ranges: tuple[Range, ...] = ()
    reserved_ranges: tuple[Range, ...] = ()

    @property
    def end_pfn(self) -> int:
        """``zone_end_pfn()``."""
        return self.zone_start_pfn + self.spanned_pages

    def present(self) -> tuple[Range, ...]:
        """The pfn ranges of the span that hold memory."""
        return self.present_ranges or ((self.zone_start_pfn, self.end_pfn),)

    def reserved(self) -> tuple[Range, ...]:
        """The present pfn ranges that are not managed."""
        if self.present_ranges:
            return self.reserved_ranges
        start = self.reserved_start_pfn
        return ((start, start + self.reserved_pages),) if self.reserved_pages else ()

    def managed(self) -> list[Range]:
        """The pfn ranges handed to the buddy allocator: present minus reserved."""
        return subtract_ranges(self.present(), self.reserved())


def subtract_ranges(ranges: Sequence[Range], holes: Sequence[Range]) -> list[Range]:
    """``ranges`` minus ``holes``, both sorted lists of half-open ranges."""
    out: list[Range] = []
    for lo, hi in ranges:
        for hole_lo, hole_hi in holes:
            if hole_hi <= lo or hole_lo >= hi:
                continue
            if hole_lo > lo:
                out.append((lo, hole_lo))
            lo = max(lo, hole_hi)
            if lo >= hi:
                break
        if lo < hi:
            out.append((lo, hi))
    return out


def clip_ranges(ranges: Sequence[Range], lo: int, hi: int) -> list[Range]:
    """The parts of ``ranges`` inside ``[lo, hi)``."""
    return [(max(a, lo), min(b, hi)) for a, b in ranges if min(b, hi) > max(a, lo)]


def range_pages(ranges: Sequence[Range]) -> int:
    """Pages in a list of ranges."""
    return sum(hi - lo for lo, hi in ranges)


def _take(ranges: Sequence[Range], pages: int, from_top: bool) -> list[Range]:
    """The first (or last) ``pages`` pages of ``ranges``."""
    taken: list[Range] = []
    for lo, hi in (reversed(ranges) if from_top else ranges):
        if pages <= 0:
            break
        n = min(pages, hi - lo)
        taken.append((hi - n, hi) if from_top else (lo, lo + n))
        pages -= n
    return sorted(taken)


def _merge(ranges: Sequence[Range]) -> list[Range]:
    out: list[Range] = []
    for lo, hi in ranges:
        if out and out[-1][1] >= lo:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return out


def zone_spans(
    nid: int,
    ranges: Sequence[Range],
    movable_pages: int,
    reserved: Sequence[int],
    known: Sequence[Range] = (),
) -> list[ZoneSpan]:
    """Split one node's present memory into zones as x86_64 does.

    Mirrors zone_sizes_init() (arch/x86/mm/init.c) and zone_spanned_pages_in_node():
    a zone spans the node's range clamped to the zone's bounds (DMA below 16 MiB, DMA32
    below 4 GiB, Normal above), holes included, so DMA32 spans up to 4 GiB whenever the
    node has memory above it; its present pages are the memory inside that span. The
    top ``movable_pages`` present pages form ZONE_MOVABLE (``movablecore=``).

    ``reserved[zone_type]`` present pages of each zone are not managed. SIMPLIFICATION:
    the kernel's memblock reservations lie wherever they were made; the model puts
    ZONE_DMA's at its start (x86 reserves the first 1 MiB: BIOS data, real-mode
    trampoline) and every other zone's at the top of its present memory, where
    memblock's top-down allocations (memmap, swiotlb, percpu areas) land. Reserved
    ranges that are ``known`` (from ``/proc/iomem``, or pfns a trace never touches) are
    used first, and only the rest is placed by that rule.
    """
    node_lo, node_hi = ranges[0][0], ranges[-1][1]
    movable_start = node_hi
    if movable_pages:
        movable_start = _take(ranges, movable_pages, from_top=True)[0][0]
    bounds = [
        (ZoneType.DMA, 0, MAX_DMA_PFN),
        (ZoneType.DMA32, MAX_DMA_PFN, MAX_DMA32_PFN),
        (ZoneType.NORMAL, MAX_DMA32_PFN, movable_start),
        (ZoneType.MOVABLE, movable_start, node_hi),
    ]
    spans = []
    for zone_type, zlo, zhi in bounds:
        if zone_type != ZoneType.MOVABLE:
            zhi = min(zhi, movable_start)
        lo, hi = max(node_lo, zlo), min(node_hi, zhi)
        present = clip_ranges(ranges, lo, hi)
        if hi <= lo or not present:
            continue
        nr_reserved = min(reserved[zone_type] if zone_type < len(reserved) else 0,
                          range_pages(present))
        inside = _merge(sorted(r for k in known for r in clip_ranges(present, *k)))
        held = _take(inside, nr_reserved, from_top=False)
        rest = _take(subtract_ranges(present, held), nr_reserved - range_pages(held),
                     from_top=zone_type != ZoneType.DMA)
        held = _merge(sorted(held + rest))
        spans.append(ZoneSpan(nid, zone_type, lo, hi - lo, range_pages(present),
                              range_pages(present) - nr_reserved, lo, nr_reserved,
                              tuple(present), tuple(held)))
    return spans


def layout_node(
    nid: int, start_pfn: int, memory_pages: int, movable_pages: int, reserved_pages: int
) -> list[ZoneSpan]:
    """Zones of a node with no holes: ``memory_pages`` from ``start_pfn``.

    The ``reserved_pages`` are taken from the lowest zones first.
    """
    ranges = [(start_pfn, start_pfn + memory_pages)]
    return zone_spans(nid, ranges, movable_pages,
                      split_reserved(ranges, movable_pages, reserved_pages))


def split_reserved(ranges: Sequence[Range], movable_pages: int, reserved_pages: int) -> list[int]:
    """A node's reserved pages per zone type, lowest zone first (Movable holds none)."""
    probe = zone_spans(0, ranges, movable_pages, [])
    out = [0] * (int(ZoneType.MOVABLE) + 1)
    left = reserved_pages
    for span in probe:
        if span.zone_idx == ZoneType.MOVABLE:
            continue
        out[span.zone_idx] = min(left, span.present_pages)
        left -= out[span.zone_idx]
    return out


def x86_ranges(memory_pages: int, below_4g_pages: int | None) -> list[Range]:
    """Node 0's present memory on an x86 PC with ``memory_pages`` of RAM.

    The e820 map of a PC (and of QEMU's ``pc`` machine): pfn 0 and the legacy hole
    636 KiB..1 MiB (:data:`PC_HOLE`) are not usable RAM; RAM runs from 1 MiB up to
    ``below_4g_pages`` (default: QEMU's rule, 3 GiB when there is 3.5 GiB or more,
    else all of it), and the rest is remapped above 4 GiB, past the PCI hole.
    SIMPLIFICATION: firmware's own reservations at the top of low memory are not modelled.
    """
    if below_4g_pages is None:
        below_4g_pages = (QEMU_PC_LOWMEM_LIMIT if memory_pages >= QEMU_PC_SPLIT_THRESHOLD
                          else memory_pages)
    low = min(memory_pages, below_4g_pages, MAX_DMA32_PFN)
    ranges = [(1, min(PC_HOLE[0], low))]
    if low > PC_HOLE[1]:
        ranges.append((PC_HOLE[1], low))
    if memory_pages > low:
        ranges.append((MAX_DMA32_PFN, MAX_DMA32_PFN + memory_pages - low))
    return ranges


def node_ranges(cfg: MachineConfig) -> list[list[Range]]:
    """Each node's present pfn ranges: configured, or laid out from ``memory``.

    ``layout: flat`` (the default) puts the nodes one after another, each on a
    max-order boundary, node 0 from ``first_pfn`` (x86_64 never gives pfn 0 to the
    buddy allocator). ``layout: x86`` gives node 0 the PC's low memory with its holes
    (:func:`x86_ranges`) and puts the other nodes above 4 GiB.
    """
    align = 1 << cfg.max_order
    out: list[list[Range]] = []
    start = 0
    for nid, node in enumerate(cfg.nodes):
        if node.present:
            ranges = list(node.present)
        elif cfg.layout == "x86" and nid == 0:
            ranges = x86_ranges(node.memory_pages, cfg.below_4g_pages)
        else:
            if cfg.layout == "x86":
                start = max(start, MAX_DMA32_PFN)
            hole = cfg.first_pfn if nid == 0 else 0
            ranges = [(start + hole, start + node.memory_pages)]
        out.append(ranges)
        start = -(-ranges[-1][1] // align) * align
    return out


def layout_machine(cfg: MachineConfig) -> list[ZoneSpan]:
    """Every node's zones (see :func:`node_ranges` and :func:`zone_spans`)."""
    spans: list[ZoneSpan] = []
    for nid, (node, ranges) in enumerate(zip(cfg.nodes, node_ranges(cfg), strict=True)):
        if node.reserved_by_zone:
            reserved = list(node.reserved_by_zone)
        else:
            reserved = split_reserved(ranges, node.movable_pages, node.reserved_pages)
        spans.extend(zone_spans(nid, ranges, node.movable_pages, reserved, node.reserved_at))
    return spans


def memmap_pageblocks(spans: Sequence[ZoneSpan], pageblock_order: int) -> list[tuple[int, int]]:
    """``(pageblock index, zone index in spans)`` of every pageblock with a struct page.

    With SPARSEMEM_VMEMMAP a pfn has an online struct page when its subsection
    (:data:`SUBSECTION_PAGES`) holds present memory (pfn_to_online_page() and
    pfn_section_valid()); with 2 MiB pageblocks that is a pageblock with a present
    page. Other pageblocks of a span (the PCI hole of DMA32) hold no pages: no
    allocation, no compaction scan and no pagetypeinfo count touches them.
    SIMPLIFICATION: compaction's pageblock_pfn_to_page() accepts whole present 128 MiB
    sections and walks the reserved struct pages of their holes; the model skips
    those pageblocks, which changes only the scan counts.
    """
    step = max(1 << pageblock_order, SUBSECTION_PAGES)
    out: list[tuple[int, int]] = []
    for idx, span in enumerate(spans):
        blocks: set[int] = set()
        for lo, hi in span.present():
            first = lo // step * step
            for pfn in range(first, hi, step):
                for pb in range(pfn >> pageblock_order, (pfn + step) >> pageblock_order):
                    blocks.add(pb)
        first_pb = span.zone_start_pfn >> pageblock_order
        last_pb = (span.end_pfn - 1) >> pageblock_order
        out.extend((pb, idx) for pb in sorted(blocks) if first_pb <= pb <= last_pb)
    return out


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
