"""A real host's allocated memory, sized from ``/proc/meminfo``, given to owners.

After :mod:`simcore.sim.freestate` has rebuilt a zone's free lists, every other managed
page of the zone is allocated. This module says to whom, as order-0 pages held without
handles (:class:`~simcore.sim.heldpages.HeldPages`):

=====================  =========================================  ==========  ===========
owner                  meminfo (pages)                            pageblocks  reclaim
=====================  =========================================  ==========  ===========
``host:pcp``           the zone's pcp ``count``s (zoneinfo): free  any         (free)
                       pages on the model's pcp lists
``host:slab_reclaim``  SReclaimable x the unused share of         RECLAIMABLE slab shrinker
                       dentries and inodes (``dentry-state``,
                       ``inode-state``; none without them)
``host:slab_in_use``   the rest of SReclaimable                   RECLAIMABLE none
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
the slab shrinker's list, except the share whose objects are in use: the kernel's
shrinkers count only the dentries and inodes on their LRU lists (``super_cache_count()``),
which ``SReclaimable`` does not show, so ``host:slab_in_use`` holds the rest as
accounted-reclaimable slab that no shrinker frees (:mod:`simcore.formats.fsstate`).

The host's pcp pages (free, but on no buddy list: not in pagetypeinfo's free table nor in
``nr_free_pages``) go on the model's pcp lists of the same CPUs (:func:`fill_pcp_lists`).

SIMPLIFICATIONS: the host's processes are one OOM candidate (``host:anon``); huge pages
(``HugePages_Total``) are kernel memory, not a hugetlb pool; every page is order 0 (no
THP, no large folios) and clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from simcore.mm.constants import (
    MIGRATE_PCPTYPES,
    MT_HIGHATOMIC,
    MT_MOVABLE,
    MT_RECLAIMABLE,
    MT_UNMOVABLE,
)
from simcore.mm.lru import (
    KIND_ANON,
    KIND_FILE,
    KIND_SLAB,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    SLAB,
    SLAB_IN_USE,
    ZONE_SHIFT,
)
from simcore.mm.pages import MT_SHIFT, PG_ALLOC, PG_MOVABLE_OWNER, PG_PCP
from simcore.mm.pcp import order_to_pindex
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
        in_use: Slab accounted reclaimable that no shrinker counts
            (:data:`simcore.mm.lru.SLAB_IN_USE`).
    """

    name: str
    kind: int
    mt: int
    prefer: tuple[int, ...]
    killable: bool = False
    in_use: bool = False


_MOVABLE_PREF = (MT_MOVABLE, MT_RECLAIMABLE, MT_UNMOVABLE, MT_HIGHATOMIC)
_RECLAIMABLE_PREF = (MT_RECLAIMABLE, MT_UNMOVABLE, MT_MOVABLE, MT_HIGHATOMIC)
PCP = HostOwner("host:pcp", -1, MT_MOVABLE, _MOVABLE_PREF)
OWNERS = (
    PCP,
    HostOwner("host:slab_reclaim", KIND_SLAB, MT_RECLAIMABLE, _RECLAIMABLE_PREF),
    HostOwner("host:slab_in_use", KIND_SLAB, MT_RECLAIMABLE, _RECLAIMABLE_PREF, in_use=True),
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
        if owner is PCP:
            continue  # free pages: fill_pcp_lists()
        handle = machine.register_owner(owner.name, owner.kind, killable=owner.killable)
        pfns = np.concatenate(pfns_by_owner.get(i, [])).astype(np.int64) \
            if pfns_by_owner.get(i) else np.zeros(0, dtype=np.int64)
        if not len(pfns):
            continue
        flags = PG_ALLOC | (PG_MOVABLE_OWNER if owner.mt == MT_MOVABLE and owner.kind >= 0
                            else 0)
        pages.ref_np[pfns] = 1
        pages.flags_np[pfns] = flags
        pages.info_np[pfns] = owner.mt << MT_SHIFT
        machine.held.hold(pfns, handle.idx)
        handle.pages += len(pfns)
        if owner.kind >= 0:
            _lru_add(machine, pfns, owner.kind, active_share.get(owner.name, 0.0), rng,
                     owner.in_use)


def fill_pcp_lists(machine: Machine, pfns: np.ndarray,
                   counts: dict[int, list[tuple[int, int]]]) -> list[str]:
    """Put the host's pcp pages on the model's pcp lists, as the host had them.

    ``pfns`` are the pages :func:`assign_node` set aside for ``host:pcp``; ``counts[i]``
    lists ``(cpu, count)`` for zone ``mm.zones[i]`` (zoneinfo's ``pagesets``). Each page
    is an order-0 block on the list of its pageblock's type (HIGHATOMIC's on MOVABLE's,
    with the type cached, as ``free_unref_page()`` puts it), at the tail, so a CPU's
    next allocations take them before any refill. A CPU the machine lacks gives its
    pages to CPU ``cpu % nr_cpus`` (said in the returned notes).

    SIMPLIFICATION: zoneinfo gives each CPU's page count only, not its orders or
    migratetypes; the host's pcp pages are taken as order 0 in the pageblocks
    :func:`assign_node` chose (movable first). A THP host's pcp lists can hold free
    order-9 blocks (pageblock_order is a pcp order), which this scatters.
    """
    mm = machine.mm
    notes: list[str] = []
    if not len(pfns):
        return notes
    pfns = np.sort(pfns)
    zone_of = np.frombuffer(mm.pb_zone, dtype=np.uint8)[pfns >> mm.pageblock_order]
    block_mt = np.frombuffer(mm.pageblock_mt, dtype=np.uint8)
    pages = mm.pages
    for i, zone in enumerate(mm.zones):
        mine = pfns[zone_of == i].tolist()
        sets = zone.per_cpu_pageset
        at = 0
        for cpu, count in counts.get(i, []):
            if not sets:
                break
            if cpu >= len(sets):
                notes.append(f"node {zone.nid} {zone.name}: the host's CPU {cpu} has no "
                             f"pcp in the machine; its {count} pcp pages go to CPU "
                             f"{cpu % len(sets)}")
            pcp = sets[cpu % len(sets)]
            for pfn in mine[at : at + count]:
                mt = int(block_mt[pfn >> mm.pageblock_order]) & 7
                pcp_mt = MT_MOVABLE if mt >= MIGRATE_PCPTYPES else mt
                pcp.page_lists.add_tail(pcp.heads[order_to_pindex(pcp_mt, 0)], pfn)
                pages.info[pfn] = mt << MT_SHIFT
                pages.flags[pfn] = PG_PCP
                pages.ref[pfn] = 0
                pcp.count += 1
            at += count
    return notes


def _lru_add(machine: Machine, pfns: np.ndarray, kind: int, active: float,
             rng: np.random.Generator, in_use: bool = False) -> None:
    """Put ``pfns`` on their nodes' lists of ``kind``, in a seeded order.

    Slab ``in_use`` goes on the list no shrinker scans.
    """
    mm = machine.mm
    zone_of = np.frombuffer(mm.pb_zone, dtype=np.uint8)[pfns >> mm.pageblock_order]
    zone_idx = np.array([z.zone_idx for z in mm.zones], dtype=np.int32)[zone_of]
    nids = np.array([z.nid for z in mm.zones], dtype=np.int32)[zone_of]
    packed = (zone_idx << ZONE_SHIFT).astype(np.int32)  # order 0
    if kind == KIND_SLAB:
        lists = (SLAB_IN_USE, SLAB_IN_USE) if in_use else (SLAB, SLAB)
    elif kind == KIND_FILE:
        lists = (LRU_ACTIVE_FILE, LRU_INACTIVE_FILE)
    else:
        lists = (LRU_ACTIVE_ANON, LRU_INACTIVE_ANON)
    for lv in mm.reclaim.lruvecs:
        mine = np.flatnonzero(nids == lv.nid)
        if not len(mine):
            continue
        mine = mine[rng.permutation(len(mine))]
        n_active = round(len(mine) * active) if kind != KIND_SLAB else 0
        for where, part in ((lists[0], mine[:n_active]), (lists[1], mine[n_active:])):
            if len(part):
                lv.add_bulk(pfns[part], where, packed[part])
