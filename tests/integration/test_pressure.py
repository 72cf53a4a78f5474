"""Memory pressure in simulated time: the slow path, direct reclaim, kswapd and the OOM killer.

Each test builds a 128 MiB one-node machine (DMA 3,999 managed pages, DMA32 the rest),
fills it to a known state and checks one rule of 6.1 with numbers derived by hand from
the kernel's arithmetic and the default cost model (``CostConfig``).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from allocsim.run import simulate
from simcore.config.types import CostConfig, MachineConfig, NodeConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm import kswapd
from simcore.mm.constants import MigrateType
from simcore.mm.fallback import move_freepages_block
from simcore.mm.gfp import (
    GFP,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    GFP_NOFS,
    GFP_NOWAIT,
    GFP_TRANSHUGE_LIGHT,
)
from simcore.mm.lru import KIND_ANON, KIND_FILE, LRU_INACTIVE_FILE
from simcore.mm.oom_kill import KernelPanic
from simcore.mm.tracepoints import Tracer
from simcore.sim.machine import LRU_DIRTY, LRU_HOT, Allocation, Machine
from workloads.registry import load_experiment

REPO = Path(__file__).resolve().parents[2]

PAGES_128MIB = 128 * 1024 * 1024 // 4096
KERNEL = int(GFP_KERNEL)
NO_KSWAPD = 0
"""A mask with no reclaim bits at all: fills memory without waking kswapd."""
COST = CostConfig()


def _machine(swap_pages: int = 0, cpus: int = 2) -> Machine:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_128MIB, cpus=cpus),),
                        swap_pages=swap_pages)
    return Machine(cfg, SysctlConfig(), seed=1)


def _fill(m: Machine, owner: str, gfp: int = NO_KSWAPD, order: int = 0,
          lru_flags: int = 0) -> list[Allocation]:
    """Allocate until the request fails (at the MIN watermark for ``gfp`` 0).

    Filling steals pageblocks, and each steal boosts the watermarks; the boosts are
    cleared (as kswapd would) and the fill goes on, so the zones end at their plain
    watermarks.
    """
    got: list[Allocation] = []
    while True:
        while (h := m.alloc_now(owner, gfp, order, 0, lru_flags=lru_flags)) is not None:
            got.append(h)
        if not any(z.watermark_boost for z in m.mm.zones):
            return got
        for z in m.mm.zones:
            z.watermark_boost = 0


def _timed(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    """Run ``body`` as a process and stop the clock when it ends; returns its value."""
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


def _request(m: Machine, owner: str, gfp: int, order: int = 0,
             cpu: int = 0) -> Generator[Any, Any, tuple[int, Allocation | None, int]]:
    start = m.env.now
    handle = yield from m.alloc(owner, gfp, order, cpu)
    return int(start), handle, int(m.env.now)


def _dma32(m: Machine) -> Any:
    return m.mm.zones[1]


def _below_min_with_cache(m: Machine) -> list[Allocation]:
    """Page cache (clean) everywhere, free pages at the MIN watermark."""
    m.register_owner("cache", lru=KIND_FILE)
    cache = _fill(m, "cache")
    zone = _dma32(m)
    assert zone.nr_free_pages <= zone.wmark_pages(0) + zone.lowmem_reserve[2]
    return cache


# -- non-blocking requests ---------------------------------------------------------------
@pytest.mark.parametrize("gfp", [GFP_ATOMIC, GFP_NOWAIT], ids=["GFP_ATOMIC", "GFP_NOWAIT"])
def test_nonblocking_requests_never_stall_and_never_reclaim(gfp: GFP) -> None:
    # behaviour 51: steps 1-3 and 5-6 only, then fail
    m = _machine()
    _below_min_with_cache(m)
    _fill(m, "hold", int(GFP_ATOMIC))  # take the zones down to the ATOMIC threshold too
    before = m.mm.vm.as_dict()
    start, handle, end = _timed(m, _request(m, "irq", int(gfp)))
    assert handle is None
    assert start == end == 0
    after = m.mm.vm.as_dict()
    for name in ("pgscan_direct", "pgsteal_direct", "allocstall_normal", "allocstall_dma32",
                 "compact_stall", "oom_kill"):
        assert after[name] == before[name], name
    assert m.owners["irq"].stall_ns == 0
    assert m.stalls.some_at(0) == 0


# -- direct reclaim ----------------------------------------------------------------------
def test_gfp_kernel_below_min_reclaims_page_cache_and_succeeds() -> None:
    """behaviour 48/65: direct reclaim frees clean page cache, then the retry succeeds.

    try_to_free_pages() wants SWAP_CLUSTER_MAX (32) pages. The file LRU holds every
    cache page on its inactive list; get_scan_count() scans ``size >> priority`` of it
    (no swap: SCAN_FILE): at priority 12 and 11 that is ``size >> 12`` and
    ``(size - first) >> 11`` pages, then ``>> 10``, until 32 are reclaimed. Each page
    costs reclaim_scan (50 ns) + reclaim_clean (1 us), and the call 10 us.
    """
    m = _machine()
    cache = _below_min_with_cache(m)
    size = len(cache)
    expect_pages = 0
    priority = 12
    while expect_pages < 32:
        expect_pages += (size - expect_pages) >> priority
        priority -= 1
    stall = COST.direct_reclaim_ns + expect_pages * (COST.reclaim_scan_ns
                                                      + COST.reclaim_clean_ns)
    start, handle, end = _timed(m, _request(m, "kbuild", KERNEL))
    assert handle is not None
    assert end - start == stall
    vm = m.mm.vm
    assert vm["allocstall_normal"] == 1  # gfp_zone(GFP_KERNEL) is ZONE_NORMAL (65)
    assert vm["pgsteal_direct"] == vm["pgscan_direct"] == expect_pages
    # kswapd, woken by the request, reclaims too once the caller sleeps
    assert m.stats.pages_reclaimed == expect_pages + m.mm.vm["pgsteal_kswapd"]
    assert m.owners["kbuild"].stall_ns == stall
    assert m.latency.by_stage[ts.STAGE_SLOW_RECLAIM] == {stall + COST.pcp_hit_ns: 1}
    (span,) = [i for i, n in enumerate(m.spans.columns.cols["name"])
               if n == ts.SPAN_DIRECT_RECLAIM]
    cols = m.spans.columns.cols
    assert (cols["caller"][span], cols["start_ns"][span], cols["end_ns"][span],
            cols["pages"][span]) == ("kbuild", 0, stall, expect_pages)


def test_highusermovable_counts_allocstall_movable() -> None:
    # behaviour 65: allocstall_<zone> is indexed by the request's highest zone
    m = _machine()
    _below_min_with_cache(m)
    _timed(m, _request(m, "user", int(GFP_HIGHUSER_MOVABLE)))
    assert m.mm.vm["allocstall_movable"] == 1
    assert m.mm.vm["allocstall_normal"] == 0


def test_noretry_gives_up_after_one_round() -> None:
    # Nothing is reclaimable: one direct reclaim round, then nopage (no OOM).
    m = _machine()
    m.register_owner("pinned")
    _fill(m, "pinned")
    _fill(m, "pinned", int(GFP_ATOMIC))
    gfp = KERNEL | int(GFP.NORETRY)
    start, handle, end = _timed(m, _request(m, "x", gfp))
    assert handle is None
    assert m.mm.vm["allocstall_normal"] == 1
    assert m.mm.vm["oom_kill"] == 0
    assert end - start == COST.direct_reclaim_ns  # one round, nothing scanned
    assert m.latency.by_stage[ts.STAGE_FAIL][COST.direct_reclaim_ns] == 1


@pytest.mark.parametrize("extra", [0, int(GFP.RETRY_MAYFAIL)], ids=["plain", "RETRY_MAYFAIL"])
def test_costly_order_never_triggers_oom(extra: int) -> None:
    # behaviours 49 and 47: order > 3 stops at step 11 (or skips the killer at step 15)
    m = _machine()
    _fill(m, "victim")
    _fill(m, "victim", int(GFP_ATOMIC))
    start, handle, end = _timed(m, _request(m, "big", KERNEL | extra, order=4))
    assert handle is None
    assert m.mm.vm["oom_kill"] == 0
    assert m.owners["victim"].killed_ns == -1
    assert m.mm.vm["allocstall_normal"] >= 1


def test_reclaim_skips_dirty_pages_without_gfp_fs() -> None:
    # Direct reclaim may not write pages (no __GFP_FS); kswapd may.
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    cache = _fill(m, "cache", lru_flags=LRU_DIRTY)
    gfp = int(GFP_NOFS) & ~int(GFP.KSWAPD_RECLAIM) | int(GFP.NORETRY)
    _, handle, _ = _timed(m, _request(m, "fs", gfp))
    assert handle is None
    assert m.stats.pages_reclaimed == 0
    assert all(h.alive for h in cache)
    assert m.mm.vm["pgscan_direct"] > 0


def test_anon_is_reclaimed_only_with_swap() -> None:
    m = _machine()
    m.register_owner("heap", lru=KIND_ANON)
    _fill(m, "heap")
    _timed(m, _request(m, "a", KERNEL | int(GFP.NORETRY)))
    assert m.stats.pages_reclaimed == 0  # no swap: get_scan_count() scans file only
    m2 = _machine(swap_pages=4096)
    m2.register_owner("heap", lru=KIND_ANON)
    heap = _fill(m2, "heap")
    _, handle, _ = _timed(m2, _request(m2, "a", KERNEL))
    assert handle is not None
    swapped = [h for h in heap if h.swapped]
    assert swapped and m2.mm.vm["pswpout"] == len(swapped)
    assert m2.owners["heap"].swap_pages == len(swapped) == m2.mm.reclaim.swap_used
    m2.free(swapped[0])  # the owner frees a swapped-out page: its slot is released
    assert m2.mm.reclaim.swap_used == len(swapped) - 1


# -- highatomic reserve -------------------------------------------------------------------
def test_highatomic_reserve_is_released_after_direct_reclaim_progress() -> None:
    """__alloc_pages_direct_reclaim(): reclaim made progress, yet the retry fails, so
    unreserve_highatomic_pageblock(force=false) gives one reserved pageblock back to the
    request's migratetype (it keeps the last pageblock's worth), then drains the pcps."""
    m = _machine()
    zone = _dma32(m)
    pb = 1 << zone.pageblock_order
    last = zone.end_pfn - pb
    reserved = [last - pb, last]  # two whole free pageblocks become the reserve
    for pfn in reserved:
        zone.set_pageblock_migratetype(pfn, MigrateType.HIGHATOMIC)
        move_freepages_block(zone, pfn, MigrateType.HIGHATOMIC)
    zone.nr_reserved_highatomic = 2 * pb
    m.register_owner("cache", lru=KIND_FILE)
    _fill(m, "cache")
    for z in m.mm.zones:  # whatever reclaim frees, the retry cannot pass a watermark
        z.watermark = [z.managed_pages] * 4
    no_kswapd = KERNEL & ~int(GFP.KSWAPD_RECLAIM) | int(GFP.NORETRY)
    _, handle, _ = _timed(m, _request(m, "k", no_kswapd))
    assert handle is None
    assert m.mm.vm["pgsteal_direct"] > 0  # progress
    assert zone.nr_reserved_highatomic == pb
    types = sorted(zone.get_pageblock_migratetype(pfn) for pfn in reserved)
    assert types == [MigrateType.UNMOVABLE, MigrateType.HIGHATOMIC]  # GFP_KERNEL's type
    assert sum(z.pcp_pages for z in m.mm.zones) == 0  # drain_all_pages()


# -- kswapd ------------------------------------------------------------------------------
def test_kswapd_wakes_at_low_reclaims_to_high_removes_boost_and_sleeps() -> None:
    # behaviours 30, 32, 20 and the boost decay of balance_pgdat()
    m = _machine()
    zone = _dma32(m)
    m.register_owner("cache", lru=KIND_FILE)
    _fill(m, "cache")
    zone.watermark_boost = 512
    seen: dict[str, Any] = {}
    st = m.mm.reclaim.kswapd[0]

    def body() -> Generator[Any, Any, None]:
        assert st.waiting and not zone.reclaim_active
        handle = yield from m.alloc("user", int(GFP_NOWAIT), 0, 0)  # wakes kswapd
        seen["woken"] = m.mm.vm["kswapd_wakeup"]
        yield m.env.timeout(1)  # kswapd's first round is under way
        seen["active"] = zone.reclaim_active
        seen["handle"] = handle

    _timed(m, body())
    assert seen["woken"] == 1
    assert seen["active"] is True  # ZONE_RECLAIM_ACTIVE while kswapd reclaims
    m.env.run(until=m.env.now + 10**9)  # let kswapd finish and go to sleep
    assert not zone.reclaim_active
    assert zone.watermark_boost == 0  # the boost it saw at the start is removed
    assert kswapd.pgdat_balanced(m.mm.reclaim, 0, 0, 3)
    assert zone.nr_free_pages > zone.wmark_pages(2)
    assert m.mm.vm["pageoutrun"] >= 1 and m.mm.vm["pgsteal_kswapd"] > 0
    assert st.waiting and st.failures == 0
    names = m.spans.columns.cols["name"]
    assert ts.SPAN_KSWAPD_SLEEP in names and ts.SPAN_KSWAPD_RUN in names


def test_balanced_but_boosted_node_still_wakes_kswapd() -> None:
    # behaviour 31
    m = _machine()
    zone = _dma32(m)
    reclaim = m.mm.reclaim
    assert kswapd.pgdat_balanced(reclaim, 0, 0, 3)
    assert not kswapd.wakeup_kswapd(reclaim, zone, KERNEL, 0, 3)  # balanced: no wake
    zone.watermark_boost = 512
    assert kswapd.pgdat_balanced(reclaim, 0, 0, 3)  # still balanced with the boost
    assert kswapd.wakeup_kswapd(reclaim, zone, KERNEL, 0, 3)
    assert m.mm.vm["kswapd_wakeup"] == 1


def test_hopeless_node_ignores_wakeups_and_wakes_kcompactd_for_nonblocking() -> None:
    # behaviour 33 (and 31's kcompactd for a caller that cannot reclaim)
    m = _machine()
    zone = _dma32(m)
    reclaim = m.mm.reclaim
    held = _fill(m, "pinned")
    reclaim.kswapd[0].failures = 16
    assert not kswapd.wakeup_kswapd(reclaim, zone, KERNEL, 2, 3)
    assert reclaim.compaction.kcompactd_wakeups == 0  # a direct reclaimer: nothing
    assert not kswapd.wakeup_kswapd(reclaim, zone, int(GFP_NOWAIT), 2, 3)
    assert reclaim.compaction.kcompactd_wakeups == 0  # kcompactd_node_suitable(): no free
    held += _fill(m, "pinned", int(GFP.MEMALLOC))  # every page, reserves included
    for h in held[::2]:  # plenty of free order-0 pages, none of order 1 or more
        m.free(h)
    m.mm.drain_all_pages()
    assert reclaim.compaction.suitable(zone, 2, 3) == "continue"
    assert not kswapd.wakeup_kswapd(reclaim, zone, int(GFP_NOWAIT), 0, 3)
    assert reclaim.compaction.kcompactd_wakeups == 0  # wakeup_kcompactd(): order 0 returns
    assert not kswapd.wakeup_kswapd(reclaim, zone, int(GFP_NOWAIT), 2, 3)
    assert reclaim.compaction.kcompactd_wakeups == 1


def test_kswapd_gives_up_after_16_runs_that_reclaim_nothing() -> None:
    m = _machine()
    _fill(m, "pinned")
    _timed(m, _request(m, "x", int(GFP_NOWAIT)))  # wakes kswapd
    m.env.run(until=m.env.now + 10**9)
    assert m.mm.reclaim.kswapd[0].failures == 16
    assert m.mm.vm["pageoutrun"] == 16


# -- the OOM killer, NOFAIL and __GFP_FS -------------------------------------------------
def test_oom_kills_the_largest_killable_owner() -> None:
    # behaviour 48. Nothing is reclaimable, so should_reclaim_retry() says no after the
    # first round (no zone would pass MIN even with everything reclaimed): the killer
    # runs after one direct reclaim round.
    m = _machine()
    m.register_owner("small")
    m.register_owner("big")
    m.register_owner("init", oom_score_adj=-1000)
    for _ in range(500):
        m.alloc_now("small", NO_KSWAPD, 0, 0)
    for _ in range(3000):
        m.alloc_now("init", NO_KSWAPD, 0, 0)
    big = _fill(m, "big")
    start, handle, end = _timed(m, _request(m, "k", KERNEL))
    assert handle is not None
    assert m.owners["big"].killed_ns == COST.direct_reclaim_ns and m.oom_killed("big")
    assert not m.oom_killed("small") and not m.oom_killed("init")
    assert m.mm.vm["oom_kill"] == 1
    assert all(not h.alive for h in big) and m.owners["big"].pages == 0
    assert m.latency.by_stage[ts.STAGE_SLOW_OOM]
    assert end - start == COST.direct_reclaim_ns + COST.oom_kill_ns
    assert m.alloc_now("big", KERNEL, 0, 0) is None  # a killed caller gets nothing


def test_oom_with_nothing_killable_panics() -> None:
    m = _machine()
    m.register_owner("init", oom_score_adj=-1000)
    m.register_owner("kthread", oom_score_adj=-1000)
    _fill(m, "init")
    with pytest.raises(KernelPanic, match="no killable processes"):
        _timed(m, _request(m, "kthread", KERNEL))


def test_oom_killing_the_caller_itself_fails_its_request() -> None:
    # The allocating caller is the only killable owner (nothing else to take).
    m = _machine()
    m.register_owner("init", oom_score_adj=-1000)
    _fill(m, "init")
    _, handle, _ = _timed(m, _request(m, "k", KERNEL))
    assert handle is None and m.oom_killed("k")
    assert m.mm.vm["oom_kill"] == 1  # once: the dying caller does not loop on
    assert m.alloc_now("k", KERNEL, 0, 0) is None


def test_nofs_request_reaches_out_of_memory_which_kills_nothing() -> None:
    # out_of_memory(): "The OOM killer does not compensate for IO-less reclaim" -> retry
    m = _machine()
    _fill(m, "victim")
    proc = m.env.process(_request(m, "fs", int(GFP_NOFS)))
    m.env.run(until=50_000_000)
    assert proc.is_alive  # still looping in the slow path: no kill, no failure
    assert m.mm.vm["oom_kill"] == 0 and not m.oom_killed("victim")
    assert m.stats.failures_by_caller["fs"] == 0


def test_nofail_without_direct_reclaim_warns_and_fails() -> None:
    m = _machine()
    _fill(m, "pinned")
    _fill(m, "pinned", int(GFP_ATOMIC))
    handle = m.alloc_now("x", int(GFP_NOWAIT | GFP.NOFAIL), 0, 0)
    assert handle is None  # WARN_ON_ONCE_GFP(!can_direct_reclaim): goto fail
    assert m.stats.failures_by_caller["x"] == 1
    assert m.mm.vm["allocstall_normal"] == 0


def test_nofail_gets_no_watermarks_only_through_the_oom_path() -> None:
    """behaviour 52: a blocking NOFAIL request never returns NULL, but it reaches
    ALLOC_NO_WATERMARKS only in __alloc_pages_may_oom(), after the OOM killer ran.

    With __GFP_RETRY_MAYFAIL the killer is skipped, so the request loops (ALLOC_HARDER
    at nopage, then retry) without ever dipping below the ATOMIC threshold, and is
    reported once it has stalled past ``limits.nofail_stall``.
    """
    m = _machine()
    _fill(m, "victim")
    _fill(m, "victim", int(GFP_ATOMIC))
    start, handle, end = _timed(m, _request(m, "nofail", KERNEL | int(GFP.NOFAIL)))
    assert handle is not None
    assert m.oom_killed("victim") and m.mm.vm["oom_kill"] == 1

    m2 = _machine()
    _fill(m2, "victim")
    _fill(m2, "victim", int(GFP_ATOMIC))
    free = [z.nr_free_pages for z in m2.mm.zones]
    gfp = KERNEL | int(GFP.NOFAIL) | int(GFP.RETRY_MAYFAIL)
    proc = m2.env.process(_request(m2, "stuck", gfp))
    m2.env.run(until=20_000_000)
    assert proc.is_alive  # never fails, never succeeds
    assert [z.nr_free_pages for z in m2.mm.zones] == free  # no reserves were touched
    assert m2.mm.vm["oom_kill"] == 0
    (stalled,) = m2.in_slowpath.values()
    assert stalled[0] == "stuck" and stalled[4]  # NOFAIL, stalled since time 0


def test_retry_drops_the_nodemask_for_atomic_requests() -> None:
    # gfp_to_alloc_flags(): __GFP_ATOMIC clears ALLOC_CPUSET -> ac->nodemask = NULL
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_128MIB, cpus=1),
                               NodeConfig(memory_pages=PAGES_128MIB, cpus=1)))
    m = Machine(cfg, SysctlConfig(), seed=1)
    mm = m.mm
    for zone in mm.nodes[0].zones:
        zone.watermark = [1 << 40] * 4  # node 0 can never pass
    only0 = frozenset({0})
    assert mm.alloc_pages(int(GFP_NOWAIT), 0, 0, 0, only0) == -1
    pfn = mm.alloc_pages(int(GFP_ATOMIC), 0, 0, 0, only0)
    assert pfn >= 0 and mm.page_zone(pfn).nid == 1


def test_lru_counts_follow_the_owners() -> None:
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    hs = [m.alloc_now("cache", NO_KSWAPD, order, 0) for order in (0, 1, 2, 0)]
    lv = m.mm.reclaim.lruvecs[0]
    assert lv.size(LRU_INACTIVE_FILE) == 1 + 2 + 4 + 1
    m.free(hs[2])
    assert lv.size(LRU_INACTIVE_FILE) == 4
    assert m.mm.reclaim.node_stats()["nr_inactive_file"] == 4


def test_pressure_config_reclaims_stalls_and_keeps_order0_requests_alive(
        tmp_path: Path) -> None:
    """configs/pressure.yaml: direct reclaim and kswapd activity, no order-0 failure
    while page cache remains, and the report's memory-pressure page."""
    cfg = load_experiment(REPO / "configs" / "pressure.yaml")
    result = simulate(cfg, tmp_path)
    s = result.summary
    vm = s["vmstat"]
    assert vm["allocstall_normal"] > 0 and vm["allocstall_movable"] > 0
    assert vm["pageoutrun"] > 0 and vm["pgsteal_kswapd"] > 0
    # the app's order-4 requests are served: kcompactd (woken by kswapd's boosted runs)
    # and direct compaction rebuild order-4 blocks, so nothing fails
    assert not s["failures"]["by_order"]
    assert vm["compact_daemon_wake"] > 0 and vm["pgmigrate_success"] > 0
    assert vm["nr_inactive_file"] + vm["nr_active_file"] > 0  # cache was left all along
    assert s["stall_ns"]["by_caller"]["net-rx"] == 0  # GFP_ATOMIC never stalls
    assert s["stall_ns"]["some"] > 0 and s["latency_ns"][ts.STAGE_SLOW_RECLAIM]["count"]
    assert [a["do"] for a in s["actions"]] == ["drop_caches 1", "sysctl min_free_kbytes=32768"]
    assert not s["oom_kills"] and s["panic"] is None
    assert (result.run_dir / ts.REPORT_DIR / "02_free_memory.png").is_file()
    spans = pq.read_table(result.run_dir / ts.SPANS_FILE).to_pandas()
    names = set(spans["name"].astype(str))
    assert {ts.SPAN_KSWAPD_RUN, ts.SPAN_DIRECT_RECLAIM, ts.SPAN_WAKEUP_KSWAPD,
            ts.SPAN_ACTION, ts.SPAN_COMPACTION, ts.SPAN_KCOMPACTD_WAKE} <= names
    for nid in (0, 1):  # a node's kswapd runs one balance_pgdat() at a time
        node = spans[spans["nid"] == nid]
        runs = node[node["name"].astype(str) == ts.SPAN_KSWAPD_RUN].sort_values("start_ns")
        assert (runs["start_ns"].to_numpy()[1:] >= runs["end_ns"].to_numpy()[:-1]).all()
        wakes = node[node["name"].astype(str) == ts.SPAN_KSWAPD_WAKE]
        # every run starts at its wake (the last may still be running when the run ends)
        assert set(runs["start_ns"]) <= set(wakes["start_ns"])
        assert len(wakes) - len(runs) in (0, 1)


def test_hot_pages_are_kept_and_cold_ones_reclaimed_first() -> None:
    # folio_check_references(): a page in use (young at every scan) is kept, then
    # activated; the used-once pages around it go first.
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    hot = [m.alloc_now("cache", NO_KSWAPD, 0, 0, lru_flags=LRU_HOT) for _ in range(2000)]
    cold = _fill(m, "cache")
    for _ in range(20):
        _timed(m, _request(m, "k", KERNEL & ~int(GFP.KSWAPD_RECLAIM)))
    assert all(h is not None and h.alive for h in hot)
    assert m.stats.pages_reclaimed > 0
    assert m.stats.pages_reclaimed == sum(not h.alive for h in cold)


# -- more spec behaviours -------------------------------------------------------------
def test_pcp_high_is_capped_while_kswapd_reclaims() -> None:
    # behaviour 20: ZONE_RECLAIM_ACTIVE caps nr_pcp_high() at 4 x batch
    m = _machine()
    zone = _dma32(m)
    pcp = zone.per_cpu_pageset[0]
    m.register_owner("cache", lru=KIND_FILE)
    _fill(m, "cache")
    seen: dict[str, int] = {}

    def body() -> Generator[Any, Any, None]:
        seen["before"] = pcp.nr_pcp_high(False)
        yield from m.alloc("user", int(GFP_NOWAIT), 0, 0)  # wakes kswapd
        yield m.env.timeout(1)
        seen["during"] = pcp.nr_pcp_high(False)

    _timed(m, body())
    m.env.run(until=m.env.now + 10**9)
    assert seen["before"] == pcp.high > 4 * pcp.batch
    assert seen["during"] == 4 * pcp.batch
    assert pcp.nr_pcp_high(False) == pcp.high


def test_every_node_in_the_zonelist_gets_a_kswapd_wakeup() -> None:
    # behaviour 30, and no wakeup without __GFP_KSWAPD_RECLAIM (GFP_TRANSHUGE_LIGHT)
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_128MIB, cpus=1),
                               NodeConfig(memory_pages=PAGES_128MIB, cpus=1)))
    m = Machine(cfg, SysctlConfig(), seed=1)
    _fill(m, "pinned")
    light = int(GFP_TRANSHUGE_LIGHT)
    assert m.alloc_now("thp", light, 9, 0) is None
    assert m.mm.vm["kswapd_wakeup"] == 0
    assert m.alloc_now("irq", int(GFP_NOWAIT), 0, 0) is None
    assert m.mm.vm["kswapd_wakeup"] == 2  # node 0 and node 1, once each
    assert all(not st.waiting for st in m.mm.reclaim.kswapd)  # both are awake now


def test_hugetlb_pool_mask_never_reaches_the_oom_killer() -> None:
    # behaviour 47: __GFP_RETRY_MAYFAIL and __GFP_THISNODE both skip the killer
    m = _machine()
    _fill(m, "victim")
    gfp = int(GFP_HIGHUSER_MOVABLE | GFP.COMP | GFP.RETRY_MAYFAIL | GFP.NOWARN
              | GFP.THISNODE)
    _, handle, _ = _timed(m, _request(m, "hugetlb", gfp, order=9))
    assert handle is None
    assert m.mm.vm["oom_kill"] == 0 and not m.oom_killed("victim")


def test_costly_noretry_fails_at_once_when_compaction_is_skipped() -> None:
    # behaviour 50: below the watermarks compaction_suitable() says SKIPPED, and a costly
    # __GFP_NORETRY request goes to nopage without any reclaim
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    _fill(m, "cache")
    zone = _dma32(m)
    assert m.mm.reclaim.compaction.suitable(zone, 9, 2) == "skipped"
    start, handle, end = _timed(m, _request(m, "thp", KERNEL | int(GFP.NORETRY), order=9))
    assert handle is None and end == start
    assert m.mm.vm["allocstall_normal"] == 0 and m.mm.vm["compact_stall"] == 0


def test_costly_order_gets_one_reclaim_round_then_fails() -> None:
    # behaviour 49: order > 3 without RETRY_MAYFAIL: the early compaction, one reclaim
    # and compaction round, then nopage (step 11)
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    _fill(m, "cache")
    _, handle, _ = _timed(m, _request(m, "big", KERNEL & ~int(GFP.KSWAPD_RECLAIM), order=4))
    assert m.mm.vm["allocstall_normal"] == 1
    assert m.mm.vm["oom_kill"] == 0


def test_nofail_stalls_past_the_limit_are_reported_by_caller() -> None:
    from simcore.config.types import LimitsConfig
    from simcore.sim.pressure import pressure_summary

    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_128MIB, cpus=2),))
    m = Machine(cfg, SysctlConfig(), seed=1, limits=LimitsConfig(nofail_stall_ns=5_000_000))
    _fill(m, "victim")
    _fill(m, "victim", int(GFP_ATOMIC))
    gfp = KERNEL | int(GFP.NOFAIL) | int(GFP.RETRY_MAYFAIL)
    m.env.process(_request(m, "stuck", gfp))
    m.env.run(until=20_000_000)
    (stall,) = pressure_summary(m)["nofail_stalls"]
    assert stall["caller"] == "stuck" and stall["still_stalled"]
    assert stall["stall_ns"] == 20_000_000 and stall["order"] == 0


def test_memalloc_dips_into_reserves_before_any_reclaim() -> None:
    # __gfp_pfmemalloc_flags(): __GFP_MEMALLOC gets ALLOC_NO_WATERMARKS at retry:, so it
    # is served below MIN without direct reclaim (and skips the early compaction)
    m = _machine()
    m.register_owner("cache", lru=KIND_FILE)
    _fill(m, "cache")
    _fill(m, "cache", int(GFP_ATOMIC))
    start, handle, end = _timed(m, _request(m, "swap-out", KERNEL | int(GFP.MEMALLOC)))
    assert handle is not None and end == start
    assert m.mm.vm["allocstall_normal"] == 0
    _, handle, _ = _timed(m, _request(m, "k", KERNEL | int(GFP.MEMALLOC | GFP.NOMEMALLOC)))
    assert handle is not None and m.mm.vm["allocstall_normal"] >= 1  # NOMEMALLOC wins


def test_failure_report_follows_warn_alloc_and_nowarn() -> None:
    # behaviour 54: "<comm>: page allocation failure: order:N, mode:...", nodemask=(null);
    # __GFP_NOWARN suppresses it. warn_alloc() comes before mm_page_alloc (fail:).
    calls: list[tuple[str, Any]] = []

    class Log(Tracer):
        enabled = True

        def mm_page_alloc(self, zone: Any, pfn: int, *args: Any) -> None:  # noqa: D102
            calls.append(("alloc", args[-2]))

        def mm_page_alloc_fail(self, nid: int, order: int, gfp: int, mt: int,  # noqa: D102
                               reason: str) -> None:
            calls.append(("fail", reason))

    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=PAGES_128MIB, cpus=2),))
    m = Machine(cfg, SysctlConfig(), seed=1, tracer=Log())
    _fill(m, "pinned")
    _fill(m, "pinned", int(GFP_ATOMIC))
    calls.clear()
    assert m.alloc_now("net", int(GFP_NOWAIT), 1, 0) is None
    assert m.alloc_now("quiet", int(GFP_NOWAIT | GFP.NOWARN), 1, 0) is None
    (kind, text), (kind2, stage) = calls[:2]
    assert kind == "fail" and kind2 == "alloc" and stage == ts.STAGE_FAIL
    assert text.endswith("net: page allocation failure: order:1, mode:0x800(GFP_NOWAIT), "
                         "nodemask=(null)")
    assert "suppressed by __GFP_NOWARN" in calls[2][1]
