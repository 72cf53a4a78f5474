"""A caller's misuse of the page allocator, and what Linux 6.1 does with it.

Mirrors, for the calls a buggy caller makes: ``__free_pages()`` (mm/page_alloc.c);
``put_page()``, ``folio_put()`` and ``put_page_testzero()`` (include/linux/mm.h);
``page_ref_dec_and_test()`` and ``page_ref_unfreeze()`` (include/linux/page_ref.h);
``split_page()``; and the checks that find the damage: ``free_pages_prepare()`` with
``free_page_is_bad()`` and ``page_bad_reason()``, ``bulkfree_pcp_prepare()`` in
``free_pcppages_bulk()``, and ``check_new_pages()`` in ``rmqueue_buddy()`` and
``rmqueue_bulk()``. The kernel is a production build: CONFIG_DEBUG_VM off (every
``VM_BUG_ON_PAGE()`` is compiled out, ``free_tail_pages_check()`` checks nothing,
``check_new_pcp()`` and ``free_pcp_prepare()``'s first-page check are off), no
debug_pagealloc, no init_on_free, no KASAN.

What the model records:

* where the kernel reports the misuse ("BUG: Bad page state"), a ``bad_page`` event
  with the kernel's reason string (``page_bad_reason()``), and the pages the kernel
  leaks are counted in ``bad_page_leaked_pages``;
* where it does not, the simulator-only ``sim_warning`` event, whose reason is
  ``"<kind>: <text>"`` (the kinds are :data:`simcore.formats.trace_schema.MISUSE_KINDS`);
  pages the kernel loses silently are counted in ``free_order_leaked_pages``;
* a refcount that a caller's put takes below 0 stays negative, as the kernel's
  ``atomic_t`` does, and the zone counts it (``Zone.refcount_underflows``); the checks
  above then find the page later, as in the kernel;
* SIMPLIFICATION: where the kernel would corrupt its own lists (a free page put on a
  list a second time) or free pages of a block someone still owns, the model refuses
  that part and its warning says what the kernel would do.

Pure code, off the hot paths: the allocator calls it only from the misuse branches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simcore.formats import trace_schema as ts
from simcore.mm.pages import (
    CLEAR_ORDER,
    CLEAR_PG_MOVABLE_OWNER,
    ORDER_MASK,
    PG_ALLOC,
    PG_BUDDY,
    PG_HEAD,
    PG_PCP,
    PG_RESERVED,
    PG_TAIL,
)
from simcore.mm.vmstat import VMSTAT_INDEX

if TYPE_CHECKING:
    from simcore.mm.page_free import FreePagesMixin
    from simcore.mm.pages import PageArray
    from simcore.mm.zone import Zone

_VM_BAD_PAGE = VMSTAT_INDEX["bad_page"]
_VM_BAD_PAGE_LEAKED = VMSTAT_INDEX["bad_page_leaked_pages"]
_VM_FREE_ORDER_LEAKED = VMSTAT_INDEX["free_order_leaked_pages"]

FREE, PCP, ALLOCATED, NOWHERE = "free", "pcp", "allocated", "nowhere"
"""Where a page is (:func:`find_block`): in a free block on a buddy free list, in a block
on a per-CPU list, in an allocated block (in use, frozen, or leaked by a failed free:
``PG_ALLOC`` stays on its first page), or in no block (leaked)."""
LATER = ("the kernel reports nothing now; a later check (a pcp drain, an allocation from "
         "the buddy lists, or the free of a block the page went out in) reports \"nonzero "
         "_refcount\" and leaks the block holding it, unless a pcp allocation, compaction "
         "or alloc_contig_range() takes the page first and resets its count")
"""What becomes of a free page whose count a caller's put took below 0."""


# -- what a page is -------------------------------------------------------------------------
def find_block(pages: PageArray, pfn: int, max_order: int) -> tuple[int, int, str]:
    """The block holding ``pfn``: ``(first pfn, order, where)``, ``(-1, 0, NOWHERE)`` if none."""
    flags, info = pages.flags, pages.info
    for order in range(max_order + 1):
        head = pfn & ~((1 << order) - 1)
        f = flags[head]
        if f & (PG_BUDDY | PG_PCP | PG_ALLOC) and info[head] & ORDER_MASK >= order:
            where = FREE if f & PG_BUDDY else PCP if f & PG_PCP else ALLOCATED
            return head, info[head] & ORDER_MASK, where
    return -1, 0, NOWHERE


def where_text(pages: PageArray, pfn: int, max_order: int) -> str:
    """Where ``pfn`` is, in words (for a warning)."""
    head, order, where = find_block(pages, pfn, max_order)
    if where == FREE:
        return f"free (in the order-{order} block at {head:#x} on a buddy free list)"
    if where == PCP:
        return f"free (in the order-{order} block at {head:#x} on a pcp list)"
    if where == ALLOCATED:
        return f"in the allocated order-{order} block at {head:#x}"
    return "leaked (in no free or allocated block)"


def page_bad_reason(pages: PageArray, pfn: int, compound: int) -> str:
    """Why ``free_page_is_bad()`` finds ``pfn`` bad ("" if it does not).

    Mirrors ``page_bad_reason()``, where the last matching check wins. ``compound``: the
    block being freed is compound, so ``free_tail_pages_check()`` has just cleared the
    page's ``mapping`` (without DEBUG_VM it reports nothing itself).
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


# -- reporting --------------------------------------------------------------------------------
def warn(mm: FreePagesMixin, pfn: int, order: int, kind: str, text: str) -> None:
    """Fire the simulator-only ``sim_warning`` with reason ``"<kind>: <text>"``."""
    if mm.tracing:
        zone = mm.page_zone(pfn) if 0 <= pfn < mm.pages.nr_pages else None
        mm.tracer.sim_warning(zone, pfn, order, f"{kind}: {text}")


def zone_bad_page(zone: Zone, pfn: int, order: int, reason: str, leaked: int) -> None:
    """``bad_page()`` from a zone's own paths: count, trace, count ``leaked`` pages."""
    zone.vm.v[_VM_BAD_PAGE] += 1
    zone.vm.v[_VM_BAD_PAGE_LEAKED] += leaked
    if zone.tracing:
        zone.tracer.bad_page(zone, pfn, order, reason)


def _put_below_zero(mm: FreePagesMixin, pfn: int) -> tuple[int, int]:
    """``put_page_testzero()`` on a count <= 0: it goes down, silently. Returns (old, new).

    SIMPLIFICATION: the count stops at the int16 floor (the kernel's atomic_t goes on).
    """
    ref = mm.pages.ref
    old = int(ref[pfn])
    new = max(old - 1, -(1 << 15))
    ref[pfn] = new
    mm.page_zone(pfn).refcount_underflows += 1
    return old, new


# -- the checks that find the damage ----------------------------------------------------------
def check_new_pages(zone: Zone, pfn: int, order: int) -> bool:
    """``check_new_pages()`` on a block taken from the buddy lists: whether it is bad.

    The first page with a non-zero refcount is reported (``page_bad_reason()`` with
    PAGE_FLAGS_CHECK_AT_PREP: "nonzero _refcount") and the whole block leaks; the caller
    has already taken it out of NR_FREE_PAGES, as the kernel has. Runs (without DEBUG_VM)
    in ``rmqueue_buddy()`` and ``rmqueue_bulk()`` (``check_pcp_refill()``), not on pages
    taken from a pcp list (``check_new_pcp()`` checks nothing).
    """
    bad = np.flatnonzero(zone.pages.ref_np[pfn : pfn + (1 << order)])
    if not bad.size:
        return False
    page = pfn + int(bad[0])
    zone_bad_page(zone, page, order if page == pfn else 0, "nonzero _refcount", 1 << order)
    return True


def free_page_is_bad(zone: Zone, pfn: int, order: int) -> None:
    """``bulkfree_pcp_prepare()`` failed on a drained pcp block: report it, leak it.

    Without DEBUG_VM the pcp path checks a freed block's first page only here, when
    ``free_pcppages_bulk()`` returns it to the buddy lists.
    """
    zone_bad_page(zone, pfn, order, "nonzero _refcount", 1 << order)


def prepare_check(mm: FreePagesMixin, pfn: int, order: int, check_free: bool) -> int:
    """The bad pages ``free_pages_prepare()`` reports in a block; returns how many.

    Every page after the first gets ``free_page_is_bad()``, then the first one if
    ``check_free`` (the ``__free_pages_ok()`` path; the pcp path skips it without
    DEBUG_VM): each bad page is a ``bad_page()``, and the kernel then frees nothing of
    the block. SIMPLIFICATION: ``bad_page()``'s ``page_mapcount_reset()``, which strips
    PageBuddy from a free block's first page (it can then no longer merge), is not
    modelled.
    """
    pages = mm.pages
    compound = pages.flags[pfn] & (PG_HEAD | PG_TAIL)
    bad = 0
    for page in range(pfn + 1, min(pfn + (1 << order), pages.nr_pages)):
        reason = page_bad_reason(pages, page, compound)
        if reason:
            mm.bad_page(page, 0, reason)
            bad += 1
    if check_free:
        reason = page_bad_reason(pages, pfn, 0)
        if reason:
            mm.bad_page(pfn, order, reason)
            bad += 1
    return bad


# -- __free_pages() of a page the caller holds no reference to ---------------------------------
def free_pieces(mm: FreePagesMixin, pfn: int, order: int, cpu: int,
                own: int) -> tuple[int, list[tuple[int, int]]]:
    """``__free_pages()``'s loop when the count did not reach 0 on a non-head page.

    The kernel frees the pieces after the first page, largest first
    (``free_the_page(page + (1 << order), order)``). Pieces within the caller's own first
    ``own`` pages are freed. For the others ``free_pages_prepare()``'s checks run
    (:func:`prepare_check`): a piece with a bad page is reported and not freed; one that
    passes would be freed although its pages are free or someone else's (an order-0
    piece is never checked on the pcp path), which the model refuses.
    Returns (bad pages reported, refused ``(pfn, order)`` pieces).
    """
    bad = 0
    refused: list[tuple[int, int]] = []
    while order > 0:
        order -= 1
        piece = pfn + (1 << order)
        if piece + (1 << order) <= pfn + own:
            mm.free_the_page(piece, order, cpu)
        elif piece < mm.pages.nr_pages:
            found = prepare_check(mm, piece, order, not mm.pcp_allowed_order(order))
            if found:
                bad += found
            else:
                refused.append((piece, order))
    return bad, refused


def _pieces_text(mm: FreePagesMixin, refused: list[tuple[int, int]]) -> str:
    if not refused:
        return ""
    shown = ", ".join(f"order-{order} at {piece:#x} "
                      f"({find_block(mm.pages, piece, mm.max_order)[2]})"
                      for piece, order in refused[:3])
    more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
    return (f"; the kernel also frees the pieces after the first page ({shown}{more}), "
            "putting pages that are free or in use on its lists a second time; "
            "the model does not")


def free_pages_unreferenced(mm: FreePagesMixin, pfn: int, order: int, cpu: int) -> bool:
    """``__free_pages(page, order)`` where the page has no reference to drop.

    ``put_page_testzero()`` takes the count below 0, so nothing is freed there and
    nothing is reported; unless the page is a compound head, the pieces after it are
    freed (:func:`free_pieces`). Which misuse it is depends on where the page is: free
    (a double free), the first page of an allocated block (frozen,
    :func:`_free_frozen`), or inside one (a tail page: that block's free later reports
    "nonzero _refcount" and leaks it). Returns False if a bad page was reported.
    """
    pages = mm.pages
    head, have, where = find_block(pages, pfn, mm.max_order)
    call = f"__free_pages(pfn {pfn:#x}, order {order})"
    if where == ALLOCATED and head == pfn:
        return _free_frozen(mm, pfn, order, cpu, have, call)
    old, new = _put_below_zero(mm, pfn)
    bad, refused = free_pieces(mm, pfn, order, cpu, 0)
    if where == ALLOCATED:
        compound = "compound " if pages.flags[head] & PG_HEAD else ""
        warn(mm, pfn, order, ts.MISUSE_TAIL_PAGE,
             f"{call} of a page inside the {compound}order-{have} block at {head:#x}: "
             f"_refcount {old} -> {new}; the kernel reports nothing now, and \"nonzero "
             f"_refcount\" when that block is freed (which leaks it)"
             + _pieces_text(mm, refused))
    else:
        warn(mm, pfn, order, ts.MISUSE_DOUBLE_FREE,
             f"{call} of a page that is {where_text(pages, pfn, mm.max_order)}: _refcount "
             f"{old} -> {new}; {LATER}" + _pieces_text(mm, refused))
    return not bad


def _free_frozen(mm: FreePagesMixin, pfn: int, order: int, cpu: int, have: int,
                 call: str) -> bool:
    """``__free_pages()`` by the owner of a block whose count ``page_ref_freeze()`` holds at 0.

    The count goes to -1 and the first page is not freed (the freezer's
    ``page_ref_unfreeze()`` later overwrites the count, and its last ``put_page()`` frees
    it); a non-compound block's pages after the first are freed now (the pieces of the
    given order, the rest leaking silently if it is too small).
    """
    pages = mm.pages
    old, new = _put_below_zero(mm, pfn)
    pages.flags[pfn] = pages.flags[pfn] & CLEAR_PG_MOVABLE_OWNER  # the owner has let go
    text = (f"{call} of an allocated page whose _refcount is {old} (frozen by "
            f"page_ref_freeze()): _refcount {old} -> {new} and the page is not freed; the "
            "kernel reports nothing, and page_ref_unfreeze() overwrites the count")
    bad = 0
    refused: list[tuple[int, int]] = []
    if not pages.flags[pfn] & PG_HEAD:
        pages.info[pfn] = pages.info[pfn] & CLEAR_ORDER  # the first page stays, as order 0
        bad, refused = free_pieces(mm, pfn, order, cpu, 1 << have)
        if order:
            text += f"; the pages after it up to order {order} are freed"
        if order < have:
            leaked = (1 << have) - (1 << order)
            mm.vm.v[_VM_FREE_ORDER_LEAKED] += leaked
            text += f"; the other {leaked} pages of the order-{have} block leak"
    warn(mm, pfn, order, ts.MISUSE_FROZEN_PAGE, text + _pieces_text(mm, refused))
    return not bad


# -- __free_pages() with the wrong order --------------------------------------------------------
def free_wrong_order(mm: FreePagesMixin, pfn: int, order: int, cpu: int) -> bool:
    """``__free_pages(page, order)`` of a block allocated with another order.

    The kernel does not know a block's order; it frees what it is told (LDD3's warning):

    - Too large: ``free_pages_prepare()`` checks every page after the first
      (:func:`prepare_check`) and reports each bad one; then it frees nothing and the
      block is leaked (``bad_page_leaked_pages``). If no page is bad (pages past the
      block on a pcp list, inner pages of a free block or of a non-compound allocation)
      the kernel frees them all with the block and corrupts its lists; the model
      refuses, leaks the block and records a ``sim_warning``.
    - Too small: the first ``2**order`` pages are freed and the rest of the block leaks
      silently; the model records a ``sim_warning``.

    Leaks the kernel does not report count in ``free_order_leaked_pages``. With another
    reference on the first page a compound block waits for the last ``put_page()``
    (which frees ``compound_order()`` pages: no harm); a non-compound block has the
    pieces after its first page freed (:func:`free_pieces`), those past the block
    checked or refused. Returns False if a bad page was reported.
    """
    pages = mm.pages
    have = pages.info[pfn] & ORDER_MASK
    compound = pages.flags[pfn] & PG_HEAD
    pages.ref[pfn] -= 1
    if pages.ref[pfn]:  # a speculative holder's put_page() frees the first page later
        pages.flags[pfn] = pages.flags[pfn] & CLEAR_PG_MOVABLE_OWNER
        if compound:
            return True
        pages.info[pfn] = pages.info[pfn] & CLEAR_ORDER
        if order < have:
            _short_free_warning(mm, pfn, order, have)
        bad, refused = free_pieces(mm, pfn, order, cpu, 1 << have)
        if refused:
            warn(mm, pfn, order, ts.MISUSE_WRONG_ORDER,
                 f"__free_pages order {order} on an order-{have} block held by another "
                 "reference" + _pieces_text(mm, refused))
        return not bad
    if order < have:
        _short_free_warning(mm, pfn, order, have)
        pages.info[pfn] = (pages.info[pfn] & CLEAR_ORDER) | order
        mm.free_the_page(pfn, order, cpu)
        return True
    if prepare_check(mm, pfn, order, not mm.pcp_allowed_order(order)):
        mm.vm.v[_VM_BAD_PAGE_LEAKED] += 1 << have
        return False
    mm.vm.v[_VM_FREE_ORDER_LEAKED] += 1 << have
    warn(mm, pfn, order, ts.MISUSE_WRONG_ORDER,
         f"__free_pages order {order} on an order-{have} block: the kernel frees the "
         f"{(1 << order) - (1 << have)} pages after it too, corrupting its free lists;"
         " the model leaks the block instead")
    return True


def _short_free_warning(mm: FreePagesMixin, pfn: int, order: int, have: int) -> None:
    """Count and report the pages too small an order leaves behind."""
    leaked = (1 << have) - (1 << order)
    mm.vm.v[_VM_FREE_ORDER_LEAKED] += leaked
    warn(mm, pfn, order, ts.MISUSE_WRONG_ORDER,
         f"__free_pages order {order} on an order-{have} block: {leaked} pages leaked "
         "(the kernel does not notice)")


def bad_pfn(mm: FreePagesMixin, pfn: int, order: int, what: str) -> None:
    """``what(pfn, order)`` of a pfn that is no order-``order`` block of managed memory.

    A PG_reserved page is reported by ``free_pages_prepare()`` ("PAGE_FLAGS_CHECK_AT_FREE
    flag(s) set"; SIMPLIFICATION: at the free, where the kernel's pcp path reports it at
    the drain, and once for the block, not once per page); a pfn beyond the memory map
    or not aligned to the order is ignored with a ``sim_warning`` (the kernel would
    read a ``struct page`` that does not exist, or put a misaligned block on its lists).
    """
    pages = mm.pages
    if 0 <= pfn < pages.nr_pages and not pfn & ((1 << order) - 1):
        mm.bad_page(pfn, order, "PAGE_FLAGS_CHECK_AT_FREE flag(s) set")
        return
    if not 0 <= pfn < pages.nr_pages:
        text = "the pfn is beyond the memory map: the kernel has no struct page there"
    else:
        text = (f"the pfn is not aligned to order {order}: the kernel would put a misaligned "
                "block on its free lists (__free_one_page() assumes alignment)")
    warn(mm, pfn, order, ts.MISUSE_BAD_PFN,
         f"{what}(pfn {pfn:#x}, order {order}): {text}; the model ignores the call")


# -- put_page(), page_ref_unfreeze(), split_page() ----------------------------------------------
def put_page_unreferenced(mm: FreePagesMixin, pfn: int) -> None:
    """``put_page()`` (after ``page_folio()``) on a page whose count is <= 0.

    ``folio_put()``'s ``put_page_testzero()`` takes it below 0 and frees nothing; the
    kernel reports nothing. On a non-compound block's inner page (``page_folio()`` is
    the page itself) the block's free later reports "nonzero _refcount" and leaks it.
    """
    pages = mm.pages
    head, have, where = find_block(pages, pfn, mm.max_order)
    old, new = _put_below_zero(mm, pfn)
    call = f"put_page(pfn {pfn:#x})"
    if where == ALLOCATED and head == pfn:
        warn(mm, pfn, 0, ts.MISUSE_FROZEN_PAGE,
             f"{call} on an allocated page whose _refcount is {old} (frozen by "
             f"page_ref_freeze(), or a free hugetlb pool page): _refcount {old} -> {new}; "
             "the kernel reports nothing (the next page_ref_unfreeze() or allocation sets "
             "the count)")
    elif where == ALLOCATED:
        warn(mm, pfn, 0, ts.MISUSE_TAIL_PAGE,
             f"{call}, page {pfn - head} of the non-compound order-{have} block at "
             f"{head:#x}: page_folio() is the page itself (it is no compound tail), whose "
             f"_refcount goes {old} -> {new}; the kernel reports nothing now, and "
             "\"nonzero _refcount\" when the block is freed (which leaks it)")
    else:
        warn(mm, pfn, 0, ts.MISUSE_DOUBLE_FREE,
             f"{call} on a page that is {where_text(pages, pfn, mm.max_order)}: _refcount "
             f"{old} -> {new}; {LATER}")


def put_page_leaks_tails(mm: FreePagesMixin, pfn: int) -> None:
    """The last ``put_page()`` on the first page of a non-compound order>0 block.

    ``__folio_put_small()`` frees that page only; the rest of the block leaks silently.
    """
    have = mm.pages.info[pfn] & ORDER_MASK
    leaked = (1 << have) - 1
    mm.vm.v[_VM_FREE_ORDER_LEAKED] += leaked
    warn(mm, pfn, 0, ts.MISUSE_WRONG_ORDER,
         f"put_page(pfn {pfn:#x}) dropped the last reference of a non-compound order-{have} "
         f"block: __folio_put_small() frees its first page only; {leaked} pages leaked "
         "(the kernel does not notice)")


def unfreeze_misuse(mm: FreePagesMixin, pfn: int, count: int) -> None:
    """``page_ref_unfreeze(page, count)`` whose VM_BUG_ONs would fire; the caller sets the count.

    A negative count means a reference was dropped while the page was frozen (a
    ``frozen page`` misuse): the kernel forgets that put.
    """
    old = int(mm.pages.ref[pfn])
    call = f"page_ref_unfreeze(pfn {pfn:#x}, {count})"
    if count < 0:
        mm.page_zone(pfn).refcount_underflows += 1
    if old < 0:
        warn(mm, pfn, 0, ts.MISUSE_FROZEN_PAGE,
             f"{call} of a page whose _refcount is {old}: a reference was dropped while it "
             f"was frozen; the kernel (VM_BUG_ON_PAGE compiled out) sets it to {count}, "
             "forgetting that put")
        return
    what = f"whose _refcount is {old}, not 0 (it is not frozen)" if old else \
        f"with a count of {count}"
    warn(mm, pfn, 0, ts.MISUSE_UNFREEZE,
         f"{call} of a page {what}: the kernel (VM_BUG_ON compiled out) sets it to {count}")


def split_page_misuse(mm: FreePagesMixin, pfn: int, order: int) -> None:
    """``split_page(page, order)`` of anything but an allocated non-compound block of that order.

    The kernel's checks are VM_BUG_ONs: it gives the ``2**order - 1`` pages after the
    first a count of 1 whatever they are. SIMPLIFICATION: the model does not split, and
    says what the kernel would do.
    """
    pages = mm.pages
    head, have, where = find_block(pages, pfn, mm.max_order)
    nr = (1 << order) - 1
    call = f"split_page(pfn {pfn:#x}, order {order})"
    if where == ALLOCATED and head == pfn and pages.flags[pfn] & PG_HEAD:
        text = (f"{call} of a compound page: the kernel (VM_BUG_ON_PAGE compiled out) gives "
                f"its {nr} tails _refcount 1 but leaves them compound tails, so a put_page() "
                "on one drops the head's reference")
    elif where != ALLOCATED or head != pfn or pages.ref[pfn] <= 0:
        text = (f"{call} of a page that is {where_text(pages, pfn, mm.max_order)} with "
                f"_refcount {pages.ref[pfn]}: the kernel (VM_BUG_ON_PAGE compiled out) gives "
                f"the {nr} pages after it _refcount 1")
    elif order > have:
        text = (f"{call} of an order-{have} block: the kernel gives the {nr} pages after "
                "its first _refcount 1, pages past the block (free or someone else's) too")
    else:
        text = (f"{call} of an order-{have} block: the kernel gives the {nr} pages after "
                f"its first _refcount 1; the other {(1 << have) - (1 << order)} keep none")
    warn(mm, pfn, order, ts.MISUSE_SPLIT_PAGE, text + "; the model does not split it")
