"""The LRU lists of one node (``struct lruvec``) and the reclaimable slab it holds.

Mirrors the classic two-list LRU of include/linux/mmzone.h and mm/swap.c (6.1 with
MGLRU off, the oracle kernel's default): per node an inactive and an active list for
anonymous and for file-backed pages, with per-zone page counts
(``NR_ZONE_INACTIVE_FILE`` ...). New pages enter the inactive list
(``folio_add_lru()``; since 5.9 anonymous pages start inactive too).

Entries are allocations (a head pfn and its order), not pages: one dict entry per
allocation, never a Python object per page. Each list is an ``OrderedDict`` from head
pfn to a packed int (order, zone index, dirty and referenced bits), oldest first: the
kernel's list tail (where reclaim isolates) is the front here, its head (where new and
rotated pages go) is the back.

SIMPLIFICATION: there are no page-table accesses. A caller marks a page *hot* when it
allocates it (a workload parameter): it stays in use, so reclaim finds its pte young at
every scan. ``folio_check_references()`` then keeps it on the first scan (and sets
``PG_referenced``) and activates it on the next; the active list sends it back to the
inactive one (it is not executable file memory), and the cycle repeats, so a hot page
is never reclaimed. Every other page is used once, when allocated, and is reclaimed the
first time reclaim reaches it.
Reclaimable slab is one list per node (one shrinker), in pages: the kernel shrinks
objects, and a slab page is freed only once all its objects are.
"""

from __future__ import annotations

from collections import OrderedDict

LRU_INACTIVE_ANON = 0
LRU_ACTIVE_ANON = 1
LRU_INACTIVE_FILE = 2
LRU_ACTIVE_FILE = 3
"""``enum lru_list`` (LRU_UNEVICTABLE is not modelled)."""
NR_LRU_LISTS = 4
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file")
SLAB = 4
"""Where-code of a reclaimable slab page (not an LRU list)."""

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
        lists: Per ``enum lru_list``: head pfn -> packed entry, oldest first.
        nr_zone: ``nr_zone[zone_idx][lru]``: pages on each list, per zone.
        slab: Reclaimable slab pages, oldest first (head pfn -> packed entry).
        nr_slab_zone: Reclaimable slab pages per zone (``NR_SLAB_RECLAIMABLE_B``).
        where: Head pfn -> its list (an ``enum lru_list`` value or :data:`SLAB`).
        nr_deferred: The shrinker's deferred scan count (``shrinker->nr_deferred``).
    """

    def __init__(self, nid: int, nr_zone_types: int) -> None:
        self.nid = nid
        self.lists: list[OrderedDict[int, int]] = [OrderedDict() for _ in range(NR_LRU_LISTS)]
        self.nr_zone = [[0] * NR_LRU_LISTS for _ in range(nr_zone_types)]
        self.slab: OrderedDict[int, int] = OrderedDict()
        self.nr_slab_zone = [0] * nr_zone_types
        self.where: dict[int, int] = {}
        self.nr_dirty_zone = [0] * nr_zone_types
        """Dirty page-cache pages per zone (``NR_ZONE_WRITE_PENDING``)."""
        self.nr_deferred = 0

    def add(self, pfn: int, kind: int, packed: int) -> None:
        """``folio_add_lru()`` (inactive list head), or a new reclaimable slab page."""
        if kind == KIND_SLAB:
            self.slab[pfn] = packed
            self.nr_slab_zone[entry_zone(packed)] += entry_pages(packed)
            self.where[pfn] = SLAB
            return
        self.put(pfn, LRU_INACTIVE_FILE if kind == KIND_FILE else LRU_INACTIVE_ANON, packed)

    def delete(self, pfn: int) -> int:
        """Take ``pfn`` off whatever list holds it; returns its packed entry (-1: none)."""
        lru = self.where.pop(pfn, -1)
        if lru < 0:
            return -1
        if lru == SLAB:
            packed = self.slab.pop(pfn)
            self.nr_slab_zone[entry_zone(packed)] -= entry_pages(packed)
            return packed
        packed = self.lists[lru].pop(pfn)
        self._count(lru, packed, -1)
        return packed

    def _count(self, lru: int, packed: int, sign: int) -> None:
        pages = sign * entry_pages(packed)
        zone = entry_zone(packed)
        self.nr_zone[zone][lru] += pages
        if packed & DIRTY:
            self.nr_dirty_zone[zone] += pages

    def put(self, pfn: int, lru: int, packed: int, oldest: bool = False) -> None:
        """Put an isolated entry on ``lru``, at its head.

        With ``oldest``, at its tail instead (``folio_rotate_reclaimable()``).
        """
        lst = self.lists[lru]
        lst[pfn] = packed
        if oldest:
            lst.move_to_end(pfn, last=False)
        self._count(lru, packed, 1)
        self.where[pfn] = lru

    def pop_oldest_slab(self) -> tuple[int, int]:
        """Take the oldest reclaimable slab page (the shrinker's next victim)."""
        pfn, packed = self.slab.popitem(last=False)
        self.nr_slab_zone[entry_zone(packed)] -= entry_pages(packed)
        del self.where[pfn]
        return pfn, packed

    def isolate_oldest(self, lru: int) -> tuple[int, int]:
        """Take the entry at the tail of ``lru`` (``isolate_lru_folios()``)."""
        pfn, packed = self.lists[lru].popitem(last=False)
        self._count(lru, packed, -1)
        del self.where[pfn]
        return pfn, packed

    def size(self, lru: int, max_zone_idx: int | None = None) -> int:
        """``lruvec_lru_size()``: pages on ``lru`` in zones up to ``max_zone_idx``."""
        top = len(self.nr_zone) - 1 if max_zone_idx is None else max_zone_idx
        return sum(self.nr_zone[z][lru] for z in range(top + 1))

    def slab_pages(self) -> int:
        """Reclaimable slab pages of the node (the shrinker's ``count_objects()``)."""
        return sum(self.nr_slab_zone)
