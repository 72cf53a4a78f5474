"""The page allocator: the pure core of the model, with no SimPy and no randomness.

Mirrors mm/page_alloc.c (6.1): boot-time freeing (``memblock_free_all`` →
``__free_pages_core()``), ``prepare_alloc_pages()``, ``alloc_flags_nofragment()``,
``get_page_from_freelist()``, ``rmqueue()``, ``rmqueue_buddy()``,
``prep_new_page()``, ``zone_statistics()``, and the sysctl handlers that recompute
watermarks, ``lowmem_reserve`` and pcp ``high``/``batch``. Freeing and refcounting
are in :mod:`simcore.mm.page_free`; the slow path is in :mod:`simcore.mm.slowpath`.
"""

from __future__ import annotations

import numpy as np

from simcore.config.types import CostConfig, MachineConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm import kswapd, page_misuse, slowpath
from simcore.mm import watermarks as wm
from simcore.mm.constants import (
    ALLOC_HARDER,
    ALLOC_KSWAPD,
    ALLOC_NO_WATERMARKS,
    ALLOC_NOFRAGMENT,
    ALLOC_WMARK_LOW,
    ALLOC_WMARK_MASK,
    MIGRATE_TYPES,
    MT_HIGHATOMIC,
    MT_ISOLATE,
    MT_MOVABLE,
    MT_UNMOVABLE,
    NEED_SLOWPATH,
    PAGE_ALLOC_COSTLY_ORDER,
    ZoneType,
    kernel_migratetype_numbers,
    kernel_migratetypes,
)
from simcore.mm.fallback import reserve_highatomic_pageblock
from simcore.mm.gfp import GFP, gfp_migratetype, gfp_zone
from simcore.mm.page_free import FreePagesMixin
from simcore.mm.pages import (
    MT_SHIFT,
    PG_ALLOC,
    PG_HEAD,
    PG_MOVABLE_OWNER,
    PG_RESERVED,
    PG_TAIL,
    PageArray,
)
from simcore.mm.pcp import PerCpuPages
from simcore.mm.topology import (
    ZoneSpan,
    build_node_orders,
    distance_matrix,
    layout_machine,
    memmap_pageblocks,
)
from simcore.mm.tracepoints import NullTracer, Tracer
from simcore.mm.vmscan import Reclaim
from simcore.mm.vmstat import VMSTAT_INDEX, VmStat
from simcore.mm.zone import Zone, populated_zone

GFP_THISNODE = int(GFP.THISNODE)
GFP_COMP = int(GFP.COMP)
GFP_KSWAPD_RECLAIM = int(GFP.KSWAPD_RECLAIM)
GFP_ACCOUNT = int(GFP.ACCOUNT)
_VM_PGFREE = VMSTAT_INDEX["pgfree"]
_VM_HIGHATOMIC_RESERVED = VMSTAT_INDEX["highatomic_reserved"]
_VM_NUMA_HIT = VMSTAT_INDEX["numa_hit"]
_VM_NUMA_MISS = VMSTAT_INDEX["numa_miss"]
_VM_NUMA_FOREIGN = VMSTAT_INDEX["numa_foreign"]
_VM_NUMA_LOCAL = VMSTAT_INDEX["numa_local"]
_VM_NUMA_OTHER = VMSTAT_INDEX["numa_other"]
PATH_IDX_PCP, PATH_IDX_BUDDY, PATH_IDX_FALLBACK = 0, 1, 2
"""Index of the fast-path source in :attr:`PageAllocator.fast_hits` and ``path_cost``."""
_PATH_NAMES = (ts.PATH_PCP, ts.PATH_BUDDY, ts.PATH_FALLBACK)
_STAGE_FAST = ts.STAGE_FAST


class AllocContext:
    """``struct alloc_context``: what prepare_alloc_pages() decides once per request.

    Attributes:
        zonelist: Eligible zones in fallback order (already filtered by
            highest_zoneidx and nodemask).
        highest_zoneidx: ``gfp_zone()`` of the request.
        migratetype: ``gfp_migratetype()`` of the request.
        preferred_nid: The node asked for.
        nodemask: Allowed nodes, or None for all.
        preferred_zone: ``ac->preferred_zoneref->zone`` (None for an empty zonelist).
        fast_flags: alloc_flags of the first get_page_from_freelist() attempt (LOW
            watermark + nofragment).
    """

    def __init__(
        self, zonelist: tuple[Zone, ...], highest_zoneidx: int, migratetype: int,
        preferred_nid: int, nodemask: frozenset[int] | None = None, fast_flags: int = 0,
    ) -> None:
        self.zonelist = zonelist
        self.highest_zoneidx = highest_zoneidx
        self.migratetype = migratetype
        self.preferred_nid = preferred_nid
        self.nodemask = nodemask
        self.fast_flags = fast_flags
        self.preferred_zone = zonelist[0] if zonelist else None


class Node:
    """``pg_data_t``: one NUMA node with its zones, CPUs and fallback node order."""

    def __init__(self, nid: int, cpus: tuple[int, ...]) -> None:
        self.nid = nid
        self.cpus = cpus
        self.node_zones: list[Zone | None] = [None] * len(ZoneType)
        self.node_order: list[int] = []

    @property
    def zones(self) -> list[Zone]:
        """Populated zones of this node, lowest zone type first."""
        return [z for z in self.node_zones if z is not None and populated_zone(z)]

    @property
    def node_present_pages(self) -> int:
        """``pgdat->node_present_pages``: a node with any is in ``N_MEMORY``."""
        return sum(z.present_pages for z in self.node_zones if z is not None)


class PageAllocator(FreePagesMixin):
    """Nodes, zones, ``mem_map``, pcp lists and counters of one simulated machine."""

    def __init__(
        self,
        cfg: MachineConfig,
        sysctl: SysctlConfig,
        tracer: Tracer | None = None,
        spans: list[ZoneSpan] | None = None,
        cost: CostConfig | None = None,
    ) -> None:
        """Build the machine and free all managed memory to the buddy lists.

        Args:
            cfg: Topology; zones are laid out from it unless ``spans`` is given.
            sysctl: The vm sysctls.
            tracer: Receives the tracepoint calls (default: a null tracer).
            spans: Explicit zone placement (e.g. from a real ``/proc/zoneinfo``).
            cost: The cost model (default: :class:`~simcore.config.types.CostConfig`).
        """
        self.cfg = cfg
        self.sysctl = sysctl
        self.tracer = tracer if tracer is not None else NullTracer()
        self.tracing = bool(self.tracer.enabled)
        """``tracer.enabled``, read once (the tracepoints' static key)."""
        self.max_order = cfg.max_order
        self.pageblock_order = cfg.pageblock_order
        self.thp = cfg.transparent_hugepage in ("always", "madvise")
        """THP enabled at run time (``always``/``madvise``): khugepaged raises
        ``min_free_kbytes``. The order-9 pcp list does not depend on it: it exists
        whenever the kernel is built with ``CONFIG_TRANSPARENT_HUGEPAGE`` (assumed, as
        on Debian's 6.1 kernel)."""
        self.cma = cfg.cma
        """``CONFIG_CMA``: only the numbering and /proc columns the user sees depend on
        it. SIMPLIFICATION: no CMA area is modelled, so no pageblock is ever CMA."""
        self.migratetypes = kernel_migratetypes(cfg.cma)
        """Internal migratetypes that exist in this kernel config (pagetypeinfo rows)."""
        self.tracer.set_migratetype_numbers(kernel_migratetype_numbers(cfg.cma))
        self.order_warned = False
        """The one-shot ``__warned`` of __alloc_pages()'s WARN_ON_ONCE_GFP."""
        self.vm = VmStat()
        if spans is None:
            spans = layout_machine(cfg)
        end_pfn = max(s.zone_start_pfn + s.spanned_pages for s in spans)
        nr_pfns = -(-end_pfn >> cfg.max_order) << cfg.max_order
        self.pages = PageArray(nr_pfns)
        self.pages.flags_np[:] = PG_RESERVED
        self.pageblock_mt = bytearray([MT_MOVABLE]) * (nr_pfns >> cfg.pageblock_order)
        self.pb_zone = bytearray([255]) * (nr_pfns >> cfg.pageblock_order)
        self._pb_zone = self.pb_zone  # the same bytes, typed (a C array view when compiled)
        self.pb_claims: list[int] = []
        """See :attr:`Zone.pb_claims` (one list for all zones)."""
        self.nr_cpus = sum(n.cpus for n in cfg.nodes)
        self.nodes: list[Node] = []
        first_cpu = 0
        for nid, node_cfg in enumerate(cfg.nodes):
            self.nodes.append(Node(nid, tuple(range(first_cpu, first_cpu + node_cfg.cpus))))
            first_cpu += node_cfg.cpus
        self.cpu_to_node = [n.nid for n in self.nodes for _ in n.cpus]
        self.zones: list[Zone] = []
        self._managed_start: list[int] = []
        self.managed_ranges: list[list[tuple[int, int]]] = []
        """Per zone (as ``zones``): the pfn ranges handed to the buddy allocator."""
        for span in spans:
            self._add_zone(span)
        for pb, idx in memmap_pageblocks(spans, cfg.pageblock_order):
            self.pb_zone[pb] = idx
        self._build_zonelists()
        self._zonelist_cache: dict[tuple[int, bool, int], tuple[Zone, ...]] = {}
        self._ac_cache: list[dict[int, AllocContext]] = [{} for _ in self.nodes]
        """Per node: gfp_mask -> its AllocContext (a pure function of both)."""
        self.min_free_kbytes = 0
        self.last_zone: Zone = self.zones[0]
        self.last_path_pcp = False
        self.current_comm = "allocsim"
        """The caller's name for warn_alloc() lines (``current->comm``)."""
        cost = cost if cost is not None else CostConfig()
        self.path_cost = np.array([cost.pcp_hit_ns, cost.buddy_ns, cost.fallback_ns],
                                  dtype=np.int64).data
        """Latency of a fast-path allocation by where it was served (PATH_IDX_*)."""
        self.fast_hits = np.zeros(3, dtype=np.int64).data
        """Fast-path allocations by where they were served (PATH_IDX_*); int64 views, so
        the compiled fast path counts at C level."""
        self.last_ac: AllocContext | None = None
        self.last_request: slowpath.SlowRequest | None = None
        self.reclaim = Reclaim(self, cfg.swap_pages, sysctl.swappiness, cost)
        """LRU lists, swap, kswapd state and the cost model (:mod:`simcore.mm.vmscan`)."""
        self.setup_per_zone_wmarks(boot=True)
        self._memblock_free_all()

    # -- construction -------------------------------------------------------------------
    def _add_zone(self, span: ZoneSpan) -> None:
        zone = Zone(
            nid=span.nid, zone_idx=span.zone_idx, zone_start_pfn=span.zone_start_pfn,
            spanned_pages=span.spanned_pages, present_pages=span.present_pages,
            managed_pages=span.managed_pages, pages=self.pages,
            pageblock_mt=self.pageblock_mt, pageblock_order=self.pageblock_order,
            max_order=self.max_order, tracer=self.tracer,
        )
        zone.vm = self.vm
        zone.pb_claims = self.pb_claims
        zone.watermark_boost_factor = self.sysctl.watermark_boost_factor
        zone.per_cpu_pageset = [PerCpuPages(cpu, zone) for cpu in range(self.nr_cpus)]
        self.nodes[span.nid].node_zones[span.zone_idx] = zone
        self.zones.append(zone)
        zone.present_ranges = tuple(span.present())
        self._init_pageblocks(span)
        managed = span.managed()
        for lo, hi in managed:
            self.pages.flags_np[lo:hi] = 0
        zone.managed_start_pfn = managed[0][0] if managed else zone.end_pfn
        self._managed_start.append(zone.managed_start_pfn)
        self.managed_ranges.append(managed)

    def _init_pageblocks(self, span: ZoneSpan) -> None:
        """Label the zone's pageblocks as memmap_init_range() leaves them.

        A pageblock whose first pfn is present memory is marked MIGRATE_MOVABLE; the
        others (holes, or the block of pfn 0, which x86 never treats as RAM) keep the
        zeroed usemap bits: MIGRATE_UNMOVABLE. Their pages are freed at boot to the
        UNMOVABLE lists, as __free_pages_core() reads the block's type (on the oracle
        host, DMA's first pageblock is UNMOVABLE from boot).
        """
        pb = self.pageblock_order
        first_pb = span.zone_start_pfn >> pb
        last_pb = (span.end_pfn - 1) >> pb
        for block in range(first_pb, last_pb + 1):
            self.pageblock_mt[block] = MT_UNMOVABLE
        for lo, hi in span.present():
            first = -(-lo >> pb)
            for block in range(first, -(-hi >> pb)):
                self.pageblock_mt[block] = MT_MOVABLE

    def _build_zonelists(self) -> None:
        """``build_all_zonelists()``: node order by distance, zones high to low.

        A node is in ``N_MEMORY`` when it has present pages (free_area_init()), even if
        none of them is managed.

        SIMPLIFICATION: build_all_zonelists() also turns off grouping by mobility
        (``page_group_by_mobility_disabled``) when the pages above the high watermarks
        are fewer than ``pageblock_nr_pages * MIGRATE_TYPES`` (10 MiB with 2 MiB
        pageblocks and no CMA). The model always groups by mobility; the config rejects
        machines that small (:func:`mobility_grouping_disabled`).
        """
        dist = distance_matrix(self.cfg)
        has_memory = [n.node_present_pages > 0 for n in self.nodes]
        has_cpus = [bool(n.cpus) for n in self.nodes]
        for node, order in zip(self.nodes, build_node_orders(dist, has_memory, has_cpus),
                               strict=True):
            node.node_order = order
        self.nr_online_nodes = len(self.nodes)

    def _memblock_free_all(self) -> None:
        """Hand managed memory to the buddy lists at boot.

        Mirrors memblock_free_all() → __free_pages_core() → __free_pages_ok(): maximal
        naturally aligned chunks, freed with FPI_TO_TAIL onto the lists of their
        pageblock's type (MOVABLE but where memmap_init_range() left the block
        unlabelled: :meth:`_init_pageblocks`; behaviour 13), each counting
        ``pgfree += 1 << order`` as __free_pages_ok() does, so ``pgfree`` starts at the
        managed pages (as on a real host, where it also counts the init memory freed
        later).

        SIMPLIFICATION: with ``CONFIG_DEFERRED_STRUCT_PAGE_INIT`` (on the oracle
        kernel) memblock_free_all() frees the lower zones and only about the first
        section (PAGES_PER_SECTION, 128 MiB) of each node's highest zone (defer_init()).
        The rest is freed later, after early boot allocations have begun, by the
        node's pgdatinit thread and padata helper threads working on separate chunks in
        parallel: deferred_free_range() frees one pageblock (order 9) at a time to the
        list tail, where it merges with a free buddy pageblock into order 10, so the
        tail of the order-10 list follows the threads' interleaving, not global pfn
        order (the oracle's boot-idle trace shows 182 such order-9 ``mm_page_free``
        events). The model frees everything here, in max-order chunks, before any
        allocation: every free list is in ascending pfn order, and no boot free is
        traced.
        """
        v = self.vm.v
        for zone, managed in zip(self.zones, self.managed_ranges, strict=True):
            for pfn, end in managed:
                while pfn < end:
                    order = min(self.max_order, (pfn & -pfn).bit_length() - 1 if pfn else 63)
                    while pfn + (1 << order) > end:
                        order -= 1
                    zone.free_one_page(pfn, order, zone.get_pageblock_migratetype(pfn), True)
                    v[_VM_PGFREE] += 1 << order
                    pfn += 1 << order

    # -- sysctl-driven sizing -----------------------------------------------------------
    def setup_per_zone_wmarks(self, boot: bool = False) -> None:
        """Recompute watermarks, ``lowmem_reserve`` and pcp sizes from the sysctls.

        Mirrors setup_per_zone_wmarks() + setup_per_zone_lowmem_reserve() +
        zone_pcp_update(); at boot ``min_free_kbytes`` is derived as
        init_per_zone_wmark_min() and khugepaged do when the sysctl is "auto".
        """
        managed = [z.managed_pages for z in self.zones]
        types = [z.zone_idx for z in self.zones]
        if self.sysctl.min_free_kbytes is not None:
            self.min_free_kbytes = self.sysctl.min_free_kbytes
        elif boot:
            self.min_free_kbytes = wm.default_min_free_kbytes(
                managed, types, thp_enabled=self.thp,
                watermark_scale_factor=self.sysctl.watermark_scale_factor,
                pageblock_nr_pages=1 << self.pageblock_order,
                present=[z.present_pages for z in self.zones],
            )
        marks = wm.setup_per_zone_wmarks(
            managed, None, self.min_free_kbytes, self.sysctl.watermark_scale_factor
        )
        for zone, mark in zip(self.zones, marks, strict=True):
            zone.watermark = list(mark)
            zone.watermark_boost = 0
        self.setup_per_zone_lowmem_reserve()
        self.zone_pcp_update()

    def setup_per_zone_lowmem_reserve(self) -> None:
        """``setup_per_zone_lowmem_reserve()`` for every node."""
        ratio = list(self.sysctl.lowmem_reserve_ratio)
        for node in self.nodes:
            managed = [z.managed_pages if z else 0 for z in node.node_zones]
            reserve = wm.setup_per_zone_lowmem_reserve(managed, ratio)
            for zone in node.zones:
                zone.lowmem_reserve = reserve[zone.zone_idx]

    def zone_pcp_update(self) -> None:
        """``zone_pcp_update()``: pcp high/batch of every zone and CPU."""
        for zone in self.zones:
            high, batch = wm.pageset_high_and_batch(
                zone.managed_pages, zone.wmark_pages(1), len(self.nodes[zone.nid].cpus),
                self.sysctl.percpu_pagelist_high_fraction, self.nr_cpus,
            )
            zone.pcp_high, zone.pcp_batch = high, batch
            for pcp in zone.per_cpu_pageset:
                pcp.high, pcp.batch = high, batch

    # -- lookups ------------------------------------------------------------------------
    def page_zone(self, pfn: int) -> Zone:
        """``page_zone()``."""
        return self.zones[self._pb_zone[pfn >> self.pageblock_order]]

    def zonelist(self, nid: int, thisnode: bool, highest_zoneidx: int) -> tuple[Zone, ...]:
        """Eligible zones of ``node_zonelist(nid, gfp)`` up to ``highest_zoneidx``."""
        key = (nid, thisnode, highest_zoneidx)
        zl = self._zonelist_cache.get(key)
        if zl is None:
            order = [nid] if thisnode else self.nodes[nid].node_order
            # build_zonerefs_node() lists populated_zone()s: present pages, managed
            # or not. A zone with none managed is then skipped by its watermark check.
            zl = tuple(
                z for n in order for z in reversed(self.nodes[n].zones)
                if z.zone_idx <= highest_zoneidx
            )
            self._zonelist_cache[key] = zl
        return zl

    # -- allocation ---------------------------------------------------------------------
    def prepare_alloc_pages(
        self, gfp: int, nid: int, nodemask: frozenset[int] | None = None
    ) -> AllocContext:
        """``prepare_alloc_pages()``: zonelist, highest zone, migratetype.

        SIMPLIFICATION: cpusets, fault injection and dirty-page spreading
        (``__GFP_WRITE``) are not modelled.
        """
        if nodemask is None:
            cache = self._ac_cache[nid]
            ac = cache.get(gfp)
            if ac is not None:
                return ac
        highest = int(gfp_zone(gfp))
        zl = self.zonelist(nid, bool(gfp & GFP_THISNODE), highest)
        if nodemask is not None:
            zl = self._restrict_to_nodes(zl, nodemask)
        ac = AllocContext(zl, highest, gfp_migratetype(gfp), nid, nodemask)
        ac.fast_flags = ALLOC_WMARK_LOW | self.alloc_flags_nofragment(ac.preferred_zone, gfp)
        if nodemask is None:
            # The context is a pure function of (gfp, nid) and the topology, which never
            # changes after boot: cache it instead of redoing gfp_zone() and friends.
            self._ac_cache[nid][gfp] = ac
        return ac

    @staticmethod
    def _restrict_to_nodes(zl: tuple[Zone, ...], nodemask: frozenset[int]) -> tuple[Zone, ...]:
        """The zones of ``zl`` on nodes in ``nodemask`` (``for_each_zone_zonelist_nodemask``)."""
        return tuple(z for z in zl if z.nid in nodemask)

    def alloc_flags_nofragment(self, zone: Zone | None, gfp: int) -> int:
        """``alloc_flags_nofragment()``: ALLOC_KSWAPD, and NOFRAGMENT for Normal."""
        flags = gfp & GFP_KSWAPD_RECLAIM
        if zone is None or zone.zone_idx != ZoneType.NORMAL:
            return flags
        dma32 = self.nodes[zone.nid].node_zones[ZoneType.DMA32]
        if self.nr_online_nodes > 1 and (dma32 is None or not populated_zone(dma32)):
            return flags
        return flags | ALLOC_NOFRAGMENT

    def fast_path_flags(self, gfp: int, ac: AllocContext) -> int:
        """The first attempt's flags in __alloc_pages(): LOW watermark (+nofragment)."""
        return ac.fast_flags

    def get_page_from_freelist(
        self, gfp: int, order: int, alloc_flags: int, ac: AllocContext, cpu: int
    ) -> int:
        """Walk the zonelist for a zone that passes its watermark and has a page.

        Mirrors get_page_from_freelist(), including the ALLOC_NOFRAGMENT retry and
        the restart when the walk crosses to a remote node. Returns a pfn or -1.
        SIMPLIFICATION: node_reclaim_mode is 0 (the 6.1 default): a zone failing its
        watermark is skipped.
        """
        preferred = ac.preferred_zone
        while True:
            no_fallback = alloc_flags & ALLOC_NOFRAGMENT
            restart = False
            for zone in ac.zonelist:
                if (no_fallback and self.nr_online_nodes > 1 and zone is not preferred
                        and preferred is not None and zone.nid != preferred.nid):
                    alloc_flags &= ~ALLOC_NOFRAGMENT
                    restart = True
                    break
                mark = zone.watermark[alloc_flags & ALLOC_WMARK_MASK]
                mark += zone.watermark_boost
                if not zone.watermark_fast(order, mark, ac.highest_zoneidx, alloc_flags, gfp):
                    if not alloc_flags & ALLOC_NO_WATERMARKS:
                        continue
                pfn = self.rmqueue(preferred, zone, order, alloc_flags, ac.migratetype, cpu)
                if pfn >= 0:
                    self.prep_new_page(pfn, order, gfp, ac.migratetype)
                    if order and alloc_flags & ALLOC_HARDER:
                        before = zone.nr_reserved_highatomic
                        reserve_highatomic_pageblock(zone, pfn)
                        if zone.nr_reserved_highatomic != before:
                            self.vm.v[_VM_HIGHATOMIC_RESERVED] += 1
                    self.last_zone = zone
                    return pfn
            if restart:
                continue
            if no_fallback:
                alloc_flags &= ~ALLOC_NOFRAGMENT
                continue
            return -1

    def pcp_allowed_order(self, order: int) -> bool:
        """``pcp_allowed_order()``: orders 0-3, and pageblock_order (CONFIG_THP=y)."""
        return order <= PAGE_ALLOC_COSTLY_ORDER or order == self.pageblock_order

    def rmqueue(
        self, preferred: Zone | None, zone: Zone, order: int, alloc_flags: int, mt: int, cpu: int
    ) -> int:
        """Take a block from ``zone``'s pcp or buddy lists: mirrors rmqueue()."""
        zone.fell_back = False
        pfn = -1
        self.last_path_pcp = False
        if order <= PAGE_ALLOC_COSTLY_ORDER or order == self.pageblock_order:
            pcp = zone.per_cpu_pageset[cpu]
            pfn = pcp.rmqueue(order, mt, alloc_flags)
            self.last_path_pcp = pfn >= 0
        if pfn < 0:
            pfn = self.rmqueue_buddy(zone, order, alloc_flags, mt)
        if pfn >= 0:
            v = self.vm.v
            v[zone.pgalloc_idx] += 1 << order
            if preferred is None or zone.nid == preferred.nid:
                v[_VM_NUMA_HIT] += 1
            else:
                v[_VM_NUMA_MISS] += 1
                v[_VM_NUMA_FOREIGN] += 1
            cpu_nid = self.cpu_to_node[cpu]
            if zone.nid == cpu_nid:
                v[_VM_NUMA_LOCAL] += 1
            else:
                v[_VM_NUMA_OTHER] += 1
        if zone.boosted_watermark:
            zone.boosted_watermark = False
            self.wakeup_kswapd(zone, 0, 0, zone.zone_idx)
        return pfn

    def rmqueue_buddy(self, zone: Zone, order: int, alloc_flags: int, mt: int) -> int:
        """``rmqueue_buddy()``: highatomic first for order>0 ALLOC_HARDER, then __rmqueue.

        A block that fails ``check_new_pages()`` (a page a caller's put left with a
        negative refcount) is reported and leaked, and the kernel takes another.
        """
        while True:
            pfn = -1
            if order and alloc_flags & ALLOC_HARDER:
                pfn = zone.rmqueue_smallest(order, MT_HIGHATOMIC)
            if pfn < 0:
                pfn = zone.rmqueue(order, mt, alloc_flags)
                if pfn < 0:
                    return -1
            if (self.pages.info[pfn] >> MT_SHIFT) != MT_ISOLATE:
                zone.nr_free_pages -= 1 << order
            if not zone.refcount_underflows or not page_misuse.check_new_pages(zone, pfn, order):
                return pfn

    def prep_new_page(self, pfn: int, order: int, gfp: int, mt: int) -> None:
        """``prep_new_page()``: head refcount 1, compound metadata for __GFP_COMP.

        Also records the requested migratetype and, for MOVABLE requests, that the
        owner can migrate the pages (SIMPLIFICATION: every MOVABLE allocation is
        treated as an LRU page for move_freepages_block() and compaction).
        """
        pages = self.pages
        pages.ref[pfn] = 1
        pages.info[pfn] = order | (mt << MT_SHIFT)
        movable = PG_MOVABLE_OWNER if mt == MT_MOVABLE else 0
        if order and gfp & GFP_COMP:
            pages.flags[pfn] = PG_ALLOC | PG_HEAD | movable
            pages.fill_flags(pfn + 1, pfn + (1 << order), PG_TAIL | movable)
        else:
            pages.flags[pfn] = PG_ALLOC | movable
            if order and movable:
                pages.fill_flags(pfn + 1, pfn + (1 << order), movable)

    def alloc_pages_bulk(self, gfp: int, nid: int, nr_pages: int, cpu: int,
                         nodemask: frozenset[int] | None = None) -> list[int] | None:
        """``__alloc_pages_bulk()`` into an empty page array: up to ``nr_pages`` order-0 pages.

        Returns the pfns taken (each prepped, refcount 1), or None when the kernel would
        fall back to one ordinary ``__alloc_pages()`` for a single page (the caller makes
        that call): only one page is wanted, ``__GFP_ACCOUNT`` is set (kmem accounting
        is on, as on the oracle kernel), a zone of another node comes first, no zone
        passes LOW + ``nr_pages``, or the pcp list yields nothing at all. The pages come
        from the first zone that passes, through its pcp list on ``cpu`` (refilled by
        ``rmqueue_bulk()``); the bulk path never reclaims and traces no
        ``mm_page_alloc``. ``pgalloc`` and the NUMA counters count the pages taken.
        """
        if nr_pages <= 0:
            return []
        if gfp & GFP_ACCOUNT or nr_pages == 1:
            return None
        ac = self.prepare_alloc_pages(gfp, nid, nodemask)
        preferred = ac.preferred_zone
        if preferred is None:
            return None
        alloc_flags = ALLOC_WMARK_LOW
        zone = None
        for z in ac.zonelist:
            if self.nr_online_nodes > 1 and z is not preferred and z.nid != preferred.nid:
                return None
            mark = z.wmark_pages(alloc_flags & ALLOC_WMARK_MASK) + nr_pages
            if z.watermark_fast(0, mark, preferred.zone_idx, alloc_flags, gfp):
                zone = z
                break
        if zone is None:
            return None
        pcp = zone.per_cpu_pageset[cpu]
        out: list[int] = []
        while len(out) < nr_pages:
            pfn = pcp.rmqueue_pcplist(0, ac.migratetype, alloc_flags)
            if pfn < 0:
                if not out:
                    return None
                break
            self.prep_new_page(pfn, 0, gfp, ac.migratetype)
            out.append(pfn)
        n = len(out)
        v = self.vm.v
        v[zone.pgalloc_idx] += n
        if zone.nid == preferred.nid:
            v[_VM_NUMA_HIT] += n
        else:
            v[_VM_NUMA_MISS] += n
            v[_VM_NUMA_FOREIGN] += n
        if zone.nid == self.cpu_to_node[cpu]:
            v[_VM_NUMA_LOCAL] += n
        else:
            v[_VM_NUMA_OTHER] += n
        return out

    def alloc_captured(self, pfn: int, gfp: int, order: int, mt: int) -> None:
        """A block direct compaction captured becomes the allocation: ``prep_new_page()``.

        Traced like a buddy allocation from the block's zone.
        """
        zone = self.page_zone(pfn)
        self.prep_new_page(pfn, order, gfp, mt)
        zone.fell_back = False
        self.last_zone = zone
        self.last_path_pcp = False

    def wakeup_kswapd(self, zone: Zone, gfp: int, order: int, highest_zoneidx: int) -> None:
        """``wakeup_kswapd()``: see :func:`simcore.mm.kswapd.wakeup_kswapd`."""
        kswapd.wakeup_kswapd(self.reclaim, zone, gfp, order, highest_zoneidx)

    def served_path(self) -> int:
        """Where the block just allocated came from: PATH_IDX_PCP, _BUDDY or _FALLBACK."""
        if self.last_zone.fell_back:
            return PATH_IDX_FALLBACK
        return PATH_IDX_PCP if self.last_path_pcp else PATH_IDX_BUDDY

    def alloc_pages_fast(
        self, gfp: int, order: int, nid: int, cpu: int, nodemask: frozenset[int] | None = None
    ) -> int:
        """The part of ``__alloc_pages()`` before the slow path.

        Returns the first pfn of the block (traced as ``mm_page_alloc`` with stage
        ``fast`` and the path's cost as latency), :data:`NEED_SLOWPATH` when every zone
        failed its LOW watermark (the context is left in :attr:`last_ac` for
        :func:`simcore.mm.slowpath.alloc_pages_slowpath`), or -1 for an order above
        ``max_order`` (6.1: ``order >= MAX_ORDER``), which returns before any of that;
        see :func:`simcore.mm.slowpath.warn_order`.
        """
        if order > self.max_order:
            return slowpath.warn_order(self, gfp, order, nid)
        ac = self.prepare_alloc_pages(gfp, nid, nodemask)
        pfn = self.get_page_from_freelist(gfp, order, ac.fast_flags, ac, cpu)
        if pfn < 0:
            self.last_ac = ac
            return NEED_SLOWPATH
        path = self.served_path()
        self.fast_hits[path] += 1
        if self.tracing:
            self.tracer.mm_page_alloc(self.last_zone, pfn, order, gfp, ac.migratetype,
                                      _PATH_NAMES[path], nid, _STAGE_FAST, self.path_cost[path])
        return pfn

    def alloc_pages_done(
        self, pfn: int, gfp: int, order: int, nid: int, ac: AllocContext, stage: str,
        stall_ns: int, why: str = "",
    ) -> int:
        """The end of ``__alloc_pages()`` after the slow path: trace the outcome.

        ``stall_ns`` is the time the slow path spent; the latency traced adds the cost of
        the path the block came from. Returns ``pfn`` (-1 on failure, after warn_alloc()).
        """
        if pfn < 0:
            if not why:
                why = "no zone" if not ac.zonelist else "the slow path gave up"
            return slowpath.alloc_failed(self, gfp, order, nid, ac, why, stall_ns)
        if self.tracing:
            path = self.served_path()
            self.tracer.mm_page_alloc(self.last_zone, pfn, order, gfp, ac.migratetype,
                                      _PATH_NAMES[path], nid, stage,
                                      stall_ns + self.path_cost[path])
        return pfn

    def alloc_pages(
        self, gfp: int, order: int, nid: int, cpu: int, nodemask: frozenset[int] | None = None
    ) -> int:
        """``__alloc_pages()`` with no clock: the fast path, then the whole slow path.

        The slow path's stalls (direct reclaim, the OOM kill) happen at once and are
        counted as latency only; :meth:`simcore.sim.machine.Machine.alloc` is the timed
        version. Returns the first pfn of the block, or -1.
        """
        pfn = self.alloc_pages_fast(gfp, order, nid, cpu, nodemask)
        if pfn != NEED_SLOWPATH:
            return pfn
        ac = self.last_ac
        assert ac is not None
        req = slowpath.SlowRequest()
        pfn = slowpath.run_to_end(slowpath.alloc_pages_slowpath(self, gfp, order, ac, cpu, req),
                                  req)
        self.last_request = req
        return self.alloc_pages_done(pfn, gfp, order, nid, req.ac or ac, req.stage,
                                     req.stall_ns, req.fail_reason())

    # -- whole-machine views ------------------------------------------------------------
    @property
    def nr_free_pages(self) -> int:
        """NR_FREE_PAGES summed over all zones."""
        return sum(z.nr_free_pages for z in self.zones)

    @property
    def managed_pages(self) -> int:
        """Managed pages of all zones."""
        return sum(z.managed_pages for z in self.zones)

    def drain_all_pages(self, zone: Zone | None = None) -> None:
        """``drain_all_pages()``: empty every CPU's pcp lists (of one zone or all)."""
        for z in [zone] if zone is not None else self.zones:
            for pcp in z.per_cpu_pageset:
                pcp.drain()


assert MIGRATE_TYPES == 6 and ALLOC_KSWAPD == GFP_KSWAPD_RECLAIM
