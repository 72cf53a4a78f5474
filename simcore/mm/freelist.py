"""A zone's ``free_area[order].free_list[migratetype]`` and ``nr_free``.

Mirrors ``struct free_area`` (include/linux/mmzone.h) and the list helpers of
mm/page_alloc.c: ``add_to_free_list()`` (head), ``add_to_free_list_tail()``,
``move_to_free_list()`` (tail), ``del_page_from_free_list()`` and
``get_page_from_free_area()`` (head).

The lists are doubly linked through two dicts keyed by pfn, so memory is proportional
to the number of free blocks, not pages, and every operation is O(1). Each list has a
negative sentinel key. The order and migratetype of a listed block are also written
into the page's ``info`` byte and its ``PG_BUDDY`` flag, as the kernel does with
``set_buddy_order()``/``__SetPageBuddy()``.
"""

from __future__ import annotations

from collections.abc import Iterator

from simcore.mm.constants import MIGRATE_TYPES
from simcore.mm.pages import MT_SHIFT, PG_BUDDY, PageArray


class FreeArea:
    """All free lists of one zone (``zone->free_area``)."""

    __slots__ = ("max_order", "nxt", "prv", "nr_free", "count", "pages", "_info", "_flags")

    def __init__(self, max_order: int, pages: PageArray) -> None:
        self.max_order = max_order
        self.nxt: dict[int, int] = {}
        self.prv: dict[int, int] = {}
        self.nr_free = [0] * (max_order + 1)
        """``free_area[order].nr_free``: free blocks of that order, all migratetypes."""
        self.count = [[0] * MIGRATE_TYPES for _ in range(max_order + 1)]
        """Blocks on each list (what /proc/pagetypeinfo prints)."""
        self.pages = pages
        self._info = pages.info
        self._flags = pages.flags
        for order in range(max_order + 1):
            for mt in range(MIGRATE_TYPES):
                s = self.sentinel(order, mt)
                self.nxt[s] = s
                self.prv[s] = s

    @staticmethod
    def sentinel(order: int, mt: int) -> int:
        """The list head key of ``free_area[order].free_list[mt]``."""
        return -1 - (order * MIGRATE_TYPES + mt)

    def add(self, pfn: int, order: int, mt: int, tail: bool = False) -> None:
        """Add a free block at the head (``add_to_free_list``) or tail of its list."""
        s = -1 - (order * MIGRATE_TYPES + mt)
        nxt = self.nxt
        prv = self.prv
        if tail:
            last = prv[s]
            prv[s] = pfn
            nxt[pfn] = s
            prv[pfn] = last
            nxt[last] = pfn
        else:
            first = nxt[s]
            nxt[s] = pfn
            prv[pfn] = s
            nxt[pfn] = first
            prv[first] = pfn
        self.nr_free[order] += 1
        self.count[order][mt] += 1
        self._info[pfn] = order | (mt << MT_SHIFT)
        self._flags[pfn] |= PG_BUDDY

    def remove(self, pfn: int, order: int, mt: int) -> None:
        """``del_page_from_free_list()``: unlink a block and clear ``PG_BUDDY``."""
        p = self.prv.pop(pfn)
        n = self.nxt.pop(pfn)
        self.nxt[p] = n
        self.prv[n] = p
        self.nr_free[order] -= 1
        self.count[order][mt] -= 1
        self._flags[pfn] &= ~PG_BUDDY

    def move_tail(self, pfn: int, order: int, old_mt: int, new_mt: int) -> None:
        """``move_to_free_list()``: move a block to the tail of another type's list."""
        p = self.prv.pop(pfn)
        n = self.nxt.pop(pfn)
        self.nxt[p] = n
        self.prv[n] = p
        self.count[order][old_mt] -= 1
        self.nr_free[order] -= 1
        self.add(pfn, order, new_mt, tail=True)

    def head(self, order: int, mt: int) -> int:
        """``get_page_from_free_area()``: the first block's pfn, or -1 if empty."""
        first = self.nxt[-1 - (order * MIGRATE_TYPES + mt)]
        return first if first >= 0 else -1

    def empty(self, order: int, mt: int) -> bool:
        """``free_area_empty()``."""
        return self.count[order][mt] == 0

    def iter_list(self, order: int, mt: int) -> Iterator[int]:
        """Pfns of one list from head to tail."""
        s = self.sentinel(order, mt)
        cur = self.nxt[s]
        while cur != s:
            yield cur
            cur = self.nxt[cur]

    def free_pages(self) -> int:
        """Pages in all free blocks (equals NR_FREE_PAGES when nothing is isolated)."""
        return sum(n << o for o, n in enumerate(self.nr_free))
