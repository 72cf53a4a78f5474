"""A zone's free lists and pageblock labels rebuilt from a real host's ``/proc/pagetypeinfo``.

Given, per zone, the free blocks per order and migratetype and the pageblocks per
migratetype (the two tables of ``pagetypeinfo_show()``, mm/vmstat.c), :func:`place_zone`
chooses where they are: a pfn for every free block and a migratetype for every pageblock
the kernel's table counts, such that

- each free block is aligned to its order and lies in the zone's managed pages, and no two
  overlap;
- merging is complete: no two free buddies of equal order (``__free_one_page()`` would
  have merged them), so every pageblock that holds free blocks below pageblock order
  keeps at least one allocated page;
- a free block sits in pageblocks of its own migratetype where the counts allow, else in
  a fallback type's (the kernel's ``fallbacks[]`` order), as a steal that did not claim the
  block leaves it;
- the counts are exactly the snapshot's.

Free blocks of pageblock order and above take whole pageblocks (at most one of a buddy
pair per order below ``max_order``); the smaller ones are spread round-robin over the
pageblocks of their type, largest order first, each split off a pageblock's free space as
``expand()`` splits a block (the split's buddy half keeps an allocated page). The
pageblocks are visited in an order drawn from the run's seed, so the placement is
deterministic. :func:`write_free_lists` then builds the lists in bulk, each in ascending
pfn order.

SIMPLIFICATION: the host's real pfns are not known (pagetypeinfo has only counts): the
placement is one state with the host's counts, not the host's state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from simcore.formats.snapshots import has_struct_page
from simcore.mm.constants import (
    MIGRATE_TYPES,
    MT_CMA,
    MT_HIGHATOMIC,
    MT_ISOLATE,
    MT_MOVABLE,
    MT_RECLAIMABLE,
    MT_UNMOVABLE,
)
from simcore.mm.pages import MT_SHIFT, PG_BUDDY

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone

FALLBACKS = {
    MT_UNMOVABLE: (MT_RECLAIMABLE, MT_MOVABLE, MT_HIGHATOMIC),
    MT_MOVABLE: (MT_RECLAIMABLE, MT_UNMOVABLE, MT_HIGHATOMIC),
    MT_RECLAIMABLE: (MT_UNMOVABLE, MT_MOVABLE, MT_HIGHATOMIC),
    MT_HIGHATOMIC: (MT_UNMOVABLE, MT_MOVABLE, MT_RECLAIMABLE),
}
"""Where a free block goes when its own type's pageblocks have no room: the kernel's
``fallbacks[]`` (mm/page_alloc.c), then HIGHATOMIC."""
LABEL_ORDER = (MT_UNMOVABLE, MT_RECLAIMABLE, MT_HIGHATOMIC, MT_MOVABLE)
"""The order in which the pageblocks left after the large free blocks get their labels."""


@dataclass
class ZoneTarget:
    """What a zone must look like: the two pagetypeinfo tables, by internal migratetype.

    Attributes:
        free: ``free[order][mt]``: free blocks on each list.
        blocks: ``blocks[mt]``: pageblocks labelled with each migratetype.
    """

    free: np.ndarray
    blocks: np.ndarray


@dataclass
class ZonePlacement:
    """Where :func:`place_zone` put things.

    Attributes:
        blocks: The pageblocks the zone's pagetypeinfo counts (pfn >> pageblock_order).
        labels: The migratetype of each of them.
        pfn, order, mt: The free blocks.
        notes: Where the placement could not follow the target (empty: it did).
    """

    blocks: np.ndarray
    labels: np.ndarray
    pfn: np.ndarray
    order: np.ndarray
    mt: np.ndarray
    notes: list[str] = field(default_factory=list)


class _Space:
    """The free space left in one pageblock, as aligned regions (offsets in the block).

    ``open[k]`` holds regions of order ``k`` that may become one free block of order
    ``k``; ``guarded[k]`` those that must keep an allocated page (the buddy of a free
    block of order ``k``, or a whole pageblock), so only smaller blocks go there.
    """

    __slots__ = ("base", "open", "guarded")

    def __init__(self, base: int, pb_order: int) -> None:
        self.base = base
        self.open: list[list[int]] = [[] for _ in range(pb_order + 1)]
        self.guarded: list[list[int]] = [[] for _ in range(pb_order + 1)]

    def take(self, order: int) -> int:
        """The pfn of a new free block of ``order`` here, or -1 if none fits."""
        if self.open[order]:
            return self.base + self.open[order].pop()
        for k in range(order + 1, len(self.open)):
            regions = self.guarded[k] or self.open[k]
            if regions:
                off = regions.pop()
                # as expand(): the upper halves become free space, the buddy one guarded
                self.guarded[order].append(off + (1 << order))
                for j in range(order + 1, k):
                    self.open[j].append(off + (1 << j))
                return self.base + off
        return -1


def counted_blocks(zone: Zone) -> np.ndarray:
    """The pageblocks ``pagetypeinfo_showblockcount_print()`` counts for ``zone``."""
    nr = 1 << zone.pageblock_order
    return np.array([pfn >> zone.pageblock_order
                     for pfn in range(zone.zone_start_pfn, zone.end_pfn, nr)
                     if has_struct_page(zone.present_ranges, pfn)], dtype=np.int64)


def managed_in(mm: PageAllocator, zone_index: int, lo: int, hi: int) -> np.ndarray:
    """Per pfn of ``lo .. hi-1``: managed by zone ``mm.zones[zone_index]``."""
    mask = np.zeros(hi - lo, dtype=bool)
    for a, b in mm.managed_ranges[zone_index]:
        a, b = max(a, lo), min(b, hi)
        if a < b:
            mask[a - lo : b - lo] = True
    return mask


def place_zone(mm: PageAllocator, zone_index: int, target: ZoneTarget,
               rng: np.random.Generator) -> ZonePlacement:
    """Place ``target``'s free blocks and pageblock labels in zone ``mm.zones[zone_index]``."""
    zone = mm.zones[zone_index]
    pb = zone.pageblock_order
    blocks = counted_blocks(zone)
    out = ZonePlacement(blocks, np.full(len(blocks), MT_MOVABLE, dtype=np.int64),
                        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    if not len(blocks):
        return out
    lo, hi = int(blocks[0]) << pb, (int(blocks[-1]) + 1) << pb
    managed = managed_in(mm, zone_index, lo, hi).reshape(-1, 1 << pb)[blocks - blocks[0]]
    full = managed.all(axis=1)
    want = target.blocks.astype(np.int64).copy()
    if want.sum() != len(blocks):
        out.notes.append(f"{zone}: the snapshot counts {int(want.sum())} pageblocks, the "
                         f"model's zone {len(blocks)}")
    frees: list[tuple[int, int, int]] = []
    used = np.zeros(len(blocks), dtype=bool)
    labelled = np.zeros(len(blocks), dtype=bool)
    _place_large(zone, target, blocks, full, used, labelled, want, out, frees, rng)
    _label_rest(zone, blocks, managed.sum(axis=1), labelled, want, out, rng)
    pools = _spaces(blocks, managed, full, used, out.labels, pb, rng)
    _place_small(zone, target, pools, frees, out)
    if frees:
        arr = np.array(frees, dtype=np.int64)
        out.pfn, out.order, out.mt = arr[:, 0], arr[:, 1], arr[:, 2]
    return out


def _take_label(mt: int, n: int, want: np.ndarray) -> int:
    """The label for ``n`` pageblocks of a free block of type ``mt``: its own if counts allow."""
    for label in (mt, *FALLBACKS.get(mt, ())):
        if want[label] >= n:
            want[label] -= n
            return label
    return mt


def _place_large(zone: Zone, target: ZoneTarget, blocks: np.ndarray, full: np.ndarray,
                 used: np.ndarray, labelled: np.ndarray, want: np.ndarray,
                 out: ZonePlacement, frees: list[tuple[int, int, int]],
                 rng: np.random.Generator) -> None:
    """Free blocks of pageblock order and above: whole, aligned groups of full pageblocks."""
    pb = zone.pageblock_order
    index = {int(b): i for i, b in enumerate(blocks.tolist())}
    for order in range(zone.max_order, pb - 1, -1):
        k = 1 << (order - pb)
        need = [(mt, int(target.free[order][mt])) for mt in range(MIGRATE_TYPES)]
        total = sum(n for _, n in need)
        if not total:
            continue
        starts = [i for i, b in enumerate(blocks.tolist()) if not b % k
                  and all(index.get(b + j, -1) == i + j and full[i + j] and not used[i + j]
                          for j in range(k))]
        starts = [starts[j] for j in rng.permutation(len(starts))]
        if order < zone.max_order:
            starts = _one_per_buddy_pair(starts, blocks, k)
        for mt, n in need:
            for _ in range(n):
                if not starts:
                    out.notes.append(f"{zone}: no room for a free order-{order} block "
                                     f"of migratetype {mt}")
                    break
                i = starts.pop()
                label = _take_label(mt, k, want)
                used[i : i + k] = labelled[i : i + k] = True
                out.labels[i : i + k] = label
                frees.append((int(blocks[i]) << pb, order, mt))


def _one_per_buddy_pair(starts: list[int], blocks: np.ndarray, k: int) -> list[int]:
    """The first of ``starts`` in each buddy pair: two free buddies would have merged."""
    parents: set[int] = set()
    out = []
    for i in starts:
        parent = int(blocks[i]) // (2 * k)
        if parent not in parents:
            parents.add(parent)
            out.append(i)
    return out


def _label_rest(zone: Zone, blocks: np.ndarray, nr_managed: np.ndarray, labelled: np.ndarray,
                want: np.ndarray, out: ZonePlacement, rng: np.random.Generator) -> None:
    """Label the other pageblocks to reach the target counts.

    A block the model left UNMOVABLE at boot (its first pfn is not RAM) stays so while
    the count allows; the rest are taken in the seeded order, full blocks first and
    blocks without managed pages last, so these stay MOVABLE as memmap_init_range()
    left them (nothing is ever allocated there to change that).
    """
    rest = [i for i in range(len(blocks)) if not labelled[i]]
    boot_unmovable = [i for i in rest
                      if zone.get_pageblock_migratetype(int(blocks[i]) << zone.pageblock_order)
                      == MT_UNMOVABLE]
    for i in boot_unmovable[: max(0, int(want[MT_UNMOVABLE]))]:
        out.labels[i] = MT_UNMOVABLE
        labelled[i] = True
        want[MT_UNMOVABLE] -= 1
    rest = [rest[j] for j in rng.permutation(len(rest)) if not labelled[rest[j]]]
    full = 1 << zone.pageblock_order
    rest.sort(key=lambda i: (nr_managed[i] < full, nr_managed[i] == 0))  # stable: seeded
    for mt in LABEL_ORDER:
        n = max(0, int(want[mt])) if mt != MT_MOVABLE else len(rest)
        for i in rest[:n]:
            out.labels[i] = mt
        rest = rest[n:]
        want[mt] -= n
    for mt in (MT_CMA, MT_ISOLATE):
        if want[mt] > 0:
            out.notes.append(f"{zone}: {int(want[mt])} pageblocks of migratetype {mt} "
                             "labelled MOVABLE (not modelled)")


def _spaces(blocks: np.ndarray, managed: np.ndarray, full: np.ndarray, used: np.ndarray,
            labels: np.ndarray, pb: int,
            rng: np.random.Generator) -> dict[int, list[_Space]]:
    """The free space of each pageblock not taken by a large free block, by label."""
    pools: dict[int, list[_Space]] = {mt: [] for mt in range(MIGRATE_TYPES)}
    for i in rng.permutation(len(blocks)).tolist():
        if used[i] or not managed[i].any():
            continue
        space = _Space(int(blocks[i]) << pb, pb)
        if full[i]:
            space.guarded[pb].append(0)
        else:
            for off, order in _aligned_runs(managed[i]):
                space.open[order].append(off)
        pools[int(labels[i])].append(space)
    return pools


def _aligned_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal naturally aligned blocks ``(offset, order)`` covering the True runs of ``mask``."""
    out = []
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    for start, end in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        pfn = start
        while pfn < end:
            order = (pfn & -pfn).bit_length() - 1 if pfn else len(mask).bit_length() - 1
            while pfn + (1 << order) > end:
                order -= 1
            out.append((pfn, order))
            pfn += 1 << order
    return out


def _place_small(zone: Zone, target: ZoneTarget, pools: dict[int, list[_Space]],
                 frees: list[tuple[int, int, int]], out: ZonePlacement) -> None:
    """Free blocks below pageblock order, largest first, round-robin over their pools."""
    for order in range(zone.pageblock_order - 1, -1, -1):
        for mt in range(MIGRATE_TYPES):
            n = int(target.free[order][mt])
            for label in (mt, *FALLBACKS.get(mt, ())):
                if n:
                    n -= _fill(pools[label], order, mt, n, frees)
            if n:
                out.notes.append(f"{zone}: no room for {n} free order-{order} blocks of "
                                 f"migratetype {mt}")


def _fill(pool: list[_Space], order: int, mt: int, n: int,
          frees: list[tuple[int, int, int]]) -> int:
    """Place up to ``n`` blocks, one per pageblock in turn; returns how many.

    The pool is rotated so the next call continues where this one stopped.
    """
    placed = 0
    active = list(pool)
    while placed < n and active:
        keep = []
        for space in active:
            if placed == n:
                break
            pfn = space.take(order)
            if pfn >= 0:  # a pageblock with no room for this order leaves the round
                frees.append((pfn, order, mt))
                placed += 1
                keep.append(space)
        active = keep
    if pool:
        shift = placed % len(pool)
        pool[:] = pool[shift:] + pool[:shift]
    return placed


def write_free_lists(mm: PageAllocator, zone_index: int, placement: ZonePlacement) -> None:
    """Replace the zone's free lists and pageblock labels with ``placement``.

    The zone must hold only free blocks (no allocation, empty pcp lists): its lists are
    emptied, and each list is then built in one operation, in ascending pfn order.
    """
    zone = mm.zones[zone_index]
    fa = zone.free_area
    for order in range(zone.max_order + 1):
        for mt in range(MIGRATE_TYPES):
            for pfn in list(fa.iter_list(order, mt)):
                fa.remove(pfn, order, mt)
    for block, label in zip(placement.blocks.tolist(), placement.labels.tolist(), strict=True):
        mm.pageblock_mt[block] = label
    info, flags = mm.pages.info_np, mm.pages.flags_np
    sort = np.lexsort((placement.pfn, placement.mt, placement.order))
    pfns, orders, mts = placement.pfn[sort], placement.order[sort], placement.mt[sort]
    info[pfns] = (orders | mts << MT_SHIFT).astype(np.uint8)
    flags[pfns] |= PG_BUDDY
    keys = orders * MIGRATE_TYPES + mts
    for key in np.unique(keys).tolist():
        chosen = pfns[keys == key]
        fa.lists.add_bulk(fa.heads[key], chosen, tail=True)
        fa.count[key] += len(chosen)
        fa.nr_free[key // MIGRATE_TYPES] += len(chosen)
    isolate = mts == MT_ISOLATE
    zone.nr_free_pages = int(np.sum(np.left_shift(1, orders[~isolate])))
    zone.nr_reserved_highatomic = int(np.count_nonzero(placement.labels == MT_HIGHATOMIC)
                                      ) << zone.pageblock_order
