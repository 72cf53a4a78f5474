"""The hugetlb pool's bookkeeping (simcore/mm/hugetlb.py) with no clock: node round-robin,
the surplus rules, and the counts' invariants under random resizes, faults and unmaps."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.hstate import (
    Hstate,
    get_valid_node_allowed,
    hstate_next_node_to_alloc,
    hstate_next_node_to_free,
    next_node_allowed,
)
from simcore.mm.hugetlb import Hugetlb, NoClockBackend
from simcore.mm.invariants import check_invariants
from simcore.mm.page_alloc import PageAllocator


def _drive(gen: Generator[Any, Any, Any]) -> Any:
    """Run a pool generator that, with no clock, finishes without yielding."""
    with pytest.raises(StopIteration) as done:
        next(gen)
    return done.value.value


def _pool(*node_mib: int) -> tuple[Hugetlb, NoClockBackend]:
    cfg = MachineConfig(nodes=tuple(NodeConfig(memory_pages=mib * 256, cpus=1)
                                    for mib in node_mib))
    mm = PageAllocator(cfg, SysctlConfig(compaction_proactiveness=0))
    return Hugetlb(mm), NoClockBackend(mm)


def test_next_node_allowed_wraps_and_skips_nodes_not_allowed() -> None:
    allowed = (0, 2, 3)
    assert [next_node_allowed(n, allowed) for n in range(4)] == [2, 2, 3, 0]
    assert get_valid_node_allowed(1, allowed) == 2 and get_valid_node_allowed(3, allowed) == 3
    h = Hstate(9, 4, 0, False)
    h.next_nid_to_alloc = 1
    assert [hstate_next_node_to_alloc(h, allowed) for _ in range(4)] == [2, 3, 0, 2]
    assert [hstate_next_node_to_free(h, (1,)) for _ in range(2)] == [1, 1]


def test_the_gigantic_hstate_is_the_one_above_max_order() -> None:
    ht, _ = _pool(16)
    assert not ht.hstates[9].gigantic and ht.hstates[18].gigantic
    assert (ht.hstates[9].name, ht.hstates[18].name) == ("hugepages-2048kB",
                                                         "hugepages-1048576kB")
    assert (ht.hstates[9].size, ht.hstates[18].size) == ("2MiB", "1GiB")


def test_growing_takes_surplus_pages_back_before_allocating() -> None:
    ht, be = _pool(32, 32)
    h = ht.hstates[9]
    _drive(ht.set_max_huge_pages(h, 6, None, ht.n_memory, be))
    used = [ht.dequeue_huge_page_nodemask(h, 0) for _ in range(6)]
    _drive(ht.set_max_huge_pages(h, 2, None, ht.n_memory, be))
    assert (h.nr_huge_pages, h.surplus_huge_pages) == (6, 4)
    result = _drive(ht.set_max_huge_pages(h, 5, None, ht.n_memory, be))
    assert result.allocated_nids == [] and (h.surplus_huge_pages, h.persistent_huge_pages) == (1, 5)
    for pfn in used:
        ht.put_page(pfn, be)
    assert (h.nr_huge_pages, h.free_huge_pages, h.surplus_huge_pages) == (5, 5, 0)


class _Ops:
    """Random pool operations with the counts checked after each."""

    def __init__(self) -> None:
        self.ht, self.be = _pool(24, 24)
        self.h = self.ht.hstates[9]
        self.mapped: list[int] = []

    def resize(self, count: int, nid: int | None) -> None:
        nodes = self.ht.n_memory if nid is None else (nid,)
        _drive(self.ht.set_max_huge_pages(self.h, count, nid, nodes, self.be))

    def fault(self, nid: int) -> None:
        pfn = self.ht.dequeue_huge_page_nodemask(self.h, nid)
        if pfn >= 0:
            self.mapped.append(pfn)

    def unmap(self, index: int) -> None:
        if self.mapped:
            self.ht.put_page(self.mapped.pop(index % len(self.mapped)), self.be)

    def check(self) -> None:
        h, ht = self.h, self.ht
        assert h.nr_huge_pages == sum(h.nr_huge_pages_node) == len(ht.page_hstate)
        assert h.free_huge_pages == sum(h.free_huge_pages_node)
        assert h.surplus_huge_pages == sum(h.surplus_huge_pages_node)
        assert sorted(self.mapped) == sorted(h.active)
        for nid, freelist in enumerate(h.freelists):
            assert len(freelist) == h.free_huge_pages_node[nid]
            in_use = sum(ht.page_to_nid(p) == nid for p in h.active)
            assert h.nr_huge_pages_node[nid] == len(freelist) + in_use
            assert 0 <= h.surplus_huge_pages_node[nid] <= h.nr_huge_pages_node[nid]
            assert h.surplus_huge_pages_node[nid] <= in_use  # only pages in use are surplus
        ref = ht.mm.pages.ref
        assert all(ref[p] == 0 for fl in h.freelists for p in fl)
        assert all(ref[p] == 1 for p in h.active)


OPS = st.one_of(
    st.tuples(st.just("resize"), st.integers(0, 30), st.sampled_from([None, 0, 1])),
    st.tuples(st.just("fault"), st.integers(0, 1), st.none()),
    st.tuples(st.just("unmap"), st.integers(0, 50), st.none()),
)


@given(st.lists(OPS, max_size=25))
def test_pool_counts_stay_consistent_and_every_page_comes_back(ops: list[Any]) -> None:
    """Conservation: whatever happens, the counts match the lists, and once every page
    is unmapped and the pool is emptied, the buddy allocator has all its pages back."""
    run = _Ops()
    for op, a, b in ops:
        if op == "resize":
            run.resize(a, b)
        elif op == "fault":
            run.fault(a)
        else:
            run.unmap(a)
        run.check()
    while run.mapped:
        run.unmap(0)
    run.resize(0, None)
    run.check()
    assert run.h.nr_huge_pages == 0
    check_invariants(run.ht.mm, {}, ())
