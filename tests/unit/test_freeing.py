"""Refcounts, __free_pages, split_page, speculative references and misuse (spec §5, §6).

The misuse cases of issue 13.4 are in ``test_misuse.py``.

Every test uses a fresh 64 MiB machine and tracks its live allocations so that
``check_invariants`` can account for every managed page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import PG_BUDDY, PG_HEAD, PG_PCP, PG_TAIL
from simcore.mm.pcp import NR_PCP_LISTS

if TYPE_CHECKING:
    from conftest import CallLog, Lab

KERNEL = int(GFP_KERNEL)
COMP = int(GFP_KERNEL | GFP.COMP)


def _frees(call_log: CallLog) -> list[tuple[int, int]]:
    return [(args[1], args[2]) for args in call_log.named("mm_page_free")]


def _bad(call_log: CallLog) -> list[str]:
    return [args[3] for args in call_log.named("bad_page")]


def test_non_compound_refcounts(lab: Lab) -> None:
    # behaviour 1
    mm = lab.machine()
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert list(mm.pages.ref_np[pfn : pfn + 4]) == [1, 0, 0, 0]
    assert not any(mm.pages.flags_np[pfn : pfn + 4] & (PG_HEAD | PG_TAIL))
    check_invariants(mm, {pfn: 2})


def test_compound_refcounts_and_linkage(lab: Lab) -> None:
    # behaviour 2
    mm = lab.machine()
    pfn = mm.alloc_pages(COMP, 2, 0, 0)
    assert list(mm.pages.ref_np[pfn : pfn + 4]) == [1, 0, 0, 0]
    assert mm.pages.flags[pfn] & PG_HEAD
    assert all(mm.pages.flags_np[pfn + 1 : pfn + 4] & PG_TAIL)
    assert mm.pages.order_of(pfn) == 2
    assert [mm.pages.compound_head(p, mm.max_order) for p in range(pfn, pfn + 4)] == [pfn] * 4
    check_invariants(mm, {pfn: 2})


def test_split_page_then_free_each_page(lab: Lab) -> None:
    # behaviour 3
    mm = lab.machine()
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert mm.split_page(pfn, 2)
    assert list(mm.pages.ref_np[pfn : pfn + 4]) == [1, 1, 1, 1]
    live = {pfn + i: 0 for i in range(4)}
    check_invariants(mm, live)
    for p in (pfn + 2, pfn, pfn + 3, pfn + 1):
        assert mm.free_pages(p, 0, 0)
        del live[p]
        check_invariants(mm, live)
    assert mm.vm["bad_page"] == 0


def test_free_non_compound_with_extra_ref_frees_tail_pieces(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 41
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 3, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    assert mm.free_pages(pfn, 3, 0)
    assert _frees(call_log) == [(pfn + 4, 2), (pfn + 2, 1), (pfn + 1, 0)]
    assert mm.pages.ref[pfn] == 1
    pcp = mm.zones[1].per_cpu_pageset[0]
    on_pcp = {e >> 3 for i in range(NR_PCP_LISTS) for e in pcp.entries(i)}
    assert {pfn + 4, pfn + 2, pfn + 1} <= on_pcp and pfn not in on_pcp
    check_invariants(mm, {pfn: 0})
    mm.put_page(pfn, 0)  # the other holder drops its reference: order-0 free
    assert _frees(call_log)[-1] == (pfn, 0)
    assert mm.pages.flags[pfn] & PG_PCP
    check_invariants(mm, {})


def test_free_compound_with_extra_ref_waits_for_last_put(
    lab: Lab, call_log: CallLog
) -> None:
    # behaviour 42
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(COMP, 3, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    assert mm.free_pages(pfn, 3, 0)
    assert _frees(call_log) == []
    assert mm.pages.ref[pfn] == 1
    check_invariants(mm, {pfn: 3})
    mm.put_page(pfn, 0)
    assert _frees(call_log) == [(pfn, 3)]
    check_invariants(mm, {})


def test_get_page_unless_zero(lab: Lab) -> None:
    # behaviour 43
    mm = lab.machine()
    plain = mm.alloc_pages(KERNEL, 2, 0, 0)
    comp = mm.alloc_pages(COMP, 2, 0, 0)
    order0 = mm.alloc_pages(KERNEL, 0, 0, 0)
    free_pfn = 8192  # inside a free boot block
    assert mm.pages.ref[free_pfn] == 0
    assert not mm.get_page_unless_zero(free_pfn)
    assert not mm.get_page_unless_zero(plain + 1)  # non-compound tail
    assert not mm.get_page_unless_zero(comp + 3)  # compound tail (walkers use the head)
    assert mm.page_ref_freeze(order0, 1)
    assert not mm.get_page_unless_zero(order0)  # frozen
    for head in (plain, comp):
        assert mm.get_page_unless_zero(head)
        assert mm.pages.ref[head] == 2
    mm.page_ref_unfreeze(order0, 1)
    assert mm.get_page_unless_zero(order0)
    check_invariants(mm, {plain: 2, comp: 2, order0: 0})


def test_page_ref_freeze(lab: Lab) -> None:
    # behaviour 44
    mm = lab.machine()
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    mm.get_page_unless_zero(pfn)
    assert not mm.page_ref_freeze(pfn, 1)
    assert mm.pages.ref[pfn] == 2
    mm.put_page(pfn, 0)
    assert mm.page_ref_freeze(pfn, 1)
    assert mm.pages.ref[pfn] == 0
    check_invariants(mm, {pfn: 0}, frozen={pfn})
    mm.page_ref_unfreeze(pfn, 1)
    assert mm.pages.ref[pfn] == 1
    check_invariants(mm, {pfn: 0})


def test_double_free_is_silent_then_reported_by_the_pcp_drain(
    lab: Lab, call_log: CallLog
) -> None:
    # The kernel's view (more cases in test_misuse.py): the count goes 0 -> -1, nothing
    # is reported until free_pcppages_bulk() checks the page.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert mm.free_pages(pfn, 0, 0)
    assert mm.free_pages(pfn, 0, 0)
    assert mm.vm["bad_page"] == 0 and mm.pages.ref[pfn] == -1
    (warning,) = call_log.named("sim_warning")
    assert warning[3].startswith("double free: ")
    mm.drain_all_pages()
    assert _bad(call_log) == ["nonzero _refcount"]
    check_invariants(mm, {})


def test_free_with_too_large_an_order_is_a_bad_page_per_foreign_page(
    lab: Lab, call_log: CallLog
) -> None:
    # Seed behaviour (LDD3): the kernel does not know a block's order. Freeing an order-4
    # block as order 5 makes free_pages_prepare() check the next 16 pages: the first is
    # the head of a free buddy block ("nonzero mapcount", page_type overlays _mapcount),
    # the others are inner pages of it (clean). Nothing is freed: the block leaks.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 4, 0, 0)  # not a pcp order: expand() freed its buddy
    assert mm.pages.flags[pfn + 16] & PG_BUDDY
    assert not mm.free_pages(pfn, 5, 0)
    assert _bad(call_log) == ["nonzero mapcount"]
    assert mm.vm["bad_page"] == 1
    assert mm.vm["bad_page_leaked_pages"] == 16
    check_invariants(mm, {})


def test_free_split_block_whole_reports_every_live_sub_page(
    lab: Lab, call_log: CallLog
) -> None:
    # After split_page() the head is an order-0 block; __free_pages(head, 2) drops its
    # last reference and free_pages_prepare() finds three pages still referenced.
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    mm.split_page(pfn, 2)
    assert not mm.free_pages(pfn, 2, 0)
    assert _bad(call_log) == ["nonzero _refcount"] * 3
    assert mm.vm["bad_page_leaked_pages"] == 1  # the head
    live = {pfn + i: 0 for i in range(1, 4)}
    check_invariants(mm, live)
    for p in list(live):
        mm.free_pages(p, 0, 0)
    check_invariants(mm, {})


def test_free_with_too_small_an_order_leaks_silently(lab: Lab, call_log: CallLog) -> None:
    # Seed behaviour: __free_pages(page, 0) on an order-2 block frees one page; the
    # kernel reports nothing and the other three are lost. The model warns (only it).
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert mm.free_pages(pfn, 0, 0)
    assert _frees(call_log) == [(pfn, 0)]
    assert mm.vm["bad_page"] == 0
    assert mm.vm["free_order_leaked_pages"] == 3
    (warning,) = call_log.named("sim_warning")
    assert warning[1:3] == (pfn, 0) and "3 pages leaked" in warning[3]
    check_invariants(mm, {})


def test_leaked_block_is_accounted(lab: Lab, call_log: CallLog) -> None:
    # a tail with a stray reference makes free_pages_prepare() fail: the block leaks
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    mm.page_ref_unfreeze(pfn + 1, 1)  # misuse: a tail gains a reference
    mm.free_pages(pfn, 2, 0)
    assert mm.vm["bad_page"] == 1
    assert mm.vm["bad_page_leaked_pages"] == 4
    (reason,) = _bad(call_log)
    assert "_refcount" in reason
    check_invariants(mm, {})


def test_a_compound_block_freed_too_large_reports_only_bad_pages_past_it(
    lab: Lab, call_log: CallLog
) -> None:
    # free_tail_pages_check() reports nothing without DEBUG_VM; page_bad_reason() does:
    # one free buddy head past the block, its inner pages are clean
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(int(GFP_KERNEL | GFP.COMP), 4, 0, 0)
    assert mm.pages.flags[pfn + 16] & PG_BUDDY
    assert not mm.free_pages(pfn, 5, 0)
    assert _bad(call_log) == ["nonzero mapcount"]
    check_invariants(mm, {})


def test_too_large_an_order_over_clean_pages_is_a_simulator_warning(
    lab: Lab, call_log: CallLog
) -> None:
    # A page past the block that sits on a pcp list is clean to free_pages_prepare():
    # the kernel frees it with the block and corrupts the pcp list; the model leaks
    # the block and warns instead (no bad_page, which the kernel would not print).
    mm = lab.machine(tracer=call_log)
    held = []
    while True:
        pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
        if pfn % 2 == 0 and mm.pages.flags[pfn + 1] & PG_PCP:
            break
        held.append(pfn)
    assert mm.free_pages(pfn, 1, 0)
    assert _bad(call_log) == [] and mm.vm["bad_page"] == 0
    (warning,) = call_log.named("sim_warning")
    assert "corrupting" in warning[3]
    assert mm.vm["free_order_leaked_pages"] == 1
    check_invariants(mm, dict.fromkeys(held, 0))


def test_too_small_an_order_under_another_reference_frees_the_pieces_after_the_first(
    lab: Lab, call_log: CallLog
) -> None:
    # __free_pages(page, 1) of an order-2 block while a walker holds the first page:
    # the kernel frees page + 1 (order 0) at once; pages 2 and 3 leak; the first page
    # goes with the walker's put_page()
    mm = lab.machine(tracer=call_log)
    pfn = mm.alloc_pages(KERNEL, 2, 0, 0)
    assert mm.get_page_unless_zero(pfn)
    assert mm.free_pages(pfn, 1, 0)
    assert _frees(call_log) == [(pfn + 1, 0)]
    assert mm.vm["free_order_leaked_pages"] == 2
    mm.put_page(pfn, 0)
    assert _frees(call_log) == [(pfn + 1, 0), (pfn, 0)]
    check_invariants(mm, {})
