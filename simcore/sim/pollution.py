"""Polluted (mixed) pageblocks, and which caller polluted them.

A pageblock is *polluted* when it holds at least one allocation whose migratetype is not
the pageblock's own: page_owner's "mixed" pageblock. :func:`mixed_pageblocks` finds them
as ``pagetypeinfo_showmixedcount_print()`` (mm/page_owner.c, Linux 6.1) does, from the
migratetype each allocation asked for (``gfp_migratetype(page_owner->gfp_mask)``; the
model keeps it in the head page's info) against ``get_pageblock_migratetype()``. Free
pages, pages on pcp lists, reserved pages and compound tails are skipped; a mixed block is
counted under its pageblock's type (CMA counts as Movable).

Attribution is simulator-only: the kernel does not record who polluted a block. The
machine charges a block to the caller of the first allocation that made it mixed
(:meth:`simcore.sim.machine.Machine._account`): an allocation placed in a block of
another migratetype. When a fallback steal (or a highatomic reserve) relabels a block
while it holds allocations of its old type, those become the foreign ones, all at
once: the block is charged to the caller of the first of them in pfn order, the page
the kernel's scan stops at (:meth:`~simcore.sim.machine.Machine.charge_context`). The
stealing caller is charged with the steal itself (``extfrag_by_caller``). A block stays
charged to that caller until a scan (:func:`rescan`, at the end of the run) finds it
clean; it could then be charged again. So ``charged_by_caller`` counts the blocks each
caller was the first to pollute during the run, and ``by_caller`` the blocks mixed at
the end of the run, by the caller charged with them. A mixed block nobody was charged
with (for example one compaction relabelled) is listed as ``(unattributed)``.

SIMPLIFICATION: a block that became clean during the run keeps its first charge (the
scan costs a pass over every page, so it is not run at every snapshot).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from simcore.mm.constants import MIGRATETYPE_NAMES, MT_CMA, MT_MOVABLE
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_ALLOC, PG_RESERVED, PG_TAIL

UNATTRIBUTED = "(unattributed)"


def _allocated(flags: np.ndarray) -> np.ndarray:
    """Which of these pages begin an allocation page_owner records.

    Allocated heads: not compound tails, not reserved memory.
    """
    return (flags & PG_ALLOC).astype(bool) & ~(flags & (PG_TAIL | PG_RESERVED)).astype(bool)


def _later_blocks(info: np.ndarray, pfns: np.ndarray, pb: int,
                  hi: int) -> Iterator[tuple[int, range]]:
    """Each allocation larger than a pageblock among the heads ``pfns``.

    Yields ``(migratetype, the pageblocks after the head's)``, clipped to the zone end
    ``hi``.
    """
    for head in pfns[(info[pfns] & ORDER_MASK) > pb].tolist():
        last = min(head + (1 << (int(info[head]) & ORDER_MASK)), hi)
        yield int(info[head]) >> MT_SHIFT, range((head >> pb) + 1, ((last - 1) >> pb) + 1)


def mixed_pageblocks(mm: Any) -> np.ndarray:
    """Per pageblock (machine-wide numbering): True if it is mixed now.

    Mirrors the block scan of ``pagetypeinfo_showmixedcount_print()``, over every zone.
    """
    pb = mm.pageblock_order
    flags = mm.pages.flags_np
    info = mm.pages.info_np
    block_mt = np.frombuffer(mm.pageblock_mt, dtype=np.uint8) & 0x7
    mixed = np.zeros(len(block_mt), dtype=bool)
    for zone in mm.zones:
        lo, hi = zone.zone_start_pfn, zone.end_pfn
        pfns = np.flatnonzero(_allocated(flags[lo:hi])) + lo
        if not len(pfns):
            continue
        foreign = (info[pfns] >> MT_SHIFT) != block_mt[pfns >> pb]
        mixed[pfns[foreign] >> pb] = True
        # An allocation larger than a pageblock: the scan starts each later pageblock
        # on one of its pages, which page_owner records with the head's migratetype.
        for mt, blocks in _later_blocks(info, pfns, pb, hi):
            for blk in blocks:
                if block_mt[blk] != mt:
                    mixed[blk] = True
    return mixed


def first_foreign_pfn(mm: Any, pfn: int) -> int:
    """The first foreign allocation of ``pfn``'s pageblock, in pfn order (-1 if none).

    Foreign: its migratetype is not the pageblock's. The kernel's mixed-block scan
    stops there.
    """
    pb = mm.pageblock_order
    zone = mm.page_zone(pfn)
    lo = max((pfn >> pb) << pb, zone.zone_start_pfn)
    hi = min(((pfn >> pb) + 1) << pb, zone.end_pfn)
    foreign = _allocated(mm.pages.flags_np[lo:hi]) & ((mm.pages.info_np[lo:hi] >> MT_SHIFT)
                           != zone.get_pageblock_migratetype(pfn))
    hits = np.flatnonzero(foreign)
    return lo + int(hits[0]) if len(hits) else -1


def mixed_count_by_type(mm: Any, mixed: np.ndarray) -> dict[str, int]:
    """The "Number of mixed blocks" row of ``/proc/pagetypeinfo``, summed over zones."""
    block_mt = np.frombuffer(mm.pageblock_mt, dtype=np.uint8) & 0x7
    types = block_mt[mixed].astype(np.int64)
    types[types == MT_CMA] = MT_MOVABLE
    counts = np.bincount(types, minlength=len(MIGRATETYPE_NAMES))
    return {MIGRATETYPE_NAMES[mt]: int(counts[mt]) for mt in mm.migratetypes}


def pageblock_census(mm: Any, mixed: np.ndarray) -> dict[str, dict[str, int]]:
    """Per node: how many pageblocks are mixed, and what huge pages they could give.

    The pageblocks of each node fall in four classes: ``free`` (parts of free blocks of
    at least pageblock order: a huge page at once), ``movable_only`` (they hold
    allocations, all MOVABLE: what compaction could recover, the report's huge-page
    availability), ``unmovable`` (they hold an allocation that is not MOVABLE: no
    compaction can empty them) and ``no_allocation`` (no allocation, yet not one free
    block: free fragments, pcp pages, reserved memory). ``mixed`` counts the polluted
    ones among them. Partial pageblocks at a zone's edge count as whole ones.
    """
    pb = mm.pageblock_order
    flags = mm.pages.flags_np
    info = mm.pages.info_np
    out: dict[str, dict[str, int]] = {}
    for node in mm.nodes:
        counts = {"pageblocks": 0, "free": 0, "movable_only": 0, "unmovable": 0,
                  "no_allocation": 0, "mixed": 0}
        for zone in node.zones:
            lo, hi = zone.zone_start_pfn, zone.end_pfn
            first, last = lo >> pb, (hi - 1) >> pb
            nblocks = last - first + 1
            pfns = np.flatnonzero(_allocated(flags[lo:hi])) + lo
            unmovable = (info[pfns] >> MT_SHIFT) != MT_MOVABLE
            has_alloc = np.zeros(nblocks, dtype=bool)
            has_alloc[(pfns >> pb) - first] = True
            held = np.zeros(nblocks, dtype=bool)
            held[(pfns[unmovable] >> pb) - first] = True
            for mt, blocks in _later_blocks(info, pfns, pb, hi):  # several pageblocks
                span = slice(blocks.start - first, blocks.stop - first)
                has_alloc[span] = True
                held[span] |= mt != MT_MOVABLE
            free = sum(zone.free_area.count_of(order, mt) << (order - pb)
                       for order in range(pb, zone.max_order + 1) for mt in mm.migratetypes)
            movable_only = int((has_alloc & ~held).sum())
            counts["pageblocks"] += nblocks
            counts["free"] += free
            counts["movable_only"] += movable_only
            counts["unmovable"] += int(held.sum())
            counts["no_allocation"] += max(0, nblocks - free - movable_only - int(held.sum()))
            counts["mixed"] += int(mixed[first : last + 1].sum())
        out[str(node.nid)] = counts
    return out


def rescan(machine: Any) -> np.ndarray:
    """Find the mixed blocks now and forget the charge of every block that is clean.

    Returns the mixed mask (see :func:`mixed_pageblocks`).
    """
    machine.apply_pending_frees()
    machine.charge_context()
    mixed = mixed_pageblocks(machine.mm)
    machine.pb_polluter[~mixed] = -1
    return mixed


def mixed_by_caller(machine: Any, mixed: np.ndarray) -> dict[str, int]:
    """Mixed blocks per charged caller (``(unattributed)`` for uncharged ones)."""
    who = machine.pb_polluter[mixed]
    counts = np.bincount(who + 1, minlength=len(machine._owner_list) + 1)
    out = {owner.name: int(counts[owner.idx + 1]) for owner in machine._owner_list
           if counts[owner.idx + 1]}
    if counts[0]:
        out[UNATTRIBUTED] = int(counts[0])
    return out


def pollution_summary(machine: Any) -> dict[str, Any]:
    """``summary.json``'s ``pollution`` section at the end of a run."""
    mixed = rescan(machine)
    owners = machine._owner_list
    return {
        "mixed_pageblocks": int(mixed.sum()),
        "mixed_by_pageblock_type": mixed_count_by_type(machine.mm, mixed),
        "by_caller": mixed_by_caller(machine, mixed),
        "by_node": pageblock_census(machine.mm, mixed),
        "charged_by_caller": {o.name: o.polluted for o in owners if o.polluted},
        "extfrag_by_caller": {o.name: o.extfrag for o in owners if o.extfrag},
    }
