"""Freeing pages and page refcounts.

Mirrors, from Linux 6.1: ``__free_pages()``, ``free_the_page()``,
``free_unref_page()``, ``__free_pages_ok()``, ``free_pages_prepare()`` with
``bad_page()`` (mm/page_alloc.c); ``split_page()``; ``put_page()`` /
``__folio_put_small()`` (mm/swap.c); ``page_ref_freeze()``,
``page_ref_unfreeze()`` and ``get_page_unless_zero()`` (include/linux/page_ref.h,
include/linux/mm.h).

A caller's misuse (a double free, a wrong order, a frozen page, a tail page) leaves the
fast path at one branch for :mod:`simcore.mm.page_misuse`, which does what 6.1 does:
a ``bad_page`` event with the kernel's reason where the kernel reports it, a
simulator-only ``sim_warning`` where it does not; the model never crashes on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm import page_misuse
from simcore.mm.constants import MIGRATE_PCPTYPES, MT_ISOLATE, MT_MOVABLE
from simcore.mm.pages import (
    CLEAR_ORDER,
    CLEAR_PG_MOVABLE_OWNER,
    ORDER_MASK,
    PG_ALLOC,
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
        """``bad_page()``: count and trace "BUG: Bad page state".

        What leaks is the caller's decision (here: the block being freed). The kernel's
        ``bad_page()`` also resets the page's ``_mapcount`` (``page_mapcount_reset()``,
        which strips PageBuddy) and taints the kernel (TAINT_BAD_PAGE); neither is
        modelled.
        """
        self.vm.v[_VM_BAD_PAGE] += 1
        zone = self.page_zone(pfn) if 0 <= pfn < self.pages.nr_pages else None
        if self.tracing:
            self.tracer.bad_page(zone, pfn, order, reason)

    def _check_pfn(self, pfn: int, order: int, what: str) -> bool:
        """Whether ``pfn`` can be an order-``order`` block (else see page_misuse.bad_pfn())."""
        if not 0 <= pfn < self.pages.nr_pages or pfn & ((1 << order) - 1) or \
                self.pages.flags[pfn] & PG_RESERVED:
            page_misuse.bad_pfn(self, pfn, order, what)
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
        if pages.ref[pfn] <= 0 or flags & PG_TAIL:  # no reference to drop: misuse
            return page_misuse.free_pages_unreferenced(self, pfn, order, cpu)
        if flags & PG_ALLOC and pages.info[pfn] & ORDER_MASK != order:
            return page_misuse.free_wrong_order(self, pfn, order, cpu)
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

    def free_the_page(self, pfn: int, order: int, cpu: int) -> None:
        """``free_the_page()``: pcp for pcp-allowed orders, else straight to buddy."""
        zone = self.page_zone(pfn)
        if self.pcp_allowed_order(order):
            self.free_unref_page(pfn, order, cpu, zone)
        else:
            self.free_pages_ok(pfn, order, zone)

    def free_pages_prepare(self, pfn: int, order: int, zone: Zone, check_free: bool) -> bool:
        """``free_pages_prepare()``: trace, check the pages, clear the page state.

        Every page after the first gets ``free_page_is_bad()``; the first one only with
        ``check_free``, which ``__free_pages_ok()`` passes and the pcp path
        (``free_pcp_prepare()`` without DEBUG_VM) does not: there a first page with a
        count a caller's put took below 0 goes on the pcp list, and the drain's
        ``bulkfree_pcp_prepare()`` reports it, unless a pcp allocation resets the count
        first. Each bad page is a ``bad_page()`` (:func:`page_misuse.prepare_check`) and
        the block is leaked.
        """
        pages = self.pages
        if self.tracing:
            self.tracer.mm_page_free(zone, pfn, order)
        nr = 1 << order
        if (order and pages.any_ref(pfn + 1, pfn + nr)) or (check_free and pages.ref[pfn]):
            if page_misuse.prepare_check(self, pfn, order, check_free):
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
        if not self.free_pages_prepare(pfn, order, zone, False):  # free_pcp_prepare()
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
        if not self.free_pages_prepare(pfn, order, zone, True):
            return
        zone.free_one_page(pfn, order, zone.get_pageblock_migratetype(pfn), False)
        self.vm.v[_VM_PGFREE] += 1 << order

    # -- refcounts ----------------------------------------------------------------------
    def split_page(self, pfn: int, order: int) -> bool:
        """``split_page()``: give every sub-page refcount 1 so each frees alone.

        Anything but an allocated, referenced, non-compound block of that order is
        refused with a ``sim_warning`` (:func:`simcore.mm.page_misuse.split_page_misuse`).
        """
        pages = self.pages
        flags = pages.flags[pfn]
        if flags & (PG_HEAD | PG_TAIL) or not flags & PG_ALLOC or pages.ref[pfn] <= 0 or \
                pages.info[pfn] & ORDER_MASK != order:
            page_misuse.split_page_misuse(self, pfn, order)
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
        """``page_ref_unfreeze()``: set the refcount to ``count``.

        The kernel's checks (the count was 0, ``count`` is not) are VM_BUG_ONs, compiled
        out without DEBUG_VM: it sets the count whatever it was. The model does the same
        and records a ``sim_warning`` when a check would have failed.
        """
        if count <= 0 or self.pages.ref[pfn] != 0:
            page_misuse.unfreeze_misuse(self, pfn, count)
        self.pages.ref[pfn] = count

    def get_page_unless_zero(self, pfn: int) -> bool:
        """``get_page_unless_zero()``: take a reference unless the count is 0.

        SIMPLIFICATION: a negative count (a caller's put below 0) also fails; the
        kernel's ``atomic_add_unless(..., 0)`` would take it to 0, after which the
        walker's ``put_page()`` would take it below 0 again.
        """
        if self.pages.ref[pfn] > 0:
            self.pages.ref[pfn] += 1
            return True
        return False

    def put_page(self, pfn: int, cpu: int) -> None:
        """``put_page()``: drop a reference; the last one frees the page.

        ``page_folio()`` first: on a compound tail the head's reference is dropped (legal).
        A compound head frees the whole compound page (``free_compound_page``); any
        other page is freed as order 0 (``__folio_put_small``), so the last put on the
        first page of a non-compound order>0 block leaks the rest of it. A put on a
        page with no reference takes its count below 0
        (:func:`simcore.mm.page_misuse.put_page_unreferenced`).
        """
        pages = self.pages
        flags = pages.flags[pfn]
        if flags & PG_TAIL:  # page_folio(): the compound head
            pfn = pages.compound_head(pfn, self.max_order)
            flags = pages.flags[pfn]
        if pages.ref[pfn] <= 0:
            page_misuse.put_page_unreferenced(self, pfn)
            return
        pages.ref[pfn] -= 1
        if pages.ref[pfn]:
            return
        if flags & PG_HEAD:
            self.free_the_page(pfn, pages.info[pfn] & ORDER_MASK, cpu)
        else:
            if pages.info[pfn] & ORDER_MASK:
                page_misuse.put_page_leaks_tails(self, pfn)
            pages.info[pfn] = pages.info[pfn] & CLEAR_ORDER
            self.free_the_page(pfn, 0, cpu)
