"""The slab caller (mm/slub.c of 6.1.20) against the machine: masks, fallback, migratetypes,
compound pages, reclaim by the shrinker, conservation, config errors, determinism."""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import CallLog, fragment_to_single_pages

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig, WorkloadConfig
from simcore.errors import ConfigError
from simcore.mm.constants import MT_RECLAIMABLE, MT_UNMOVABLE
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import MT_SHIFT, PG_HEAD
from simcore.sim.machine import Allocation, Machine
from workloads.registry import load_experiment
from workloads.slab import (
    SlabParams,
    allocate_slab,
    kmem_cache_alloc,
    kmem_cache_create,
    kmem_cache_free,
    kmem_cache_shrink,
    slab_workload,
)
from workloads.synthetic_params import LifetimeSpec

REPO = Path(__file__).resolve().parents[2]
PAGES_64MIB = 64 * 1024 * 1024 // 4096
KERNEL = int(GFP_KERNEL)
NO_RECLAIM = int(GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM)
FIRST_EXTRA = int(GFP.NOWARN | GFP.NORETRY | GFP.NOMEMALLOC)


def _machine(pages: int = PAGES_64MIB) -> tuple[Machine, CallLog]:
    tracer = CallLog()
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=pages, cpus=2),))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1,
                   tracer=tracer), tracer


def _run(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


def _allocs(log: CallLog) -> list[tuple[int, int, int]]:
    """``(order, gfp, pfn)`` of every traced ``mm_page_alloc``."""
    return [(args[2], args[3], args[1]) for args in log.named("mm_page_alloc")]


def _params(size: int, reclaimable: bool = False, **kw: Any) -> SlabParams:
    return SlabParams(object_size_bytes=size, rate_per_s=1.0,
                      lifetime=LifetimeSpec("forever"), reclaimable=reclaimable, **kw)


def _conserved(m: Machine) -> None:
    """Every page is free again (buddy or pcp) and the structures agree."""
    m.apply_pending_frees()
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})
    assert not m.owner_of and all(o.pages == 0 for o in m.owners.values())
    free = sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones)
    assert free == m.mm.managed_pages


# -- masks and migratetypes -----------------------------------------------------------------
def test_first_attempt_at_oo_without_reclaim_then_a_compound_unmovable_slab() -> None:
    """task_struct (6208 B, 2 CPUs): oo order 3 with 5 objects. The first attempt is
    (GFP_KERNEL | COMP | NOWARN | NORETRY | NOMEMALLOC) & ~__GFP_RECLAIM; it succeeds on
    a fresh machine: a compound order-3 UNMOVABLE block."""
    m, log = _machine()
    cache = kmem_cache_create(m, "task_struct", _params(6208))
    sid = _run(m, kmem_cache_alloc(m, cache, KERNEL, 0, None))
    ((order, gfp, pfn),) = _allocs(log)
    assert order == 3 and gfp == (KERNEL & ~NO_RECLAIM) | int(GFP.COMP) | FIRST_EXTRA
    page = cache.page[sid]
    assert page is not None and page.pfn == pfn and page.order == 3
    assert m.mm.pages.flags[pfn] & PG_HEAD
    assert m.mm.pages.info[pfn] >> MT_SHIFT == MT_UNMOVABLE
    assert cache.stats["alloc_slab"] == 1 and cache.stats["order_fallback"] == 0


@pytest.mark.parametrize("reclaimable,caller,mt", [
    (True, KERNEL, MT_RECLAIMABLE),
    (False, KERNEL, MT_UNMOVABLE),
    (False, KERNEL | int(GFP.MOVABLE), MT_UNMOVABLE),  # new_slab() drops __GFP_MOVABLE
    (False, KERNEL | int(GFP.RECLAIMABLE), MT_UNMOVABLE),  # only the cache flag counts
    (True, int(GFP_ATOMIC), MT_RECLAIMABLE),
])
def test_slab_pages_are_reclaimable_only_for_slab_reclaim_account(
        reclaimable: bool, caller: int, mt: int) -> None:
    m, log = _machine()
    cache = kmem_cache_create(m, "c", _params(192, reclaimable))
    sid = _run(m, kmem_cache_alloc(m, cache, caller, 0, None))
    page = cache.page[sid]
    assert page is not None and page.order == 0
    assert m.mm.pages.info[page.pfn] >> MT_SHIFT == mt
    assert not m.mm.pages.flags[page.pfn] & PG_HEAD  # order-0 cache: no __GFP_COMP
    ((_, gfp, _),) = _allocs(log)
    assert gfp & int(GFP.NORETRY | GFP.NOWARN) and not gfp & int(GFP.MOVABLE)
    assert bool(gfp & int(GFP.RECLAIMABLE)) == reclaimable


class FailingFirst:
    """Records ``machine.alloc()`` calls; the first one fails."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def alloc(self, owner: str, gfp: int, order: int, cpu: int,
              nid: Any) -> Generator[Any, Any, Allocation | None]:
        self.calls.append((order, gfp))
        return None if len(self.calls) == 1 else Allocation(0, order, owner, gfp, cpu)
        yield


@pytest.mark.parametrize("caller", [KERNEL, KERNEL | int(GFP.NOFAIL), int(GFP_ATOMIC)])
def test_a_failed_first_attempt_falls_back_to_min_with_the_cache_flags(caller: int) -> None:
    m, _ = _machine()
    cache = kmem_cache_create(m, "task_struct", _params(6208))
    fake = FailingFirst()
    page, objects = _run(m, allocate_slab(fake, cache, caller, 0, None))  # type: ignore[arg-type]
    flags = caller | int(GFP.COMP)
    assert fake.calls[1] == (1, flags) and objects == 1  # min: order 1, one object
    first_order, first_gfp = fake.calls[0]
    assert first_order == 3 and first_gfp & int(GFP.NORETRY | GFP.NOWARN)
    assert not first_gfp & int(GFP.NOFAIL)
    if caller & int(GFP.DIRECT_RECLAIM):
        assert not first_gfp & NO_RECLAIM and first_gfp & int(GFP.NOMEMALLOC)
    else:  # it could not sleep anyway: the kswapd wake-up stays
        assert first_gfp & int(GFP.KSWAPD_RECLAIM) and not first_gfp & int(GFP.NOMEMALLOC)
    assert page is not None and cache.stats["order_fallback"] == 1


def test_on_fragmented_memory_the_first_attempt_fails_and_min_order_succeeds() -> None:
    """4096 B (2 CPUs): oo order 3 with 8 objects, min order 0 with 1. With only free
    single pages the no-reclaim order-3 attempt fails (traced, pfn -1) and the order-0
    fallback with GFP_KERNEL|__GFP_COMP succeeds; nothing stalled."""
    m, log = _machine()
    fragment_to_single_pages(m)
    assert all(z.free_area.nr_free[o] == 0 for z in m.mm.zones for o in range(1, 11))
    cache = kmem_cache_create(m, "kmalloc-4k", _params(4096))
    assert cache.oo == (3, 8) and cache.min == (0, 1)
    before = len(log.named("mm_page_alloc"))
    sid = _run(m, kmem_cache_alloc(m, cache, KERNEL, 0, None))
    (o3, g3, pfn3), (o0, g0, pfn0) = _allocs(log)[before:]
    assert (o3, pfn3) == (3, -1) and g3 == (KERNEL & ~NO_RECLAIM) | int(GFP.COMP) | FIRST_EXTRA
    assert (o0, g0) == (0, KERNEL | int(GFP.COMP)) and pfn0 >= 0
    assert cache.objects[sid] == 1 and cache.stats["order_fallback"] == 1
    assert m.env.now == 0 and m.owners["kmalloc-4k"].stall_ns == 0


# -- freeing --------------------------------------------------------------------------------
def test_a_slab_page_is_freed_with_its_last_object_only() -> None:
    """kmalloc-1k: 16 objects per order-2 slab, min_partial 5. With six partial slabs on
    the node, the slab emptied last goes back to the buddy allocator (mm_page_free of
    order 2) with its 16th free and not before."""
    m, log = _machine()
    cache = kmem_cache_create(m, "kmalloc-1k", _params(1024))
    rows = [_run(m, kmem_cache_alloc(m, cache, KERNEL, 0, None)) for _ in range(7 * 16)]
    for k in range(6):
        kmem_cache_free(m, cache, rows[16 * k])
    first = rows[0]
    page = cache.page[first]
    assert page is not None
    for _ in range(14):
        kmem_cache_free(m, cache, first)
        assert page.alive
    frees = len(log.named("mm_page_free"))
    kmem_cache_free(m, cache, first)
    assert not page.alive and m.owners["kmalloc-1k"].pages == 6 * 4
    (free,) = log.named("mm_page_free")[frees:]
    assert free[1:3] == (page.pfn, 2)


def test_the_shrinker_takes_reclaimable_slab_pages_and_the_cache_notices() -> None:
    """drop_caches 2 frees every reclaimable slab page; the cache finds its slabs gone
    when it next touches them: their objects' frees are no-ops, and the next allocation
    gets a new slab."""
    m, _ = _machine()
    cache = kmem_cache_create(m, "dentry", _params(192, reclaimable=True))
    m.register_owner("dentry", 2)  # KIND_SLAB, as slab_workload() registers it
    rows = [_run(m, kmem_cache_alloc(m, cache, KERNEL, 0, None)) for _ in range(50)]
    assert m.owners["dentry"].pages == 3  # 21 objects per page
    assert m.mm.reclaim.drop_caches(2, 0) == 3
    assert m.owners["dentry"].pages == 0
    for sid in rows[:30]:
        kmem_cache_free(m, cache, sid)  # on reclaimed slabs: nothing to free
    sid = _run(m, kmem_cache_alloc(m, cache, KERNEL, 0, None))
    assert cache.stats["slabs_reclaimed"] == 3 and cache.stats["objects_reclaimed"] > 0
    assert cache.page[sid] is not None and cache.page[sid].alive
    for r in rows[30:] + [sid]:
        kmem_cache_free(m, cache, r)
    kmem_cache_shrink(m, cache)
    _conserved(m)


# -- the workload ---------------------------------------------------------------------------
@pytest.mark.parametrize("size,reclaimable", [(192, True), (1024, False), (6208, False)])
def test_every_page_comes_back_after_the_objects_die_and_the_cache_shrinks(
        size: int, reclaimable: bool) -> None:
    m, _ = _machine()
    p = SlabParams(object_size_bytes=size, rate_per_s=20_000.0, reclaimable=reclaimable,
                   lifetime=LifetimeSpec("exponential", mean_ns=20_000_000),
                   max_requests=3000)
    spec = WorkloadConfig("c", "slab", {"params": p})
    _run(m, slab_workload(m, spec, np.random.default_rng(3)))
    stats = m.extras["caller_stats"]["c"]
    assert stats["objects"] == 3000 and stats["alloc_slab"] > 1
    assert stats["free_slab"] == stats["alloc_slab"]
    _conserved(m)


SLAB_YAML = """\
name: sl
seed: 3
duration: 500ms
machine:
  nodes:
    - {memory: 128MiB, cpus: 2}
    - {memory: 128MiB, cpus: 2}
sysctl: {compaction_proactiveness: 0}
workloads:
  - name: dentry
    type: slab
    object_size: 192
    reclaimable: true
    rate: 20000/s
    lifetime: {lognormal: {median: 50ms, sigma: 1.0}}
    align: 64
"""


@pytest.mark.parametrize("bad,key,expected", [
    ("object_size: 0", "workloads[0].object_size", "a size in 1.."),
    ("object_size: 5MiB", "workloads[0].object_size", "a size in 1.."),
    ("align: 48", "workloads[0].align", "a power of two"),
    ("gfp: GFP_HIGHUSER", "workloads[0].gfp", "GFP_SLAB_BUG_MASK"),
    ("reclaimable: 1", "workloads[0].reclaimable", "true or false"),
    ("slub_max_order: 11", "workloads[0].slub_max_order", "machine.max_order"),
    ("cpus: [4]", "workloads[0].cpus", "CPUs of this machine"),
    ("nid: 2", "workloads[0].nid", "a node of this machine"),
    ("color: blue", "workloads[0]", "color"),
])
def test_bad_slab_keys_name_the_key(tmp_path: Path, bad: str, key: str,
                                    expected: str) -> None:
    name = bad.split(":")[0]
    lines = [line for line in SLAB_YAML.splitlines() if not line.startswith(f"    {name}:")]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + f"\n    {bad}\n")
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert key in str(err.value) and expected in str(err.value)


def test_an_object_too_big_for_the_machines_max_order_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(SLAB_YAML.replace("sysctl:", "  max_order: 9\nsysctl:")
                    .replace("object_size: 192", "object_size: 4MiB"))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert "workloads[0].object_size" in str(err.value) and "order-9 slab" in str(err.value)


def test_dump_and_parse_round_trip(tmp_path: Path) -> None:
    import yaml

    from workloads.registry import dump_experiment

    path = tmp_path / "sl.yaml"
    path.write_text(SLAB_YAML)
    cfg = load_experiment(path)
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(dump_experiment(cfg)))
    assert load_experiment(again).workloads == cfg.workloads


def test_same_seed_same_run_on_two_nodes(tmp_path: Path) -> None:
    from allocsim.run import simulate

    path = tmp_path / "sl.yaml"
    path.write_text(SLAB_YAML)
    runs = [simulate(load_experiment(path), tmp_path / f"out{i}", report=False).summary
            for i in range(2)]
    for s in runs:
        s.pop("wall_seconds")
    assert runs[0] == runs[1]
    stats = runs[0]["callers"]["dentry"]
    assert stats["objsize"] == 192 and stats["objperslab"] == 21  # 64-byte aligned: 192
    assert stats["objects"] > 9000 and stats["alloc_slab"] > 40


def test_the_slab_config_shows_order_3_fallbacks_on_fragmented_memory(tmp_path: Path) -> None:
    """configs/slab.yaml: task_struct's first attempts fail and fall back to order 1
    (one object per slab), without reclaim, stalls or OOM kills; the comment's numbers."""
    import pyarrow.parquet as pq

    from allocsim.run import simulate

    result = simulate(load_experiment(REPO / "configs" / "slab.yaml"), tmp_path, report=False)
    s = result.summary
    task = s["callers"]["task_struct"]
    assert (task["order_fallback"], task["alloc_slab"]) == (2083, 2379)
    assert "order_fallback" not in s["callers"]["dentry"]
    assert s["failures"]["by_caller"] == {"task_struct": 2083}
    assert not s["oom_kills"] and s["stall_ns"]["by_caller"]["task_struct"] == 0
    ev = pq.read_table(result.run_dir / "trace" / "events.parquet").to_pandas()
    mine = ev[(ev.caller == "task_struct") & (ev.event == "mm_page_alloc")]
    failed = mine[mine.pfn < 0]
    assert set(failed.order) == {3} and set(failed.gfp) == {
        (KERNEL & ~NO_RECLAIM) | int(GFP.COMP) | FIRST_EXTRA}
    assert set(mine[mine.pfn >= 0].gfp) == {
        (KERNEL & ~NO_RECLAIM) | int(GFP.COMP) | FIRST_EXTRA, KERNEL | int(GFP.COMP)}
    assert json.loads((result.run_dir / "summary.json").read_text()) == s
