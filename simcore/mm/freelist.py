"""A zone's ``free_area[order].free_list[migratetype]`` and ``nr_free``.

Mirrors ``struct free_area`` (include/linux/mmzone.h) and the list helpers of
mm/page_alloc.c: ``add_to_free_list()`` (head), ``add_to_free_list_tail()``,
``move_to_free_list()`` (tail), ``del_page_from_free_list()`` and
``get_page_from_free_area()`` (head).

The kernel links free blocks through ``page->buddy_list`` (pcp pages through
``page->pcp_list``) of their head page.
The model does the same with :class:`PageLists`: circular doubly linked lists whose
nodes live in typed arrays (``nxt``, ``prv``, ``pfn``), one node per listed block,
allocated from a free chain that grows by doubling. A block's head page records its
node index in ``PageArray.lru``, so unlinking a block from the middle of a list (a
buddy merge) is O(1). Memory is proportional to the number of listed blocks, and no
Python object is created per block or page.

Each list has a sentinel node, so an empty list is a sentinel that points to itself.
The order and migratetype of a listed buddy block are also written into the page's
``info`` byte and its ``PG_BUDDY`` flag, as the kernel does with
``set_buddy_order()``/``__SetPageBuddy()``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from simcore.mm.constants import MIGRATE_TYPES
from simcore.mm.pages import CLEAR_PG_BUDDY, MT_SHIFT, PG_BUDDY, PageArray

_NO_PFN = -1


class PageLists:
    """Intrusive page lists of one zone: the ``buddy_list``/``pcp_list`` list heads."""

    def __init__(self, pages: PageArray, capacity: int = 64) -> None:
        self.pages = pages
        self.lru = pages.lru
        self.capacity = 0
        self.free_node = -1
        """First node of the chain of unused nodes (-1 when none is left)."""
        self.nxt_np = np.zeros(0, dtype=np.int32)
        self.prv_np = np.zeros(0, dtype=np.int32)
        self.pfn_np = np.zeros(0, dtype=np.int64)
        self.nxt = self.nxt_np.data
        self.prv = self.prv_np.data
        self.pfn = self.pfn_np.data
        self._grow(capacity)

    def _grow(self, capacity: int) -> None:
        """Make room for ``capacity`` nodes in all; the new ones join the free chain."""
        old = self.capacity
        nxt = np.zeros(capacity, dtype=np.int32)
        prv = np.zeros(capacity, dtype=np.int32)
        pfn = np.full(capacity, _NO_PFN, dtype=np.int64)
        nxt[:old] = self.nxt_np
        prv[:old] = self.prv_np
        pfn[:old] = self.pfn_np
        # Chain the new nodes old, old+1, ..., capacity-1, then the previous chain.
        nxt[old : capacity - 1] = np.arange(old + 1, capacity, dtype=np.int32)
        nxt[capacity - 1] = self.free_node
        self.free_node = old
        self.nxt_np, self.prv_np, self.pfn_np = nxt, prv, pfn
        self.nxt = nxt.data
        self.prv = prv.data
        self.pfn = pfn.data
        self.capacity = capacity

    def _node(self) -> int:
        """Take an unused node off the free chain, growing the arrays if needed."""
        node = self.free_node
        if node < 0:
            self._grow(self.capacity * 2)
            node = self.free_node
        self.free_node = self.nxt[node]
        return node

    def new_list(self) -> int:
        """A new empty list; returns its sentinel node (``INIT_LIST_HEAD``)."""
        head = self._node()
        self.nxt[head] = head
        self.prv[head] = head
        self.pfn[head] = _NO_PFN
        return head

    def add(self, head: int, pfn: int) -> None:
        """``list_add()``: link ``pfn``'s head page at the front of list ``head``."""
        node = self._node()
        first = self.nxt[head]
        self.nxt[head] = node
        self.prv[node] = head
        self.nxt[node] = first
        self.prv[first] = node
        self.pfn[node] = pfn
        self.lru[pfn] = node

    def add_tail(self, head: int, pfn: int) -> None:
        """``list_add_tail()``: link ``pfn``'s head page at the back of list ``head``."""
        node = self._node()
        last = self.prv[head]
        self.prv[head] = node
        self.nxt[node] = head
        self.prv[node] = last
        self.nxt[last] = node
        self.pfn[node] = pfn
        self.lru[pfn] = node

    def add_bulk(self, head: int, pfns: np.ndarray, tail: bool = False) -> np.ndarray:
        """Link the head pages ``pfns`` into list ``head`` at once; returns their nodes.

        Front to back, the list then holds ``pfns`` in their order before (``tail``:
        after) what it held: ``add_tail()`` of each pfn in turn, or ``add()`` of each in
        reverse. The nodes are new, contiguous ones (the free chain is left as it was),
        so building a long list costs a few array operations, not a call per block.
        """
        n = len(pfns)
        old = self.capacity
        if not n:
            return np.zeros(0, dtype=np.int32)
        chain = self.free_node
        self._grow(old + n)
        self.free_node = chain  # the new nodes are taken, not chained
        nodes = np.arange(old, old + n, dtype=np.int32)
        nxt, prv = self.nxt_np, self.prv_np
        nxt[nodes[:-1]] = nodes[1:]
        prv[nodes[1:]] = nodes[:-1]
        if tail:
            before, after = int(prv[head]), head
        else:
            before, after = head, int(nxt[head])
        nxt[before] = old
        prv[old] = before
        nxt[old + n - 1] = after
        prv[after] = old + n - 1
        self.pfn_np[old : old + n] = pfns
        self.pages.lru_np[pfns] = nodes
        return nodes

    def unlink(self, pfn: int) -> None:
        """``list_del()``: unlink ``pfn``'s head page from whatever list holds it."""
        node = self.lru[pfn]
        p = self.prv[node]
        n = self.nxt[node]
        self.nxt[p] = n
        self.prv[n] = p
        self.pfn[node] = _NO_PFN
        self.nxt[node] = self.free_node
        self.free_node = node

    def first(self, head: int) -> int:
        """The pfn at the front of list ``head``, or -1 if it is empty."""
        return self.pfn[self.nxt[head]]

    def last(self, head: int) -> int:
        """The pfn at the back of list ``head``, or -1 if it is empty."""
        return self.pfn[self.prv[head]]

    def pfns(self, head: int) -> list[int]:
        """The pfns of list ``head``, front to back."""
        out = []
        node = self.nxt[head]
        while node != head:
            out.append(int(self.pfn[node]))
            node = self.nxt[node]
        return out


class FreeArea:
    """All free lists of one zone (``zone->free_area``).

    ``nr_free[order]`` is ``free_area[order].nr_free``; ``count[order * MIGRATE_TYPES +
    mt]`` is the number of blocks on one list (what /proc/pagetypeinfo prints; see
    :meth:`count_of` and :attr:`counts`).
    """

    def __init__(self, max_order: int, pages: PageArray, lists: PageLists) -> None:
        self.max_order = max_order
        self.lists = lists
        self.nr_free_np = np.zeros(max_order + 1, dtype=np.int64)
        self.count_np = np.zeros((max_order + 1) * MIGRATE_TYPES, dtype=np.int64)
        self.nr_free = self.nr_free_np.data
        self.count = self.count_np.data
        self.heads_np = np.array(
            [lists.new_list() for _ in range((max_order + 1) * MIGRATE_TYPES)],
            dtype=np.int32,
        )
        self.heads = self.heads_np.data
        """Sentinel node of ``free_list[mt]`` of ``free_area[order]``, by
        ``order * MIGRATE_TYPES + mt``."""
        self.pages = pages
        self._info = pages.info
        self._flags = pages.flags

    @property
    def counts(self) -> list[list[int]]:
        """Blocks per list as ``[order][migratetype]`` (a copy)."""
        return [[int(c) for c in row]
                for row in self.count_np.reshape(self.max_order + 1, MIGRATE_TYPES)]

    def count_of(self, order: int, mt: int) -> int:
        """Blocks on ``free_area[order].free_list[mt]``."""
        return self.count[order * MIGRATE_TYPES + mt]

    def add(self, pfn: int, order: int, mt: int, tail: bool = False) -> None:
        """Add a free block at the head (``add_to_free_list``) or tail of its list."""
        idx = order * MIGRATE_TYPES + mt
        if tail:
            self.lists.add_tail(self.heads[idx], pfn)
        else:
            self.lists.add(self.heads[idx], pfn)
        self.nr_free[order] += 1
        self.count[idx] += 1
        self._info[pfn] = order | (mt << MT_SHIFT)
        self._flags[pfn] |= PG_BUDDY

    def remove(self, pfn: int, order: int, mt: int) -> None:
        """``del_page_from_free_list()``: unlink a block and clear ``PG_BUDDY``."""
        self.lists.unlink(pfn)
        self.nr_free[order] -= 1
        self.count[order * MIGRATE_TYPES + mt] -= 1
        self._flags[pfn] &= CLEAR_PG_BUDDY

    def move_tail(self, pfn: int, order: int, old_mt: int, new_mt: int) -> None:
        """``move_to_free_list()``: move a block to the tail of another type's list."""
        self.lists.unlink(pfn)
        self.count[order * MIGRATE_TYPES + old_mt] -= 1
        self.nr_free[order] -= 1
        self.add(pfn, order, new_mt, True)

    def head(self, order: int, mt: int) -> int:
        """``get_page_from_free_area()``: the first block's pfn, or -1 if empty."""
        return self.lists.first(self.heads[order * MIGRATE_TYPES + mt])

    def empty(self, order: int, mt: int) -> bool:
        """``free_area_empty()``."""
        return self.count[order * MIGRATE_TYPES + mt] == 0

    def iter_list(self, order: int, mt: int) -> Iterator[int]:
        """Pfns of one list from head to tail."""
        return iter(self.lists.pfns(self.heads[order * MIGRATE_TYPES + mt]))

    def free_pages(self) -> int:
        """Pages in all free blocks (equals NR_FREE_PAGES when nothing is isolated)."""
        return sum(int(n) << o for o, n in enumerate(self.nr_free_np))
