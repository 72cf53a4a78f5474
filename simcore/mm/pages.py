"""Per-page state: the simulator's ``struct page`` array (``mem_map``).

Mirrors the fields of ``struct page`` (include/linux/mm_types.h) that the page
allocator reads, packed into eight bytes per page (the kernel's ``struct page`` is 64),
so that a 1 TiB machine (268M pages) needs 2 GiB:

* ``ref`` (int16): ``page->_refcount``.
* ``lru`` (int32): for the head of a block on a buddy free list or a per-CPU list, the
  index of its list node in the zone's :class:`~simcore.mm.freelist.PageLists` (the
  kernel links ``page->buddy_list``/``page->pcp_list`` of that same head page); meaningless
  otherwise.
* ``info`` (uint8): low nibble = order (``buddy_order()`` for free block heads, the
  allocation order for allocated heads, ``compound_order()`` for compound heads);
  high nibble = migratetype (the free list a buddy head sits on, the cached pcp
  migratetype of a page on a per-CPU list, or the ``gfp_migratetype()`` an allocated
  head was requested with).
* ``flags`` (uint8): the page flags below.

There is no Python object per page. Scalar access goes through ``memoryview`` objects of the
numpy arrays (typed memoryviews in the compiled build, see ``pages.pxd``); bulk
operations use the numpy arrays.
"""

from __future__ import annotations

import numpy as np

# page flags (our own bit values; names follow include/linux/page-flags.h)
PG_BUDDY = 0x01
"""Head of a free block on a buddy free list (``PageBuddy``)."""
PG_HEAD = 0x02
"""Head of a compound page (``PageHead``)."""
PG_TAIL = 0x04
"""Tail of a compound page (``PageTail``)."""
PG_PCP = 0x08
"""Head of a block held on a per-CPU list. SIMPLIFICATION: the kernel has no flag for
this (a pcp page is just off the buddy lists); we keep one for invariant checks."""
PG_ALLOC = 0x10
"""Head of a block handed out by the allocator and not freed yet (simulator bookkeeping
for misuse detection; the kernel relies on the refcount alone)."""
PG_RESERVED = 0x20
"""Present but not managed (memblock-reserved), or a hole: never in the buddy lists."""
PG_MOVABLE_OWNER = 0x40
"""The owner can migrate this allocation (LRU or ``__PageMovable``): what
``move_freepages()`` counts as ``movable_pages`` and compaction may move."""

ORDER_MASK = 0x0F
MT_SHIFT = 4
# Complements within one byte (``flags &= ~PG_X`` on an unsigned byte): a negative mask
# would not fit the compiled build's uint8 arithmetic.
CLEAR_PG_BUDDY = 0xFF ^ PG_BUDDY
CLEAR_PG_PCP = 0xFF ^ PG_PCP
CLEAR_ORDER = 0xFF ^ ORDER_MASK
CLEAR_PG_MOVABLE_OWNER = 0xFF ^ PG_MOVABLE_OWNER
SHORT_RANGE = 16 if __file__.endswith(".py") else 1 << 62
"""Ranges of at most this many pages are updated page by page; longer ones (a
pageblock-order block) by one numpy slice operation. That only pays as Python: compiled,
this module runs every range as a C loop (same result, no numpy call per block)."""


class PageArray:
    """The ``mem_map``: compact per-page arrays for pfns ``0 .. nr_pages-1``."""

    def __init__(self, nr_pages: int) -> None:
        self.nr_pages = nr_pages
        self.ref_np = np.zeros(nr_pages, dtype=np.int16)
        self.info_np = np.zeros(nr_pages, dtype=np.uint8)
        self.flags_np = np.zeros(nr_pages, dtype=np.uint8)
        self.lru_np = np.zeros(nr_pages, dtype=np.int32)
        # ndarray.data is a memoryview of the array: fast scalar get/set from Python.
        self.ref = self.ref_np.data
        self.info = self.info_np.data
        self.flags = self.flags_np.data
        self.lru = self.lru_np.data

    @property
    def nbytes(self) -> int:
        """Bytes of per-page state."""
        return int(self.ref_np.nbytes + self.info_np.nbytes + self.flags_np.nbytes
                   + self.lru_np.nbytes)

    def fill_flags(self, start: int, end: int, value: int) -> None:
        """Set the flags of pfns ``start .. end-1`` to ``value`` (a short loop or a slice)."""
        if end - start <= SHORT_RANGE:
            flags = self.flags
            for pfn in range(start, end):
                flags[pfn] = value
        else:
            self.flags_np[start:end] = value

    def any_ref(self, start: int, end: int) -> bool:
        """Whether any page of pfns ``start .. end-1`` has a non-zero refcount."""
        if end - start <= SHORT_RANGE:
            ref = self.ref
            for pfn in range(start, end):
                if ref[pfn]:
                    return True
            return False
        return bool(self.ref_np[start:end].any())

    def order_of(self, pfn: int) -> int:
        """The order recorded in ``pfn``'s info byte."""
        return int(self.info[pfn]) & ORDER_MASK

    def mt_of(self, pfn: int) -> int:
        """The migratetype recorded in ``pfn``'s info byte."""
        return int(self.info[pfn]) >> MT_SHIFT

    def page_count(self, pfn: int) -> int:
        """``page_count()``: the refcount (of the page itself, not its head)."""
        return int(self.ref[pfn])

    def is_buddy(self, pfn: int) -> bool:
        """``PageBuddy()``."""
        return bool(self.flags[pfn] & PG_BUDDY)

    def compound_head(self, pfn: int, max_order: int) -> int:
        """``compound_head()``: the head pfn of the compound page holding ``pfn``.

        Returns ``pfn`` itself when it is not a compound tail. SIMPLIFICATION: the
        kernel stores the head pointer in every tail; we search the aligned candidates.
        """
        if not self.flags[pfn] & PG_TAIL:
            return pfn
        for order in range(1, max_order + 1):
            head = pfn & ~((1 << order) - 1)
            if self.flags[head] & PG_HEAD and (self.info[head] & ORDER_MASK) >= order:
                return head
        return pfn
