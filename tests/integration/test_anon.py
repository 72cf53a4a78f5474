"""The anonymous-memory caller: THP faults and their fallback (mm/huge_memory.c of 6.1)."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest
from conftest import CallLog, run_process, traced_machine

from simcore.mm.constants import MT_MOVABLE, MT_UNMOVABLE, ZoneType
from simcore.mm.gfp import GFP, parse_gfp
from simcore.mm.invariants import check_invariants
from simcore.mm.lru import KIND_ANON, LRU_INACTIVE_ANON
from simcore.mm.pages import MT_SHIFT, PG_HEAD
from simcore.mm.vmscan import ScanControl
from simcore.sim.machine import Allocation, Machine
from workloads.anon import (
    ANON_PAGE_GFP,
    AnonParams,
    fault_region,
    thp_vma_allowed,
    unmap_region,
    vma_thp_gfp_mask,
)
from workloads.synthetic_params import LifetimeSpec
from workloads.threads import PGTABLE_GFP

HPAGE = 512
NO_FLAGS = itertools.repeat(0)


def _machine(nodes: int = 1, thp: str = "always",
             swap_pages: int = 0) -> tuple[Machine, CallLog]:
    m, tracer = traced_machine(nodes, cpus=1, transparent_hugepage=thp,
                               swap_pages=swap_pages)
    m.register_owner("heap", KIND_ANON)
    return m, tracer


def _params(**kw: Any) -> AnonParams:
    return AnonParams(rate_per_s=1.0, size_weights=((HPAGE, 1.0),),
                      lifetime=LifetimeSpec("forever"), **kw)


def _allocs(log: CallLog) -> list[tuple[bool, int, int]]:
    """``(succeeded, order, gfp)`` of every traced ``mm_page_alloc``."""
    return [(a[1] >= 0, a[2], a[3]) for a in log.named("mm_page_alloc")]


def _no_huge_block_on_node0(m: Machine) -> None:
    """Take every free page of node 0 (no watermarks), then give back every other one:
    node 0 has order-0 holes only, between unmovable pages compaction cannot move."""
    grab = int(GFP.MEMALLOC | GFP.THISNODE)
    held: list[Allocation] = []
    while (h := m.alloc_now("pinned", grab, 0, 0, 0)) is not None:
        held.append(h)
    for h in held[::2]:
        m.free(h)


G = parse_gfp


@pytest.mark.parametrize("defrag,madvised,expected", [
    ("always", True, G("GFP_TRANSHUGE")),
    ("always", False, G("GFP_TRANSHUGE|__GFP_NORETRY")),
    ("defer", True, G("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM")),
    ("defer", False, G("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM")),
    ("defer+madvise", True, G("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM")),
    ("defer+madvise", False, G("GFP_TRANSHUGE_LIGHT|__GFP_KSWAPD_RECLAIM")),
    ("madvise", True, G("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM")),
    ("madvise", False, G("GFP_TRANSHUGE_LIGHT")),
    ("never", True, G("GFP_TRANSHUGE_LIGHT")),
    ("never", False, G("GFP_TRANSHUGE_LIGHT")),
])
def test_vma_thp_gfp_mask_follows_the_defrag_mode(defrag: str, madvised: bool,
                                                   expected: int) -> None:
    assert vma_thp_gfp_mask(defrag, madvised) == int(expected)
    assert int(G("GFP_TRANSHUGE_LIGHT|__GFP_DIRECT_RECLAIM")) == int(G("GFP_TRANSHUGE"))


@pytest.mark.parametrize("enabled,madvise,nohugepage,allowed", [
    ("always", False, False, True),
    ("always", True, False, True),
    ("always", False, True, False),
    ("madvise", False, False, False),
    ("madvise", True, False, True),
    ("never", True, False, False),
])
def test_hugepage_vma_check(enabled: str, madvise: bool, nohugepage: bool,
                            allowed: bool) -> None:
    assert thp_vma_allowed(enabled, madvise, nohugepage) is allowed


def test_a_thp_fault_takes_an_order9_folio_on_the_local_node_and_its_page_table() -> None:
    """vma_alloc_folio(): one attempt with __GFP_THISNODE|__GFP_NORETRY (the oracle's
    defrag=madvise, no MADV_HUGEPAGE: GFP_TRANSHUGE_LIGHT); then pte_alloc_one() for the
    deposit; thp_fault_alloc counts it. The folio is compound, MOVABLE, and one entry
    of the inactive anon list."""
    m, tracer = _machine()
    stats: Counter[str] = Counter()
    region = run_process(m, fault_region(m, "heap", _params(), HPAGE, 0, NO_FLAGS, stats))
    light = int(G("GFP_TRANSHUGE_LIGHT|__GFP_THISNODE|__GFP_NORETRY"))
    assert _allocs(tracer) == [(True, 9, light), (True, 0, PGTABLE_GFP)]
    folio, table = region
    assert m.mm.vm["thp_fault_alloc"] == 1 and m.mm.vm["thp_fault_fallback"] == 0
    assert stats == Counter(thp=1)
    assert m.mm.pages.flags[folio.pfn] & PG_HEAD
    assert m.mm.pages.info[folio.pfn] >> MT_SHIFT == MT_MOVABLE
    lv = m.mm.reclaim.lruvecs[0]
    assert lv.on_list(folio.pfn) == LRU_INACTIVE_ANON and lv.size(LRU_INACTIVE_ANON) == HPAGE
    assert table.lru == -1 and lv.on_list(table.pfn) == -1
    assert m.mm.pages.info[table.pfn] >> MT_SHIFT == MT_UNMOVABLE
    unmap_region(m, region)
    assert lv.size(LRU_INACTIVE_ANON) == 0 and m.owners["heap"].pages == 0


def test_without_a_local_huge_block_the_fault_falls_back_to_order0_pages() -> None:
    """No MADV_HUGEPAGE under defrag=madvise: no second attempt on the other node even
    though it has free huge blocks; thp_fault_fallback, then the PTE page and 512
    order-0 faults (GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO) on the local node."""
    m, tracer = _machine(nodes=2)
    _no_huge_block_on_node0(m)
    stats: Counter[str] = Counter()
    region = run_process(m, fault_region(m, "heap", _params(), HPAGE, 0, NO_FLAGS, stats))
    allocs = [a for a in _allocs(tracer) if a[2] & int(GFP.MOVABLE) or a[2] == PGTABLE_GFP]
    light = int(G("GFP_TRANSHUGE_LIGHT|__GFP_THISNODE|__GFP_NORETRY"))
    assert allocs[0] == (False, 9, light)
    assert allocs[1:] == [(True, 0, PGTABLE_GFP)] + [(True, 0, ANON_PAGE_GFP)] * HPAGE
    assert ANON_PAGE_GFP == int(G("GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_ZERO"))
    assert m.mm.vm["thp_fault_fallback"] == 1 and m.mm.vm["thp_fault_alloc"] == 0
    assert stats == Counter(thp_fallback=1)
    assert len(region) == 1 + HPAGE and all(h.order == 0 for h in region)
    assert all(m.mm.page_zone(h.pfn).nid == 0 for h in region)


def test_madv_hugepage_retries_without_thisnode_and_gets_a_remote_folio() -> None:
    """With MADV_HUGEPAGE the mask may reclaim (GFP_TRANSHUGE): after the local
    __GFP_THISNODE|__GFP_NORETRY attempt fails, __folio_alloc() tries every node."""
    m, tracer = _machine(nodes=2)
    _no_huge_block_on_node0(m)
    region = run_process(m, fault_region(m, "heap", _params(madvise=True), HPAGE, 0, NO_FLAGS))
    huge = [a for a in _allocs(tracer) if a[1] == 9]
    transhuge = int(G("GFP_TRANSHUGE"))
    assert huge == [(False, 9, transhuge | int(GFP.THISNODE | GFP.NORETRY)),
                    (True, 9, transhuge)]
    assert m.mm.vm["thp_fault_alloc"] == 1 and m.mm.vm["thp_fault_fallback"] == 0
    assert m.mm.page_zone(region[0].pfn).nid == 1


@pytest.mark.parametrize("thp,kw", [("madvise", {}), ("never", {"madvise": True}),
                                    ("always", {"nohugepage": True})],
                         ids=["enabled=madvise", "enabled=never", "MADV_NOHUGEPAGE"])
def test_without_thp_for_the_region_no_huge_folio_is_tried(thp: str,
                                                           kw: dict[str, bool]) -> None:
    m, tracer = _machine(thp=thp)
    region = run_process(m, fault_region(m, "heap", _params(**kw), HPAGE + 3, 0, NO_FLAGS))
    assert [o for _, o, _ in _allocs(tracer)] == [0] * (2 + HPAGE + 3)  # 2 PTE pages
    assert m.mm.vm["thp_fault_alloc"] == m.mm.vm["thp_fault_fallback"] == 0
    assert len(region) == 2 + HPAGE + 3


def test_reclaim_swaps_an_order9_folio_out_whole() -> None:
    m, _ = _machine(swap_pages=4096)
    folio, _ = run_process(m, fault_region(m, "heap", _params(), HPAGE, 0, NO_FLAGS))
    sc = ScanControl(32, int(G("GFP_KERNEL")), int(ZoneType.NORMAL), 0, kswapd=False, cpu=0)
    reclaim = m.mm.reclaim
    reclaim.shrink_inactive_list(32, reclaim.lruvecs[0], sc, LRU_INACTIVE_ANON)
    assert folio.gone and folio.swapped and m.mm.vm["pswpout"] == HPAGE
    assert m.owners["heap"].swap_pages == HPAGE
    m.free(folio)  # the process exits: the swap slots are released
    assert reclaim.swap_used == 0


def test_a_fault_that_hits_oom_frees_the_region() -> None:
    """A region larger than memory, nothing reclaimable: the OOM killer picks the
    faulting process itself; the fault fails and every block of the region is free."""
    m, _ = _machine()
    free = sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones)
    region = run_process(m, fault_region(m, "heap", _params(page_tables=False), free + HPAGE, 0,
                                  NO_FLAGS))
    assert region is None
    assert m.oom_killed("heap") and m.owners["heap"].pages == 0 and not m.owner_of
    assert sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones) == free
    check_invariants(m.mm, {})
