"""Free-memory snapshots of zones in the kernel's ``/proc`` text layouts.

Mirrors mm/vmstat.c (Linux 6.1): ``frag_show_print()`` (``/proc/buddyinfo``) and
``pagetypeinfo_show()`` with ``pagetypeinfo_showfree_print()`` and
``pagetypeinfo_showblockcount_print()`` (``/proc/pagetypeinfo``), so a simulated machine
can be ``diff``-ed against a real host. Also gives the same numbers as long-format rows
for the periodic snapshot recorder, and as ``(nid, zone, nr_free)`` rows for
:mod:`simcore.fragmentation`.

The zones are anything with the :class:`ZoneView` attributes, such as the live
:class:`simcore.zone.Zone` objects of ``PageAllocator.zones``. They are printed in the
order given, which should be the kernel's: node by node, each node's zones by zone type,
populated zones only (walk_zones_in_node(); PageAllocator.zones holds only those).

This module is pure: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import groupby
from typing import Protocol

from simcore.constants import MIGRATETYPE_NAMES, MigrateType

PAGETYPEINFO_FREECOUNT_CAP = 100000
"""pagetypeinfo_showfree_print() stops walking a free list at this many blocks."""

FreeBlockLevel = tuple[int, str, str, int, int]
"""``(nid, zone_name, migratetype_name, order, nr_free)``: one long-format row."""


class FreeAreaView(Protocol):
    """What the printers read from ``zone->free_area`` (:class:`simcore.freelist.FreeArea`)."""

    @property
    def nr_free(self) -> Sequence[int]:
        """``free_area[order].nr_free`` for orders 0..max_order."""
        ...

    @property
    def count(self) -> Sequence[Sequence[int]]:
        """``count[order][migratetype]``: length of each ``free_list``."""
        ...


class ZoneView(Protocol):
    """What the printers read from a zone (:class:`simcore.zone.Zone` provides it)."""

    @property
    def nid(self) -> int:  # noqa: D102
        ...

    @property
    def name(self) -> str:  # noqa: D102
        ...

    @property
    def zone_start_pfn(self) -> int:  # noqa: D102
        ...

    @property
    def end_pfn(self) -> int:
        """``zone_end_pfn()``: one past the last spanned pfn."""
        ...

    @property
    def pageblock_order(self) -> int:  # noqa: D102
        ...

    @property
    def max_order(self) -> int:
        """Largest buddy order, inclusive (6.1's ``MAX_ORDER - 1``)."""
        ...

    @property
    def free_area(self) -> FreeAreaView:  # noqa: D102
        ...

    def get_pageblock_migratetype(self, pfn: int) -> int:
        """The migratetype label of the pageblock holding ``pfn``."""
        ...


def printed_migratetypes(*, show_cma: bool = False, show_isolate: bool = True) -> list[int]:
    """Migratetypes the kernel prints, in ``enum migratetype`` order.

    Args:
        show_cma: the kernel was built with ``CONFIG_CMA`` (the oracle kernel was not).
        show_isolate: the kernel was built with ``CONFIG_MEMORY_ISOLATION`` (Debian's is).
    """
    skip = set()
    if not show_cma:
        skip.add(MigrateType.CMA)
    if not show_isolate:
        skip.add(MigrateType.ISOLATE)
    return [mt for mt in MigrateType if mt not in skip]


def buddyinfo(zones: Iterable[ZoneView]) -> str:
    """Text of ``/proc/buddyinfo``: mirrors frag_show_print().

    One line per zone: ``Node N, zone %8s`` then ``%6lu `` for the free blocks of every
    order (all migratetypes; pcp pages are not on the free lists).
    """
    lines = []
    for zone in zones:
        counts = "".join(f"{n:6d} " for n in zone.free_area.nr_free)
        lines.append(f"Node {zone.nid}, zone {zone.name:>8} {counts}\n")
    return "".join(lines)


def nr_free_rows(zones: Iterable[ZoneView]) -> list[tuple[int, str, tuple[int, ...]]]:
    """``(nid, zone_name, nr_free)`` per zone, the input of simcore.fragmentation's printers."""
    return [(z.nid, z.name, tuple(z.free_area.nr_free)) for z in zones]


def _freecount(length: int) -> str:
    """One cell of the free table: the kernel counts to the cap, then prints ``>``."""
    if length >= PAGETYPEINFO_FREECOUNT_CAP:
        return f">{PAGETYPEINFO_FREECOUNT_CAP:6d} "
    return f"{length:6d} "


def pagetypeinfo_free_lines(zone: ZoneView, mts: Sequence[int]) -> list[str]:
    """The free-count lines of one zone: mirrors pagetypeinfo_showfree_print()."""
    lines = []
    for mt in mts:
        head = f"Node {zone.nid:4d}, zone {zone.name:>8}, type {MIGRATETYPE_NAMES[mt]:>12} "
        cells = "".join(_freecount(per_mt[mt]) for per_mt in zone.free_area.count)
        lines.append(head + cells + "\n")
    return lines


def pageblock_counts(zone: ZoneView, mts: Sequence[int]) -> list[int]:
    """Pageblocks labelled with each of ``mts``: the walk of pagetypeinfo_showblockcount_print().

    Like the kernel, steps from ``zone_start_pfn`` (not rounded down) by a pageblock up to
    the zone end. SIMPLIFICATION: the model has no memory holes, so every pfn has a struct
    page in this zone and no pageblock is skipped (the kernel skips offline sections).
    """
    counts = dict.fromkeys(mts, 0)
    for pfn in range(zone.zone_start_pfn, zone.end_pfn, 1 << zone.pageblock_order):
        mt = zone.get_pageblock_migratetype(pfn)
        if mt in counts:
            counts[mt] += 1
    return [counts[mt] for mt in mts]


def _pagetypeinfo_node(zones: list[ZoneView], mts: Sequence[int]) -> str:
    """One node's part of /proc/pagetypeinfo: mirrors pagetypeinfo_show()."""
    pageblock_order = zones[0].pageblock_order
    orders = range(zones[0].max_order + 1)
    out = [
        f"Page block order: {pageblock_order}\n",
        f"Pages per block:  {1 << pageblock_order}\n",
        "\n",
        f"{'Free pages count per migrate type at order':<43} "
        + "".join(f"{order:6d} " for order in orders)
        + "\n",
    ]
    for zone in zones:
        out.extend(pagetypeinfo_free_lines(zone, mts))
    out.append(
        f"\n{'Number of blocks type ':<23}"
        + "".join(f"{MIGRATETYPE_NAMES[mt]:>12} " for mt in mts)
        + "\n"
    )
    for zone in zones:
        cells = "".join(f"{n:12d} " for n in pageblock_counts(zone, mts))
        out.append(f"Node {zone.nid}, zone {zone.name:>8} {cells}\n")
    return "".join(out)


def pagetypeinfo(
    zones: Iterable[ZoneView], *, show_cma: bool = False, show_isolate: bool = True
) -> str:
    """Text of ``/proc/pagetypeinfo``: mirrors pagetypeinfo_show() for every node.

    Each node prints its own header, free-count table (list lengths, capped at 100000 and
    then printed as ``>100000``) and "Number of blocks type" table. The "Number of mixed
    blocks" table needs page_owner and is never printed (the oracle kernel has none).

    Args:
        zones: populated zones, node by node, each node's zones by zone type.
        show_cma: print the CMA column and rows (``CONFIG_CMA``; off on the oracle kernel).
        show_isolate: print the Isolate column and rows (``CONFIG_MEMORY_ISOLATION``).
    """
    mts = printed_migratetypes(show_cma=show_cma, show_isolate=show_isolate)
    return "".join(
        _pagetypeinfo_node(list(node_zones), mts)
        for _, node_zones in groupby(zones, key=lambda z: z.nid)
    )


def free_block_levels(
    zones: Iterable[ZoneView], *, show_cma: bool = False, show_isolate: bool = True
) -> list[FreeBlockLevel]:
    """Free blocks per (zone, migratetype, order) as long-format rows.

    The same numbers as the /proc/pagetypeinfo free table, uncapped, for the periodic
    snapshot recorder. Rows come zone by zone, then migratetype, then order.
    """
    mts = printed_migratetypes(show_cma=show_cma, show_isolate=show_isolate)
    rows: list[FreeBlockLevel] = []
    for zone in zones:
        count = zone.free_area.count
        for mt in mts:
            name = MIGRATETYPE_NAMES[mt]
            rows.extend((zone.nid, zone.name, name, order, c[mt]) for order, c in enumerate(count))
    return rows
