"""The hugetlb pool (mm/hugetlb.c of 6.1.20) in simulated time: resizes, the freeze and its
retry, THISNODE round-robin, shrinking into surplus, gigantic pages, the action's summary.

Spec behaviours 42 and 45-47 are named where they are checked.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from conftest import CallLog

from allocsim.run import simulate
from simcore.config.parse import parse_config
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig, WorkloadConfig
from simcore.formats import trace_schema as ts
from simcore.mm.constants import MT_ISOLATE
from simcore.mm.gfp import (
    GFP,
    GFP_HIGHUSER,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    format_gfp,
    parse_gfp,
)
from simcore.mm.hstate import Hstate, htlb_alloc_mask
from simcore.mm.hugetlb import WARN_GIGANTIC_INFLATED, WARN_HEAD_INFLATED
from simcore.mm.invariants import check_invariants
from simcore.mm.lru import KIND_ANON, KIND_FILE
from simcore.mm.pages import PG_ALLOC, PG_HEAD, PG_TAIL
from simcore.sim.hugetlb import POOL_OWNER, HugetlbPool, hugetlb_of, put_page
from simcore.sim.machine import Allocation, Machine
from workloads.registry import WORKLOADS, workload_parsers

MIB = 256
POOL_GFP = 0x346CCA
"""GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_RETRY_MAYFAIL|__GFP_NOWARN|__GFP_THISNODE, as the
oracle's hugetlb traces print it (hugetlb-fresh/trace.txt.xz, 362 order-9 lines)."""
POOL_GFP_NO_RETRY = POOL_GFP & ~int(GFP.RETRY_MAYFAIL)
FILL_KERNEL = int(GFP_KERNEL | GFP.NORETRY | GFP.NOWARN)
"""Unmovable filler that fails instead of calling the OOM killer."""
GIB = 262144


def _machine(*node_mib: int, tracer: CallLog | None = None) -> Machine:
    cfg = MachineConfig(nodes=tuple(NodeConfig(memory_pages=mib * MIB, cpus=1)
                                    for mib in node_mib))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1, tracer=tracer)


def _run(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


def _resize(m: Machine, count: int, nid: int | None = None, order: int = 9) -> Any:
    return _run(m, hugetlb_of(m).resize(count, nid, order, 0, "test"))


def _huge_allocs(log: CallLog) -> list[tuple[int, int, int, int]]:
    """``(pfn, gfp, requested nid, nid of the page or -1)`` of every order-9 mm_page_alloc."""
    return [(a[1], a[3], a[6], -1 if a[0] is None else a[0].nid)
            for a in log.named("mm_page_alloc") if a[2] == 9]


def _fill(m: Machine, owner: str, gfp: int, order: int, nid: int | None = None) -> list[Allocation]:
    got = []
    while (h := m.alloc_now(owner, gfp, order, m.mm.nodes[nid or 0].cpus[0], nid)) is not None:
        got.append(h)
    return got


def _invariants(m: Machine) -> None:
    """Conservation: free + pcp + the machine's live handles cover every managed page
    (the pool's frozen pages are live handles with refcount 0)."""
    m.apply_pending_frees()
    pool = m.extras.get("hugetlb")
    frozen = set()
    if isinstance(pool, HugetlbPool):
        frozen = {pfn for pfn in pool.handles if m.mm.pages.ref[pfn] == 0}
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()}, frozen)


def _is_free(m: Machine, pfn: int) -> bool:
    """Freed: no longer allocated, refcount 0 (on a free or pcp list, maybe merged)."""
    return not m.mm.pages.flags[pfn] & PG_ALLOC and m.mm.pages.ref[pfn] == 0


# -- round robin and __GFP_THISNODE (behaviour 46) ------------------------------------------
def test_the_pool_mask_is_the_oracle_kernels() -> None:
    """The mask the real 6.1 kernel traced for every hugetlb-fresh pool allocation."""
    text = "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE"
    oracle = (Path(__file__).resolve().parents[1] / "data" / "gfp"
              / "mm_page_alloc_gfp_flags.tsv").read_text()
    assert f"{text}\t1\t" in oracle  # MIGRATE_MOVABLE
    assert format_gfp(POOL_GFP) == text and parse_gfp(text) == POOL_GFP
    h = Hstate(9, 1, 0, gigantic=False)
    assert htlb_alloc_mask(h) | int(GFP.THISNODE | GFP.COMP | GFP.NOWARN
                                     | GFP.RETRY_MAYFAIL) == POOL_GFP
    assert htlb_alloc_mask(Hstate(18, 1, 0, gigantic=True)) == int(GFP_HIGHUSER)


def test_grow_alternates_nodes_from_next_nid_to_alloc_with_thisnode_pages() -> None:
    log = CallLog()
    m = _machine(64, 64, tracer=log)
    h = hugetlb_of(m).state.hstates[9]
    h.next_nid_to_alloc = 1
    req = _resize(m, 5)
    assert req.allocated == (1, 0, 1, 0, 1)
    allocs = _huge_allocs(log)
    assert [gfp for _, gfp, _, _ in allocs] == [POOL_GFP] * 5
    assert all(nid == page_nid for _, _, nid, page_nid in allocs)
    assert h.nr_huge_pages_node == [2, 3] and h.free_huge_pages == 5
    assert h.next_nid_to_alloc == 0
    assert m.mm.vm["htlb_buddy_alloc_success"] == 5


def test_a_full_node_supplies_nothing_and_is_retried_without_retry_mayfail() -> None:
    """__GFP_THISNODE: node 1's attempts fail rather than take node 0's pages; after its
    try-hard failure (node_alloc_noretry) node 1 is asked without __GFP_RETRY_MAYFAIL."""
    log = CallLog()
    m = _machine(64, 64, tracer=log)
    _fill(m, "kernel", FILL_KERNEL | int(GFP.THISNODE), 9, nid=1)
    log.calls.clear()
    req = _resize(m, 3)
    assert req.allocated == (0, 0, 0)
    allocs = _huge_allocs(log)
    assert [(gfp, nid, pfn >= 0) for pfn, gfp, nid, _ in allocs] == [
        (POOL_GFP, 0, True), (POOL_GFP, 1, False),
        (POOL_GFP, 0, True), (POOL_GFP_NO_RETRY, 1, False),
        (POOL_GFP, 0, True)]
    assert all(page_nid in (nid, -1) for _, _, nid, page_nid in allocs)
    h = hugetlb_of(m).state.hstates[9]
    assert h.nr_huge_pages_node == [3, 0]
    assert m.mm.vm["htlb_buddy_alloc_fail"] == 2


def test_the_resize_stops_at_the_first_pass_no_node_can_supply() -> None:
    log = CallLog()
    m = _machine(32, 32, tracer=log)
    req = _resize(m, 100_000)
    h = req.h
    assert req.pass_failed and h.nr_huge_pages == len(req.allocated) < 100_000
    allocs = _huge_allocs(log)
    last_pass = allocs[-2:]
    assert [pfn for pfn, *_ in last_pass] == [-1, -1]
    assert {nid for _, _, nid, _ in last_pass} == {0, 1}
    assert sum(pfn >= 0 for pfn, *_ in allocs) == h.nr_huge_pages
    assert m.mm.vm["htlb_buddy_alloc_success"] == h.nr_huge_pages
    assert m.mm.vm["htlb_buddy_alloc_fail"] == len(allocs) - h.nr_huge_pages
    _invariants(m)


# -- the freeze (behaviours 42 and 45) -----------------------------------------------------
def _racer(m: Machine, times: int) -> tuple[list[int], Callable[[int, int, bool], None]]:
    """A speculative reference on each of the first ``times`` fresh blocks."""
    held: list[int] = []

    def race(pfn: int, nr_pages: int, compound: bool) -> None:
        if len(held) < times:
            assert compound and m.mm.get_page_unless_zero(pfn)
            held.append(pfn)

    return held, race


def test_an_inflated_head_refcount_drops_the_block_and_the_retry_gets_another() -> None:
    """Behaviour 45: the block whose freeze fails goes back with __free_pages(), which
    frees nothing while the speculative holder has it (behaviour 42); the retry gets a
    different block; only the holder's put_page() frees the first one, whole."""
    log = CallLog()
    m = _machine(64, tracer=log)
    pool = hugetlb_of(m)
    held, race = _racer(m, 1)
    pool.state.racers.append(race)
    req = _resize(m, 1)
    (dropped,) = held
    (kept,) = pool.state.page_hstate
    assert kept != dropped and req.allocated == (0,)
    assert [pfn for pfn, *_ in _huge_allocs(log)] == [dropped, kept]
    assert m.mm.pages.ref[dropped] == 1 and m.mm.pages.flags[dropped] & (PG_ALLOC | PG_HEAD)
    assert not _is_free(m, dropped) and m.mm.pages.ref[kept] == 0
    assert pool.state.freeze_retries == 1 and not pool.state.warnings
    assert (m.mm.vm["htlb_buddy_alloc_success"], m.mm.vm["htlb_buddy_alloc_fail"]) == (1, 0)
    assert m.owners[POOL_OWNER].pages == 512
    frees = len(log.named("mm_page_free"))
    put_page(m, dropped, 0)
    assert log.named("mm_page_free")[frees:] == [(m.mm.page_zone(dropped), dropped, 9)]
    assert _is_free(m, dropped)
    _invariants(m)


def test_a_second_inflated_refcount_fails_counts_and_warns() -> None:
    """Behaviour 45: twice in a row, the allocation returns NULL, counts
    htlb_buddy_alloc_fail and warns with the kernel's text."""
    m = _machine(64)
    pool = hugetlb_of(m)
    held, race = _racer(m, 2)
    pool.state.racers.append(race)
    req = _resize(m, 1)
    assert req.pass_failed and req.h.nr_huge_pages == 0 and len(set(held)) == 2
    assert (m.mm.vm["htlb_buddy_alloc_success"], m.mm.vm["htlb_buddy_alloc_fail"]) == (0, 1)
    assert pool.state.warnings == [WARN_HEAD_INFLATED]
    cols = m.spans.columns.cols
    warns = [d for n, d in zip(cols["name"], cols["detail"], strict=True)
             if n == ts.SPAN_HUGETLB_WARN]
    assert len(warns) == 1 and warns[0].startswith(WARN_HEAD_INFLATED)
    assert all(not _is_free(m, pfn) for pfn in held)
    for pfn in held:
        put_page(m, pfn, 0)
    assert all(_is_free(m, pfn) for pfn in held)
    _invariants(m)


# -- no OOM killer (behaviour 47) ---------------------------------------------------------
def test_pool_allocations_never_call_the_oom_killer_nor_warn() -> None:
    log = CallLog()
    m = _machine(64, tracer=log)
    m.register_owner("hog", oom_score_adj=1000)
    _fill(m, "hog", FILL_KERNEL, 0)
    req = _resize(m, 16)
    assert req.pass_failed and req.h.nr_huge_pages == 0
    assert m.mm.vm["oom_kill"] == 0 and not m.oom_killed("hog")
    fails = [a for a in log.named("mm_page_alloc_fail") if a[1] == 9]
    assert fails and all("suppressed by __GFP_NOWARN" in a[4] for a in fails)


# -- shrinking ------------------------------------------------------------------------------
def test_shrink_frees_free_pages_and_makes_in_use_pages_surplus() -> None:
    m = _machine(64)
    pool = hugetlb_of(m)
    st = pool.state
    h = st.hstates[9]
    _resize(m, 8)
    mapped = [st.dequeue_huge_page_nodemask(h, 0) for _ in range(6)]
    assert all(pfn >= 0 and m.mm.pages.ref[pfn] == 1 for pfn in mapped)
    req = _resize(m, 2)
    assert req.freed == 2  # the free ones go back to the buddy allocator
    assert (h.nr_huge_pages, h.free_huge_pages, h.surplus_huge_pages) == (6, 0, 4)
    assert h.persistent_huge_pages == 2
    for pfn in mapped:  # unmapped: surplus pages leave the pool, the rest stay free
        pool.put_page(pfn, 0)
    assert (h.nr_huge_pages, h.free_huge_pages, h.surplus_huge_pages) == (2, 2, 0)
    assert sum(_is_free(m, pfn) for pfn in mapped) == 4
    assert m.owners[POOL_OWNER].pages == 2 * 512
    _invariants(m)


def test_a_node_file_counts_only_its_node() -> None:
    m = _machine(32, 32)
    _resize(m, 4)
    req = _resize(m, 5, nid=1)
    h = req.h
    assert h.nr_huge_pages_node == [2, 5] and req.allocated == (1, 1, 1)
    entry = hugetlb_of(m).entry(req)
    assert (entry["obtained"], entry["obtained_by_node"]) == (5, [2, 5])


# -- gigantic pages ------------------------------------------------------------------------
def _gigantic_setup(unmovable: bool, kind: int = KIND_ANON) -> tuple[Machine, list[Allocation]]:
    """One node of 2 GiB + 16 MiB: DMA32 holds one aligned GiB, [0x40000, 0x80000).
    Order-10 filler below it, 2,000 anonymous LRU pages inside it (and with
    ``unmovable`` one kernel page), then the filler is freed for migration targets."""
    m = _machine(2048 + 16)
    m.register_owner("app", lru=kind)
    filler = []
    while (h := m.alloc_now("filler", int(GFP.MOVABLE | GFP.HIGHMEM), 10, 0)) is not None:
        if h.pfn >= GIB:
            m.free(h)
            break
        filler.append(h)
    app = [m.alloc_now("app", int(GFP_HIGHUSER_MOVABLE), 0, 0) for _ in range(2000)]
    assert all(h is not None and GIB <= h.pfn < 2 * GIB for h in app)
    if unmovable:
        pinned = m.alloc_now("kernel", int(GFP_KERNEL), 0, 0)
        assert pinned is not None and GIB <= pinned.pfn < 2 * GIB
    for h in filler:
        m.free(h)
    return m, [h for h in app if h is not None]


def test_a_gigantic_page_migrates_the_movable_pages_out_of_its_range() -> None:
    m, app = _gigantic_setup(unmovable=False)
    req = _resize(m, 1, order=18)
    (pfn,) = hugetlb_of(m).state.page_hstate
    assert pfn == GIB and req.allocated == (0,) and m.env.now > 0  # migration took time
    pages = m.mm.pages
    assert not pages.ref_np[GIB:2 * GIB].any()  # prep_compound_gigantic_page() froze all
    assert pages.flags[GIB] == PG_ALLOC | PG_HEAD
    assert (pages.flags_np[GIB + 1:2 * GIB] == PG_TAIL).all()
    assert all(h.pfn < GIB for h in app) and m.mm.vm["pgmigrate_success"] == len(app)
    assert (m.mm.vm["htlb_buddy_alloc_success"], m.mm.vm["htlb_buddy_alloc_fail"]) == (0, 0)
    assert m.owners[POOL_OWNER].pages == GIB
    assert all(z.nr_isolate_pageblock == 0 for z in m.mm.zones)
    check_invariants(m.mm, {**{h.pfn: h.order for h in m.owner_of.values()}, GIB: 18}, {GIB})
    req = _resize(m, 0, order=18)  # free_contig_range(): every page back, one by one
    assert req.freed == 1 and m.owners[POOL_OWNER].pages == 0
    _invariants(m)


def test_an_unmovable_page_in_every_candidate_range_fails_the_gigantic_page() -> None:
    m, app = _gigantic_setup(unmovable=True)
    before = bytes(m.mm.pageblock_mt)
    req = _resize(m, 1, order=18)
    assert req.pass_failed and not hugetlb_of(m).state.page_hstate
    assert m.mm.vm["pgmigrate_success"] == 0  # has_unmovable_pages() refused the range
    assert all(GIB <= h.pfn < 2 * GIB for h in app)
    assert all(z.nr_isolate_pageblock == 0 for z in m.mm.zones)
    mts = np.frombuffer(bytes(m.mm.pageblock_mt), dtype=np.uint8) & 0x7
    assert not (mts == MT_ISOLATE).any() and bytes(m.mm.pageblock_mt)[:GIB >> 9] == \
        before[:GIB >> 9]
    _invariants(m)


def test_a_page_that_cannot_migrate_stops_the_range_migration() -> None:
    """__alloc_contig_migrate_range() gives up (-EBUSY) on a page migrate_pages() cannot
    move: the rest of the range is not migrated, and the range fails. (A page cache page
    with an extra reference is isolated, then fails folio_migrate_mapping(); an anonymous
    one would be skipped by the isolation.)"""
    m, app = _gigantic_setup(unmovable=False, kind=KIND_FILE)
    first = min(app, key=lambda h: h.pfn)
    assert m.mm.get_page_unless_zero(first.pfn)  # a walker holds the lowest cache page
    req = _resize(m, 1, order=18)
    assert req.pass_failed and not hugetlb_of(m).state.page_hstate
    assert m.mm.vm["pgmigrate_fail"] >= 1
    assert m.mm.vm["pgmigrate_success"] < 32  # at most the rest of the first batch
    assert sum(GIB <= h.pfn < 2 * GIB for h in app) > len(app) - 32
    m.mm.put_page(first.pfn, 0)
    _invariants(m)


def test_a_speculative_reference_on_a_gigantic_tail_frees_the_range_and_retries_once() -> None:
    """prep_compound_gigantic_page() meets a page of refcount 2: the range is freed with
    free_contig_range() (that page stays with its holder: "1 pages are still in use!"),
    and the one retry finds the range unusable (an unmovable page now), so the
    allocation fails with the warning."""
    m, _ = _gigantic_setup(unmovable=False)
    pool = hugetlb_of(m)
    held: list[int] = []

    def race(pfn: int, nr_pages: int, compound: bool) -> None:
        if not held:
            assert not compound and nr_pages == GIB
            held.append(pfn + 100)
            assert m.mm.get_page_unless_zero(pfn + 100)

    pool.state.racers.append(race)
    req = _resize(m, 1, order=18)
    assert req.pass_failed and not pool.state.page_hstate
    # free_contig_range() WARNs about the page the walker still holds
    assert pool.state.warnings == [WARN_GIGANTIC_INFLATED, "1 pages are still in use!"]
    assert m.mm.pages.ref[held[0]] == 1 and m.owners[POOL_OWNER].pages == 0
    put_page(m, held[0], 0)
    _invariants(m)


# -- speculative references meet the rest of the allocator -----------------------------------
def test_a_page_its_owner_freed_under_a_reference_stays_put_until_the_put() -> None:
    """Behaviour 41/42's leftover page has no owner any more: compaction must not move it
    (the kernel's owner cleared its mapping), and the holder's put_page() frees it."""
    m = _machine(64)
    pages = _fill(m, "app", int(GFP.MOVABLE | GFP.HIGHMEM), 0)
    held = pages[len(pages) // 2]
    assert m.mm.get_page_unless_zero(held.pfn)
    for h in pages[::2] + [held]:
        if h.alive:
            m.free(h)
    assert m.mm.pages.ref[held.pfn] == 1 and m.mm.pages.flags[held.pfn] == PG_ALLOC
    moved, _ = m.mm.reclaim.compaction.compact_node(0, 0)
    assert moved > 0 and m.mm.pages.ref[held.pfn] == 1
    put_page(m, held.pfn, 0)
    assert _is_free(m, held.pfn)
    _invariants(m)


def test_held_page_cache_is_neither_reclaimed_nor_dropped() -> None:
    """__remove_mapping() and mapping_evict_folio() cannot take a page someone holds."""
    m = _machine(64)
    m.register_owner("cache", lru=KIND_FILE)
    cache = [m.alloc_now("cache", int(GFP_HIGHUSER_MOVABLE), 0, 0) for _ in range(2000)]
    for h in cache:
        assert h is not None and m.mm.get_page_unless_zero(h.pfn)
    reclaim = m.mm.reclaim
    sc = reclaim.try_to_free_pages(m.mm.zonelist(0, False, 3), 0, int(GFP_KERNEL), 0)
    assert sc.nr_reclaimed == 0 and reclaim.drop_caches(1, 0) == 0
    assert all(h is not None and h.alive for h in cache)
    for h in cache:
        assert h is not None
        m.mm.put_page(h.pfn, 0)
    assert reclaim.drop_caches(1, 0) == 2000
    _invariants(m)


# -- the action and its summary --------------------------------------------------------------
def _config(tmp_path: Path, **extra: Any) -> Any:
    doc = {
        "name": "ht", "seed": 3, "duration": "1s",
        "machine": {"nodes": [{"memory": "64MiB", "cpus": 1}, {"memory": "64MiB", "cpus": 1}]},
        "sysctl": {"compaction_proactiveness": 0},
        "trace": {"events": True, "snapshot_interval": "100ms"},
        "workloads": [{"name": "cache", "type": "synthetic", "rate": "40000/s",
                       "max_requests": 20000, "order": 0, "lifetime": "forever",
                       "gfp": "GFP_HIGHUSER_MOVABLE", "memory": "file"}],
        "actions": [{"at": "600ms", "do": {"nr_hugepages": 1000}},
                    {"at": "800ms", "do": {"nr_hugepages": {"count": 3, "node": 1}}}],
        **extra,
    }
    return parse_config(doc, str(tmp_path / "ht.yaml"), workload_parsers())


def test_the_action_records_each_request_in_the_summary_and_the_spans(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    result = simulate(cfg, tmp_path, report=False)
    summary = json.loads((result.run_dir / ts.SUMMARY_FILE).read_text())
    grow, node1 = summary["hugetlb"]["requests"]
    assert (grow["at_s"], grow["requested"], grow["size"], grow["node"]) == (0.6, 1000, "2MiB",
                                                                           None)
    assert grow["finished"] and grow["stopped_at_failed_pass"]
    assert 0 < grow["obtained"] == sum(grow["obtained_by_node"]) == grow["allocated"] < 1000
    assert grow["seconds"] > 0  # the page cache had to be reclaimed first
    assert grow["pool_after"]["nr_hugepages"] == grow["obtained"]
    assert (node1["node"], node1["requested"], node1["obtained"]) == (1, 3, 3)
    assert node1["obtained_by_node"][0] == grow["obtained_by_node"][0]
    assert summary["vmstat"]["htlb_buddy_alloc_success"] == grow["allocated"]
    acts = summary["actions"]
    assert acts[0]["do"] == "nr_hugepages 1000 size=2MiB"
    assert acts[0]["outcome"].startswith(f"{grow['obtained']} of 1000 huge pages")
    spans = pq.read_table(result.run_dir / ts.SPANS_FILE).to_pandas()
    resize = spans[spans["name"] == ts.SPAN_HUGETLB_RESIZE]
    assert len(resize) == 2
    first = resize.iloc[0]
    assert first["start_ns"] == 600_000_000
    assert first["end_ns"] - first["start_ns"] == round(grow["seconds"] * 1e9)
    assert first["pages"] == grow["allocated"] * 512


# -- conservation ----------------------------------------------------------------------------
def test_every_page_comes_back_after_the_callers_let_go() -> None:
    """Resizes, a workload that maps most of its pool and shrinks it into surplus, and a
    walker whose references race fresh pages: once everything is unmapped, put and the
    pool emptied, free + pcp + live allocations cover every managed page."""
    m = _machine(64, 64)
    parsers = workload_parsers()
    specs = {
        "db": ("hugetlb", {"resize": [{"at": "1ms", "count": 40},
                                      {"at": "5ms", "count": 8, "node": 0}],
                           "use": 0.75, "release": "9ms"}),
        "walker": ("speculative_refs", {"rate": "200000/s", "hold": "3ms", "mode": "gup_fast",
                                        "race_window": "50us", "max_requests": 3000}),
    }
    for (name, (kind, raw)), rng in zip(specs.items(), m.spawn_rngs(2), strict=True):
        spec = WorkloadConfig(name, kind, dict(parsers[kind](raw, name, "t")))
        m.env.process(WORKLOADS[kind].run(m, spec, rng))
    m.env.run(until=40_000_000)  # the walker's 3,000 tries are over, its holds expired
    pool = hugetlb_of(m)
    h = pool.state.hstates[9]
    stats = m.extras["caller_stats"]
    assert (stats["db"]["faults"], stats["db"]["released"]) == (30, 30)
    assert stats["walker"]["race_hits"] > 0 and pool.state.freeze_retries > 0
    assert (h.nr_huge_pages_node, h.surplus_huge_pages) == ([8, 20], 0)
    assert not (m.mm.pages.ref_np > 1).any()
    _resize(m, 0)
    assert not pool.state.page_hstate and not pool.handles
    assert m.owners[POOL_OWNER].pages == 0
    _invariants(m)
