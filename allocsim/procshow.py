"""``allocsim proc show``: build a machine from a real ``/proc`` snapshot and print it.

The machine gets the snapshot's nodes and zones (start pfn, spanned, present and managed
pages), CPUs per node (``nodeN.cpulist``, where an empty file is a node without CPUs;
else the zoneinfo pagesets), THP mode and the sysctls of ``sysctl_vm`` (without that
file, 6.1's defaults, and ``min_free_kbytes`` derived as at boot). By default its
watermarks, ``lowmem_reserve`` and pcp ``high``/``batch`` are the ones observed in the
snapshot; with ``recompute`` the simulator computes them itself from the managed pages,
sysctls and CPUs, as the kernel does when a sysctl is written.

Boot-time snapshots can legitimately differ from recomputed values: the kernel
computed them during boot, before init memory was freed (and after THP raised
``min_free_kbytes``), so the managed pages they were computed from are not the ones the
snapshot shows.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procfmt import (
    MAX_NR_ZONES_PRINTED,
    ObservedZone,
    format_zoneinfo,
    zoneinfo_views,
)
from simcore.formats.procfs import ProcParseError, ProcSnapshot, ZoneSnapshot, read_snapshot
from simcore.mm.constants import ZONE_NAMES
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.topology import ZoneSpan


def _sysctl(snap: ProcSnapshot) -> SysctlConfig:
    try:
        return _sysctl_values(snap)
    except KeyError as exc:  # missing or non-integer vm.* value
        raise ProcParseError(snap.path + "/sysctl_vm", None, str(exc.args[0])) from None


def _sysctl_values(snap: ProcSnapshot) -> SysctlConfig:
    ratio = snap.sysctl_ints("lowmem_reserve_ratio") if "lowmem_reserve_ratio" in snap.sysctl \
        else SysctlConfig().lowmem_reserve_ratio
    if len(ratio) < len(ZONE_NAMES):
        raise KeyError(f"vm.lowmem_reserve_ratio with one value per zone type (at least "
                       f"{len(ZONE_NAMES)}), got {len(ratio)}")
    # A snapshot without sysctl_vm gets min_free_kbytes as the kernel derives it at boot;
    # a sysctl_vm file without it is truncated, which is an error.
    min_free_kbytes = snap.sysctl_int("min_free_kbytes") if snap.sysctl else None
    return SysctlConfig(
        min_free_kbytes=min_free_kbytes,
        watermark_scale_factor=snap.sysctl_int("watermark_scale_factor", 10),
        watermark_boost_factor=snap.sysctl_int("watermark_boost_factor", 15000),
        lowmem_reserve_ratio=tuple(ratio),  # all MAX_NR_ZONES entries, Device included
        percpu_pagelist_high_fraction=snap.sysctl_int("percpu_pagelist_high_fraction", 0),
    )


def _online_cpus(snap: ProcSnapshot) -> set[int]:
    """CPUs the kernel lists under ``pagesets`` (for_each_online_cpu()), else the cpulists."""
    online = {pcp.cpu for zone in snap.zones for pcp in zone.pcp}
    return online or {cpu for cpus in snap.node_cpus.values() for cpu in cpus}


def _node_cpus(snap: ProcSnapshot, nids: list[int]) -> dict[int, int]:
    """Number of CPUs of each node.

    A node's ``nodeN.cpulist`` gives its CPUs; an empty one is a node without CPUs (a
    memory-only node, e.g. CXL). Online CPUs that no cpulist names are spread over the
    nodes whose cpulist is missing (all nodes if there is none), lowest node first.
    SIMPLIFICATION: if every node has a cpulist, such CPUs (an inconsistent snapshot)
    are given to the first node that has CPUs, so the machine keeps the kernel's count
    of online CPUs, which pcp ``high`` of a CPU-less node is split across.
    """
    listed = {nid: set(snap.node_cpus[nid]) for nid in nids if nid in snap.node_cpus}
    counts = {nid: len(listed.get(nid, ())) for nid in nids}
    orphans = len(_online_cpus(snap).difference(*listed.values()))
    takers = [nid for nid in nids if nid not in listed]
    if not takers:
        takers = [next((nid for nid in nids if counts[nid]), nids[0])]
    share, extra = divmod(orphans, len(takers))
    for i, nid in enumerate(takers):
        counts[nid] += share + (1 if i < extra else 0)
    if not sum(counts.values()):
        raise ProcParseError(snap.path + "/zoneinfo", None,
                             "pagesets of an online CPU, or a non-empty nodeN.cpulist", "none")
    return counts


def _populated(snap: ProcSnapshot) -> list[ZoneSnapshot]:
    zones = [z for z in snap.zones if z.present > 0]
    if not zones:
        raise ProcParseError(snap.path + "/zoneinfo", None, "at least one populated zone")
    for zone in zones:
        if zone.name not in ZONE_NAMES:
            raise ProcParseError(snap.path + "/zoneinfo", zone.line or None,
                                 f"a populated zone among {', '.join(ZONE_NAMES)}", zone.name)
    return zones


def machine_from_snapshot(snap: ProcSnapshot, recompute: bool) -> PageAllocator:
    """The simulator's machine for a snapshot (see the module docstring).

    Every node of the snapshot is a node of the machine, including one without CPUs and
    one without memory (node ids missing from the snapshot become empty nodes).
    """
    zones = _populated(snap)
    nids = list(range(max(z.nid for z in snap.zones) + 1))
    cpus = _node_cpus(snap, nids)
    thp = snap.thp_enabled or "never"
    nodes = tuple(NodeConfig(memory_pages=sum(z.spanned for z in zones if z.nid == n),
                             cpus=cpus[n]) for n in nids)
    cfg = MachineConfig(nodes=nodes, pageblock_order=snap.pageblock_order,
                        transparent_hugepage=thp)
    spans = [_span(z) for z in zones]
    mm = PageAllocator(cfg, _sysctl(snap), spans=spans)
    if not recompute:
        _apply_observed(mm, zones)
    return mm


def _span(z: ZoneSnapshot) -> ZoneSpan:
    return ZoneSpan(z.nid, ZONE_NAMES.index(z.name), z.start_pfn, z.spanned, z.present,
                    z.managed, z.start_pfn, z.spanned - z.managed)


def _apply_observed(mm: PageAllocator, zones: list[ZoneSnapshot]) -> None:
    for zone, snap_zone in zip(mm.zones, zones, strict=True):
        low, high = snap_zone.wmark_low, snap_zone.wmark_high
        boost = snap_zone.boost
        zone.watermark = [snap_zone.wmark_min - boost, low - boost, high - boost,
                          high - boost + (high - low)]
        zone.watermark_boost = boost
        zone.lowmem_reserve = list(snap_zone.protection[: len(zone.lowmem_reserve)])
        by_cpu = {p.cpu: p for p in snap_zone.pcp}
        for pcp in zone.per_cpu_pageset:
            # The model numbers CPUs node by node; a CPU the snapshot lists under another
            # number takes the first observed pageset (the kernel sizes them all alike).
            observed = by_cpu.get(pcp.cpu, snap_zone.pcp[0] if snap_zone.pcp else None)
            if observed is not None:
                pcp.high, pcp.batch = observed.high, observed.batch
        zone.pcp_high, zone.pcp_batch = zone.per_cpu_pageset[0].high, zone.per_cpu_pageset[0].batch


def proc_show(path: Path, recompute: bool) -> str:
    """The ``/proc/zoneinfo``-layout text of the machine built from ``path``.

    Optional files that could not be read are named in a note on stderr and ignored.
    """
    snap = read_snapshot(path)
    for skipped in snap.skipped:
        print(f"allocsim: note: ignoring unreadable {skipped}", file=sys.stderr)
    mm = machine_from_snapshot(snap, recompute)
    entries = max((len(z.protection) for z in snap.zones), default=MAX_NR_ZONES_PRINTED)
    # The snapshot's own list of zones is printed, in its order: the machine's zones
    # where it has them, and the unpopulated ones (an empty Movable, ZONE_DEVICE, a
    # second node's DMA) as the snapshot shows them.
    observed = {(z.nid, z.name): z for z in snap.zones}
    views = zoneinfo_views(mm.zones, list(observed),
                           lambda nid, name: ObservedZone.from_snapshot(observed[(nid, name)]))
    return format_zoneinfo(views, nr_protection_entries=entries)
