"""External-fragmentation indices of a zone, and their debugfs text.

Mirrors mm/vmstat.c (Linux 6.1): ``fill_contig_page_info()``, ``__fragmentation_index()``,
``extfrag_for_order()``, ``unusable_free_index()``, and the printers
``extfrag_show_print()`` (``/sys/kernel/debug/extfrag/extfrag_index``) and
``unusable_show_print()`` (``/sys/kernel/debug/extfrag/unusable_index``).

Every function takes ``nr_free``: the number of free blocks of each order, i.e.
``zone->free_area[order].nr_free`` for orders 0..max_order. That is both what a live
:class:`simcore.mm.zone.Zone` holds (``zone.free_area.nr_free``) and what one line of
``/proc/buddyinfo`` shows, so the same code serves the model and real snapshots. As in the
kernel, pages on the per-CPU (pcp) lists are not free blocks and are not counted.

This module is pure: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

FragmentationRow = tuple[int, str, Sequence[int]]
"""``(nid, zone_name, nr_free per order)``: one zone, as the formatters take it."""
_IndexFn = Callable[[Sequence[int], int], int]


class ContigPageInfo(NamedTuple):
    """``struct contig_page_info`` (mm/vmstat.c)."""

    free_pages: int
    """Pages in all free blocks: sum of ``nr_free[o] << o``."""
    free_blocks_total: int
    """Free blocks of any order: sum of ``nr_free[o]``."""
    free_blocks_suitable: int
    """Order-``order`` blocks the free blocks of order >= ``order`` could be split into."""


def contig_page_info(nr_free: Sequence[int], order: int) -> ContigPageInfo:
    """Count free pages and blocks, and the blocks suitable for ``order``.

    Mirrors fill_contig_page_info() in mm/vmstat.c.

    Args:
        nr_free: free blocks per order, orders 0..max_order.
        order: the requested (suitable) order.

    Raises:
        ValueError: if ``order`` is not one of the orders of ``nr_free``; the kernel
            WARNs on that in __fragmentation_index() and never asks for it otherwise.
    """
    if not 0 <= order < len(nr_free):
        raise ValueError(f"order {order} outside 0..{len(nr_free) - 1}")
    free_pages = 0
    free_blocks_total = 0
    free_blocks_suitable = 0
    for o, blocks in enumerate(nr_free):
        free_blocks_total += blocks
        free_pages += blocks << o
        if o >= order:
            free_blocks_suitable += blocks << (o - order)
    return ContigPageInfo(free_pages, free_blocks_total, free_blocks_suitable)


def fragmentation_index(nr_free: Sequence[int], order: int) -> int:
    """Why an ``order`` allocation would fail, in thousandths.

    Mirrors __fragmentation_index() in mm/vmstat.c.

    Returns:
        0 when there are no free blocks; -1000 when a free block of at least ``order``
        exists (the allocation would not fail); otherwise
        ``1000 - (1000 + free_pages * 1000 // 2**order) // free_blocks_total``: near 0
        means lack of memory, near 1000 means external fragmentation (behaviour 61).
        With exactly one free block the kernel's unsigned arithmetic wraps and the
        result is negative (down to -500); it is returned as the kernel's ``int`` is.
    """
    info = contig_page_info(nr_free, order)
    if not info.free_blocks_total:
        return 0
    if info.free_blocks_suitable:
        return -1000
    requested = 1 << order
    return 1000 - (1000 + info.free_pages * 1000 // requested) // info.free_blocks_total


def unusable_free_index(nr_free: Sequence[int], order: int) -> int:
    """Thousandths of free memory in blocks too small for ``order``.

    Mirrors unusable_free_index() in mm/vmstat.c.

    Returns:
        1000 when there are no free pages (all free memory counts as unusable),
        otherwise ``(free_pages - (free_blocks_suitable << order)) * 1000 // free_pages``;
        always 0 at order 0 (behaviour 62).
    """
    info = contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 1000
    usable = info.free_blocks_suitable << order
    return (info.free_pages - usable) * 1000 // info.free_pages


def extfrag_for_order(nr_free: Sequence[int], order: int) -> int:
    """Percent of free memory in blocks smaller than ``order``.

    Mirrors extfrag_for_order() in mm/vmstat.c, which proactive compaction uses
    (fragmentation_score_zone()). 0 when nothing is free.
    """
    info = contig_page_info(nr_free, order)
    if info.free_pages == 0:
        return 0
    usable = info.free_blocks_suitable << order
    return (info.free_pages - usable) * 100 // info.free_pages


def fragmentation_score_weighted(present_pages: int, node_present_pages: int,
                                 zone_score: int) -> int:
    """A zone's share of its node's proactive-compaction fragmentation score.

    Mirrors fragmentation_score_zone_weighted() in mm/compaction.c: the zone's score
    (``extfrag_for_order()`` at COMPACTION_HPAGE_ORDER, fragmentation_score_zone()) times
    its ``present_pages``, divided by the node's ``node_present_pages + 1``. The node's
    score, fragmentation_score_node(), is the sum of these over its zones.
    """
    return present_pages * zone_score // (node_present_pages + 1)


def _c_divmod(value: int, divisor: int) -> tuple[int, int]:
    """C's ``/`` and ``%`` on signed ints: the quotient truncates toward zero."""
    quotient = abs(value) // divisor * (-1 if value < 0 else 1)
    return quotient, value - quotient * divisor


def _format_rows(rows: Iterable[FragmentationRow], int_format: str, index_of: _IndexFn) -> str:
    """One ``Node N, zone NAME`` line per row with the index of every order."""
    lines = []
    for nid, name, nr_free in rows:
        parts = [f"Node {nid}, zone {name:>8} "]
        for order in range(len(nr_free)):
            whole, frac = _c_divmod(index_of(nr_free, order), 1000)
            parts.append(f"{whole:{int_format}}.{frac:03d} ")
        lines.append("".join(parts) + "\n")
    return "".join(lines)


def format_extfrag_index(rows: Iterable[FragmentationRow]) -> str:
    """Text of debugfs ``extfrag/extfrag_index``: mirrors extfrag_show_print().

    Each value is printed as ``"%2d.%03d"`` of index/1000 and index%1000 with C's
    truncating division, so -1000 prints ``-1.000`` and 955 prints `` 0.955``.

    Args:
        rows: ``(nid, zone_name, nr_free)`` of each populated zone, node by node, each
            node's zones by zone type (the kernel's walk_zones_in_node() order).
    """
    return _format_rows(rows, "2d", fragmentation_index)


def format_unusable_index(rows: Iterable[FragmentationRow]) -> str:
    """Text of debugfs ``extfrag/unusable_index``: mirrors unusable_show_print().

    Each value is printed as ``"%d.%03d"``, e.g. ``0.058`` or ``1.000``.

    Args:
        rows: as for :func:`format_extfrag_index`.
    """
    return _format_rows(rows, "d", unusable_free_index)
