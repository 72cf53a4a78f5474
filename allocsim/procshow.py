"""``allocsim proc show``: build a machine from a real ``/proc`` snapshot and print it.

The machine gets the snapshot's zones (start pfn, spanned, present and managed pages),
CPUs per node (``nodeN.cpulist``, else the zoneinfo pagesets), THP mode and the
sysctls of ``sysctl_vm``. By default its watermarks, ``lowmem_reserve`` and pcp
``high``/``batch`` are the ones observed in the snapshot; with ``recompute`` the
simulator computes them itself from the managed pages, sysctls and CPUs, as the kernel
does when a sysctl is written.

Boot-time snapshots can legitimately differ from recomputed values: the kernel
computed them during boot, before init memory was freed (and after THP raised
``min_free_kbytes``), so the managed pages they were computed from are not the ones the
snapshot shows.
"""

from __future__ import annotations

from pathlib import Path

from simcore.config_types import MachineConfig, NodeConfig, SysctlConfig
from simcore.constants import ZONE_NAMES
from simcore.page_alloc import PageAllocator
from simcore.procfmt import ObservedZone, ZoneInfoView, format_zoneinfo
from simcore.procfs import ProcParseError, ProcSnapshot, ZoneSnapshot, read_snapshot
from simcore.topology import ZoneSpan


def _sysctl(snap: ProcSnapshot) -> SysctlConfig:
    try:
        return _sysctl_values(snap)
    except KeyError as exc:  # missing or non-integer vm.* value
        raise ProcParseError(snap.path + "/sysctl_vm", None, str(exc.args[0])) from None


def _sysctl_values(snap: ProcSnapshot) -> SysctlConfig:
    ratio = snap.sysctl_ints("lowmem_reserve_ratio") if "lowmem_reserve_ratio" in snap.sysctl \
        else SysctlConfig().lowmem_reserve_ratio
    return SysctlConfig(
        min_free_kbytes=snap.sysctl_int("min_free_kbytes"),
        watermark_scale_factor=snap.sysctl_int("watermark_scale_factor", 10),
        watermark_boost_factor=snap.sysctl_int("watermark_boost_factor", 15000),
        lowmem_reserve_ratio=tuple(ratio[: len(ZONE_NAMES)]),
        percpu_pagelist_high_fraction=snap.sysctl_int("percpu_pagelist_high_fraction", 0),
    )


def _node_cpus(snap: ProcSnapshot, nids: list[int]) -> dict[int, int]:
    if snap.node_cpus:
        return {nid: len(snap.node_cpus.get(nid, ())) for nid in nids}
    # SIMPLIFICATION: without nodeN.cpulist, the CPUs listed in a node's pagesets are
    # taken as that node's own (zoneinfo lists every CPU for every zone).
    return {nid: max((len(z.pcp) for z in snap.zones if z.nid == nid), default=0) // len(nids)
            for nid in nids}


def machine_from_snapshot(snap: ProcSnapshot, recompute: bool) -> PageAllocator:
    """The simulator's machine for a snapshot (see the module docstring)."""
    zones = [z for z in snap.zones if z.present > 0]
    if not zones:
        raise ProcParseError(snap.path + "/zoneinfo", None, "at least one populated zone")
    nids = sorted({z.nid for z in zones})
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
            observed = by_cpu.get(pcp.cpu)
            if observed is not None:
                pcp.high, pcp.batch = observed.high, observed.batch
        zone.pcp_high, zone.pcp_batch = zone.per_cpu_pageset[0].high, zone.per_cpu_pageset[0].batch


def proc_show(path: Path, recompute: bool) -> str:
    """The ``/proc/zoneinfo``-layout text of the machine built from ``path``."""
    snap = read_snapshot(path)
    mm = machine_from_snapshot(snap, recompute)
    entries = max((len(z.protection) for z in snap.zones), default=4)
    # Unpopulated zones (an empty Movable, ZONE_DEVICE) are printed as the kernel does,
    # with their all-zero headline block; the machine has no such zones to simulate.
    populated = iter(mm.zones)
    views: list[ZoneInfoView] = [
        next(populated) if z.present > 0 else ObservedZone.from_snapshot(z) for z in snap.zones
    ]
    return format_zoneinfo(views, nr_protection_entries=entries)
