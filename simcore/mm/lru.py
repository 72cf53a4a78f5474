"""The LRU lists of one node (``struct lruvec``) and the reclaimable slab it holds.

Mirrors the classic two-list LRU of include/linux/mmzone.h and mm/swap.c (6.1 with
MGLRU off, the oracle kernel's default): per node an inactive and an active list for
anonymous and for file-backed pages, with per-zone page counts
(``NR_ZONE_INACTIVE_FILE`` ...). New pages enter the inactive list
(``folio_add_lru()``; since 5.9 anonymous pages start inactive too).

Entries are allocations (a head pfn and its order), not pages. The lists are intrusive
lists of the engine's :class:`~simcore.mm.freelist.PageLists`, one set per node: the
head page's ``PageArray.lru`` slot holds its list node, as the kernel links
``folio->lru`` of the head page (an allocated page is on no free list, so the slot is
free to reuse; the owner takes a block off its LRU list before freeing it). Each node
also carries a packed int32 (order, zone index, dirty and referenced bits, and which
list holds it) in :attr:`Lruvec.meta`. Memory is 20 bytes per listed allocation, in
typed arrays, and no Python object is created per entry.

Like the kernel, new pages, and pages reclaim keeps or activates, go to a list's head
(``list_add()``), and reclaim isolates from its tail (``lru_to_folio()``);
``folio_rotate_reclaimable()`` (a written-back page, ``pgrotated``) puts a folio at the
tail.

SIMPLIFICATION: a page joins its list at once; the kernel batches additions and
rotations per CPU (``folio_add_lru()`` fills a pagevec of 15 first), so up to 15 pages
per CPU are invisible to its reclaim and its ``nr_*`` counters for a while.

SIMPLIFICATION: there are no page-table accesses. A caller marks a page *hot* when it
allocates it (a workload parameter): it stays in use, so reclaim finds its pte young at
every scan. ``folio_check_references()`` then keeps it on the first scan (and sets
``PG_referenced``) and activates it on the next; the active list sends it back to the
inactive one (it is not executable file memory) with ``PG_referenced`` still set, so
from then on each inactive scan activates it again at once: a hot page is never
reclaimed. A page-cache page that is read through ``read()`` (not mapped) is marked
accessed by its owner instead (:meth:`Lruvec.mark_accessed`, ``folio_mark_accessed()``):
the first access sets ``PG_referenced``, the next one moves it to the active list.
Reclaim clears ``PG_referenced`` of an unmapped page and frees it if it is clean
(``FOLIOREF_RECLAIM_CLEAN``). Every other page is used once, when allocated, and is
reclaimed the first time reclaim reaches it.
Reclaimable slab is one list per node (one shrinker), in pages: the kernel shrinks
objects, and a slab page is freed only once all its objects are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simcore.mm.freelist import PageLists
from simcore.mm.pages import PageArray

LRU_INACTIVE_ANON = 0
LRU_ACTIVE_ANON = 1
LRU_INACTIVE_FILE = 2
LRU_ACTIVE_FILE = 3
"""``enum lru_list`` (LRU_UNEVICTABLE is not modelled)."""
NR_LRU_LISTS = 4
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file")
SLAB = 4
"""Where-code of a reclaimable slab page (not an LRU list)."""
SLAB_IN_USE = 5
"""Where-code of a slab page accounted reclaimable (``NR_SLAB_RECLAIMABLE_B``) whose
objects are in use: a host's pinned dentries and inodes (:mod:`simcore.sim.hostowners`).
No shrinker counts it (``super_cache_count()`` counts only the unused objects on its
LRU lists), so reclaim never frees it."""
_NR_LISTS = 6
"""The four LRU lists, the slab list and the in-use slab list."""

KIND_ANON, KIND_FILE, KIND_SLAB = 0, 1, 2
"""What a caller's reclaimable allocation is: anonymous memory, page cache, slab."""

ORDER_MASK = 0xFF
ZONE_SHIFT = 8
ZONE_MASK = 0xF
DIRTY = 1 << 12
"""``PG_dirty``: a page-cache page that must be written before it can be freed."""
HOT = 1 << 13
"""The owner keeps using the page: ``folio_referenced()`` finds a young pte at every
scan (the caller's working set)."""
PG_REFERENCED = 1 << 14
"""``PG_referenced``: set by reclaim when it first finds the page young."""
_ORD, _ZSHIFT, _ZMASK, _DIRTY, _NLRU, _SLAB, _SLAB_IN_USE = (
    ORDER_MASK, ZONE_SHIFT, ZONE_MASK, DIRTY, NR_LRU_LISTS, SLAB, SLAB_IN_USE)
_REF = PG_REFERENCED
"""C copies of the constants for this module's compiled methods (the names above are
imported by other modules, so they stay Python objects)."""
_ENTRY_MASK = 0xFFFF
"""The bits of :attr:`Lruvec.meta` that are the packed entry; the list is above them."""
_LIST_SHIFT = 16


def pack(order: int, zone_idx: int, dirty: bool = False, hot: bool = False) -> int:
    """An LRU entry's packed value."""
    return order | zone_idx << ZONE_SHIFT | (DIRTY if dirty else 0) | (HOT if hot else 0)


def entry_pages(packed: int) -> int:
    """Pages of an entry (``folio_nr_pages()``)."""
    return 1 << (packed & ORDER_MASK)


def entry_zone(packed: int) -> int:
    """Zone index of an entry (``folio_zonenum()``)."""
    return packed >> ZONE_SHIFT & ZONE_MASK


def is_file_lru(lru: int) -> bool:
    """``is_file_lru()``."""
    return lru >= LRU_INACTIVE_FILE


def is_active_lru(lru: int) -> bool:
    """``is_active_lru()``."""
    return lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE


class Lruvec:
    """``struct lruvec`` of one node, plus the node's reclaimable slab.

    Attributes:
        nid: The node.
        links: The node's intrusive lists (``lists[lru]`` and the slab list).
        heads: Sentinel node of each list: ``enum lru_list`` values, then :data:`SLAB`.
        meta: Per list node: its packed entry, and (from bit 16) its list.
        nr_zone: Pages per zone and list, at ``zone_idx * NR_LRU_LISTS + lru``
            (``NR_ZONE_INACTIVE_ANON`` ...); see :meth:`zone_size`.
        nr_entries: Allocations on each list (the four LRU lists, then slab).
        nr_slab_zone: Reclaimable slab pages per zone (``NR_SLAB_RECLAIMABLE_B``), on
            either slab list.
        slab_in_use: Pages on the :data:`SLAB_IN_USE` list (no shrinker counts them).
        nr_dirty_zone: Dirty page-cache pages per zone (``NR_ZONE_WRITE_PENDING``).
        nr_deferred: The shrinker's deferred scan count (``shrinker->nr_deferred``).
    """

    def __init__(self, nid: int, nr_zone_types: int, pages: PageArray) -> None:
        self.nid = nid
        self.nr_zone_types = nr_zone_types
        self.links = PageLists(pages)
        self.lru = pages.lru
        self.heads_np = np.array([self.links.new_list() for _ in range(_NR_LISTS)],
                                 dtype=np.int32)
        self.heads = self.heads_np.data
        self.meta_np = np.zeros(self.links.capacity, dtype=np.int32)
        self.meta = self.meta_np.data
        self.nr_zone_np = np.zeros(nr_zone_types * _NLRU, dtype=np.int64)
        self.nr_zone = self.nr_zone_np.data
        self.nr_entries_np = np.zeros(_NR_LISTS, dtype=np.int64)
        self.nr_entries = self.nr_entries_np.data
        self.nr_slab_zone_np = np.zeros(nr_zone_types, dtype=np.int64)
        self.nr_slab_zone = self.nr_slab_zone_np.data
        self.nr_dirty_zone_np = np.zeros(nr_zone_types, dtype=np.int64)
        self.nr_dirty_zone = self.nr_dirty_zone_np.data
        self.skipped_np = np.zeros(nr_zone_types, dtype=np.int64)
        self.skipped = self.skipped_np.data
        """Pages the last :meth:`isolate` skipped, per zone (``nr_skipped[]``)."""
        self.nr_deferred = 0
        self.slab_in_use = 0

    # -- linking ------------------------------------------------------------------------
    def _link(self, pfn: int, where: int, packed: int, tail: bool) -> None:
        """Link ``pfn`` at the head (or tail) of list ``where`` and count it there."""
        links = self.links
        if tail:
            links.add_tail(self.heads[where], pfn)
        else:
            links.add(self.heads[where], pfn)
        if links.capacity > self.meta_np.shape[0]:
            meta = np.zeros(links.capacity, dtype=np.int32)
            meta[: self.meta_np.shape[0]] = self.meta_np
            self.meta_np = meta
            self.meta = meta.data
        self.meta[self.lru[pfn]] = packed | where << _LIST_SHIFT
        self.nr_entries[where] += 1
        self._count(where, packed, 1)

    def add_bulk(self, pfns: np.ndarray, where: int, packed: np.ndarray) -> None:
        """Put many entries on list ``where`` at once, before what it holds.

        ``pfns[i]`` gets the packed entry ``packed[i]``; front to back the list then holds
        them in the order given, so reclaim (which takes from the back) reaches the last
        one first. For building a host's LRU lists in bulk
        (:mod:`simcore.sim.initial_state`).
        """
        nodes = self.links.add_bulk(self.heads[where], pfns)
        if self.links.capacity > self.meta_np.shape[0]:
            meta = np.zeros(self.links.capacity, dtype=np.int32)
            meta[: self.meta_np.shape[0]] = self.meta_np
            self.meta_np = meta
            self.meta = meta.data
        self.meta_np[nodes] = packed | where << _LIST_SHIFT
        self.nr_entries[where] += len(pfns)
        pages = np.left_shift(1, packed & _ORD).astype(np.int64)
        zones = packed >> _ZSHIFT & _ZMASK
        per_zone = np.bincount(zones, weights=pages, minlength=self.nr_zone_types)
        dirty = np.bincount(zones, weights=pages * ((packed & _DIRTY) != 0),
                            minlength=self.nr_zone_types)
        if where == _SLAB_IN_USE:
            self.slab_in_use += int(per_zone.sum())
        for zone in range(self.nr_zone_types):
            if where >= _SLAB:
                self.nr_slab_zone[zone] += int(per_zone[zone])
            else:
                self.nr_zone[zone * _NLRU + where] += int(per_zone[zone])
                self.nr_dirty_zone[zone] += int(dirty[zone])

    def _unlink(self, pfn: int) -> int:
        """Unlink a listed ``pfn``, uncount it; returns its packed entry."""
        node = self.lru[pfn]
        m = self.meta[node]
        where = m >> _LIST_SHIFT
        packed = m & _ENTRY_MASK
        self.links.unlink(pfn)
        self.nr_entries[where] -= 1
        self._count(where, packed, -1)
        return packed

    def _count(self, where: int, packed: int, sign: int) -> None:
        pages = sign * (1 << (packed & _ORD))
        zone = packed >> _ZSHIFT & _ZMASK
        if where >= _SLAB:
            self.nr_slab_zone[zone] += pages
            if where == _SLAB_IN_USE:
                self.slab_in_use += pages
            return
        self.nr_zone[zone * _NLRU + where] += pages
        if packed & _DIRTY:
            self.nr_dirty_zone[zone] += pages

    def on_list(self, pfn: int) -> int:
        """The list holding ``pfn`` (an ``enum lru_list`` value or :data:`SLAB`), or -1.

        The ``PageLRU()`` test: ``pfn``'s link slot names a node of these lists that
        holds ``pfn`` (a slot left over from a free list names another pfn's node, or
        none).
        """
        node = self.lru[pfn]
        if node < 0 or node >= self.links.capacity or self.links.pfn[node] != pfn:
            return -1
        return self.meta[node] >> _LIST_SHIFT

    def lists_of(self, pfns: Any) -> Any:
        """:meth:`on_list` of every pfn of a numpy array, as an int64 array (-1: none)."""
        node = np.asarray(self.lru)[pfns].astype(np.int64)
        where = np.full(len(node), -1, dtype=np.int64)
        ok = (node >= 0) & (node < self.links.capacity)
        hit = np.flatnonzero(ok)
        hit = hit[np.asarray(self.links.pfn_np)[node[hit]] == pfns[hit]]
        where[hit] = np.asarray(self.meta_np)[node[hit]] >> _LIST_SHIFT
        return where

    # -- the owners' side ---------------------------------------------------------------
    def add(self, pfn: int, kind: int, packed: int) -> None:
        """``folio_add_lru()`` (inactive list head), or a new reclaimable slab page."""
        if kind == KIND_SLAB:
            self._link(pfn, SLAB, packed, False)
        elif kind == KIND_FILE:
            self._link(pfn, LRU_INACTIVE_FILE, packed, False)
        else:
            self._link(pfn, LRU_INACTIVE_ANON, packed, False)

    def delete(self, pfn: int) -> int:
        """Take ``pfn`` off whatever list holds it; returns its packed entry (-1: none)."""
        if self.on_list(pfn) < 0:
            return -1
        return self._unlink(pfn)

    def mark_accessed(self, pfn: int) -> int:
        """``folio_mark_accessed()`` (mm/swap.c) of a listed page: the pages it activated.

        An unreferenced page gets ``PG_referenced``; a referenced one on an inactive list
        moves to the head of its active list with ``PG_referenced`` cleared
        (``folio_activate()``; the caller counts ``pgactivate``); a referenced active
        page, a slab page or one on no list is left as it is. Returns 0 unless it
        activated the page.
        """
        where = self.on_list(pfn)
        if where < 0 or where >= _SLAB:
            return 0
        node = self.lru[pfn]
        packed = self.meta[node] & _ENTRY_MASK
        if not packed & _REF:
            self.meta[node] = (packed | _REF) | where << _LIST_SHIFT
            return 0
        if where == LRU_ACTIVE_ANON or where == LRU_ACTIVE_FILE:
            return 0
        self._unlink(pfn)
        self._link(pfn, where + 1, packed & ~_REF, False)
        return 1 << (packed & _ORD)

    def set_dirty(self, pfn: int, dirty: bool) -> bool:
        """Set or clear ``PG_dirty`` of a listed page in place; whether it changed.

        ``folio_mark_dirty()`` and, for a write the flusher completes,
        ``folio_clear_dirty_for_io()``: the page keeps its place on its list, and the
        zone's dirty count (``NR_ZONE_WRITE_PENDING``) follows.
        """
        where = self.on_list(pfn)
        if where < 0 or where >= _SLAB:
            return False
        node = self.lru[pfn]
        packed = self.meta[node] & _ENTRY_MASK
        if bool(packed & _DIRTY) == dirty:
            return False
        self._count(where, packed, -1)
        packed = packed | _DIRTY if dirty else packed & ~_DIRTY
        self._count(where, packed, 1)
        self.meta[node] = packed | where << _LIST_SHIFT
        return True

    def put(self, pfn: int, lru: int, packed: int, oldest: bool = False) -> None:
        """Put an isolated entry on ``lru``, at its head.

        With ``oldest``, at its tail instead (``folio_rotate_reclaimable()``).
        """
        self._link(pfn, lru, packed, oldest)

    # -- reclaim's side -----------------------------------------------------------------
    def isolate(self, lru: int, nr_to_scan: int, reclaim_idx: int) -> tuple[list[int], int]:
        """``isolate_lru_folios()``: up to ``nr_to_scan`` pages from the tail of ``lru``.

        Entries of zones above ``reclaim_idx`` are skipped (their pages are counted in
        :attr:`skipped` per zone) and spliced back to the head of the list, in the
        order they were taken. Returns the entries taken as a flat list ``[pfn,
        packed, pfn, packed, ...]``, and ``total_scan``: the pages looked at, the
        skipped ones included.
        """
        taken: list[int] = []
        skip: list[int] = []
        head = self.heads[lru]
        links = self.links
        skipped = self.skipped
        for z in range(self.nr_zone_types):
            skipped[z] = 0
        scan = 0
        total_scan = 0
        while scan < nr_to_scan:
            pfn = links.last(head)
            if pfn < 0:
                break
            packed = self._unlink(pfn)
            pages = 1 << (packed & _ORD)
            total_scan += pages
            zone = packed >> _ZSHIFT & _ZMASK
            if zone > reclaim_idx:
                skipped[zone] += pages
                skip.append(pfn)
                skip.append(packed)
                continue
            scan += pages
            taken.append(pfn)
            taken.append(packed)
        for i in range(0, len(skip), 2):
            self._link(skip[i], lru, skip[i + 1], False)
        return taken, total_scan

    def isolate_oldest(self, lru: int) -> tuple[int, int]:
        """Take the entry at the tail of ``lru``; ``(-1, 0)`` if it is empty."""
        pfn = self.links.last(self.heads[lru])
        if pfn < 0:
            return -1, 0
        return pfn, self._unlink(pfn)

    def pop_oldest_slab(self) -> tuple[int, int]:
        """Take the oldest reclaimable slab page (the shrinker's next victim)."""
        return self.isolate_oldest(SLAB)

    def entries(self, where: int) -> list[tuple[int, int]]:
        """``(pfn, packed)`` of every entry on list ``where``, oldest (tail) first."""
        out = []
        links = self.links
        head = self.heads[where]
        node = links.prv[head]
        while node != head:
            out.append((int(links.pfn[node]), int(self.meta[node]) & _ENTRY_MASK))
            node = links.prv[node]
        return out

    # -- sizes --------------------------------------------------------------------------
    def zone_size(self, zone_idx: int, lru: int) -> int:
        """``NR_ZONE_LRU_BASE + lru`` of one zone: pages on ``lru`` in that zone."""
        return self.nr_zone[zone_idx * _NLRU + lru]

    def size(self, lru: int, max_zone_idx: int = -1) -> int:
        """``lruvec_lru_size()``: pages on ``lru`` in zones up to ``max_zone_idx``.

        All zones when ``max_zone_idx`` is negative.
        """
        top = self.nr_zone_types - 1 if max_zone_idx < 0 else max_zone_idx
        total = 0
        for z in range(top + 1):
            total += self.nr_zone[z * _NLRU + lru]
        return total

    def slab_pages(self) -> int:
        """Reclaimable slab pages of the node (``NR_SLAB_RECLAIMABLE_B``), in use or not."""
        total = 0
        for z in range(self.nr_zone_types):
            total += self.nr_slab_zone[z]
        return total

    def shrinkable_slab_pages(self) -> int:
        """The slab pages a shrinker counts (its ``count_objects()``): not those in use."""
        return self.slab_pages() - self.slab_in_use
