"""Freeing pages and page refcounts.

Mirrors, from Linux 6.1: ``__free_pages()``, ``free_the_page()``,
``free_unref_page()``, ``__free_pages_ok()``, ``free_pages_prepare()`` with
``bad_page()`` (mm/page_alloc.c); ``split_page()``; ``put_page()`` /
``__folio_put_small()`` (mm/swap.c); ``page_ref_freeze()``,
``page_ref_unfreeze()`` and ``get_page_unless_zero()`` (include/linux/page_ref.h,
include/linux/mm.h).

Misuse is reported as a ``bad_page`` trace event with a reason and the page is leaked,
as the kernel does after "BUG: Bad page state"; the model never crashes on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.constants import MIGRATE_PCPTYPES, MT_ISOLATE, MT_MOVABLE
from simcore.mm.pages import (
    CLEAR_ORDER,
    CLEAR_PG_MOVABLE_OWNER,
    ORDER_MASK,
    PG_ALLOC,
    PG_BUDDY,
    PG_HEAD,
    PG_RESERVED,
    PG_TAIL,
)
from simcore.mm.vmstat import VMSTAT_INDEX

if TYPE_CHECKING:
    from simcore.mm.pages import PageArray
    from simcore.mm.tracepoints import Tracer
    from simcore.mm.vmstat import VmStat
    from simcore.mm.zone import Zone

_VM_PGFREE = VMSTAT_INDEX["pgfree"]
_VM_BAD_PAGE = VMSTAT_INDEX["bad_page"]
_VM_BAD_PAGE_LEAKED = VMSTAT_INDEX["bad_page_leaked_pages"]
_VM_FREE_ORDER_LEAKED = VMSTAT_INDEX["free_order_leaked_pages"]


def _excess_page_reason(pages: PageArray, pfn: int, compound: int) -> str:
    """Why ``free_pages_prepare()`` finds a page past the block bad ("" if it does not).

    Mirrors ``page_bad_reason()``, where the last matching check wins. ``compound``:
    the block being freed is compound, so ``free_tail_pages_check()`` has just cleared
    the page's ``mapping`` (without DEBUG_VM it reports nothing itself).
    SIMPLIFICATION: PG_lru, PG_slab and the other PAGE_FLAGS_CHECK_AT_FREE flags of a
    live page are not modelled; such a page reads "nonzero _refcount".
    """
    flags = pages.flags[pfn]
    reason = ""
    if flags & PG_BUDDY:
        reason = "nonzero mapcount"  # PageBuddy lives in page_type, over _mapcount
    if flags & PG_TAIL and not compound:
        reason = "non-NULL mapping"  # a compound tail's mapping is TAIL_MAPPING
    if pages.ref[pfn] != 0:
        reason = "nonzero _refcount"
    if flags & PG_RESERVED:
        reason = "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"  # PG_reserved
    return reason


class FreePagesMixin:
    """The freeing half of :class:`simcore.mm.page_alloc.PageAllocator`."""

    pages: PageArray
    tracer: Tracer
    tracing: bool
    vm: VmStat
    max_order: int

    def page_zone(self, pfn: int) -> Zone:
        """``page_zone()``; implemented by PageAllocator."""
        raise NotImplementedError

    def pcp_allowed_order(self, order: int) -> bool:
        """``pcp_allowed_order()``; implemented by PageAllocator."""
        raise NotImplementedError

    # -- reporting ----------------------------------------------------------------------
    def bad_page(self, pfn: int, order: int, reason: str) -> None:
        """``bad_page()``: count and trace "BUG: Bad page state"; the page is leaked."""
        self.vm.v[_VM_BAD_PAGE] += 1
        zone = self.page_zone(pfn) if 0 <= pfn < self.pages.nr_pages else None
        if self.tracing:
            self.tracer.bad_page(zone, pfn, order, reason)

    def _check_pfn(self, pfn: int, order: int, what: str) -> bool:
        if not 0 <= pfn < self.pages.nr_pages or pfn & ((1 << order) - 1):
            self.bad_page(pfn, order, f"{what}: pfn {pfn:#x} is not an order-{order} block")
            return False
        if self.pages.flags[pfn] & PG_RESERVED:
            self.bad_page(pfn, order, f"{what}: pfn {pfn:#x} is reserved memory")
            return False
        return True

    # -- __free_pages -------------------------------------------------------------------
    def free_pages(self, pfn: int, order: int, cpu: int) -> bool:
        """Drop the caller's reference on an order-``order`` block: __free_pages().

        If the head refcount reaches 0 the block is freed. If not, and the block is not
        compound (someone holds a speculative reference on the first page), the tail
        part is freed at once as buddy-aligned pieces (behaviour 41); the page that stays
        is no longer movable (its owner is gone). Returns False if the call was reported
        as a bad page.
        """
        if not self._check_pfn(pfn, order, "__free_pages"):
            return False
        pages = self.pages
        flags = pages.flags[pfn]
        if pages.ref[pfn] <= 0:
            self.bad_page(pfn, order, "double free: _refcount already 0")
            return False
        if flags & PG_TAIL:
            self.bad_page(pfn, order, "__free_pages on a compound tail page")
            return False
        if flags & PG_ALLOC and pages.info[pfn] & ORDER_MASK != order:
            return self._free_wrong_order(pfn, order, cpu)
        head = flags & PG_HEAD
        pages.ref[pfn] -= 1
        if pages.ref[pfn] == 0:
            self.free_the_page(pfn, order, cpu)
            return True
        # The owner has let go (its mapping and LRU entry are gone, as in the kernel
        # before __free_pages()): whoever still holds the page cannot migrate it.
        pages.flags[pfn] = flags & CLEAR_PG_MOVABLE_OWNER
        if not head and order:
            pages.info[pfn] = pages.info[pfn] & CLEAR_ORDER  # the first page stays, order 0
            while order > 0:
                order -= 1
                self.free_the_page(pfn + (1 << order), order, cpu)
        return True

    def _free_wrong_order(self, pfn: int, order: int, cpu: int) -> bool:
        """``__free_pages(page, order)`` of a block allocated with another order.

        The kernel does not know a block's order; it frees what it is told (LDD3's
        warning):

        - Too large: ``free_pages_prepare()`` checks every page past the block and
          reports each bad one (:func:`_excess_page_reason`) with ``bad_page()``; then
          it frees nothing and the block is leaked. SIMPLIFICATION: ``bad_page()``'s
          ``page_mapcount_reset()``, which strips PageBuddy from a free block's head
          past ours (it can then no longer merge), is not modelled. If no page past the
          block is bad (pcp pages, tails of a non-compound block) the kernel frees them
          all with the block and corrupts its lists; the model refuses, leaks the block
          and records a simulator-only ``sim_warning``.
        - Too small: the first ``2**order`` pages are freed and the rest of the block
          leaks silently; the model records a ``sim_warning``.

        Leaks the kernel does not report count in ``free_order_leaked_pages``. With
        another reference on the first page, the kernel frees only the pieces after it
        (behaviour 41) of the order it was given; the model does so for too small an
        order (SIMPLIFICATION: too large an order then frees nothing now).
        """
        pages = self.pages
        have = pages.info[pfn] & ORDER_MASK
        compound = pages.flags[pfn] & PG_HEAD
        pages.ref[pfn] -= 1
        if pages.ref[pfn]:  # a speculative holder's put_page() frees the first page later
            pages.flags[pfn] = pages.flags[pfn] & CLEAR_PG_MOVABLE_OWNER
            if compound or order > have:
                return True
            self._short_free_warning(pfn, order, have)
            pages.info[pfn] = pages.info[pfn] & CLEAR_ORDER
            while order > 0:
                order -= 1
                self.free_the_page(pfn + (1 << order), order, cpu)
            return True
        if order < have:
            self._short_free_warning(pfn, order, have)
            pages.info[pfn] = (pages.info[pfn] & CLEAR_ORDER) | order
            self.free_the_page(pfn, order, cpu)
            return True
        bad = 0
        for p in range(pfn + (1 << have), min(pfn + (1 << order), pages.nr_pages)):
            reason = _excess_page_reason(pages, p, compound)
            if reason:
                self.bad_page(p, 0, reason)
                bad += 1
        if bad:
            self.vm.v[_VM_BAD_PAGE_LEAKED] += 1 << have
            return False
        self.vm.v[_VM_FREE_ORDER_LEAKED] += 1 << have
        if self.tracing:
            self.tracer.sim_warning(
                self.page_zone(pfn), pfn, order,
                f"__free_pages order {order} on an order-{have} block: the kernel frees the "
                f"{(1 << order) - (1 << have)} pages after it too, corrupting its free lists;"
                " the model leaks the block instead")
        return True

    def _short_free_warning(self, pfn: int, order: int, have: int) -> None:
        """Count and trace the pages too small an order leaves behind."""
        leaked = (1 << have) - (1 << order)
        self.vm.v[_VM_FREE_ORDER_LEAKED] += leaked
        if self.tracing:
            self.tracer.sim_warning(
                self.page_zone(pfn), pfn, order,
                f"__free_pages order {order} on an order-{have} block: "
                f"{leaked} pages leaked (the kernel does not notice)")

    def free_the_page(self, pfn: int, order: int, cpu: int) -> None:
        """``free_the_page()``: pcp for pcp-allowed orders, else straight to buddy."""
        zone = self.page_zone(pfn)
        if self.pcp_allowed_order(order):
            self.free_unref_page(pfn, order, cpu, zone)
        else:
            self.free_pages_ok(pfn, order, zone)

    def free_pages_prepare(self, pfn: int, order: int, zone: Zone) -> bool:
        """``free_pages_prepare()``: trace, check every page, clear the page state.

        A tail page with a non-zero refcount (for example after split_page() the
        block is freed whole) fails the check: the block is reported and leaked.
        """
        pages = self.pages
        if self.tracing:
            self.tracer.mm_page_free(zone, pfn, order)
        nr = 1 << order
        if order and pages.any_ref(pfn + 1, pfn + nr):
            self.bad_page(pfn, order, "nonzero _refcount on a tail page")
            self.vm.v[_VM_BAD_PAGE_LEAKED] += nr
            return False
        if pages.ref[pfn] != 0:
            self.bad_page(pfn, order, "nonzero _refcount")
            self.vm.v[_VM_BAD_PAGE_LEAKED] += nr
            return False
        if order:
            pages.fill_flags(pfn, pfn + nr, 0)
        else:
            pages.flags[pfn] = 0
        pages.info[pfn] = 0
        return True

    def free_unref_page(self, pfn: int, order: int, cpu: int, zone: Zone) -> None:
        """Free to the CPU's pcp list: mirrors free_unref_page().

        HIGHATOMIC and CMA pages go on the MOVABLE list but remember their pageblock
        type; ISOLATE pages bypass the pcp (behaviour 21).
        """
        if not self.free_pages_prepare(pfn, order, zone):
            return
        mt = zone.get_pageblock_migratetype(pfn)
        pcp_mt = mt
        if mt >= MIGRATE_PCPTYPES:
            if mt == MT_ISOLATE:
                zone.free_one_page(pfn, order, mt, False)
                return
            pcp_mt = MT_MOVABLE
        self.vm.v[_VM_PGFREE] += 1 << order
        pcp = zone.per_cpu_pageset[cpu]
        pcp.free_commit(pfn, order, pcp_mt, mt)

    def free_pages_ok(self, pfn: int, order: int, zone: Zone) -> None:
        """``__free_pages_ok()``: non-pcp orders go straight to the buddy lists."""
        if not self.free_pages_prepare(pfn, order, zone):
            return
        zone.free_one_page(pfn, order, zone.get_pageblock_migratetype(pfn), False)
        self.vm.v[_VM_PGFREE] += 1 << order

    # -- refcounts ----------------------------------------------------------------------
    def split_page(self, pfn: int, order: int) -> bool:
        """``split_page()``: give every sub-page refcount 1 so each frees alone."""
        pages = self.pages
        if pages.flags[pfn] & (PG_HEAD | PG_TAIL):
            self.bad_page(pfn, order, "split_page on a compound page")
            return False
        if not pages.ref[pfn] or pages.info[pfn] & ORDER_MASK != order:
            self.bad_page(pfn, order, "split_page on a page that is not an allocated block")
            return False
        nr = 1 << order
        pages.ref_np[pfn + 1 : pfn + nr] = 1
        alloc_info = pages.info[pfn] & CLEAR_ORDER
        pages.info_np[pfn : pfn + nr] = alloc_info
        pages.flags_np[pfn + 1 : pfn + nr] |= PG_ALLOC
        return True

    def page_ref_freeze(self, pfn: int, count: int) -> bool:
        """``page_ref_freeze()``: set the refcount to 0 iff it equals ``count``."""
        if self.pages.ref[pfn] == count:
            self.pages.ref[pfn] = 0
            return True
        return False

    def page_ref_unfreeze(self, pfn: int, count: int) -> None:
        """``page_ref_unfreeze()``: give a frozen page its refcount back."""
        if count <= 0 or self.pages.ref[pfn] != 0:
            self.bad_page(pfn, 0, "page_ref_unfreeze on a page that is not frozen")
            return
        self.pages.ref[pfn] = count

    def get_page_unless_zero(self, pfn: int) -> bool:
        """``get_page_unless_zero()``: take a reference unless the count is 0."""
        if self.pages.ref[pfn] > 0:
            self.pages.ref[pfn] += 1
            return True
        return False

    def put_page(self, pfn: int, cpu: int) -> None:
        """``put_page()``: drop a reference; the last one frees the page.

        A compound head frees the whole compound page (``free_compound_page``); any
        other page is freed as order 0 (``__folio_put_small``).
        """
        pages = self.pages
        if pages.ref[pfn] <= 0:
            self.bad_page(pfn, 0, "put_page on a page with _refcount 0")
            return
        pages.ref[pfn] -= 1
        if pages.ref[pfn]:
            return
        if pages.flags[pfn] & PG_HEAD:
            self.free_the_page(pfn, pages.info[pfn] & ORDER_MASK, cpu)
        else:
            pages.info[pfn] = pages.info[pfn] & CLEAR_ORDER
            self.free_the_page(pfn, 0, cpu)
