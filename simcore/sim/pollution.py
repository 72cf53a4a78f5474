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
with (for example one compaction relabelled) is listed as ``(unattributed)``. Each
charge is also an instant in the spans (``pageblock_polluted``, at the time of the
charge), so their count per caller is ``charged_by_caller``.

The census (:func:`zone_census`) sorts a zone's pageblocks by what they hold (free,
movable only, unmovable, no allocation) and finds the mixed ones, in one vectorised pass
over the zone's pages. The periodic snapshots record it per zone (``zonestat``), the
summary per node (the sum of its zones) and the end of the run per pageblock
(``trace/pageblocks.parquet``, :mod:`simcore.sim.pageblock_map`).

SIMPLIFICATION: a block that became clean during the run keeps its first charge: the
snapshots count mixed blocks but clear no charge, so the charges (and their instants) do
not depend on the snapshot interval. Only the end-of-run :func:`rescan` clears them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from simcore.formats import trace_schema as ts
from simcore.mm.constants import MIGRATETYPE_NAMES, MT_CMA, MT_MOVABLE
from simcore.mm.lru import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON
from simcore.mm.lru import SLAB as LRU_SLAB
from simcore.mm.pages import (
    MT_SHIFT,
    ORDER_MASK,
    PG_ALLOC,
    PG_BUDDY,
    PG_MOVABLE_OWNER,
    PG_RESERVED,
    PG_TAIL,
)

UNATTRIBUTED = "(unattributed)"
CENSUS_FREE = ts.CENSUS_CLASSES.index(ts.CENSUS_FREE)
"""The census classes as codes: their index in ``trace_schema.CENSUS_CLASSES``."""
CENSUS_MOVABLE_ONLY = ts.CENSUS_CLASSES.index(ts.CENSUS_MOVABLE_ONLY)
CENSUS_UNMOVABLE = ts.CENSUS_CLASSES.index(ts.CENSUS_UNMOVABLE)
CENSUS_NO_ALLOCATION = ts.CENSUS_CLASSES.index(ts.CENSUS_NO_ALLOCATION)


_NOT_A_HEAD = PG_ALLOC | PG_TAIL | PG_RESERVED
"""The flags :func:`_allocated` reads: an allocated head has the first alone."""


def _allocated(flags: np.ndarray) -> np.ndarray:
    """Which of these pages begin an allocation page_owner records.

    Allocated heads: not compound tails, not reserved memory.
    """
    return (flags & _NOT_A_HEAD) == PG_ALLOC


class ZoneCensus(NamedTuple):
    """One zone's pageblocks, by what they hold (see :func:`zone_census`)."""

    zone: Any
    first: int
    """The machine-wide index of the zone's first pageblock (``zone_start_pfn >> pb``)."""
    census: np.ndarray
    """Per pageblock of the zone (int8): its index in ``CENSUS_CLASSES``."""
    foreign: np.ndarray
    """Per pageblock of the zone (bool): holds a page of the zone whose migratetype is
    not the pageblock's."""


def zone_census(mm: Any, zone: Any) -> ZoneCensus:
    """Classify each pageblock of ``zone`` and find its foreign allocations.

    The classes, in ``CENSUS_CLASSES`` order: ``free`` (part of a free buddy block of
    at least pageblock order: a huge page at once), ``movable_only`` (holds
    allocations, every one of which compaction migrates, :func:`_migratable`: what
    compaction could recover), ``unmovable`` (holds an allocation compaction does not
    migrate: slab, kernel memory, pinned pages, THP and hugetlb pages, anything of order
    > 0; no compaction can empty it) and ``no_allocation``
    (no allocation, yet not part of one free block: free fragments, pcp pages, reserved
    memory). A partial pageblock at a zone's edge is classified by the zone's part.

    Free pageblocks are found from their first pages alone; the others' pages are read
    as one (pageblocks x pages) numpy array, reduced per row, so a mostly free machine
    costs little and a full one a few passes over its page flags. Only the rare
    allocations larger than a pageblock are looped over.
    """
    pb = mm.pageblock_order
    lo, hi = zone.zone_start_pfn, zone.end_pfn
    first = lo >> pb
    nblocks = max(0, ((hi - 1) >> pb) - first + 1) if hi > lo else 0
    block_mt = np.frombuffer(mm.pageblock_mt, dtype=np.uint8)[first : first + nblocks] & 0x7
    census = np.full(nblocks, CENSUS_NO_ALLOCATION, dtype=np.int8)
    census[_free_pageblocks(mm, zone, first, nblocks)] = CENSUS_FREE
    rows = np.flatnonzero(census != CENSUS_FREE)
    has_alloc, held, foreign = _held_by(mm, zone, first, nblocks, rows, block_mt)
    census[has_alloc] = CENSUS_MOVABLE_ONLY
    census[held] = CENSUS_UNMOVABLE
    return ZoneCensus(zone, first, census, foreign)


def _migratable(mm: Any, zone: Any, pfns: np.ndarray, flags: np.ndarray,
                info: np.ndarray) -> np.ndarray:
    """Which allocated heads compaction would migrate: the model's own test.

    As :meth:`simcore.mm.compaction.Compaction._isolate_migratepages_block` (and 6.1's
    isolate_migratepages_block()): an order-0 page on an anon or file LRU list (an anon
    page only without an extra reference: not pinned), or one on no list whose owner can
    move it (``__PageMovable()``). Compound and other order > 0 allocations (THP, the
    hugetlb pool's pages), slab pages and kernel allocations are not migrated. Page
    cache counts as migratable (the ``__GFP_FS`` of the request that compacts decides).
    """
    lists = mm.reclaim.lruvecs[zone.nid].lists_of(pfns)
    order0 = (info & ORDER_MASK) == 0
    on_lru = (lists >= 0) & (lists < LRU_SLAB)
    anon = (lists == LRU_INACTIVE_ANON) | (lists == LRU_ACTIVE_ANON)
    pinned = anon & (mm.pages.ref_np[pfns] > 1)
    movable_owner = (lists < 0) & ((flags & PG_MOVABLE_OWNER) != 0)
    return order0 & ((on_lru & ~pinned) | movable_owner)


def _held_by(mm: Any, zone: Any, first: int, nblocks: int, rows: np.ndarray,
             block_mt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pageblock of the zone: holds an allocation, an unmigratable one, a foreign one.

    Unmigratable: compaction does not migrate it (:func:`_migratable`); foreign: its
    migratetype is not the pageblock's. Only the pageblocks ``rows`` (from 0 at
    ``first``) are read; pages outside the zone (in its edge pageblocks) are left out.
    The ``mem_map`` spans whole pageblocks (it is sized in MAX_ORDER blocks), so every
    row is a full one.
    """
    pb = mm.pageblock_order
    span = slice(first << pb, (first + nblocks) << pb)
    flags = mm.pages.flags_np[span].reshape(nblocks, 1 << pb)
    info = mm.pages.info_np[span].reshape(nblocks, 1 << pb)
    if len(rows) < nblocks:
        flags, info = flags[rows], info[rows]
    allocated = _allocated(flags)
    _clip_to_zone(allocated, rows, zone, first, nblocks, pb)
    mts = info >> MT_SHIFT
    has_alloc = np.zeros(nblocks, dtype=bool)
    has_alloc[rows] = allocated.any(axis=1)
    r, c = np.nonzero(allocated)
    pfns = ((rows[r] + first) << pb) + c
    stuck = np.zeros(allocated.shape, dtype=bool)
    stuck[r, c] = ~_migratable(mm, zone, pfns, flags[r, c], info[r, c])
    held = np.zeros(nblocks, dtype=bool)
    held[rows] = stuck.any(axis=1)
    foreign = np.zeros(nblocks, dtype=bool)
    foreign[rows] = (allocated & (mts != block_mt[rows, None])).any(axis=1)
    # An allocation larger than a pageblock begins on a pageblock boundary and fills the
    # later pageblocks too: they hold it (never migrated), and the model counts them
    # mixed when their type is not its migratetype. SIMPLIFICATION: the kernel's
    # page_owner walk jumps over them when the head's own pageblock is not mixed, so it
    # counts them only after a mixed first pageblock (order-10 allocations only).
    heads = rows[allocated[:, 0] & ((info[:, 0] & ORDER_MASK) > pb)] + first
    for head in (heads << pb).tolist():
        mt = int(mm.pages.info[head]) >> MT_SHIFT
        last = min(head + (1 << (int(mm.pages.info[head]) & ORDER_MASK)), zone.end_pfn)
        later = slice((head >> pb) + 1 - first, ((last - 1) >> pb) + 1 - first)
        has_alloc[later] = True
        held[later] = True
        foreign[later] |= block_mt[later] != mt
    return has_alloc, held, foreign


def _clip_to_zone(allocated: np.ndarray, rows: np.ndarray, zone: Any, first: int,
                  nblocks: int, pb: int) -> None:
    """Clear the pages of ``allocated`` (rows ``rows``) outside the zone, in place."""
    head_pages = zone.zone_start_pfn - (first << pb)
    tail_pages = ((first + nblocks) << pb) - zone.end_pfn
    if head_pages and len(rows) and rows[0] == 0:
        allocated[0, :head_pages] = False
    if tail_pages and len(rows) and rows[-1] == nblocks - 1:
        allocated[-1, (1 << pb) - tail_pages :] = False


def _free_pageblocks(mm: Any, zone: Any, first: int, nblocks: int) -> np.ndarray:
    """Per pageblock of the zone (from 0 at ``first``): in a free block of order >= pb.

    A free buddy block of at least pageblock order begins on a pageblock boundary, so
    only those pages are read (one strided view); it covers ``1 << (order - pb)`` of them.
    """
    pb = mm.pageblock_order
    start = max(first, -(-zone.zone_start_pfn >> pb)) << pb  # the first whole pageblock
    step = 1 << pb
    orders = mm.pages.info_np[start : zone.end_pfn : step] & ORDER_MASK
    heads = (mm.pages.flags_np[start : zone.end_pfn : step] & PG_BUDDY).astype(bool)
    free = np.zeros(nblocks, dtype=bool)
    offset = (start >> pb) - first
    for extra in range(1 << max(0, zone.max_order - pb)):  # the first pageblock, the next...
        blocks = np.flatnonzero(heads & (orders >= pb + extra.bit_length())) + offset + extra
        free[blocks[blocks < nblocks]] = True
    return free


def machine_census(mm: Any) -> list[ZoneCensus]:
    """:func:`zone_census` of every zone, in ``mm.zones`` order."""
    return [zone_census(mm, zone) for zone in mm.zones]


def mixed_pageblocks(mm: Any, census: list[ZoneCensus] | None = None) -> np.ndarray:
    """Per pageblock (machine-wide numbering): True if it is mixed now.

    Mirrors the block scan of ``pagetypeinfo_showmixedcount_print()``, over every zone
    (a pageblock two zones share is mixed if either part is). ``census`` is
    :func:`machine_census` of now (computed if not given).
    """
    if census is None:
        census = machine_census(mm)
    mixed = np.zeros(len(mm.pageblock_mt), dtype=bool)
    for zc in census:
        mixed[zc.first : zc.first + len(zc.foreign)] |= zc.foreign
    return mixed


def census_counts(zc: ZoneCensus, mixed: np.ndarray) -> dict[str, int]:
    """One zone's pageblocks: how many in all, in each class, and mixed (``mixed`` mask)."""
    counts = np.bincount(zc.census, minlength=len(ts.CENSUS_CLASSES))
    return {"pageblocks": len(zc.census),
            **{name: int(counts[i]) for i, name in enumerate(ts.CENSUS_CLASSES)},
            "mixed": int(mixed[zc.first : zc.first + len(zc.census)].sum())}


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


def pageblock_census(mm: Any, mixed: np.ndarray,
                     census: list[ZoneCensus] | None = None) -> dict[str, dict[str, int]]:
    """Per node: the sum of its zones' :func:`census_counts`.

    Partial pageblocks at a zone's edge count as whole ones (in each zone they touch).
    ``census`` is :func:`machine_census` of now (computed if not given).
    """
    if census is None:
        census = machine_census(mm)
    out: dict[str, dict[str, int]] = {
        str(node.nid): dict.fromkeys(("pageblocks", *ts.CENSUS_CLASSES, "mixed"), 0)
        for node in mm.nodes}
    for zc in census:
        node = out[str(zc.zone.nid)]
        for name, value in census_counts(zc, mixed).items():
            node[name] += value
    return out


def rescan_census(machine: Any) -> tuple[list[ZoneCensus], np.ndarray]:
    """Census the pageblocks now and forget the charge of every block that is clean.

    Deferred frees due by now are applied and the current context's claims charged
    first. Returns :func:`machine_census` and the mixed mask (:func:`mixed_pageblocks`).
    """
    machine.apply_pending_frees()
    machine.charge_context()
    census = machine_census(machine.mm)
    mixed = mixed_pageblocks(machine.mm, census)
    machine.pb_polluter[~mixed] = -1
    return census, mixed


def rescan(machine: Any) -> np.ndarray:
    """:func:`rescan_census`'s mixed mask."""
    return rescan_census(machine)[1]


def mixed_by_caller(machine: Any, mixed: np.ndarray) -> dict[str, int]:
    """Mixed blocks per charged caller (``(unattributed)`` for uncharged ones)."""
    who = machine.pb_polluter[mixed]
    counts = np.bincount(who + 1, minlength=len(machine._owner_list) + 1)
    out = {owner.name: int(counts[owner.idx + 1]) for owner in machine._owner_list
           if counts[owner.idx + 1]}
    if counts[0]:
        out[UNATTRIBUTED] = int(counts[0])
    return out


def pollution_summary(machine: Any,
                      scan: tuple[list[ZoneCensus], np.ndarray] | None = None) -> dict[str, Any]:
    """``summary.json``'s ``pollution`` section at the end of a run.

    ``scan`` is :func:`rescan_census` of now (run here if not given).
    """
    census, mixed = scan if scan is not None else rescan_census(machine)
    owners = machine._owner_list
    return {
        "mixed_pageblocks": int(mixed.sum()),
        "mixed_by_pageblock_type": mixed_count_by_type(machine.mm, mixed),
        "by_caller": mixed_by_caller(machine, mixed),
        "by_node": pageblock_census(machine.mm, mixed, census),
        "charged_by_caller": {o.name: o.polluted for o in owners if o.polluted},
        "extfrag_by_caller": {o.name: o.extfrag for o in owners if o.extfrag},
    }
