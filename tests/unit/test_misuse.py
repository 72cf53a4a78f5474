"""Misuse by callers (issue 13.4): what 6.1 does, and what the model records.

One test per case, each asserting the event (``bad_page`` with the kernel's reason where
the kernel reports the misuse, the simulator-only ``sim_warning`` with its kind where it
does not), the counters, that the invariants hold after the misuse, and that the run goes
on (a later allocation and free work). The kernel facts are in
:mod:`simcore.mm.page_misuse`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from conftest import traced_machine

from simcore.formats import trace_schema as ts
from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import PG_PCP, PG_RESERVED

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.page_alloc import PageAllocator
    from simcore.sim.machine import Machine

KERNEL = int(GFP_KERNEL)
COMP = int(GFP_KERNEL | GFP.COMP)


def _bad(log: CallLog) -> list[tuple[int, int, str]]:
    """``(pfn, order, reason)`` of every bad_page."""
    return [(a[1], a[2], a[3]) for a in log.named("bad_page")]


def _warned(log: CallLog, kind: str | None = None) -> list[tuple[int, int, str]]:
    """``(pfn, order, reason)`` of every sim_warning (of ``kind``)."""
    return [(a[1], a[2], a[3]) for a in log.named("sim_warning")
            if kind is None or ts.misuse_kind(a[3]) == kind]


def _still_works(mm: PageAllocator, live: dict[int, int]) -> None:
    """A later allocation and free work, and the invariants hold after them."""
    pfn = mm.alloc_pages(KERNEL, 1, 0, 1)
    assert pfn >= 0
    check_invariants(mm, {**live, pfn: 1})
    assert mm.free_pages(pfn, 1, 1)
    check_invariants(mm, live)


def _live(m: Machine) -> dict[int, int]:
    return {h.pfn: h.order for h in m.owner_of.values()}


# -- 1. double free ------------------------------------------------------------------------
def test_double_free_on_a_pcp_list_is_silent_until_the_drain_reports_it(
    lab: Lab, call_log: CallLog
) -> None:
    # __free_pages(): put_page_testzero() takes the count 0 -> -1 and frees nothing
    # (order 0: no pieces). free_pcppages_bulk()'s bulkfree_pcp_prepare() then finds
    # the page bad and leaks it.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert mm.free_pages(pfn, 0, 0)
    assert mm.free_pages(pfn, 0, 0)
    assert mm.pages.ref[pfn] == -1 and mm.pages.flags[pfn] & PG_PCP
    (warning,) = _warned(call_log)
    assert warning[:2] == (pfn, 0) and warning[2].startswith("double free: __free_pages(")
    assert "_refcount 0 -> -1" in warning[2] and "on a pcp list" in warning[2]
    assert _bad(call_log) == [] and mm.vm["bad_page"] == 0
    check_invariants(mm, {})
    mm.drain_all_pages()
    assert _bad(call_log) == [(pfn, 0, "nonzero _refcount")]
    assert mm.vm["bad_page"] == 1 and mm.vm["bad_page_leaked_pages"] == 1
    check_invariants(mm, {})
    _still_works(mm, {})


def test_double_free_is_healed_when_a_pcp_allocation_hands_the_page_out(
    lab: Lab, call_log: CallLog
) -> None:
    # check_new_pcp() checks nothing without DEBUG_VM; prep_new_page() sets the count 1.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    mm.free_pages(pfn, 0, 0)
    mm.free_pages(pfn, 0, 0)
    again = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert again == pfn and mm.pages.ref[pfn] == 1
    check_invariants(mm, {pfn: 0})
    assert mm.free_pages(pfn, 0, 0)
    mm.drain_all_pages()
    assert _bad(call_log) == [] and mm.vm["bad_page_leaked_pages"] == 0
    check_invariants(mm, {})


def test_double_free_on_the_buddy_lists_is_caught_by_check_new_pages(
    lab: Lab, call_log: CallLog
) -> None:
    # An order-4 block goes straight to the buddy lists (and merges). The double free's
    # pieces lie inside a free block, where free_pages_prepare() finds nothing: the
    # kernel would list them a second time; the model refuses. The first allocation that
    # takes the page from the buddy lists fails rmqueue_buddy()'s check_new_pages(): the
    # block is reported and leaked, and the kernel takes another.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 4, 0, 0)
    assert mm.free_pages(pfn, 4, 0)
    assert mm.free_pages(pfn, 4, 0)
    (warning,) = _warned(call_log, ts.MISUSE_DOUBLE_FREE)
    assert "on a buddy free list" in warning[2]
    assert f"order-3 at {pfn + 8:#x} (free)" in warning[2]
    assert "the model does not" in warning[2]
    assert _bad(call_log) == []
    check_invariants(mm, {})
    live: dict[int, int] = {}
    while not _bad(call_log):
        got = mm.alloc_pages(KERNEL, 4, 0, 0)
        assert got >= 0 and got != pfn
        live[got] = 4
    assert _bad(call_log) == [(pfn, 4, "nonzero _refcount")]
    assert mm.vm["bad_page_leaked_pages"] == 16
    check_invariants(mm, live)
    for got in live:
        assert mm.free_pages(got, 4, 0)
    check_invariants(mm, {})


def test_double_free_whose_piece_is_in_use_is_a_bad_page(lab: Lab, call_log: CallLog) -> None:
    # A is freed, its first half reused and freed (free at A, order 4), its second half
    # held by C. __free_pages(A, 5) again: A goes to -1; the order-4 piece at C's head
    # goes through __free_pages_ok(), whose check finds C's reference; the smaller
    # pieces lie in the free block at A (refused, as the kernel would list them twice).
    # C keeps its block and frees it normally.
    mm = lab.machine(tracer=call_log)
    a = mm.alloc_pages(KERNEL, 5, 0, 0)
    mm.free_pages(a, 5, 0)
    b = mm.alloc_pages(KERNEL, 4, 0, 0)
    c = mm.alloc_pages(KERNEL, 4, 0, 0)
    assert (b, c) == (a, a + 16)
    mm.free_pages(b, 4, 0)
    assert not mm.free_pages(a, 5, 0)
    assert _bad(call_log) == [(c, 4, "nonzero _refcount")]
    assert mm.vm["bad_page_leaked_pages"] == 0  # the kernel frees nothing of it, leaks nothing
    (warning,) = _warned(call_log, ts.MISUSE_DOUBLE_FREE)
    assert f"order-3 at {a + 8:#x} (free)" in warning[2]
    check_invariants(mm, {c: 4})
    assert mm.free_pages(c, 4, 0)
    check_invariants(mm, {})


def test_machine_double_free_of_a_page_now_owned_by_another_is_refused() -> None:
    # The kernel would drop the new owner's reference and free its page under it;
    # the model leaves the innocent owner's page alone and says so.
    m, log = traced_machine()
    a = m.alloc_now("buggy", KERNEL, 0, 0)
    assert a is not None
    m.free(a)
    b = m.alloc_now("innocent", KERNEL, 0, 0)
    assert b is not None and b.pfn == a.pfn  # the pcp list hands it straight out
    m.free(a)
    (warning,) = _warned(log, ts.MISUSE_DOUBLE_FREE)
    assert warning[0] == a.pfn and "innocent holds it" in warning[2]
    assert "the model ignores the call" in warning[2]
    assert m.mm.pages.ref[b.pfn] == 1 and b.alive
    assert _bad(log) == [] and m.stats.free_requests == 2
    check_invariants(m.mm, _live(m))
    m.free(b)
    check_invariants(m.mm, _live(m))


# -- 2. wrong order ------------------------------------------------------------------------
def test_wrong_order_too_large_under_another_reference_frees_only_its_own_pieces(
    lab: Lab, call_log: CallLog
) -> None:
    # __free_pages(page, 3) of an order-2 block a walker holds: the count stays 1, the
    # block is not compound, so the pieces after the first page are freed: the order-1
    # and order-0 pieces are the block's own, the order-2 piece past it is free on the
    # pcp list the refill filled (clean: the kernel would list it twice; the model refuses).
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    assert mm.free_pages(pfn, 3, 0)
    frees = [(a[1], a[2]) for a in call_log.named("mm_page_free")]
    assert frees == [(pfn + 2, 1), (pfn + 1, 0)]
    (warning,) = _warned(call_log, ts.MISUSE_WRONG_ORDER)
    assert f"order-2 at {pfn + 4:#x}" in warning[2] and "the model does not" in warning[2]
    assert _bad(call_log) == [] and mm.vm["free_order_leaked_pages"] == 0
    check_invariants(mm, {pfn: 0})
    mm.put_page(pfn, 0)  # the walker's put frees the first page
    check_invariants(mm, {})


# -- 3. a frozen page ------------------------------------------------------------------------
def test_freeing_a_frozen_page_takes_its_count_below_zero(lab: Lab, call_log: CallLog) -> None:
    # page_ref_freeze() holds the count at 0: __free_pages() takes it to -1 and frees
    # nothing; the kernel reports nothing. A non-compound block's pages after the first
    # are freed. The freezer's page_ref_unfreeze() overwrites the count (its VM_BUG_ON
    # is compiled out) and its put_page() frees the first page.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert mm.page_ref_freeze(pfn, 1)
    assert mm.free_pages(pfn, 2, 0)
    assert mm.pages.ref[pfn] == -1
    assert [(a[1], a[2]) for a in call_log.named("mm_page_free")] == [(pfn + 2, 1), (pfn + 1, 0)]
    (warning,) = _warned(call_log)
    assert ts.misuse_kind(warning[2]) == ts.MISUSE_FROZEN_PAGE and "-> -1" in warning[2]
    assert _bad(call_log) == [] and mm.vm["bad_page"] == 0
    check_invariants(mm, {pfn: 0}, frozen={pfn})
    mm.page_ref_unfreeze(pfn, 1)
    assert mm.pages.ref[pfn] == 1
    assert ts.misuse_kind(_warned(call_log)[-1][2]) == ts.MISUSE_FROZEN_PAGE
    check_invariants(mm, {pfn: 0})
    mm.put_page(pfn, 0)
    assert mm.vm["bad_page"] == 0 and mm.vm["free_order_leaked_pages"] == 0
    check_invariants(mm, {})
    _still_works(mm, {})


def test_machine_free_of_a_frozen_compound_page_waits_for_the_freezer() -> None:
    m, log = traced_machine()
    h = m.alloc_now("owner", COMP, 2, 0)
    assert h is not None and m.mm.page_ref_freeze(h.pfn, 1)
    m.free(h)
    assert not h.alive and m.mm.pages.ref[h.pfn] == -1
    assert log.named("mm_page_free") == []  # a compound head: no pieces
    assert [ts.misuse_kind(w[2]) for w in _warned(log)] == [ts.MISUSE_FROZEN_PAGE]
    check_invariants(m.mm, {**_live(m), h.pfn: 2}, frozen={h.pfn})
    m.mm.page_ref_unfreeze(h.pfn, 1)
    m.mm.put_page(h.pfn, 0)
    assert [(a[1], a[2]) for a in log.named("mm_page_free")] == [(h.pfn, 2)]
    assert m.mm.vm["bad_page"] == 0
    check_invariants(m.mm, _live(m))


# -- 4. use after free -----------------------------------------------------------------------
def test_use_after_free_is_undetected_and_changes_nothing() -> None:
    m, log = traced_machine()
    h = m.alloc_now("buggy", KERNEL, 1, 0)
    assert h is not None
    m.touch(h)  # a live handle: nothing to say
    m.free(h)
    state = [a.copy() for a in (m.mm.pages.ref_np, m.mm.pages.flags_np, m.mm.pages.info_np)]
    vm = m.mm.vm.as_dict()
    m.touch(h)
    (warning,) = _warned(log)
    assert warning[:2] == (h.pfn, 1)
    assert warning[2].startswith("use after free: ") and "does not detect it" in warning[2]
    assert "pcp list" in warning[2]
    after = (m.mm.pages.ref_np, m.mm.pages.flags_np, m.mm.pages.info_np)
    assert all(np.array_equal(a, b) for a, b in zip(state, after, strict=True))
    assert m.mm.vm.as_dict() == vm and _bad(log) == []
    other = m.alloc_now("innocent", KERNEL, 1, 0)
    assert other is not None and other.pfn == h.pfn
    m.touch(h)
    assert "innocent holds it" in _warned(log)[-1][2]
    check_invariants(m.mm, _live(m))
    m.free(other)
    check_invariants(m.mm, _live(m))


# -- 5. put_page on a tail page --------------------------------------------------------------
def test_put_page_on_a_compound_tail_drops_the_heads_reference(
    lab: Lab, call_log: CallLog
) -> None:
    # page_folio() of a tail is the head: legal, no event; the last put frees it all.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(COMP, 2, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    mm.put_page(pfn + 3, 0)
    assert mm.pages.ref[pfn] == 1 and mm.pages.ref[pfn + 3] == 0
    check_invariants(mm, {pfn: 2})
    mm.put_page(pfn + 1, 0)
    assert [(a[1], a[2]) for a in call_log.named("mm_page_free")] == [(pfn, 2)]
    assert _warned(call_log) == [] and _bad(call_log) == []
    check_invariants(mm, {})


def test_machine_put_page_on_a_compound_tail_frees_the_block() -> None:
    m, log = traced_machine()
    h = m.alloc_now("owner", COMP, 3, 0)
    assert h is not None
    m.put_page(h, 5)
    assert not h.alive and [(a[1], a[2]) for a in log.named("mm_page_free")] == [(h.pfn, 3)]
    assert _warned(log) == [] and m.stats.free_requests == 1
    check_invariants(m.mm, _live(m))
    with pytest.raises(ValueError, match="page 8 of an order-3 block"):
        m.put_page(h, 8)


def test_put_page_on_a_non_compound_tail_is_caught_when_the_block_is_freed() -> None:
    # page_folio() of a non-compound block's page is the page itself: its own count
    # goes 0 -> -1 silently; the block's free_pages_prepare() reports the page and the
    # block is leaked.
    m, log = traced_machine()
    h = m.alloc_now("buggy", KERNEL, 2, 0)
    assert h is not None
    m.put_page(h, 1)
    assert h.alive and m.mm.pages.ref[h.pfn + 1] == -1
    (warning,) = _warned(log, ts.MISUSE_TAIL_PAGE)
    assert warning[0] == h.pfn + 1 and "page_folio() is the page itself" in warning[2]
    assert _bad(log) == []
    check_invariants(m.mm, _live(m))
    m.free(h)
    assert _bad(log) == [(h.pfn + 1, 0, "nonzero _refcount")]
    assert m.mm.vm["bad_page_leaked_pages"] == 4
    check_invariants(m.mm, _live(m))
    again = m.alloc_now("buggy", KERNEL, 2, 0)
    assert again is not None
    m.free(again)
    check_invariants(m.mm, _live(m))


def test_machine_put_page_on_a_non_compound_first_page_frees_it_alone() -> None:
    # __folio_put_small(): only the first page goes back; the other three leak silently.
    m, log = traced_machine()
    h = m.alloc_now("buggy", KERNEL, 2, 0)
    assert h is not None
    m.put_page(h, 0)
    assert not h.alive
    assert [(a[1], a[2]) for a in log.named("mm_page_free")] == [(h.pfn, 0)]
    (warning,) = _warned(log, ts.MISUSE_WRONG_ORDER)
    assert "3 pages leaked" in warning[2]
    assert m.mm.vm["free_order_leaked_pages"] == 3 and _bad(log) == []
    check_invariants(m.mm, _live(m))


def test_a_pcp_free_does_not_check_the_first_page_the_drain_does(
    lab: Lab, call_log: CallLog
) -> None:
    # A walker holds an order-2 non-compound block and a buggy put_page() took page 2 to
    # -1. The owner's __free_pages() leaves the count at 1 and frees the pieces after the
    # first page: the order-1 piece at page 2 goes through free_unref_page(), whose
    # free_pcp_prepare() does not check its first page without DEBUG_VM, so it goes on
    # the pcp list as it is; the drain's bulkfree_pcp_prepare() reports and leaks it.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    mm.put_page(pfn + 2, 0)
    assert mm.pages.ref[pfn + 2] == -1
    assert mm.free_pages(pfn, 2, 0)
    assert [(a[1], a[2]) for a in call_log.named("mm_page_free")] == [(pfn + 2, 1), (pfn + 1, 0)]
    assert _bad(call_log) == [] and mm.vm["bad_page"] == 0
    assert mm.pages.flags[pfn + 2] & PG_PCP and mm.pages.ref[pfn + 2] == -1
    check_invariants(mm, {pfn: 0})
    mm.drain_all_pages()
    assert _bad(call_log) == [(pfn + 2, 1, "nonzero _refcount")]
    assert mm.vm["bad_page_leaked_pages"] == 2
    mm.put_page(pfn, 0)  # the walker's put frees the first page
    check_invariants(mm, {})
    _still_works(mm, {})


def test_free_pages_ok_checks_the_first_page_at_the_free(lab: Lab, call_log: CallLog) -> None:
    # The same with an order-5 block and page 16: the order-4 piece is no pcp order, so
    # __free_pages_ok() runs free_pages_prepare() with check_free and reports it at once.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 5, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    mm.put_page(pfn + 16, 0)
    mm.free_pages(pfn, 5, 0)
    assert _bad(call_log) == [(pfn + 16, 4, "nonzero _refcount")]
    assert mm.vm["bad_page_leaked_pages"] == 16
    frees = [(a[1], a[2]) for a in call_log.named("mm_page_free")]
    assert frees == [(pfn + 16, 4), (pfn + 8, 3), (pfn + 4, 2), (pfn + 2, 1), (pfn + 1, 0)]
    check_invariants(mm, {pfn: 0})
    mm.put_page(pfn, 0)
    check_invariants(mm, {})
    _still_works(mm, {})


def test_free_pages_on_a_compound_tail_is_caught_when_the_page_is_freed(
    lab: Lab, call_log: CallLog
) -> None:
    # __free_pages() does not go to the head: the tail's count goes 0 -> -1 silently.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(COMP, 2, 0, 0)
    assert mm.free_pages(pfn + 2, 0, 0)
    assert mm.pages.ref[pfn + 2] == -1
    assert [ts.misuse_kind(w[2]) for w in _warned(call_log)] == [ts.MISUSE_TAIL_PAGE]
    check_invariants(mm, {pfn: 2})
    mm.free_pages(pfn, 2, 0)
    assert _bad(call_log) == [(pfn + 2, 0, "nonzero _refcount")]
    assert mm.vm["bad_page_leaked_pages"] == 4
    check_invariants(mm, {})
    _still_works(mm, {})


# -- the other calls the kernel does not check -------------------------------------------------
def test_unfreeze_of_a_page_not_frozen_sets_the_count_as_the_kernel_does(
    lab: Lab, call_log: CallLog
) -> None:
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    mm.page_ref_unfreeze(pfn, 3)
    assert mm.pages.ref[pfn] == 3
    (warning,) = _warned(call_log, ts.MISUSE_UNFREEZE)
    assert "not 0 (it is not frozen)" in warning[2]
    check_invariants(mm, {pfn: 0})


def test_split_page_of_a_compound_page_is_refused(lab: Lab, call_log: CallLog) -> None:
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(COMP, 2, 0, 0)
    assert not mm.split_page(pfn, 2)
    (warning,) = _warned(call_log, ts.MISUSE_SPLIT_PAGE)
    assert "compound page" in warning[2] and "the model does not split it" in warning[2]
    assert list(mm.pages.ref_np[pfn : pfn + 4]) == [1, 0, 0, 0]
    check_invariants(mm, {pfn: 2})


def test_bad_pfns(lab: Lab, call_log: CallLog) -> None:
    mm = lab.machine(tracer=call_log, reserved_pages=64)
    assert not mm.free_pages(mm.pages.nr_pages + 8, 0, 0)
    assert not mm.free_pages(4097, 1, 0)
    kinds = [ts.misuse_kind(w[2]) for w in _warned(call_log)]
    assert kinds == [ts.MISUSE_BAD_PFN] * 2
    reserved = int(np.flatnonzero(mm.pages.flags_np & PG_RESERVED)[-1])
    assert not mm.free_pages(reserved, 0, 0)
    assert _bad(call_log) == [(reserved, 0, "PAGE_FLAGS_CHECK_AT_FREE flag(s) set")]
    check_invariants(mm, {})


def test_misuse_kinds_are_the_documented_ones() -> None:
    assert ts.misuse_kind("double free: anything: else") == ts.MISUSE_DOUBLE_FREE
    assert len(set(ts.MISUSE_KINDS)) == len(ts.MISUSE_KINDS) == 8
