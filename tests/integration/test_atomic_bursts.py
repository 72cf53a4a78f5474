"""The atomic_bursts caller: GFP_ATOMIC RX bursts, page_frag refills and the high-order
atomic reserve (spec behaviour 40; mm/page_alloc.c of 6.1.20)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CallLog, fragment_to_single_pages

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig, WorkloadConfig
from simcore.errors import ConfigError
from simcore.mm.constants import MT_HIGHATOMIC
from simcore.mm.gfp import GFP, GFP_ATOMIC
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import PG_HEAD
from simcore.sim.machine import Machine
from workloads.atomic_bursts import (
    PAGE_FRAG_GFP,
    AtomicBurstsParams,
    alloc_harder,
    atomic_alloc,
    atomic_bursts_workload,
    highatomic_free_pages,
    page_frag_cache_refill,
)
from workloads.registry import load_experiment
from workloads.synthetic_params import LifetimeSpec

REPO = Path(__file__).resolve().parents[2]
ATOMIC = int(GFP_ATOMIC)
NOMEMALLOC = int(GFP.NOMEMALLOC)


def _machine(pages: int = 32768) -> tuple[Machine, CallLog]:
    tracer = CallLog()
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=pages, cpus=2),))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1,
                   tracer=tracer), tracer


def _allocs(log: CallLog) -> list[tuple[int, int, int]]:
    """``(order, gfp, pfn)`` of every traced ``mm_page_alloc``."""
    return [(args[2], args[3], args[1]) for args in log.named("mm_page_alloc")]


# -- page_frag ------------------------------------------------------------------------------
def test_page_frag_refill_is_a_compound_order3_page_first() -> None:
    m, log = _machine()
    stats: Counter[str] = Counter()
    page = page_frag_cache_refill(m, "rx", ATOMIC, 0, None, stats)
    assert page is not None and page.order == 3 and m.mm.pages.flags[page.pfn] & PG_HEAD
    assert _allocs(log) == [(3, ATOMIC | PAGE_FRAG_GFP, page.pfn)]
    assert PAGE_FRAG_GFP == int(GFP.COMP | GFP.NOWARN | GFP.NORETRY | GFP.NOMEMALLOC)
    assert stats["pages"] == 8 and not stats["frag_fallbacks"]


def test_page_frag_refill_falls_back_to_one_page_with_the_callers_mask() -> None:
    """No free block above order 0: the order-3 attempt fails and
    alloc_pages_node(NUMA_NO_NODE, gfp, 0) with the caller's mask alone succeeds."""
    m, log = _machine(16384)
    fragment_to_single_pages(m)
    stats: Counter[str] = Counter()
    page = page_frag_cache_refill(m, "rx", ATOMIC, 0, None, stats)
    (o3, g3, p3), (o0, g0, p0) = _allocs(log)[-2:]
    assert (o3, g3, p3) == (3, ATOMIC | PAGE_FRAG_GFP, -1)
    assert page is not None and (o0, g0, p0) == (0, ATOMIC, page.pfn)
    assert stats == Counter({"failed_order3": 1, "frag_fallbacks": 1, "pages": 1})


# -- the highatomic reserve -----------------------------------------------------------------
def test_alloc_harder_entitlement() -> None:
    assert alloc_harder(ATOMIC, 3) and alloc_harder(ATOMIC | int(GFP.COMP), 1)
    assert not alloc_harder(ATOMIC, 0)  # order 0 never uses the reserve
    assert not alloc_harder(ATOMIC | NOMEMALLOC, 3)  # page_frag's order-3 attempt
    assert not alloc_harder(int(GFP.KSWAPD_RECLAIM), 3)  # GFP_NOWAIT


def test_the_reserve_is_made_and_used_only_by_order3_atomic_requests_with_alloc_harder(
) -> None:
    """Behaviour 40 on a 128 MiB machine filled with movable order-3 blocks down to its
    watermark: (1) an order-3 GFP_ATOMIC request, served in the slow path with
    ALLOC_HARDER, turns its pageblock MIGRATE_HIGHATOMIC; (2) order-3 requests with
    __GFP_NOMEMALLOC (page_frag) run until they fail without reserving or taking from
    the reserve's free lists; (3) further GFP_ATOMIC order-3 requests reserve the second
    and last pageblock the cap allows (managed/100 + 512) and then take blocks from the
    reserve; (4) order-0 GFP_ATOMIC requests never take from it. Time never moves."""
    m, _ = _machine()
    while m.alloc_now("fill", int(GFP.MOVABLE), 3, 0) is not None:
        pass
    stats: Counter[str] = Counter()
    dma32 = m.mm.zones[1]
    first = atomic_alloc(m, "rx", ATOMIC, 3, 0, None, stats)  # (1)
    assert first is not None and stats["highatomic_reserved"] == 1
    assert dma32.nr_reserved_highatomic == 512
    assert dma32.pageblock_mt[first.pfn >> 9] == MT_HIGHATOMIC
    reserve_free = highatomic_free_pages(m)
    assert reserve_free > 0
    frag = 0
    while atomic_alloc(m, "frag", ATOMIC | NOMEMALLOC, 3, 0, None, stats) is not None:  # (2)
        frag += 1
    assert frag > 0 and stats["highatomic_reserved"] == 1
    assert highatomic_free_pages(m) == reserve_free and stats["from_highatomic"] == 0
    served = 0
    while atomic_alloc(m, "rx", ATOMIC, 3, 0, None, stats) is not None:  # (3)
        served += 1
    # DMA32 reaches its cap; the atomic requests that then fall back to DMA reserve the
    # pageblock they take there (its first block, UNMOVABLE from boot, still has pages)
    reserved = dma32.nr_reserved_highatomic + m.mm.zones[0].nr_reserved_highatomic
    assert dma32.nr_reserved_highatomic == 1024
    assert stats["highatomic_reserved"] == reserved // 512 >= 2
    assert stats["from_highatomic"] > 0
    reserve_free = highatomic_free_pages(m)
    zero = 0
    while atomic_alloc(m, "rx0", ATOMIC, 0, 0, None, stats) is not None:  # (4)
        zero += 1
    assert zero > 0 and highatomic_free_pages(m) == reserve_free > 0
    assert m.env.now == 0 and all(o.stall_ns == 0 for o in m.owners.values())
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})


# -- the workload ---------------------------------------------------------------------------
def _run(m: Machine, p: AtomicBurstsParams, seed: int = 3) -> Counter[str]:
    spec = WorkloadConfig("rx", "atomic_bursts", {"params": p})
    proc = m.env.process(atomic_bursts_workload(m, spec, np.random.default_rng(seed)))
    m.env.run(until=proc)
    stats: Counter[str] = m.extras["caller_stats"]["rx"]
    return stats


@pytest.mark.parametrize("page_frag", [False, True])
def test_every_page_comes_back_after_the_bursts(page_frag: bool) -> None:
    m, _ = _machine()
    p = AtomicBurstsParams(rate_per_s=500.0, lifetime=LifetimeSpec("exponential",
                                                                   mean_ns=2_000_000),
                           order_weights=((0, 0.7), (3, 0.3)), page_frag=page_frag,
                           burst_weights=((16, 0.5), (64, 0.5)), max_requests=40)
    stats = _run(m, p)
    assert stats["bursts"] == 40 and stats["allocs"] > 40 * 16 and not stats["failed"]
    m.apply_pending_frees()
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})
    assert not m.owner_of and m.owners["rx"].pages == 0
    assert sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones) == m.mm.managed_pages


class TimedLog(CallLog):
    """Also records the machine's clock at each ``mm_page_alloc``."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[int] = []
        self.machine: Machine | None = None

    def mm_page_alloc(self, *args: Any) -> None:  # noqa: D102
        assert self.machine is not None
        self.times.append(self.machine.trace_now())
        super().mm_page_alloc(*args)


def _timed_machine() -> tuple[Machine, TimedLog]:
    tracer = TimedLog()
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=32768, cpus=2),))
    m = Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1, tracer=tracer)
    tracer.machine = m
    return m, tracer


def test_a_burst_happens_at_one_instant_or_spacing_apart() -> None:
    m, log = _timed_machine()
    _run(m, AtomicBurstsParams(rate_per_s=100.0, lifetime=LifetimeSpec("fixed", mean_ns=10**6),
                               burst_weights=((8, 1.0),), max_requests=3))
    assert len(log.times) == 24 and len(set(log.times)) == 3
    m, log = _timed_machine()
    _run(m, AtomicBurstsParams(rate_per_s=100.0, lifetime=LifetimeSpec("forever"),
                               burst_weights=((8, 1.0),), max_requests=1, spacing_ns=5000))
    assert [t - log.times[0] for t in log.times] == [5000 * i for i in range(8)]


ATOMIC_YAML = """\
name: ab
seed: 3
duration: 300ms
machine:
  nodes:
    - {memory: 128MiB, cpus: 2}
sysctl: {compaction_proactiveness: 0}
workloads:
  - name: rx
    type: atomic_bursts
    rate: 500/s
    burst: {16: 0.5, 64: 0.5}
    order: {0: 0.75, 3: 0.25}
    lifetime: {exponential: 2ms}
    spacing: 1us
"""


@pytest.mark.parametrize("bad,key,expected", [
    ("gfp: GFP_KERNEL", "workloads[0].gfp", "without __GFP_DIRECT_RECLAIM"),
    ("page_frag: true", "workloads[0].order", "no order with page_frag"),
    ("order: 11", "workloads[0].order", "orders 0..10"),
    ("burst: 0", "workloads[0].burst", "an integer"),
    ("spacing: fast", "workloads[0].spacing", "duration"),
    ("cpus: [2]", "workloads[0].cpus", "CPUs of this machine"),
    ("mtu: 9000", "workloads[0]", "mtu"),
])
def test_bad_atomic_bursts_keys_name_the_key(tmp_path: Path, bad: str, key: str,
                                             expected: str) -> None:
    name = bad.split(":")[0]
    lines = [line for line in ATOMIC_YAML.splitlines() if not line.startswith(f"    {name}:")]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + f"\n    {bad}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert key in str(err.value) and expected in str(err.value)


def test_page_frag_needs_order3_on_the_machine(tmp_path: Path) -> None:
    path = tmp_path / "small.yaml"
    path.write_text(ATOMIC_YAML.replace("    order: {0: 0.75, 3: 0.25}\n", "    page_frag: true\n")
                    .replace("sysctl:", "  max_order: 2\n  pageblock_order: 2\nsysctl:"))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert "workloads[0].page_frag" in str(err.value)


def test_dump_parse_round_trip_and_same_seed_same_run(tmp_path: Path) -> None:
    import yaml

    from allocsim.run import simulate
    from workloads.registry import dump_experiment

    path = tmp_path / "ab.yaml"
    path.write_text(ATOMIC_YAML)
    cfg = load_experiment(path)
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(dump_experiment(cfg)))
    assert load_experiment(again).workloads == cfg.workloads
    runs: list[dict[str, Any]] = []
    for i in range(2):
        runs.append(simulate(cfg, tmp_path / f"out{i}", report=False).summary)
        runs[-1].pop("wall_seconds")
    assert runs[0] == runs[1] and runs[0]["callers"]["rx"]["bursts"] > 100


def test_the_atomic_bursts_config(tmp_path: Path) -> None:
    """configs/atomic_bursts.yaml: the comment's numbers. rx_ring reserves 2 pageblocks
    and never fails; napi_frag's order-3 attempts fail and fall back; neither stalls;
    every rx_ring allocation of a burst is at the burst's instant."""
    import pyarrow.parquet as pq

    from allocsim.run import simulate

    result = simulate(load_experiment(REPO / "configs" / "atomic_bursts.yaml"), tmp_path,
                      report=False)
    s = result.summary
    rx, frag = s["callers"]["rx_ring"], s["callers"]["napi_frag"]
    assert (rx["highatomic_reserved"], rx["allocs"]) == (2, 24448)
    assert "failed" not in rx and "from_highatomic" not in rx
    assert (frag["failed_order3"], frag["frag_fallbacks"], frag["allocs"]) == (451, 451, 3416)
    assert "failed" not in frag and not s["oom_kills"]
    assert s["stall_ns"]["by_caller"]["rx_ring"] == s["stall_ns"]["by_caller"]["napi_frag"] == 0
    ev = pq.read_table(result.run_dir / "trace" / "events.parquet").to_pandas()
    rx_allocs = ev[(ev.caller == "rx_ring") & (ev.event == "mm_page_alloc")]
    assert rx_allocs.time_ns.nunique() == rx["bursts"] and set(rx_allocs.cpu) == {0}
