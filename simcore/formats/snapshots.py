"""Free-memory snapshots of zones in the kernel's ``/proc`` text layouts.

Mirrors mm/vmstat.c (Linux 6.1): ``frag_show_print()`` (``/proc/buddyinfo``) and
``pagetypeinfo_show()`` with ``pagetypeinfo_showfree_print()`` and
``pagetypeinfo_showblockcount_print()`` (``/proc/pagetypeinfo``), so a simulated machine
can be ``diff``-ed against a real host. Also gives the same numbers as long-format rows
for the periodic snapshot recorder, and as ``(nid, zone, nr_free)`` rows for
:mod:`simcore.mm.fragmentation`.

The zones are anything with the :class:`ZoneView` attributes, such as the live
:class:`simcore.mm.zone.Zone` objects of ``PageAllocator.zones``. They are printed in the
order given, which should be the kernel's: node by node, each node's zones by zone type,
populated zones only (walk_zones_in_node(); PageAllocator.zones holds only those). A node
without memory prints nothing, as pagetypeinfo_show() skips nodes not in N_MEMORY.

The text is produced from plain tables (``(nid, zone, nr_free)`` rows and
:class:`~simcore.formats.proctables.PagetypeInfo`), the same ones the importers in
:mod:`simcore.formats.procfs` return, so an exported file read back and printed again is
byte-identical.

This module is pure: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from simcore.formats.proctables import PagetypeInfo
from simcore.mm.constants import (
    DEFAULT_PAGEBLOCK_ORDER,
    MIGRATETYPE_NAMES,
    SUBSECTION_PAGES,
    MigrateType,
)

PAGETYPEINFO_FREECOUNT_CAP = 100000
"""pagetypeinfo_showfree_print() stops walking a free list at this many blocks."""

FreeBlockLevel = tuple[int, str, str, int, int]
"""``(nid, zone_name, migratetype_name, order, nr_free)``: one long-format row."""


class FreeAreaView(Protocol):
    """What the printers read from ``zone->free_area`` (:class:`simcore.mm.freelist.FreeArea`)."""

    @property
    def nr_free(self) -> Sequence[int] | memoryview:
        """``free_area[order].nr_free`` for orders 0..max_order."""
        ...

    @property
    def counts(self) -> Sequence[Sequence[int]]:
        """Free blocks per list, as ``[order][migratetype]``."""
        ...


class ZoneView(Protocol):
    """What the printers read from a zone (:class:`simcore.mm.zone.Zone` provides it)."""

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
    """Text of ``/proc/buddyinfo`` for live zones (see :func:`format_buddyinfo`)."""
    return format_buddyinfo(nr_free_rows(zones))


def format_buddyinfo(rows: Iterable[tuple[int, str, Sequence[int]]]) -> str:
    """Text of ``/proc/buddyinfo``: mirrors frag_show_print().

    One line per ``(nid, zone_name, nr_free)`` row: ``Node N, zone %8s`` then ``%6lu ``
    for the free blocks of every order (all migratetypes; pcp pages are not on the free
    lists). The rows of :func:`simcore.formats.procfs.parse_buddyinfo` print back unchanged.
    """
    lines = []
    for nid, name, nr_free in rows:
        counts = "".join(f"{n:6d} " for n in nr_free)
        lines.append(f"Node {nid}, zone {name:>8} {counts}\n")
    return "".join(lines)


def nr_free_rows(zones: Iterable[ZoneView]) -> list[tuple[int, str, tuple[int, ...]]]:
    """``(nid, zone_name, nr_free)`` per zone, the input of simcore.mm.fragmentation's printers."""
    return [(z.nid, z.name, tuple(z.free_area.nr_free)) for z in zones]


def _freecount(length: int) -> str:
    """One cell of the free table: the kernel counts to the cap, then prints ``>``."""
    if length >= PAGETYPEINFO_FREECOUNT_CAP:
        return f">{PAGETYPEINFO_FREECOUNT_CAP:6d} "
    return f"{length:6d} "


def pageblock_counts(zone: ZoneView, mts: Sequence[int]) -> list[int]:
    """Pageblocks labelled with each of ``mts``: the walk of pagetypeinfo_showblockcount_print().

    Like the kernel, steps from ``zone_start_pfn`` (not rounded down) by a pageblock up to
    the zone end, skipping pfns with no struct page: pfn_to_online_page() is NULL where
    the subsection holds no present memory (a zone's holes, such as DMA32's PCI hole).
    """
    counts = dict.fromkeys(mts, 0)
    present = getattr(zone, "present_ranges", ((zone.zone_start_pfn, zone.end_pfn),))
    for pfn in range(zone.zone_start_pfn, zone.end_pfn, 1 << zone.pageblock_order):
        if not has_struct_page(present, pfn):
            continue
        mt = zone.get_pageblock_migratetype(pfn)
        if mt in counts:
            counts[mt] += 1
    return [counts[mt] for mt in mts]


def has_struct_page(present: Sequence[tuple[int, int]], pfn: int) -> bool:
    """Whether ``pfn`` has an online struct page (pfn_section_valid()).

    It has one when its subsection (:data:`~simcore.mm.constants.SUBSECTION_PAGES`)
    holds present memory.
    """
    lo = pfn // SUBSECTION_PAGES * SUBSECTION_PAGES
    hi = lo + SUBSECTION_PAGES
    return any(a < hi and b > lo for a, b in present)


def pagetypeinfo_tables(
    zones: Iterable[ZoneView], *, show_cma: bool = False, show_isolate: bool = True
) -> PagetypeInfo:
    """The numbers of ``/proc/pagetypeinfo`` for live zones, uncapped.

    ``free_counts`` holds each free list's length per order, ``block_counts`` the
    pageblocks per migratetype (:func:`pageblock_counts`); the columns are the
    migratetypes the kernel prints (:func:`printed_migratetypes`).
    """
    mts = printed_migratetypes(show_cma=show_cma, show_isolate=show_isolate)
    free_counts: dict[tuple[int, str, str], tuple[int, ...]] = {}
    block_counts: dict[tuple[int, str], tuple[int, ...]] = {}
    pageblock_order = DEFAULT_PAGEBLOCK_ORDER
    for zone in zones:
        pageblock_order = zone.pageblock_order
        count = zone.free_area.counts
        for mt in mts:
            free_counts[(zone.nid, zone.name, MIGRATETYPE_NAMES[mt])] = tuple(
                per_mt[mt] for per_mt in count
            )
        block_counts[(zone.nid, zone.name)] = tuple(pageblock_counts(zone, mts))
    names = tuple(MIGRATETYPE_NAMES[mt] for mt in mts)
    return PagetypeInfo(pageblock_order, free_counts, names, block_counts)


def pagetypeinfo(
    zones: Iterable[ZoneView], *, show_cma: bool = False, show_isolate: bool = True
) -> str:
    """Text of ``/proc/pagetypeinfo`` for live zones (see :func:`format_pagetypeinfo`).

    Args:
        zones: populated zones, node by node, each node's zones by zone type.
        show_cma: print the CMA column and rows (``CONFIG_CMA``; off on the oracle kernel).
        show_isolate: print the Isolate column and rows (``CONFIG_MEMORY_ISOLATION``).
    """
    tables = pagetypeinfo_tables(zones, show_cma=show_cma, show_isolate=show_isolate)
    return format_pagetypeinfo(tables)


def format_pagetypeinfo(info: PagetypeInfo) -> str:
    """Text of ``/proc/pagetypeinfo``: mirrors pagetypeinfo_show() for every node.

    Each node with rows prints its own header, free-count table (list lengths, capped at
    100000 and then printed as ``>100000``), "Number of blocks type" table and, when
    ``info.mixed_counts`` has rows for it (page_owner; never in the model), "Number of
    mixed blocks" table. Nodes come in the order of ``info.block_counts``. What
    :func:`simcore.formats.procfs.parse_pagetypeinfo` read prints back unchanged.
    """
    nids = list(dict.fromkeys(nid for nid, _ in info.block_counts))
    return "".join(_pagetypeinfo_node(info, nid) for nid in nids)


def _count_table(
    title: str, types: Sequence[str], rows: Mapping[tuple[int, str], Sequence[int]], nid: int
) -> list[str]:
    """One of pagetypeinfo_showblockcount() / pagetypeinfo_showmixedcount() for a node."""
    out = [f"\n{title:<23}" + "".join(f"{name:>12} " for name in types) + "\n"]
    for (row_nid, zone), counts in rows.items():
        if row_nid == nid:
            out.append(f"Node {nid}, zone {zone:>8} " + "".join(f"{n:12d} " for n in counts) + "\n")
    return out


def _pagetypeinfo_node(info: PagetypeInfo, nid: int) -> str:
    """One node's part of /proc/pagetypeinfo: mirrors pagetypeinfo_show()."""
    free = [(key, counts) for key, counts in info.free_counts.items() if key[0] == nid]
    nr_orders = len(free[0][1]) if free else 0
    out = [
        f"Page block order: {info.pageblock_order}\n",
        f"Pages per block:  {1 << info.pageblock_order}\n",
        "\n",
        f"{'Free pages count per migrate type at order':<43} "
        + "".join(f"{order:6d} " for order in range(nr_orders))
        + "\n",
    ]
    for (_, zone, mt_name), counts in free:
        cells = "".join(_freecount(n) for n in counts)
        out.append(f"Node {nid:4d}, zone {zone:>8}, type {mt_name:>12} " + cells + "\n")
    out += _count_table("Number of blocks type ", info.block_types, info.block_counts, nid)
    if any(row_nid == nid for row_nid, _ in info.mixed_counts):
        out += _count_table("Number of mixed blocks ", info.block_types, info.mixed_counts, nid)
    return "".join(out)


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
        count = zone.free_area.counts
        for mt in mts:
            name = MIGRATETYPE_NAMES[mt]
            rows.extend((zone.nid, zone.name, name, order, c[mt]) for order, c in enumerate(count))
    return rows
