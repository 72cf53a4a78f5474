"""How a replay at the host's pfns gets them free: what moved without an event.

The host allocates only free pages. When the model has something else where the host
allocates, or the host frees a page it migrated, the replay (:class:`HostMoves`, mixed
into :class:`simcore.sim.replay.Replay`) moves the model's page out of the way:

- a guessed memblock reservation (``reserved_moved``);
- a host owner's page of a ``from_proc`` initial state (``held_moved``): the snapshot
  gave counts, not places;
- a replayed order-0 block (``unseen_moved``): it moved on the host without an event;
- a page the host migrates inside one of its compaction runs (``migrations``), to where
  compaction's free scanner would put it.

Each goes to a free page of its migratetype, with its owner and LRU entry, as
compaction would migrate it. Pure allocator bookkeeping: no SimPy, no randomness.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from simcore.mm.constants import MIGRATE_TYPES, MT_MOVABLE, MT_RECLAIMABLE, MT_UNMOVABLE
from simcore.mm.pages import (
    MT_SHIFT,
    ORDER_MASK,
    PG_ALLOC,
    PG_BUDDY,
    PG_HEAD,
    PG_PCP,
    PG_RESERVED,
    PG_TAIL,
)
from simcore.mm.take_page import take_block_off_buddy

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone
    from simcore.sim.machine import Allocation, Machine
    from simcore.sim.replay import ReplayCounts

INT64_MAX = 2**63 - 1
HOST_OWNER_PREFIX = "host:"
"""The owners of a ``from_proc`` initial state (:mod:`simcore.sim.hostowners`)."""
MOVE_RESERVATION_FROM = (MT_UNMOVABLE, MT_RECLAIMABLE, MT_MOVABLE)
"""Free lists a moved reservation is taken from, in order: memblock reservations sit in
pageblocks that boot leaves UNMOVABLE or MOVABLE; never the highatomic reserve."""


class HostMoves:
    """The moves of :class:`simcore.sim.replay.Replay` (see the module docstring)."""

    machine: Machine
    mm: PageAllocator
    counts: ReplayCounts
    real: bool
    live: dict[int, Allocation]
    migrated: deque[Allocation]
    free_cursor: dict[int, int]
    compaction_runs: dict[int, list[tuple[int, int]]]

    def _live_block(self, pfn: int, order: int) -> tuple[Allocation | None, int]:
        raise NotImplementedError

    def _allocated_head(self, pfn: int) -> int:
        raise NotImplementedError

    def _migrating(self, pid: int, t: int) -> bool:
        """Whether ``t`` is inside a compaction run of task ``pid``."""
        spans = self.compaction_runs.get(pid)
        if not spans:
            return False
        i = bisect_right(spans, (t, INT64_MAX)) - 1
        return i >= 0 and spans[i][0] <= t <= spans[i][1]

    def _migrate(self, pfn: int, order: int, cpu: int) -> bool:
        """A free inside a compaction run: a migration's source, if the replay placed it.

        Only order-0 blocks that are not compound migrate (as in 6.1). The page's
        contents live on at a target that compaction's free scanner took off the free
        lists, with no event. ``real``: the block moves to the highest free page of a
        MOVABLE pageblock of its zone (where the free scanner, which starts at the zone's
        end, finds targets) and its old page is freed. ``model``: the block stays
        allocated and is freed by the next free of a block the replay does not know.
        """
        if order:
            return False
        handle, head = self._live_block(pfn, order)
        held = self.real and handle is None and bool(self._held_mask(pfn, 1)[0])
        if not held and (handle is None or head != pfn or handle.order
                         or self.mm.pages.flags[pfn] & (PG_HEAD | PG_TAIL)):
            return False
        self.counts.migrations += 1
        if handle is not None:
            del self.live[pfn]
            if not self.real:
                self.migrated.append(handle)
                return True
        mm = self.mm
        src = pfn if handle is None else handle.pfn
        zone = mm.page_zone(src)
        dest = self._free_scanner_page(zone, src)
        if dest < 0:
            if handle is not None:
                self.live[pfn] = handle
            return False
        take_block_off_buddy(zone, dest, 0)
        self._move_page(zone, src, dest)
        mm.free_pages(src, 0, cpu)
        if handle is not None:
            self.live[dest] = handle
        return True

    def _free_scanner_page(self, zone: Zone, src: int) -> int:
        """Where compaction's free scanner finds a target for a page migrated from ``src``.

        Like isolate_freepages(): pageblocks from the top of the zone down, resuming where
        it last stopped (``compact_cached_free_pfn``), above the source's pageblock
        (``pageblock_end_pfn(migrate_pfn)``), only those suitable_migration_target()
        accepts (MOVABLE, and not wholly free: a free block of pageblock order or more at
        its start is left alone); in a pageblock, the lowest free page (isolate_freepages_block()
        scans upward and compaction_alloc() takes the first page isolated). Returns -1 if
        none. SIMPLIFICATION: no fast_isolate_freepages(), and the cursor is not reset at
        each compaction run's start.
        """
        pb = self.mm.pageblock_order
        floor = ((src >> pb) + 1) << pb
        cursor = self.free_cursor.get(zone.zone_start_pfn, zone.end_pfn)
        pfn = self._scan_down(zone, floor, min(cursor, zone.end_pfn))
        if pfn < 0 and cursor < zone.end_pfn:
            pfn = self._scan_down(zone, floor, zone.end_pfn)
        self.free_cursor[zone.zone_start_pfn] = (
            ((pfn >> pb) + 1) << pb if pfn >= 0 else zone.end_pfn)
        return pfn

    def _scan_down(self, zone: Zone, floor: int, top: int) -> int:
        """The lowest free page of the highest suitable pageblock in ``[floor, top)``."""
        mm = self.mm
        flags = mm.pages.flags_np
        info = mm.pages.info_np
        pb = mm.pageblock_order
        nr = 1 << pb
        block = (top - 1) >> pb
        while block << pb >= max(floor, zone.zone_start_pfn):
            start = block << pb
            if mm.pageblock_mt[block] & 7 == MT_MOVABLE and not (
                    flags[start] & PG_BUDDY and int(info[start] & ORDER_MASK) >= pb):
                heads = np.flatnonzero(flags[start:start + nr] & PG_BUDDY)
                if len(heads):
                    return start + int(heads[0])
            block -= 1
        return -1

    def _take(self, zone: Zone, pfn: int, order: int) -> bool:
        """Take the block at ``pfn`` off the buddy lists.

        Drains the zone's pcp lists, moves a guessed reservation, or moves the pages of
        the host's owners that the model placed there (:meth:`_displace`), if that is what
        stands in the way; False if a block the model allocated does.
        """
        if take_block_off_buddy(zone, pfn, order) >= 0:
            return True
        nr = 1 << order
        flags = self.mm.pages.flags_np[pfn:pfn + nr]
        if (flags & PG_PCP).any():
            self.counts.pcp_drains += 1
            self.mm.drain_all_pages(zone)
            if take_block_off_buddy(zone, pfn, order) >= 0:
                return True
        held = self._held_mask(pfn, nr)
        reserved = (flags & PG_RESERVED) != 0
        stale = ((flags & PG_ALLOC) != 0) & ~held
        if stale.any() and not self._unseen_migrations(zone, pfn, stale, pfn):
            return False  # a block allocated in the model that cannot have moved
        if self._allocated_head(pfn) not in (-1, pfn):
            return False  # inside a block allocated in the model that starts before it
        if not (held.any() or reserved.any()):
            return take_block_off_buddy(zone, pfn, order) >= 0
        if reserved.all() and self._move_reservation(zone, order, pfn):
            flags[:] = 0
            self.counts.reserved_moved += 1
            return True
        for i in np.flatnonzero(held | reserved).tolist():
            if not self._displace(zone, pfn + i, bool(held[i]), pfn):
                return False
        return take_block_off_buddy(zone, pfn, order) >= 0

    def _unseen_migrations(self, zone: Zone, pfn: int, stale: np.ndarray, keep: int) -> bool:
        """Move the replayed order-0 blocks in the way of a host allocation at ``pfn``.

        The host allocates only free pages, so a replayed block the model still has there
        must have moved without an event (a migration whose target the trace does not
        show, or one :meth:`_migrate` placed elsewhere). Each moves to a free page of its
        migratetype (``unseen_moved``); False if one cannot (a larger or compound block).
        """
        owner_of = self.machine.owner_of
        pages = self.mm.pages
        flags = pages.flags
        for p in (np.flatnonzero(stale) + pfn).tolist():
            handle = owner_of.get(p)
            if handle is None or handle.order or flags[p] & (PG_HEAD | PG_TAIL) or \
                    handle.owner.startswith(HOST_OWNER_PREFIX):
                return False
            dest = self._free_page(zone, pages.info[p] >> MT_SHIFT, keep)
            if dest < 0:
                return False
            self._move_page(zone, p, dest)
            if self.live.get(p) is handle:
                del self.live[p]
                self.live[dest] = handle
            pages.ref[p] = 0
            _give_back(zone, p)
            self.counts.unseen_moved += 1
        return True

    def _held_mask(self, pfn: int, nr: int) -> np.ndarray:
        """Per page of ``[pfn, pfn + nr)``: held by a host owner (no handle)."""
        held = self.machine.held
        if held is None:
            return np.zeros(nr, dtype=bool)
        mask: np.ndarray = held.owner_np[pfn:pfn + nr] >= 0
        return mask

    def _displace(self, zone: Zone, p: int, held: bool, keep: int) -> bool:
        """Free page ``p`` for the host: move what the model put there to a free page.

        A guessed reservation moves (:meth:`_move_reservation`); a host owner's page
        (:mod:`simcore.sim.initial_state`: the snapshot gave counts, not places) moves to
        a free page of its own migratetype, with its LRU entry and owner, as compaction
        would migrate it (``held_moved``). Then ``p`` goes back on the free lists.
        """
        pages = self.mm.pages
        if not held:
            if not self._move_reservation(zone, 0, keep):
                return False
            self.counts.reserved_moved += 1
        else:
            dest = self._free_page(zone, pages.info[p] >> MT_SHIFT, keep)
            if dest < 0:
                return False
            self._move_page(zone, p, dest)  # the host owner's page follows (machine.held)
            pages.ref[p] = 0
            self.counts.held_moved += 1
        _give_back(zone, p)
        return True

    def _move_page(self, zone: Zone, src: int, dest: int) -> None:
        """Move the allocated order-0 page at ``src`` to ``dest``, as migration does.

        ``dest`` is already off the free lists. The page's state, its owner (handle or
        host owner) and its place on an LRU list move; ``src`` is left to the caller.
        """
        pages = self.mm.pages
        pages.ref[dest] = 1
        pages.info[dest] = pages.info[src]
        pages.flags[dest] = pages.flags[src]
        self.machine._moved(src, dest)
        lv = self.mm.reclaim.lruvecs[zone.nid]
        where = lv.on_list(src)
        if where >= 0:
            lv.put(dest, where, lv.delete(src))

    def _move_reservation(self, zone: Zone, order: int, keep: int) -> bool:
        """Reserve another free block of ``order`` in ``zone`` instead of the host's.

        The block :meth:`_take_free` finds (the block the host allocated is managed from
        now on); False if there is none.
        """
        pfn = self._take_free(zone, order, MOVE_RESERVATION_FROM, keep)
        if pfn < 0:
            return False
        self.mm.pages.flags_np[pfn:pfn + (1 << order)] = PG_RESERVED
        return True

    def _free_page(self, zone: Zone, mt: int, keep: int) -> int:
        """Take one free page off ``zone``'s buddy lists, preferring migratetype ``mt``.

        Returns its pfn, or -1 (see :meth:`_take_free`).
        """
        types = (mt, *(t for t in MOVE_RESERVATION_FROM if t != mt))
        return self._take_free(zone, 0, types, keep)

    def _take_free(self, zone: Zone, order: int, types: tuple[int, ...], keep: int) -> int:
        """Take a block of ``order`` off ``zone``'s free lists; returns its pfn, or -1.

        The least recently freed block (a list's tail) of the lowest order that has one,
        in the first of ``types`` that does, outside the pageblock of ``keep`` (the block
        being placed).
        """
        fa = zone.free_area
        lists = fa.lists
        blk = keep >> zone.pageblock_order
        for o in range(order, zone.max_order + 1):
            for t in types:
                pfn = lists.last(fa.heads[o * MIGRATE_TYPES + t])
                if pfn >= 0 and pfn >> zone.pageblock_order != blk:
                    take_block_off_buddy(zone, pfn, order)
                    return int(pfn)
        return -1


def _give_back(zone: Zone, p: int) -> None:
    """Page ``p``, freed of what the model had there, back on ``zone``'s free lists."""
    zone.pages.flags[p] = 0
    zone.free_one_page(p, 0, zone.get_pageblock_migratetype(p))
