"""The per-node LRU lists (``struct lruvec``) on the engine's intrusive typed lists."""

from __future__ import annotations

import numpy as np

from simcore.mm.freelist import PageLists
from simcore.mm.lru import (
    DIRTY,
    KIND_ANON,
    KIND_FILE,
    KIND_SLAB,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    PG_REFERENCED,
    SLAB,
    SLAB_IN_USE,
    Lruvec,
    pack,
)
from simcore.mm.pages import PageArray

NR_ZONES = 4


def _lruvec(nr_pages: int = 4096) -> tuple[Lruvec, PageArray]:
    pages = PageArray(nr_pages)
    return Lruvec(0, NR_ZONES, pages), pages


def test_new_pages_go_to_the_head_and_reclaim_takes_from_the_tail() -> None:
    lv, _ = _lruvec()
    for pfn in (8, 16, 24):
        lv.add(pfn, KIND_FILE, pack(0, 1))
    assert [pfn for pfn, _ in lv.entries(LRU_INACTIVE_FILE)] == [8, 16, 24]  # oldest first
    assert lv.isolate_oldest(LRU_INACTIVE_FILE)[0] == 8
    lv.put(8, LRU_INACTIVE_FILE, pack(0, 1), oldest=True)  # folio_rotate_reclaimable()
    assert lv.isolate_oldest(LRU_INACTIVE_FILE)[0] == 8
    lv.put(8, LRU_INACTIVE_FILE, pack(0, 1))  # back at the head: now the newest
    assert [pfn for pfn, _ in lv.entries(LRU_INACTIVE_FILE)] == [16, 24, 8]


def test_counts_per_zone_list_dirty_and_slab() -> None:
    lv, _ = _lruvec()
    lv.add(0, KIND_FILE, pack(2, 1, dirty=True))
    lv.add(4, KIND_ANON, pack(0, 2))
    lv.add(8, KIND_SLAB, pack(1, 2))
    assert lv.zone_size(1, LRU_INACTIVE_FILE) == 4
    assert lv.nr_dirty_zone[1] == 4
    assert lv.size(LRU_INACTIVE_ANON) == 1 and lv.size(LRU_INACTIVE_ANON, 1) == 0
    assert lv.slab_pages() == 2 and lv.nr_slab_zone[2] == 2
    assert lv.delete(0) == pack(2, 1, dirty=True)
    assert lv.size(LRU_INACTIVE_FILE) == 0 and lv.nr_dirty_zone[1] == 0
    assert lv.pop_oldest_slab() == (8, pack(1, 2))
    assert lv.slab_pages() == 0 and lv.nr_entries[SLAB] == 0


def test_membership_survives_a_link_slot_reused_by_the_free_lists() -> None:
    """The head page's slot is shared with the free lists (as ``page->lru`` is): a slot
    a free list wrote names no entry of the LRU, so the page is not on it."""
    lv, pages = _lruvec()
    lv.add(40, KIND_FILE, pack(0, 1))
    node_of_40 = pages.lru[40]
    pages.lru[72] = node_of_40  # 72's slot, as a free list left it, names 40's node
    assert lv.on_list(72) == -1 and lv.delete(72) == -1
    assert lv.on_list(40) == LRU_INACTIVE_FILE
    zone_lists = PageLists(pages)  # a zone's free lists reuse 40's slot once it is freed
    assert lv.delete(40) >= 0
    zone_lists.add(zone_lists.new_list(), 40)
    assert lv.on_list(40) == -1


def test_isolate_skips_zones_above_reclaim_idx_and_puts_them_back_at_the_head() -> None:
    lv, _ = _lruvec()
    lv.add(0, KIND_FILE, pack(0, 2))   # oldest, in a zone above reclaim_idx
    lv.add(1, KIND_FILE, pack(0, 1))
    lv.add(2, KIND_FILE, pack(1, 1))
    taken, total_scan = lv.isolate(LRU_INACTIVE_FILE, 3, 1)
    assert taken == [1, pack(0, 1), 2, pack(1, 1)]
    assert total_scan == 1 + 1 + 2
    assert list(lv.skipped) == [0, 0, 1, 0]
    assert [pfn for pfn, _ in lv.entries(LRU_INACTIVE_FILE)] == [0]
    assert lv.size(LRU_INACTIVE_FILE) == 1


def test_lists_grow_past_their_first_capacity_without_losing_entries() -> None:
    lv, _ = _lruvec(1 << 14)
    n = 5000
    for pfn in range(n):
        lv.add(pfn, KIND_FILE if pfn % 2 else KIND_ANON, pack(0, pfn % NR_ZONES, pfn % 3 == 0))
    assert lv.links.capacity >= n and lv.meta_np.shape[0] == lv.links.capacity
    for pfn in range(0, n, 7):
        lv.put(pfn, LRU_ACTIVE_FILE, lv.delete(pfn) & ~DIRTY)
    total = sum(len(lv.entries(w)) for w in range(5))
    assert total == n
    assert lv.size(LRU_ACTIVE_FILE) == len(range(0, n, 7))
    assert sum(lv.nr_dirty_zone) == sum(1 for pfn in range(n) if pfn % 3 == 0 and pfn % 7)


def test_mark_accessed_references_then_activates_at_the_active_head() -> None:
    """folio_mark_accessed(): PG_referenced first; then folio_activate() to the head of
    the active list with PG_referenced cleared; an active page stays where it is."""
    lv, _ = _lruvec()
    for pfn in (8, 16, 24):
        lv.add(pfn, KIND_FILE, pack(1, 1))
    assert lv.mark_accessed(16) == 0
    assert dict(lv.entries(LRU_INACTIVE_FILE))[16] == pack(1, 1) | PG_REFERENCED
    assert lv.mark_accessed(16) == 2  # pages activated
    assert [pfn for pfn, _ in lv.entries(LRU_INACTIVE_FILE)] == [8, 24]
    assert lv.entries(LRU_ACTIVE_FILE) == [(16, pack(1, 1))]
    assert lv.size(LRU_ACTIVE_FILE) == 2 and lv.size(LRU_INACTIVE_FILE) == 4
    assert lv.mark_accessed(16) == 0 and lv.mark_accessed(16) == 0  # active: stays
    assert lv.entries(LRU_ACTIVE_FILE) == [(16, pack(1, 1) | PG_REFERENCED)]
    lv.add(32, KIND_SLAB, pack(0, 1))
    assert lv.mark_accessed(32) == 0 and lv.mark_accessed(40) == 0  # slab, unlisted


def test_set_dirty_keeps_the_place_and_counts_write_pending() -> None:
    lv, _ = _lruvec()
    for pfn in (8, 16, 24):
        lv.add(pfn, KIND_FILE, pack(2, 1))
    assert lv.set_dirty(16, True) and not lv.set_dirty(16, True)
    assert lv.nr_dirty_zone[1] == 4
    assert [pfn for pfn, _ in lv.entries(LRU_INACTIVE_FILE)] == [8, 16, 24]
    assert dict(lv.entries(LRU_INACTIVE_FILE))[16] == pack(2, 1, dirty=True)
    assert lv.set_dirty(16, False) and lv.nr_dirty_zone[1] == 0
    assert not lv.set_dirty(40, True)


def test_slab_in_use_counts_as_reclaimable_slab_but_no_shrinker_sees_it() -> None:
    lv, _ = _lruvec()
    lv.add(8, KIND_SLAB, pack(1, 2))  # a shrinkable page of two
    lv.add_bulk(np.array([16, 17, 18]), SLAB_IN_USE, np.full(3, pack(0, 1), dtype=np.int32))
    assert lv.slab_pages() == 5  # NR_SLAB_RECLAIMABLE_B counts both
    assert lv.nr_slab_zone[1] == 3 and lv.nr_slab_zone[2] == 2
    assert lv.shrinkable_slab_pages() == 2 and lv.slab_in_use == 3
    assert lv.mark_accessed(16) == 0 and not lv.set_dirty(16, True)  # not an LRU page
    assert lv.pop_oldest_slab() == (8, pack(1, 2))  # the shrinker's list holds only 8
    assert lv.nr_entries[SLAB] == 0 and lv.shrinkable_slab_pages() == 0
    assert lv.delete(17) == pack(0, 1)  # the host frees one (a replay)
    assert lv.slab_pages() == 2 and lv.slab_in_use == 2
