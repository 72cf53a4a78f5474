"""Printer for zones in the kernel's ``/proc/zoneinfo`` layout.

Mirrors zoneinfo_show() and zoneinfo_show_print() in mm/vmstat.c (Linux 6.1) line for
line, so a simulated machine can be ``diff``-ed against a real host: the zone header,
the ``per-node stats`` block (under the first populated zone of each node,
is_zone_first_populated()), the ``pages free`` .. ``cma`` block, the ``protection:``
line, the zone's vmstat and NUMA counters, the ``pagesets`` block
(``cpu``/``count``/``high``/``batch`` and ``vm stats threshold`` per CPU),
``node_unreclaimable`` and ``start_pfn``, with the kernel's spacing (counters are
``%-12s %lu``). The same printer serves the run directory's ``zoneinfo`` files and
``allocsim proc show``; a real 6.1 file read by :mod:`simcore.formats.procfs` prints
back byte for byte.

What is printed is a :class:`ZoneInfo`: plain values, built from a parsed file
(:meth:`ZoneInfo.from_snapshot`) or from the model's live zones
(:mod:`simcore.formats.procstate`, which says where each counter comes from). Like the
kernel, which walks all MAX_NR_ZONES zones of every online node whether they are
populated or not, :func:`zoneinfo_views` yields one view per (node, zone type), with an
all-zero :class:`EmptyZone` for a zone the model does not hold (a second node's DMA and
DMA32, an empty Movable, and ZONE_DEVICE, which the model never has). An unpopulated
zone (``present_pages == 0``) prints only its headline block and ``protection:`` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from simcore.formats.procfs import PcpSnapshot, ProcSnapshot, ZoneSnapshot
from simcore.mm.constants import ZONE_NAMES

KERNEL_ZONE_NAMES: tuple[str, ...] = tuple(dict.fromkeys((*ZONE_NAMES, "Device")))
"""``zone_names[]`` of the oracle kernel (x86_64, CONFIG_ZONE_DEVICE, no HIGHMEM): the
model's zone types, then ZONE_DEVICE, which the model does not simulate but the kernel
prints (always empty of buddy pages)."""
MAX_NR_ZONES_PRINTED = len(KERNEL_ZONE_NAMES)
"""Entries of each ``protection:`` line: the kernel's MAX_NR_ZONES (5 on Debian 6.1)."""


Counters = tuple[tuple[str, int], ...]
"""``(name, value)`` pairs, printed in order."""


@dataclass(frozen=True)
class ZoneInfo:
    """Everything zoneinfo_show_print() prints for one zone.

    ``watermark`` is the raw ``_watermark[]`` = ``[min, low, high, promo]`` without the
    boost; the printer adds ``watermark_boost`` as min_wmark_pages() and friends do.
    ``lowmem_reserve`` has one entry per zone type. ``node_stats`` is the node's
    ``per-node stats`` block, set on the node's first populated zone only (None
    elsewhere); ``zone_stats`` the zone's counters (zone stat items, then NUMA events),
    printed for a populated zone. The defaults are a zone no memory was ever given to:
    every counter, watermark and ``lowmem_reserve`` entry 0
    (setup_per_zone_lowmem_reserve() clears the row of a zone without managed pages)
    and no pagesets.
    """

    nid: int
    name: str
    zone_start_pfn: int = 0
    spanned_pages: int = 0
    present_pages: int = 0
    managed_pages: int = 0
    nr_free_pages: int = 0
    watermark_boost: int = 0
    watermark: tuple[int, int, int, int] = (0, 0, 0, 0)
    lowmem_reserve: tuple[int, ...] = ()
    per_cpu_pageset: tuple[PcpSnapshot, ...] = ()
    cma_pages: int = 0
    node_stats: Counters | None = None
    zone_stats: Counters = ()
    node_unreclaimable: int = 0

    @classmethod
    def from_snapshot(cls, zone: ZoneSnapshot) -> ZoneInfo:
        """The values of a parsed :class:`ZoneSnapshot`.

        ``watermark`` has the boost removed again. ``promo``, which 6.1 does not print,
        is the file's own where it has one (6.12 prints it), else reconstructed as
        ``high + (high - low)``, which is what __setup_per_zone_wmarks() sets (each
        step adds the same delta).
        """
        printed = (zone.wmark_min, zone.wmark_low, zone.wmark_high)
        wmin, low, high = (value - zone.boost for value in printed)
        promo = high + (high - low) if zone.wmark_promo is None else zone.wmark_promo - zone.boost
        return cls(
            nid=zone.nid,
            name=zone.name,
            zone_start_pfn=zone.start_pfn,
            spanned_pages=zone.spanned,
            present_pages=zone.present,
            managed_pages=zone.managed,
            nr_free_pages=zone.nr_free_pages,
            watermark_boost=zone.boost,
            watermark=(wmin, low, high, promo),
            lowmem_reserve=zone.protection,
            per_cpu_pageset=zone.pcp,
            cma_pages=zone.cma,
            node_stats=zone.node_stats,
            zone_stats=zone.zone_stats,
            node_unreclaimable=zone.node_unreclaimable,
        )


ObservedZone = ZoneInfo
"""A zone read from a real ``/proc/zoneinfo`` (:meth:`ZoneInfo.from_snapshot`)."""
EmptyZone = ZoneInfo
"""``EmptyZone(nid, name)``: a zone with no pages, as the kernel prints it."""


def _counter_lines(counters: Iterable[tuple[str, int]]) -> list[str]:
    """One vmstat counter line of zoneinfo each (the kernel's ``%-12s %lu``)."""
    return [f"      {name:<12} {value}" for name, value in counters]


def format_zone(zone: ZoneInfo, nr_protection_entries: int = MAX_NR_ZONES_PRINTED) -> str:
    """Format one zone's block, ending with a newline: mirrors zoneinfo_show_print()."""
    boost = zone.watermark_boost
    reserve = _padded(zone.lowmem_reserve, nr_protection_entries)
    lines = [f"Node {zone.nid}, zone {zone.name:>8}"]
    if zone.node_stats is not None:
        lines.append("  per-node stats")
        lines += _counter_lines(zone.node_stats)
    lines += [
        f"  pages free     {zone.nr_free_pages}",
        f"        boost    {boost}",
        f"        min      {zone.watermark[0] + boost}",
        f"        low      {zone.watermark[1] + boost}",
        f"        high     {zone.watermark[2] + boost}",
        f"        spanned  {zone.spanned_pages}",
        f"        present  {zone.present_pages}",
        f"        managed  {zone.managed_pages}",
        f"        cma      {zone.cma_pages}",
        f"        protection: ({', '.join(str(value) for value in reserve)})",
    ]
    if zone.present_pages:  # populated_zone(): the rest is printed only then
        lines += _counter_lines(zone.zone_stats)
        lines.append("  pagesets")
        for pcp in zone.per_cpu_pageset:
            lines.append(f"    cpu: {pcp.cpu}")
            lines.append(f"              count: {pcp.count}")
            lines.append(f"              high:  {pcp.high}")
            lines.append(f"              batch: {pcp.batch}")
            lines.append(f"  vm stats threshold: {pcp.stat_threshold}")
        lines.append(f"  node_unreclaimable:  {zone.node_unreclaimable}")
        lines.append(f"  start_pfn:           {zone.zone_start_pfn}")
    return "\n".join(lines) + "\n"


def _padded(values: Sequence[int], length: int) -> list[int]:
    """Pad ``lowmem_reserve`` to ``length`` entries with its last value.

    The kernel's array has MAX_NR_ZONES entries (5 on Debian: ZONE_DEVICE is the last).
    Zones the model lacks hold no managed pages, so setup_per_zone_lowmem_reserve()
    gives them the same cumulative sum as the entry before, i.e. the last value; a zone
    whose row is all 0 stays 0. Longer arrays are printed whole.
    """
    padded = list(values)
    filler = padded[-1] if padded else 0
    padded.extend([filler] * (length - len(padded)))
    return padded


def format_zoneinfo(
    zones: Iterable[ZoneInfo], nr_protection_entries: int = MAX_NR_ZONES_PRINTED
) -> str:
    """Format zones as ``/proc/zoneinfo`` does, in the order given.

    Args:
        zones: zones of every node, node by node, each node's zones by zone type; use
            :func:`zoneinfo_views` to get every zone type, as the kernel prints them.
        nr_protection_entries: entries on each ``protection:`` line; the kernel prints
            MAX_NR_ZONES (5 on a Debian x86_64 kernel with ZONE_DEVICE).

    Returns:
        The text, one block per zone, each line ending in a newline.
    """
    return "".join(format_zone(zone, nr_protection_entries) for zone in zones)


def zones_from_snapshot(snap: ProcSnapshot) -> list[ZoneInfo]:
    """Return the snapshot's zones (observed values) as printable views."""
    return [ZoneInfo.from_snapshot(zone) for zone in snap.zones]


ZoneKey = tuple[int, str]
"""``(nid, zone_name)``."""


def kernel_zone_keys(nids: Iterable[int]) -> list[ZoneKey]:
    """Every (node, zone type) the kernel prints, in its order: node by node, then zone type."""
    return [(nid, name) for nid in nids for name in KERNEL_ZONE_NAMES]


def zoneinfo_views(
    zones: Iterable[ZoneInfo],
    keys: Iterable[ZoneKey],
    absent: Callable[[int, str], ZoneInfo] = EmptyZone,
) -> Iterator[ZoneInfo]:
    """One view per ``(nid, zone_name)`` of ``keys``, as zoneinfo_show() walks them.

    Args:
        zones: the zones held (e.g. :func:`simcore.formats.procstate.live_zones`).
        keys: what to print, in order (e.g. :func:`kernel_zone_keys` of the nodes).
        absent: the view of a key no zone matches; by default an :class:`EmptyZone`.
    """
    held = {(zone.nid, zone.name): zone for zone in zones}
    for nid, name in keys:
        zone = held.get((nid, name))
        yield zone if zone is not None else absent(nid, name)
