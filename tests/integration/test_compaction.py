"""Compaction (mm/compaction.c of 6.1): the scanners, migration, deferral, capture, kcompactd.

Each test builds a 128 MiB one-node machine (DMA 3,999 managed pages, DMA32 the rest),
fragments it in a known way and checks one rule, named after the spec's behaviour.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from allocsim.run import simulate
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm import compaction as cm
from simcore.mm.constants import MT_MOVABLE
from simcore.mm.fragmentation import fragmentation_index
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.lru import KIND_FILE
from simcore.sim.machine import Allocation, Machine
from workloads.registry import load_experiment

REPO = Path(__file__).resolve().parents[2]
PAGES_128MIB = 128 * 1024 * 1024 // 4096
MOVABLE_NO_RECLAIM = int(GFP.MOVABLE | GFP.HIGHMEM)
"""A movable request with no reclaim bits: fills memory without waking kswapd."""
UNMOVABLE_NO_RECLAIM = 0
THP = int(GFP_HIGHUSER_MOVABLE | GFP.COMP | GFP.NORETRY | GFP.NOWARN)
"""An order-9 THP-style request that may compact (and reclaim) but not OOM."""


def _machine(nodes: int = 1, proactiveness: int = 0) -> Machine:
    cfg = MachineConfig(nodes=tuple(NodeConfig(memory_pages=PAGES_128MIB, cpus=2)
                                    for _ in range(nodes)))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=proactiveness), seed=1)


def _fill(m: Machine, owner: str, gfp: int) -> list[Allocation]:
    """Order-0 allocations until the request fails (boosts cleared as kswapd would)."""
    got: list[Allocation] = []
    while True:
        while (h := m.alloc_now(owner, gfp, 0, 0)) is not None:
            got.append(h)
        if not any(z.watermark_boost for z in m.mm.zones):
            return got
        for z in m.mm.zones:
            z.watermark_boost = 0


def _fragment(m: Machine, owner: str = "app", gfp: int = MOVABLE_NO_RECLAIM,
              keep_every: int = 4) -> list[Allocation]:
    """Fill the node, then free all but every ``keep_every``-th page: lots of free
    memory, and no free block above order 1 or 2."""
    hs = _fill(m, owner, gfp)
    kept = []
    for i, h in enumerate(hs):
        if i % keep_every:
            m.free(h)
        else:
            kept.append(h)
    m.mm.drain_all_pages()
    return kept


def _take_huge_blocks(m: Machine) -> list[Allocation]:
    """Allocate every free order-9 block (no reclaim, no compaction): what remains must
    be built by compaction."""
    got = []
    hog = int(GFP.HIGH | GFP.MOVABLE | GFP.COMP)  # __GFP_HIGH: below the MIN mark too
    while True:
        m.mm.drain_all_pages()  # pcp pages merge first, as the slow path's drain would
        h = m.alloc_now("hog", hog, 9, 0)
        if h is None:
            return got
        got.append(h)


def _huge_free(m: Machine) -> int:
    """Free blocks of order >= 9 in all zones."""
    return sum(int(z.free_area.nr_free[o]) for z in m.mm.zones
               for o in range(9, z.max_order + 1))


def _invariants(m: Machine) -> None:
    m.apply_pending_frees()
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})


def _vm(m: Machine, name: str) -> int:
    return int(m.mm.vm.as_dict()[name])


def test_compaction_builds_order9_blocks_from_a_fragmented_movable_zone() -> None:
    """Behaviour 59: the migrate scanner walks up, the free scanner down; the run ends
    when they meet (COMPLETE), and movable pages have moved up out of the way."""
    m = _machine()
    kept = _fragment(m)
    assert _huge_free(m) <= 1
    before = sorted(h.pfn for h in kept)
    c = m.mm.reclaim.compaction
    moved, cost = c.compact_node(0, 0)
    m.mm.drain_all_pages()
    assert moved > 1000 and _vm(m, "pgmigrate_success") == moved
    assert cost == (_vm(m, "compact_migrate_scanned") + _vm(m, "compact_free_scanned")) \
        * c.cost.compact_scan_ns + moved * c.cost.compact_migrate_ns
    assert _huge_free(m) >= 15
    after = sorted(h.pfn for h in m.owner_of.values())
    assert len(after) == len(before) and sum(after) > sum(before)  # pages moved up
    dma32 = m.mm.zones[1]
    assert dma32.compact_cached_migrate_pfn == [dma32.zone_start_pfn] * 2  # reset: met
    _invariants(m)


def test_direct_compaction_serves_an_order9_request_and_counts_stall_and_success() -> None:
    """Behaviour 55: one compact_stall per direct compaction that ran, then exactly one of
    compact_success/compact_fail. The block comes from a capture or the free lists."""
    m = _machine()
    _fragment(m)
    _take_huge_blocks(m)
    h = m.alloc_now("thp", THP, 9, 0)
    assert h is not None and h.order == 9
    assert _vm(m, "compact_stall") >= 1
    assert _vm(m, "compact_success") == 1
    assert _vm(m, "compact_stall") == _vm(m, "compact_success") + _vm(m, "compact_fail")
    _invariants(m)


def test_compaction_fails_when_unmovable_pages_pollute_every_pageblock() -> None:
    """Behaviour 60: slab/kernel pages are never migrated, so with one in every
    pageblock no order-9 block can be built, however much memory is free."""
    m = _machine()
    kept = _fragment(m, "kernel", UNMOVABLE_NO_RECLAIM, keep_every=64)
    hog = _take_huge_blocks(m)
    pfns = {h.pfn for h in kept} | {h.pfn for h in hog}
    blocks = {p >> 9 for p in pfns}
    assert len(blocks) >= 60  # every populated pageblock holds one
    c = m.mm.reclaim.compaction
    moved, _ = c.compact_node(0, 0)
    assert moved == 0 and _vm(m, "pgmigrate_success") == 0
    assert {h.pfn for h in m.owner_of.values()} == pfns
    assert _huge_free(m) == 0
    assert m.alloc_now("thp", THP, 9, 0) is None
    assert _vm(m, "compact_fail") >= 1 and _vm(m, "compact_success") == 0
    _invariants(m)


def test_a_page_with_a_speculative_reference_is_not_migrated() -> None:
    """migrate_pages() cannot freeze a refcount it does not expect: the page stays,
    pgmigrate_fail counts it, and its owner's handle is unchanged."""
    m = _machine()
    kept = _fragment(m)
    pinned = kept[len(kept) // 3]
    assert m.mm.get_page_unless_zero(pinned.pfn)
    c = m.mm.reclaim.compaction
    moved, _ = c.compact_node(0, 0)
    assert moved > 0 and _vm(m, "pgmigrate_fail") >= 1
    assert m.owner_of[pinned.pfn] is pinned and m.mm.pages.ref[pinned.pfn] == 2
    m.mm.put_page(pinned.pfn, 0)
    _invariants(m)


def test_an_anon_page_with_an_extra_reference_is_not_even_isolated() -> None:
    """isolate_migratepages_block(): an anonymous LRU page pinned beyond its mapping is
    skipped at isolation (no pgmigrate_fail); page cache needs __GFP_FS to move."""
    m = _machine()
    m.register_owner("heap", lru=0)
    kept = _fragment(m, "heap")
    for h in kept:
        assert m.mm.get_page_unless_zero(h.pfn)
    moved, _ = m.mm.reclaim.compaction.compact_node(0, 0)
    assert moved == 0 and _vm(m, "pgmigrate_fail") == 0
    for h in kept:
        m.mm.put_page(h.pfn, 0)
    _invariants(m)


def test_a_handle_frees_correctly_after_its_block_moved() -> None:
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    kept = _fragment(m, "cache")
    old = {id(h): h.pfn for h in kept}
    m.mm.reclaim.compaction.compact_node(0, 0)
    moved = [h for h in kept if h.pfn != old[id(h)]]
    assert moved
    lv = m.mm.reclaim.lruvecs[0]
    for h in moved:
        assert m.owner_of[h.pfn] is h and old[id(h)] not in m.owner_of
        assert lv.on_list(h.pfn) >= 0 and lv.on_list(old[id(h)]) < 0  # the LRU followed
    for h in kept:
        m.free(h)
    _invariants(m)
    assert lv.size(2) + lv.size(3) == 0
    assert sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones) == sum(
        z.managed_pages for z in m.mm.zones)


def test_deferral_backs_off_after_failures_and_recovers_after_a_success() -> None:
    """Behaviour 58: after the n-th failure the next 2^n - 1 attempts are DEFERRED (up to
    63); an allocation that succeeds resets the counters."""
    m = _machine()
    c = m.mm.reclaim.compaction
    zone = m.mm.zones[1]
    order = 9
    c.compaction_defer_reset(zone, order, True)
    skipped = []
    for _ in range(7):
        c.defer_compaction(zone, order)
        n = 0
        while c.compaction_deferred(zone, order):
            n += 1
        skipped.append(n)
    assert skipped == [1, 3, 7, 15, 31, 63, 63]
    assert not c.compaction_deferred(zone, order - 1)  # lower orders are not deferred
    c.compaction_defer_reset(zone, order, True)
    assert zone.compact_defer_shift == 0 and not c.compaction_deferred(zone, order)


def test_direct_compaction_in_a_polluted_zone_defers_and_a_success_resets() -> None:
    m = _machine()
    kept = _fragment(m, "kernel", UNMOVABLE_NO_RECLAIM, keep_every=64)
    _take_huge_blocks(m)
    zone = m.mm.zones[1]
    sync = int(GFP_HIGHUSER_MOVABLE | GFP.COMP | GFP.NOWARN)  # reaches sync-light
    for _ in range(3):
        assert m.alloc_now("thp", sync, 9, 0) is None
    assert zone.compact_defer_shift >= 1
    spans_before = m.spans.rows
    assert m.alloc_now("thp", sync, 9, 0) is None
    names = set(m.spans.columns.cols["name"][spans_before:])
    assert ts.SPAN_COMPACTION_DEFERRED in names or ts.SPAN_COMPACTION_DEFER in names
    for h in kept + _take_huge_blocks(m):  # the pollution goes; movable pages come
        m.free(h)
    _fragment(m)
    _take_huge_blocks(m)
    # kswapd going to sleep clears the skip hints the failed runs left on every block
    m.mm.reclaim.compaction.reset_isolation_suitable(0)
    success = _vm(m, "compact_success")
    for _ in range(64):  # the longest deferral is 63 attempts
        if (h := m.alloc_now("thp", sync, 9, 0)) is not None:
            break
    assert h is not None and _vm(m, "compact_success") == success + 1
    assert m.mm.page_zone(h.pfn).compact_defer_shift == 0  # compaction_defer_reset()
    _invariants(m)


def _run(m: Machine, ms: int) -> None:
    m.env.run(until=m.env.now + ms * 1_000_000)


def test_proactive_compaction_starts_above_the_high_mark_and_stops_at_the_low_one() -> None:
    """Behaviour 63: kcompactd checks every 500 ms; with proactiveness 20 it compacts a
    node whose weighted order-9 score is above 90, and each zone only down to 80."""
    m = _machine(proactiveness=20)
    c = m.mm.reclaim.compaction
    _fragment(m)
    assert c.fragmentation_score_node(0) > 90
    _run(m, 400)
    assert _vm(m, "pgmigrate_success") == 0  # not yet: the first check is at 500 ms
    _run(m, 200)
    assert _vm(m, "pgmigrate_success") > 0
    dma32 = m.mm.zones[1]
    low = c.fragmentation_score_wmark(True)
    assert low == 80
    assert c.fragmentation_score_zone(dma32) <= low
    assert c.fragmentation_score_zone(dma32) > low - 10  # it stopped at the mark
    _invariants(m)


def test_proactive_compaction_leaves_a_node_below_the_high_mark_alone() -> None:
    m = _machine(proactiveness=20)
    c = m.mm.reclaim.compaction
    _fragment(m, keep_every=8)  # fewer pages kept: more order-9 material, lower score
    c.compact_node(0, 0)
    m.mm.drain_all_pages()
    moved = _vm(m, "pgmigrate_success")
    score = c.fragmentation_score_node(0)
    assert score <= 90
    _run(m, 2_000)
    assert _vm(m, "pgmigrate_success") == moved


def test_kcompactd_is_woken_by_kswapd_and_compacts_at_pageblock_order() -> None:
    """wakeup_kcompactd() from the end of a boosted kswapd run: kcompactd_do_work() at
    pageblock order counts compact_daemon_wake and its scanned pages."""
    m = _machine()
    _fragment(m)
    c = m.mm.reclaim.compaction
    assert c.wakeup_kcompactd(0, 9, 1)
    _run(m, 1)
    assert _vm(m, "compact_daemon_wake") == 1
    assert _vm(m, "compact_daemon_migrate_scanned") > 0
    assert _vm(m, "pgmigrate_success") > 0
    _invariants(m)


def test_compact_memory_action_compacts_every_zone_of_every_node(tmp_path: Path) -> None:
    cfg = load_experiment(REPO / "configs" / "compaction.yaml")
    result = simulate(cfg, tmp_path)
    s = result.summary
    vm = s["vmstat"]
    assert vm["compact_stall"] > 0 and vm["compact_success"] > 0
    assert s["latency_ns"][ts.STAGE_SLOW_COMPACTION]["count"] > 0
    acts = [a for a in s["actions"] if a["do"] == "compact_memory"]
    assert acts and acts[0]["pages"] > 0
    spans = pq.read_table(result.run_dir / ts.SPANS_FILE).to_pandas()
    comp = spans[spans["name"].astype(str) == ts.SPAN_COMPACTION]
    at = acts[0]["at_ns"]
    manual = comp[(comp["start_ns"] >= at) & comp["detail"].str.contains("order=-1")]
    zones = {(int(r.nid), r.detail.split()[0]) for r in manual.itertuples()}
    populated = {(z.nid, f"zone={z.name}") for z in _machine(2).mm.zones}
    assert populated <= zones
    assert (result.run_dir / ts.REPORT_DIR / "09_huge_pages.png").is_file()


@pytest.mark.parametrize("gfp", [int(GFP_KERNEL), MOVABLE_NO_RECLAIM])
def test_compaction_never_migrates_non_lru_unmovable_pages(gfp: int) -> None:
    """Behaviour 60: a kernel allocation stays put; a movable one may move."""
    m = _machine()
    kept = _fragment(m, "x", gfp if gfp == MOVABLE_NO_RECLAIM else UNMOVABLE_NO_RECLAIM)
    before = {h.pfn for h in kept}
    m.mm.reclaim.compaction.compact_node(0, 0)
    after = {h.pfn for h in m.owner_of.values()}
    if gfp == MOVABLE_NO_RECLAIM:
        assert after != before
    else:
        assert after == before


def test_free_scanner_only_takes_targets_from_movable_pageblocks() -> None:
    """Behaviour 60: async/sync-light compaction never uses a free page of a
    non-MOVABLE pageblock as a migration target."""
    m = _machine()
    kept = _fragment(m)
    _take_huge_blocks(m)
    zone = m.mm.zones[1]
    targets: list[int] = []
    c = m.mm.reclaim.compaction
    c.moved = lambda old, new: (targets.append(new), m._moved(old, new))  # type: ignore
    cc = cm.CompactControl(zone, 9, int(GFP_HIGHUSER_MOVABLE), cm.MIGRATE_SYNC_LIGHT, 0,
                           highest_zoneidx=1, direct_compaction=True)
    c.compact_zone(cc)
    assert targets
    assert all(zone.get_pageblock_migratetype(p) == MT_MOVABLE for p in targets)
    assert kept


def _timed(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


def test_direct_compaction_stalls_the_caller_for_its_cost() -> None:
    """The slow path spends compaction's time (pages scanned and migrated) before it
    tries the free lists; the request is traced with stage slow:compaction."""
    m = _machine()
    _fragment(m)

    _take_huge_blocks(m)

    def body() -> Generator[Any, Any, tuple[int, Allocation | None]]:
        start = m.env.now
        h = yield from m.alloc("thp", THP, 9, 0)
        return m.env.now - start, h

    elapsed, h = _timed(m, body())
    assert h is not None
    assert elapsed > 0
    assert m.latency.by_stage[ts.STAGE_SLOW_COMPACTION]


def _fragmented_zone() -> tuple[Machine, Any]:
    """A zone whose free memory is all in blocks below order 3 (the rest is taken with
    __GFP_MEMALLOC, which ignores the watermarks)."""
    m = _machine()
    _fragment(m)
    memalloc = int(GFP.MEMALLOC | GFP.MOVABLE | GFP.COMP)
    for order in range(10, 2, -1):
        m.mm.drain_all_pages()
        while m.alloc_now("hog", memalloc, order, 0) is not None:
            pass
    zone = m.mm.zones[1]
    assert not any(zone.free_area.nr_free[o] for o in range(3, 11))
    return m, zone


def test_compaction_needs_order0_headroom_above_the_watermark_plus_the_gap() -> None:
    """Behaviour 57: SKIPPED unless free pages exceed (low for order > 3, else min)
    + 2 << order + lowmem_reserve; CONTINUE from one page above."""
    m, zone = _fragmented_zone()
    c = m.mm.reclaim.compaction
    for order, wmark in ((9, 1), (3, 0)):
        mark = zone.wmark_pages(wmark) + (2 << order) + zone.lowmem_reserve[1]
        mark += zone.nr_reserved_highatomic
        real = zone.nr_free_pages
        try:
            c.extfrag_threshold = -1  # keep the costly-order veto out of this test
            zone.nr_free_pages = mark
            assert c.suitable(zone, order, 1) == cm.COMPACT_SKIPPED
            zone.nr_free_pages = mark + 1
            assert c.suitable(zone, order, 1) == cm.COMPACT_CONTINUE
        finally:
            zone.nr_free_pages = real
            c.extfrag_threshold = 500


def test_costly_compaction_is_skipped_when_the_fragmentation_index_blames_memory() -> None:
    """Behaviour 56: for a costly order, a fragmentation index in [0, extfrag_threshold]
    means the failure is lack of memory: SKIPPED. Orders up to 3 never look."""
    m, zone = _fragmented_zone()
    c = m.mm.reclaim.compaction
    index = fragmentation_index(list(zone.free_area.nr_free), 9)
    assert 500 < index <= 1000  # plenty free, all of it in small blocks
    assert c.suitable(zone, 9, 1) == cm.COMPACT_CONTINUE
    c.extfrag_threshold = index
    assert c.suitable(zone, 9, 1) == cm.COMPACT_SKIPPED
    assert c.suitable(zone, 3, 1) == cm.COMPACT_CONTINUE
    c.extfrag_threshold = index - 1
    assert c.suitable(zone, 9, 1) == cm.COMPACT_CONTINUE


def test_a_proactiveness_write_wakes_kcompactd_for_a_check_at_once() -> None:
    """compaction_proactiveness_sysctl_handler(): a non-zero write sets
    proactive_compact_trigger and wakes kcompactd, which checks now, not in 500 ms."""
    from simcore.mm.sysctl import write_sysctl

    m = _machine(proactiveness=0)
    _fragment(m)
    _run(m, 1_000)
    assert _vm(m, "pgmigrate_success") == 0  # asleep without a timeout
    write_sysctl(m.mm, "compaction_proactiveness", 20)
    _run(m, 1)
    assert _vm(m, "pgmigrate_success") > 0  # the work is done at once
    _run(m, 200)  # and its time spent: then the trigger is cleared
    assert not m.mm.reclaim.compaction.kcompactd[0].proactive_trigger
