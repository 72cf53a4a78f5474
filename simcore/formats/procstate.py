"""The ``/proc`` view of a live machine: the files a real host would show, from the model.

One place turns a :class:`~simcore.mm.page_alloc.PageAllocator` into the text of
``/proc/zoneinfo``, ``buddyinfo``, ``pagetypeinfo`` and ``vmstat`` (and the other files
of a snapshot directory, so ``proc show`` and ``machine: {from_proc: DIR}`` read it as
they read a real host's): the run directory's end-state files, its ``proc/<when>/``
snapshots and ``allocsim proc show`` all come from here, through the printers of
:mod:`simcore.formats.procfmt`, :mod:`simcore.formats.snapshots` and
:mod:`simcore.formats.vmstat_text`.

Where the counters come from (every line 6.1 prints is printed; the rest are 0):

- ``nr_free_pages``/``pages free``: the zone's NR_FREE_PAGES (pcp pages are not free);
- ``nr_zone_{inactive,active}_{anon,file}`` and the node's ``nr_{inactive,active}_*``:
  the per-node LRU lists (:class:`simcore.mm.lru.Lruvec`), per zone and summed;
  ``nr_zone_write_pending`` and the node's ``nr_dirty``: its dirty page-cache pages
  (the model has no writeback, so write-pending pages are the dirty ones);
  ``nr_slab_reclaimable``: its reclaimable slab;
- the events (``numa_*``, ``pgalloc_*``, ``pgfree``, ``compact_*``, ...): the counters of
  :class:`simcore.mm.vmstat.VmStat`; the simulator's own counters go to a separate
  ``vmstat_simulator`` text;
- ``vm stats threshold``: calculate_normal_threshold(), or calculate_pressure_threshold()
  while the node's kswapd is awake (kswapd_try_to_sleep() switches them) in a zone
  whose ``percpu_drift_mark`` is set (refresh_zone_stat_thresholds());
- ``node_unreclaimable``: ``kswapd_failures >= MAX_RECLAIM_RETRIES``.

SIMPLIFICATION: the model keeps no unevictable, mlocked, bounce, zsmalloc, CMA,
isolated, workingset, mapped, shmem, THP, kernel-stack or page-table counts, no
writeback thresholds and no page-in/out, fault, demotion, NUMA-balancing, THP, balloon,
swap-readahead, KSM, zswap or direct-map events: those lines print 0. The NUMA events
are counted for the whole machine only, so the per-zone ``numa_*`` lines of zoneinfo
print 0 while ``/proc/vmstat`` has the totals. The kernel sets ``percpu_drift_mark`` from
the watermarks of boot (and CPU hotplug) and never clears it; the model decides it from
the current watermarks. kswapd's short nap counts as asleep.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from simcore.formats.procfmt import (
    Counters,
    ZoneInfo,
    format_zoneinfo,
    kernel_zone_keys,
    zoneinfo_views,
)
from simcore.formats.snapshots import buddyinfo, nr_free_rows, pagetypeinfo
from simcore.formats.vmstat_text import (
    NODE_STAT_ITEMS,
    NUMA_EVENT_ITEMS,
    ZONE_STAT_ITEMS,
    format_proc_vmstat,
    format_simulator_vmstat,
)
from simcore.formats.zoneinfo import PcpSnapshot
from simcore.mm.constants import PAGE_SHIFT
from simcore.mm.fragmentation import format_extfrag_index, format_unusable_index
from simcore.mm.lru import LRU_NAMES
from simcore.mm.topology import distance_matrix
from simcore.mm.vmscan import MAX_RECLAIM_RETRIES
from simcore.mm.vmstat import SIM_ONLY

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone

STAT_THRESHOLD_MAX = 125
"""Largest per-CPU vmstat threshold (calculate_*_threshold())."""


def node_stat_values(mm: PageAllocator, nid: int) -> dict[str, int]:
    """The node stat items the model keeps for node ``nid`` (node_page_state_pages())."""
    lv = mm.reclaim.lruvecs[nid]
    out = {f"nr_{name}": lv.size(lru) for lru, name in enumerate(LRU_NAMES)}
    out["nr_slab_reclaimable"] = lv.slab_pages()
    out["nr_dirty"] = sum(lv.nr_dirty_zone[z] for z in range(lv.nr_zone_types))
    return out


def zone_stat_values(mm: PageAllocator, zone: Zone) -> dict[str, int]:
    """The zone stat items the model keeps for ``zone`` (zone_page_state())."""
    lv = mm.reclaim.lruvecs[zone.nid]
    z = zone.zone_idx
    out = {"nr_free_pages": zone.nr_free_pages}
    for lru, name in enumerate(LRU_NAMES):
        out[f"nr_zone_{name}"] = lv.zone_size(z, lru)
    out["nr_zone_write_pending"] = lv.nr_dirty_zone[z]
    return out


def _in_order(names: Iterable[str], values: Mapping[str, int]) -> Counters:
    return tuple((name, int(values.get(name, 0))) for name in names)


def calculate_normal_threshold(managed_pages: int, nr_cpus: int) -> int:
    """calculate_normal_threshold(): grows with the CPUs and the zone's 128 MiB units."""
    mem = managed_pages >> (27 - PAGE_SHIFT)
    return min(STAT_THRESHOLD_MAX, 2 * nr_cpus.bit_length() * (1 + mem.bit_length()))


def calculate_pressure_threshold(wmark_min: int, wmark_low: int, nr_cpus: int) -> int:
    """calculate_pressure_threshold(): the low-min distance shared by the CPUs."""
    return min(STAT_THRESHOLD_MAX, max(1, (wmark_low - wmark_min) // nr_cpus))


def stat_threshold(mm: PageAllocator, zone: Zone) -> int:
    """The zone's per-CPU ``stat_threshold`` now (see the module docstring)."""
    nr_cpus = max(1, mm.nr_cpus)
    normal = calculate_normal_threshold(zone.managed_pages, nr_cpus)
    wmin, low = zone.wmark_pages(0), zone.wmark_pages(1)
    drift_mark = nr_cpus * normal > low - wmin
    if drift_mark and mm.reclaim.kswapd_running(zone.nid):
        return calculate_pressure_threshold(wmin, low, nr_cpus)
    return normal


def live_zone(mm: PageAllocator, zone: Zone, node_stats: Counters | None) -> ZoneInfo:
    """What zoneinfo_show_print() prints for a live zone of the model."""
    threshold = stat_threshold(mm, zone)
    pcps = tuple(PcpSnapshot(p.cpu, p.count, p.high, p.batch, threshold)
                 for p in zone.per_cpu_pageset)
    w = zone.watermark
    unreclaimable = mm.reclaim.kswapd[zone.nid].failures >= MAX_RECLAIM_RETRIES
    return ZoneInfo(
        nid=zone.nid, name=zone.name, zone_start_pfn=zone.zone_start_pfn,
        spanned_pages=zone.spanned_pages, present_pages=zone.present_pages,
        managed_pages=zone.managed_pages, nr_free_pages=zone.nr_free_pages,
        watermark_boost=zone.watermark_boost, watermark=(w[0], w[1], w[2], w[3]),
        lowmem_reserve=tuple(zone.lowmem_reserve), per_cpu_pageset=pcps,
        node_stats=node_stats,
        zone_stats=_in_order((*ZONE_STAT_ITEMS, *NUMA_EVENT_ITEMS), zone_stat_values(mm, zone)),
        node_unreclaimable=int(unreclaimable),
    )


def live_zones(mm: PageAllocator) -> list[ZoneInfo]:
    """The model's zones as zoneinfo prints them, node stats on each node's first populated."""
    out = []
    first: set[int] = set()
    for zone in mm.zones:
        node_stats = None
        if zone.present_pages and zone.nid not in first:
            first.add(zone.nid)
            node_stats = _in_order(NODE_STAT_ITEMS, node_stat_values(mm, zone.nid))
        out.append(live_zone(mm, zone, node_stats))
    return out


def zoneinfo_text(mm: PageAllocator) -> str:
    """``/proc/zoneinfo``: every zone type of every node, as zoneinfo_show() walks them."""
    keys = kernel_zone_keys(node.nid for node in mm.nodes)
    return format_zoneinfo(zoneinfo_views(live_zones(mm), keys))


def vmstat_values(mm: PageAllocator) -> dict[str, int]:
    """Every counter the model keeps under its ``/proc/vmstat`` name (simulator-only too).

    Zone and node items are the sums over zones and nodes, as vmstat_start() reads
    global_zone_page_state() and global_node_page_state_pages().
    """
    values = mm.vm.as_dict()
    for zone in mm.zones:
        for name, value in zone_stat_values(mm, zone).items():
            values[name] = values.get(name, 0) + value
    for node in mm.nodes:
        for name, value in node_stat_values(mm, node.nid).items():
            values[name] = values.get(name, 0) + value
    return values


def vmstat_text(mm: PageAllocator) -> str:
    """``/proc/vmstat`` of the model (kernel counters only)."""
    return format_proc_vmstat(vmstat_values(mm))


def simulator_vmstat_text(mm: PageAllocator) -> str:
    """The simulator-only counters, in ``/proc/vmstat`` layout (``vmstat_simulator.txt``)."""
    return format_simulator_vmstat(mm.vm.as_dict(), SIM_ONLY)


def sysctl_vm_text(mm: PageAllocator) -> str:
    """The vm sysctls the model uses, as ``sysctl vm.<name>`` prints them, by name."""
    s = mm.sysctl
    values: dict[str, object] = {
        "compaction_proactiveness": s.compaction_proactiveness,
        "extfrag_threshold": s.extfrag_threshold,
        "lowmem_reserve_ratio": "\t".join(str(v) for v in s.lowmem_reserve_ratio),
        "min_free_kbytes": mm.min_free_kbytes,
        "percpu_pagelist_high_fraction": s.percpu_pagelist_high_fraction,
        "swappiness": s.swappiness,
        "watermark_boost_factor": s.watermark_boost_factor,
        "watermark_scale_factor": s.watermark_scale_factor,
    }
    return "".join(f"vm.{name} = {value}\n" for name, value in values.items())


def _cpulist(cpus: tuple[int, ...]) -> str:
    """A node's CPUs as ``cpulist`` prints them (the model numbers them contiguously)."""
    if not cpus:
        return "\n"
    return f"{cpus[0]}-{cpus[-1]}\n" if len(cpus) > 1 else f"{cpus[0]}\n"


def iomem_text(mm: PageAllocator) -> str:
    """``/proc/iomem``'s top-level ``System RAM`` lines for the present memory (r_show())."""
    ranges = sorted(r for zone in mm.zones for r in zone.present_ranges)
    merged: list[list[int]] = []
    for lo, hi in ranges:
        if merged and merged[-1][1] == lo:
            merged[-1][1] = hi
        elif hi > lo:
            merged.append([lo, hi])
    return "".join(f"{lo << PAGE_SHIFT:08x}-{(hi << PAGE_SHIFT) - 1:08x} : System RAM\n"
                   for lo, hi in merged)


def thp_text(mode: str) -> str:
    """``/sys/kernel/mm/transparent_hugepage/enabled`` with ``mode`` bracketed."""
    return " ".join(f"[{m}]" if m == mode else m for m in ("always", "madvise", "never")) + "\n"


def proc_texts(mm: PageAllocator) -> dict[str, str]:
    """Every file of a snapshot directory of the model now, by file name.

    The names are those of ``allocsim proc capture`` (and the oracle's snapshots), so
    the directory reads back with :func:`simcore.formats.procfs.read_snapshot`.
    """
    rows = nr_free_rows(mm.zones)
    texts = {
        "zoneinfo": zoneinfo_text(mm),
        "buddyinfo": buddyinfo(mm.zones),
        "pagetypeinfo": pagetypeinfo(mm.zones, show_cma=mm.cma),
        "vmstat": vmstat_text(mm),
        "extfrag_index": format_extfrag_index(rows),
        "unusable_index": format_unusable_index(rows),
        "sysctl_vm": sysctl_vm_text(mm),
        "transparent_hugepage_enabled": thp_text(mm.cfg.transparent_hugepage),
        "iomem": iomem_text(mm),
    }
    dist = distance_matrix(mm.cfg)
    for node in mm.nodes:
        texts[f"node{node.nid}.cpulist"] = _cpulist(tuple(node.cpus))
        texts[f"node{node.nid}.distance"] = " ".join(map(str, dist[node.nid])) + "\n"
    return texts
