"""The invariant audit counts every page someone holds between two SimPy events.

Pages that are neither free nor behind a live handle, which the audit must still count as
owned (:func:`simcore.sim.audit.holdings`): a gigantic range while its resize spends the
allocation's time, a page only a walker's reference keeps, a gigantic pool page in use
that a walker also holds. And a caller's misuse is not a broken model: a deferred free of
a handle its caller freed meanwhile is a double free, recorded when it is applied.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from conftest import traced_machine
from test_hugetlb import GIB, _gigantic_setup

from simcore.formats import trace_schema as ts
from simcore.mm.gfp import GFP_KERNEL
from simcore.mm.invariants import InvariantError
from simcore.sim.audit import Audit, check_machine, holdings
from simcore.sim.hugetlb import hugetlb_of, put_page
from simcore.sim.machine import Machine

KERNEL = int(GFP_KERNEL)


def _resize_audited(m: Machine, count: int, seen: list[dict[int, int]]) -> Audit:
    """An order-18 resize with the audit after every event, and a process that looks at
    the machine 1 ns in, while the resize spends its alloc_contig_range() time."""
    audit = Audit(m, 1)
    audit.install()
    pool = hugetlb_of(m)

    def look() -> Generator[Any, Any, None]:
        yield m.env.timeout(1)
        seen.append(dict(pool.contig_in_flight))
        check_machine(m)

    resize = m.env.process(pool.resize(count, None, 18, 0, "test"))
    m.env.process(look())
    m.env.run(until=resize)
    audit.finish()
    return audit


def test_a_gigantic_range_is_owned_while_its_allocation_time_is_spent() -> None:
    # alloc_contig_pages() has given the range and prep_compound_gigantic_page() frozen
    # it, but the page joins the pool only after the stall: the pool's, frozen.
    m, _ = _gigantic_setup(unmovable=False)
    seen: list[dict[int, int]] = []
    audit = _resize_audited(m, 1, seen)
    assert seen == [{GIB: GIB}] and m.env.now > 1
    assert audit.checks == audit.events
    pool = hugetlb_of(m)
    assert pool.contig_in_flight == {} and GIB in pool.state.page_hstate
    check_machine(m)


def test_a_gigantic_range_a_walker_inflated_is_owned_until_it_is_freed() -> None:
    # A walker's reference lands on the range before its freeze: the range stays
    # order-0 pages of refcount 1 through the stall, then goes back (the walker's page
    # with the walker); the retry fails here. Audited throughout.
    m, _ = _gigantic_setup(unmovable=False)
    pool = hugetlb_of(m)
    taken: list[int] = []

    def race(pfn: int, nr_pages: int, compound: bool) -> None:
        if not taken and m.mm.get_page_unless_zero(pfn + 5):
            taken.append(pfn + 5)
            m.extra_refs[pfn + 5] = 1

    pool.state.racers.append(race)
    seen: list[dict[int, int]] = []
    _resize_audited(m, 1, seen)
    assert taken == [GIB + 5] and seen == [{GIB: GIB}]
    assert pool.state.warnings == ["HugeTLB page can not be used due to unexpected inflated "
                                   "ref count", "1 pages are still in use!"]
    assert not pool.state.page_hstate and pool.requests[-1].pass_failed
    assert holdings(m)[0][GIB + 5] == 0  # kept by the walker alone
    check_machine(m)
    m.extra_refs.pop(GIB + 5)
    put_page(m, GIB + 5, 0)
    check_machine(m)


def test_a_walker_reference_on_a_gigantic_page_in_use() -> None:
    # The page is the pool's (refcount 1, in use) plus the walker's: not a page "kept
    # only by speculative references", whose count must equal theirs.
    m, _ = _gigantic_setup(unmovable=False)
    pool = hugetlb_of(m)
    _resize_audited(m, 1, [])
    h = pool.state.hstates[18]
    assert pool.state.dequeue_huge_page_nodemask(h, 0) == GIB
    assert m.mm.get_page_unless_zero(GIB)
    m.extra_refs[GIB] = 1
    check_machine(m)


def test_a_page_kept_only_by_a_walker_has_exactly_its_references() -> None:
    m, _ = traced_machine()
    h = m.alloc_now("owner", KERNEL, 2, 0)
    assert h is not None and m.mm.get_page_unless_zero(h.pfn)
    m.extra_refs[h.pfn] = 1
    m.free(h)  # the first page stays, with the walker; the rest is freed
    assert holdings(m)[0][h.pfn] == 0
    check_machine(m)
    m.mm.pages.ref[h.pfn] += 1
    with pytest.raises(InvariantError, match="kept only by 1 speculative references"):
        check_machine(m)
    m.mm.pages.ref[h.pfn] -= 1
    m.extra_refs.pop(h.pfn)
    put_page(m, h.pfn, 0)
    check_machine(m)


def test_a_deferred_free_of_a_handle_freed_meanwhile_is_a_double_free_not_a_violation() -> None:
    m, log = traced_machine()
    audit = Audit(m, 1)
    audit.install()

    def buggy() -> Generator[Any, Any, None]:
        h = yield from m.alloc("buggy", KERNEL, 0, 0)
        assert h is not None
        m.defer_free(h, 5_000)
        m.free(h)  # the caller must not: its deferred free is now a double free
        yield m.env.timeout(10_000)
        m.apply_pending_frees()

    m.env.run(until=m.env.process(buggy()))
    audit.finish()
    warnings = [ts.misuse_kind(a[3]) for a in log.named("sim_warning")]
    assert warnings == [ts.MISUSE_DOUBLE_FREE] and audit.checks == audit.events
    check_machine(m)

