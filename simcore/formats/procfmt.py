"""Printer for zones in the kernel's ``/proc/zoneinfo`` layout.

Mirrors zoneinfo_show() and zoneinfo_show_print() in mm/vmstat.c (Linux 6.1), so a
simulated machine can be ``diff``-ed against a real host. The zone header, the ``pages
free`` .. ``cma`` block, the ``protection:`` line, the ``pagesets`` block
(``cpu``/``count``/``high``/``batch``) and ``start_pfn`` are printed with the kernel's
exact spacing. The same printer serves the run directory's ``zoneinfo.txt`` and ``allocsim
proc show``.

Like the kernel, which walks all MAX_NR_ZONES zones of every online node whether they are
populated or not, :func:`zoneinfo_views` yields one view per (node, zone type), with an
all-zero :class:`EmptyZone` for a zone the model does not hold (a second node's DMA and
DMA32, an empty Movable, and ZONE_DEVICE, which the model never has). An unpopulated zone
(``present_pages == 0``) prints only its headline block and ``protection:`` line.

SIMPLIFICATION: lines for state the model does not keep are omitted: the ``per-node
stats`` block, the per-zone vmstat and NUMA counters, ``vm stats threshold`` and
``node_unreclaimable``. ``cma`` is always 0 (no CONFIG_CMA pages are modelled).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from simcore.formats.procfs import PcpSnapshot, ProcSnapshot, ZoneSnapshot
from simcore.mm.constants import ZONE_NAMES

KERNEL_ZONE_NAMES: tuple[str, ...] = tuple(dict.fromkeys((*ZONE_NAMES, "Device")))
"""``zone_names[]`` of the oracle kernel (x86_64, CONFIG_ZONE_DEVICE, no HIGHMEM): the
model's zone types, then ZONE_DEVICE, which the model does not simulate but the kernel
prints (always empty of buddy pages)."""
MAX_NR_ZONES_PRINTED = len(KERNEL_ZONE_NAMES)
"""Entries of each ``protection:`` line: the kernel's MAX_NR_ZONES (5 on Debian 6.1)."""


class PcpView(Protocol):
    """What the printer reads from one CPU's ``per_cpu_pages`` of a zone."""

    @property
    def cpu(self) -> int: ...  # noqa: D102
    @property
    def count(self) -> int: ...  # noqa: D102
    @property
    def high(self) -> int: ...  # noqa: D102
    @property
    def batch(self) -> int: ...  # noqa: D102


class ZoneInfoView(Protocol):
    """What the printer reads from a zone (the simulator's Zone provides these names).

    ``watermark`` is the raw ``_watermark[]`` = ``[min, low, high, promo]`` without the
    boost; the printer adds ``watermark_boost`` as min_wmark_pages() and friends do.
    ``lowmem_reserve`` has one entry per zone type. A zone with ``present_pages == 0``
    is printed without pagesets and ``start_pfn``, as the kernel does.
    """

    @property
    def nid(self) -> int: ...  # noqa: D102
    @property
    def name(self) -> str: ...  # noqa: D102
    @property
    def zone_start_pfn(self) -> int: ...  # noqa: D102
    @property
    def spanned_pages(self) -> int: ...  # noqa: D102
    @property
    def present_pages(self) -> int: ...  # noqa: D102
    @property
    def managed_pages(self) -> int: ...  # noqa: D102
    @property
    def nr_free_pages(self) -> int: ...  # noqa: D102
    @property
    def watermark_boost(self) -> int: ...  # noqa: D102
    @property
    def watermark(self) -> Sequence[int]: ...  # noqa: D102
    @property
    def lowmem_reserve(self) -> Sequence[int]: ...  # noqa: D102
    @property
    def per_cpu_pageset(self) -> Sequence[PcpView]: ...  # noqa: D102


def format_zone(zone: ZoneInfoView, nr_protection_entries: int = MAX_NR_ZONES_PRINTED) -> str:
    """Format one zone's block, ending with a newline (see :func:`format_zoneinfo`)."""
    boost = zone.watermark_boost
    reserve = _padded(zone.lowmem_reserve, nr_protection_entries)
    lines = [
        f"Node {zone.nid}, zone {zone.name:>8}",
        f"  pages free     {zone.nr_free_pages}",
        f"        boost    {boost}",
        f"        min      {zone.watermark[0] + boost}",
        f"        low      {zone.watermark[1] + boost}",
        f"        high     {zone.watermark[2] + boost}",
        f"        spanned  {zone.spanned_pages}",
        f"        present  {zone.present_pages}",
        f"        managed  {zone.managed_pages}",
        "        cma      0",
        f"        protection: ({', '.join(str(value) for value in reserve)})",
    ]
    if zone.present_pages:
        lines.append("  pagesets")
        for pcp in zone.per_cpu_pageset:
            lines.append(f"    cpu: {pcp.cpu}")
            lines.append(f"              count: {pcp.count}")
            lines.append(f"              high:  {pcp.high}")
            lines.append(f"              batch: {pcp.batch}")
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
    zones: Iterable[ZoneInfoView], nr_protection_entries: int = MAX_NR_ZONES_PRINTED
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


@dataclass(frozen=True)
class ObservedZone:
    """A :class:`ZoneInfoView` over a zone read from a real ``/proc/zoneinfo``.

    ``watermark`` has the boost removed again. ``promo`` is not printed by the kernel;
    it is reconstructed as ``high + (high - low)``, which is what
    __setup_per_zone_wmarks() sets (each step adds the same delta).
    """

    nid: int
    name: str
    zone_start_pfn: int
    spanned_pages: int
    present_pages: int
    managed_pages: int
    nr_free_pages: int
    watermark_boost: int
    watermark: tuple[int, int, int, int]
    lowmem_reserve: tuple[int, ...]
    per_cpu_pageset: tuple[PcpSnapshot, ...]

    @classmethod
    def from_snapshot(cls, zone: ZoneSnapshot) -> ObservedZone:
        """Wrap a parsed :class:`ZoneSnapshot`."""
        printed = (zone.wmark_min, zone.wmark_low, zone.wmark_high)
        wmin, low, high = (value - zone.boost for value in printed)
        return cls(
            nid=zone.nid,
            name=zone.name,
            zone_start_pfn=zone.start_pfn,
            spanned_pages=zone.spanned,
            present_pages=zone.present,
            managed_pages=zone.managed,
            nr_free_pages=zone.nr_free_pages,
            watermark_boost=zone.boost,
            watermark=(wmin, low, high, high + (high - low)),
            lowmem_reserve=zone.protection,
            per_cpu_pageset=zone.pcp,
        )


def zones_from_snapshot(snap: ProcSnapshot) -> list[ZoneInfoView]:
    """Return the snapshot's zones (observed values) as printable views."""
    return [ObservedZone.from_snapshot(zone) for zone in snap.zones]


@dataclass(frozen=True)
class EmptyZone:
    """A :class:`ZoneInfoView` of a zone with no pages, as the kernel prints it.

    A zone no memory was ever given to keeps every counter, watermark and
    ``lowmem_reserve`` entry at 0 (setup_per_zone_lowmem_reserve() clears the row of a
    zone without managed pages), and has no pagesets to print.
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


ZoneKey = tuple[int, str]
"""``(nid, zone_name)``."""


def kernel_zone_keys(nids: Iterable[int]) -> list[ZoneKey]:
    """Every (node, zone type) the kernel prints, in its order: node by node, then zone type."""
    return [(nid, name) for nid in nids for name in KERNEL_ZONE_NAMES]


def zoneinfo_views(
    zones: Iterable[ZoneInfoView],
    keys: Iterable[ZoneKey],
    absent: Callable[[int, str], ZoneInfoView] = EmptyZone,
) -> Iterator[ZoneInfoView]:
    """One view per ``(nid, zone_name)`` of ``keys``, as zoneinfo_show() walks them.

    Args:
        zones: the zones the model holds (e.g. ``PageAllocator.zones``).
        keys: what to print, in order (e.g. :func:`kernel_zone_keys` of the nodes).
        absent: the view of a key no zone matches; by default an :class:`EmptyZone`.
    """
    held = {(zone.nid, zone.name): zone for zone in zones}
    for nid, name in keys:
        zone = held.get((nid, name))
        yield zone if zone is not None else absent(nid, name)
