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

from allocsim.hostmem import check_machine_fits
from simcore.config.machine import check_machine
from simcore.formats import procmachine
from simcore.formats.procfmt import (
    MAX_NR_ZONES_PRINTED,
    ZoneInfo,
    format_zoneinfo,
    zoneinfo_views,
)
from simcore.formats.procfs import ProcParseError, ProcSnapshot, ZoneSnapshot, read_snapshot
from simcore.formats.procmachine import populated_zones
from simcore.formats.procstate import live_zones
from simcore.mm.page_alloc import PageAllocator


def machine_from_snapshot(snap: ProcSnapshot, recompute: bool) -> PageAllocator:
    """The simulator's machine for a snapshot (see the module docstring).

    Every node of the snapshot is a node of the machine, including one without CPUs and
    one without memory (node ids missing from the snapshot become empty nodes). Its
    zones are laid out by :mod:`simcore.formats.procmachine` with the host's pfns.
    """
    zones = populated_zones(snap)
    cfg = procmachine.machine_from_snapshot(snap)
    source = snap.path + "/zoneinfo"
    check_machine(cfg, source)
    check_machine_fits(cfg, source)  # before mem_map is allocated
    mm = PageAllocator(cfg, procmachine.sysctl_from_snapshot(snap))
    for zone, real in zip(mm.zones, zones, strict=True):
        got = (zone.nid, zone.name, zone.zone_start_pfn, zone.spanned_pages,
               zone.present_pages, zone.managed_pages)
        want = (real.nid, real.name, real.start_pfn, real.spanned, real.present, real.managed)
        if got != want and got[:3] + got[4:] != want[:3] + want[4:]:
            raise ProcParseError(snap.path + "/zoneinfo", real.line or None,
                                 "a zone the model can lay out (nid, name, start_pfn, "
                                 f"present, managed = {want[:3] + want[4:]})",
                                 str(got[:3] + got[4:]))
    if not recompute:
        _apply_observed(mm, zones)
    return mm


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

    Optional files that could not be read are named in a note on stderr and ignored;
    so are lines of 6.1's layout the snapshot's kernel did not print, and CMA memory
    (:attr:`~simcore.formats.procfs.ProcSnapshot.notes`). The zones the machine holds
    are printed with the model's own counters (a machine just built), the others as
    the snapshot shows them.
    """
    snap = read_snapshot(path)
    for skipped in snap.skipped:
        print(f"allocsim: note: ignoring unreadable {skipped}", file=sys.stderr)
    for note in snap.notes:
        print(f"allocsim: note: {note}", file=sys.stderr)
    mm = machine_from_snapshot(snap, recompute)
    entries = max((len(z.protection) for z in snap.zones), default=MAX_NR_ZONES_PRINTED)
    # The snapshot's own list of zones is printed, in its order: the machine's zones
    # where it has them, and the unpopulated ones (an empty Movable, ZONE_DEVICE, a
    # second node's DMA) as the snapshot shows them.
    observed = {(z.nid, z.name): z for z in snap.zones}
    views = zoneinfo_views(live_zones(mm), list(observed),
                           lambda nid, name: ZoneInfo.from_snapshot(observed[(nid, name)]))
    return format_zoneinfo(views, nr_protection_entries=entries)
