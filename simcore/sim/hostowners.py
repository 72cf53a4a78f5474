"""A real host's allocated memory, sized from ``/proc/meminfo``, given to owners.

After :mod:`simcore.sim.freestate` has rebuilt a zone's free lists, every other managed
page of the zone is allocated. This module says to whom, as order-0 pages held without
handles (:class:`~simcore.sim.heldpages.HeldPages`):

=====================  =========================================  ==========  ===========
owner                  meminfo (pages)                            pageblocks  reclaim
=====================  =========================================  ==========  ===========
``host:pcp``           the zone's pcp ``count``s (zoneinfo)        any         none
``host:slab_reclaim``  SReclaimable                               RECLAIMABLE slab shrinker
``host:page_cache``    Cached + Buffers - Shmem (node: FilePages   MOVABLE     file LRU
                       - Shmem - SwapCached)
``host:anon``          AnonPages                                  MOVABLE     anon LRU
``host:shmem``         Shmem                                      MOVABLE     anon LRU
``host:kernel``        the rest: SUnreclaim, KernelStack,         UNMOVABLE   none
                       PageTables, vmalloc, hugetlb, unaccounted
=====================  =========================================  ==========  ===========

Each owner takes pages from the pageblocks of its own type first, then of its fallback
types (as ``__rmqueue_fallback()`` would have put them), split over the node's zones in
proportion to what each zone has left; ``host:kernel`` takes whatever remains. Within a
zone and pageblock type the owners take consecutive runs of pages, the pageblocks in an
order drawn from the run's seed, so most pageblocks belong to one owner. Page-cache and
anonymous pages are on their LRU lists (active and inactive in meminfo's proportions, in
a seeded order) and movable, so reclaim and compaction act on them; reclaimable slab is on
the slab shrinker's list.

SIMPLIFICATIONS: the host's pcp pages (free, but on no buddy list: not in pagetypeinfo's
free table nor in ``nr_free_pages``) stay allocated to ``host:pcp`` and the model's pcp
lists start empty; the host's processes are one OOM candidate (``host:anon``); huge pages
(``HugePages_Total``) are kernel memory, not a hugetlb pool; every page is order 0 (no
THP, no large folios) and clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from simcore.mm.constants import MT_HIGHATOMIC, MT_MOVABLE, MT_RECLAIMABLE, MT_UNMOVABLE
from simcore.mm.lru import (
    KIND_ANON,
    KIND_FILE,
    KIND_SLAB,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    SLAB,
    ZONE_SHIFT,
)
from simcore.mm.pages import MT_SHIFT, PG_ALLOC, PG_MOVABLE_OWNER
from simcore.sim.heldpages import HeldPages

if TYPE_CHECKING:
    from simcore.sim.machine import Machine

TYPES = (MT_UNMOVABLE, MT_MOVABLE, MT_RECLAIMABLE, MT_HIGHATOMIC)
"""The pageblock types allocated pages sit in (columns of the capacity table)."""


@dataclass(frozen=True)
class HostOwner:
    """One owner of a host's memory: how it is held and where it goes.

    Attributes:
        name: Its name (``host:...``; ``:`` is not allowed in workload names).
        kind: ``simcore.mm.lru.KIND_*``, or -1: memory reclaim cannot take back.
        mt: The migratetype its pages were requested with.
        prefer: Pageblock types in the order it takes pages from them.
        killable: The OOM killer may choose it.
    """

    name: str
    kind: int
    mt: int
    prefer: tuple[int, ...]
    killable: bool = False


_MOVABLE_PREF = (MT_MOVABLE, MT_RECLAIMABLE, MT_UNMOVABLE, MT_HIGHATOMIC)
PCP = HostOwner("host:pcp", -1, MT_MOVABLE, _MOVABLE_PREF)
OWNERS = (
    PCP,
    HostOwner("host:slab_reclaim", KIND_SLAB, MT_RECLAIMABLE,
              (MT_RECLAIMABLE, MT_UNMOVABLE, MT_MOVABLE, MT_HIGHATOMIC)),
    HostOwner("host:page_cache", KIND_FILE, MT_MOVABLE, _MOVABLE_PREF),
    HostOwner("host:anon", KIND_ANON, MT_MOVABLE, _MOVABLE_PREF, killable=True),
    HostOwner("host:shmem", KIND_ANON, MT_MOVABLE, _MOVABLE_PREF),
    HostOwner("host:kernel", -1, MT_UNMOVABLE,
              (MT_UNMOVABLE, MT_HIGHATOMIC, MT_RECLAIMABLE, MT_MOVABLE)),
)
"""In the order they take pages (``host:kernel``, last, takes the rest)."""
KERNEL = OWNERS[-1]


def split(total: int, caps: np.ndarray) -> np.ndarray:
    """Up to ``total`` pages split over ``caps`` in proportion (largest remainder)."""
    caps = caps.astype(np.int64)
    room = int(caps.sum())
    take = min(total, room)
    if take <= 0:
        return np.zeros_like(caps)
    share = caps * take // room
    frac = caps * take - share * room
    left = take - int(share.sum())
    for i in np.lexsort((np.arange(len(caps)), -frac))[:left].tolist():
        share[i] += 1
    return share


def assign_node(pcp: np.ndarray, caps: np.ndarray, wanted: dict[str, int]) -> np.ndarray:
    """Pages per (zone, pageblock type, owner) for one node.

    Args:
        pcp: Per zone: the pages ``host:pcp`` holds there.
        caps: ``caps[zone][t]``: allocated pages in pageblocks of type ``TYPES[t]``.
        wanted: Owner name -> pages (meminfo); ``host:kernel`` gets the rest.

    Returns:
        ``amounts[zone][t][owner]`` (owners as :data:`OWNERS`).
    """
    left = caps.astype(np.int64).copy()
    amounts = np.zeros((*caps.shape, len(OWNERS)), dtype=np.int64)
    for z in range(len(pcp)):  # the pcp pages are where they are: their own zone
        on_pcp = int(pcp[z])
        for mt in PCP.prefer:
            t = TYPES.index(mt)
            took = min(on_pcp, int(left[z][t]))
            amounts[z][t][0] += took
            left[z][t] -= took
            on_pcp -= took
    need = [0] + [wanted.get(o.name, 0) for o in OWNERS[1:-1]]
    need.append(max(0, int(left.sum()) - sum(need)))
    for rank in range(len(TYPES)):  # everyone's first choice, then everyone's second ...
        for i, owner in enumerate(OWNERS[1:], start=1):
            t = TYPES.index(owner.prefer[rank])
            got = split(need[i], left[:, t])
            amounts[:, t, i] += got
            left[:, t] -= got
            need[i] -= int(got.sum())
    return amounts


def hold_pages(machine: Machine, pfns_by_owner: dict[int, list[np.ndarray]],
               active_share: dict[str, float], rng: np.random.Generator) -> None:
    """Give each owner its pages: per-page state, LRU lists and the held-pages map.

    ``pfns_by_owner[i]`` holds the pfn arrays of owner ``OWNERS[i]`` (one per zone);
    ``active_share`` the fraction of each LRU kind on its active list (meminfo's).
    """
    mm = machine.mm
    if machine.held is None:
        machine.held = HeldPages(mm.pages.nr_pages)
    pages = mm.pages
    for i, owner in enumerate(OWNERS):
        handle = machine.register_owner(owner.name, owner.kind, killable=owner.killable)
        pfns = np.concatenate(pfns_by_owner.get(i, [])).astype(np.int64) \
            if pfns_by_owner.get(i) else np.zeros(0, dtype=np.int64)
        if not len(pfns):
            continue
        flags = PG_ALLOC | (PG_MOVABLE_OWNER if owner.mt == MT_MOVABLE and owner.kind >= 0
                            else 0)
        pages.ref_np[pfns] = 1
        pages.flags_np[pfns] = flags
        if owner is PCP:  # free pages really: they keep their pageblock's type
            mts = np.frombuffer(mm.pageblock_mt, dtype=np.uint8)[pfns >> mm.pageblock_order] & 7
            pages.info_np[pfns] = (mts << MT_SHIFT).astype(np.uint8)
        else:
            pages.info_np[pfns] = owner.mt << MT_SHIFT
        machine.held.hold(pfns, handle.idx)
        handle.pages += len(pfns)
        if owner.kind >= 0:
            _lru_add(machine, pfns, owner.kind, active_share.get(owner.name, 0.0), rng)


def _lru_add(machine: Machine, pfns: np.ndarray, kind: int, active: float,
             rng: np.random.Generator) -> None:
    """Put ``pfns`` on their nodes' lists of ``kind``, in a seeded order."""
    mm = machine.mm
    zone_of = np.frombuffer(mm.pb_zone, dtype=np.uint8)[pfns >> mm.pageblock_order]
    zone_idx = np.array([z.zone_idx for z in mm.zones], dtype=np.int32)[zone_of]
    nids = np.array([z.nid for z in mm.zones], dtype=np.int32)[zone_of]
    packed = (zone_idx << ZONE_SHIFT).astype(np.int32)  # order 0
    if kind == KIND_SLAB:
        lists = (SLAB, SLAB)
    elif kind == KIND_FILE:
        lists = (LRU_ACTIVE_FILE, LRU_INACTIVE_FILE)
    else:
        lists = (LRU_ACTIVE_ANON, LRU_INACTIVE_ANON)
    for lv in mm.reclaim.lruvecs:
        mine = np.flatnonzero(nids == lv.nid)
        if not len(mine):
            continue
        mine = mine[rng.permutation(len(mine))]
        n_active = round(len(mine) * active) if lists[0] != SLAB else 0
        for where, part in ((lists[0], mine[:n_active]), (lists[1], mine[n_active:])):
            if len(part):
                lv.add_bulk(pfns[part], where, packed[part])
