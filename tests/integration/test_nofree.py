"""The FreeBSD-style NOFREE what-if (spec §11.4-11.6, behaviours 74-76) on the Linux model."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from conftest import CallLog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.errors import ConfigError
from simcore.formats import trace_schema as ts
from simcore.mm.constants import MIGRATE_TYPES, MT_UNMOVABLE
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import MT_SHIFT
from simcore.sim.machine import Allocation, Machine
from workloads.nofree import (
    kmem_back_domain,
    memalloc_retry_wait_ns,
    nofree_import_gfp,
    nofreeq,
    vm_page_alloc_domain_iter,
    vm_page_free_nofree,
)
from workloads.nofree_params import NofreeParams
from workloads.registry import dump_experiment, load_experiment

PAGES_64MIB = 64 * 1024 * 1024 // 4096
KERNEL = int(GFP_KERNEL)
NOWAIT = int(GFP_NOWAIT)


def _params(**kw: Any) -> NofreeParams:
    base: dict[str, Any] = {"rate_per_s": 1.0, "size_weights": ((1, 1.0),), "gfp": KERNEL}
    return NofreeParams(**(base | kw))


def _machine(nodes: int = 1) -> tuple[Machine, CallLog]:
    tracer = CallLog()
    cfg = MachineConfig(nodes=tuple(NodeConfig(memory_pages=PAGES_64MIB, cpus=2)
                                    for _ in range(nodes)))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1,
                   tracer=tracer), tracer


def _run(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


def _allocs(log: CallLog) -> list[tuple[int, int, int]]:
    """``(pfn, order, gfp)`` of every traced ``mm_page_alloc``."""
    return [(args[1], args[2], args[3]) for args in log.named("mm_page_alloc")]


def _buddy_state(m: Machine) -> tuple[Any, ...]:
    """Every free list count, NR_FREE_PAGES, every pcp count and every vmstat counter."""
    zones = tuple((z.nr_free_pages,
                   tuple(z.free_area.count_of(o, mt) for o in range(z.max_order + 1)
                         for mt in range(MIGRATE_TYPES)),
                   tuple(pcp.count for pcp in z.per_cpu_pageset)) for z in m.mm.zones)
    return zones, tuple(m.mm.vm.as_dict().items())


def _invariants(m: Machine) -> None:
    m.apply_pending_frees()
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})


def _one(m: Machine, p: NofreeParams, stats: Counter[str], nid: int = 0) -> Allocation:
    page = _run(m, vm_page_alloc_domain_iter(m, "nf", p, nid, 0, stats))
    assert page is not None
    return page


def test_the_first_nofree_page_imports_one_order9_block_and_511_more_never_touch_buddy() -> None:
    """Behaviour 74: one UNMOVABLE order-9 block (the import mask), split into pages of
    refcount 1; its first page is handed out, then the next 511 in ascending pfn order
    with no buddy-allocator activity at all; the 513th page imports a new chunk."""
    m, tracer = _machine()
    p, stats = _params(), Counter[str]()
    first = _one(m, p, stats)
    ((head, order, gfp),) = _allocs(tracer)
    assert (order, gfp, first.pfn) == (9, nofree_import_gfp(KERNEL), head)
    assert head % 512 == 0 and stats["chunks_imported"] == 1
    assert m.mm.pages.info[head] >> MT_SHIFT == MT_UNMOVABLE
    assert all(m.mm.pages.ref[head + i] == 1 for i in range(512))
    before = _buddy_state(m)
    rest = [_one(m, p, stats).pfn for _ in range(511)]
    assert rest == list(range(head + 1, head + 512))
    assert _buddy_state(m) == before and len(_allocs(tracer)) == 1
    assert not nofreeq(m, 0)
    nxt = _one(m, p, stats)
    assert len(_allocs(tracer)) == 2 and nxt.pfn % 512 == 0 and nxt.pfn != head
    assert stats["chunks_imported"] == 2 and len(nofreeq(m, 0)) == 511
    _invariants(m)


def test_the_import_mask_adds_noretry_nowarn_nomemalloc_thisnode() -> None:
    """The what-if's import mask, after __page_frag_cache_refill() plus __GFP_THISNODE;
    a NOFAIL caller's import may fail, and __GFP_COMP (split_page() refuses it) is gone."""
    added = GFP.NORETRY | GFP.NOWARN | GFP.NOMEMALLOC | GFP.THISNODE
    assert nofree_import_gfp(KERNEL) == KERNEL | int(added)
    assert nofree_import_gfp(NOWAIT) == NOWAIT | int(added)
    nofail = KERNEL | int(GFP.NOFAIL | GFP.COMP | GFP.RETRY_MAYFAIL)
    assert nofree_import_gfp(nofail) == KERNEL | int(added)


def test_each_node_imports_its_own_chunk() -> None:
    """The queue is per node (vmd_nofreeq): node 1's first NOFREE page is node 1's chunk."""
    m, tracer = _machine(nodes=2)
    p, stats = _params(), Counter[str]()
    a, b = _one(m, p, stats, nid=0), _one(m, p, stats, nid=1)
    assert [m.mm.page_zone(x.pfn).nid for x in (a, b)] == [0, 1]
    assert [o for _, o, _ in _allocs(tracer)] == [9, 9]
    assert len(nofreeq(m, 0)) == len(nofreeq(m, 1)) == 511


def test_a_freed_nofree_page_is_the_next_one_handed_out_and_never_reaches_buddy() -> None:
    """Behaviour 75: vm_page_free_nofree() pushes the page at the head of its node's
    queue; the buddy allocator never sees it."""
    m, tracer = _machine()
    p, stats = _params(), Counter[str]()
    pages = [_one(m, p, stats) for _ in range(5)]
    before = _buddy_state(m)
    vm_page_free_nofree(m, pages[2])
    assert nofreeq(m, 0)[0] is pages[2] and pages[2].alive
    assert _buddy_state(m) == before and m.owner_of[pages[2].pfn] is pages[2]
    assert _one(m, p, stats) is pages[2]
    assert _one(m, p, stats).pfn == pages[4].pfn + 1  # then the chunk carries on
    assert len(_allocs(tracer)) == 1


def _exhaust(m: Machine) -> list[Allocation]:
    """Take every page a GFP_ATOMIC request can get: GFP_NOWAIT then fails at once."""
    held = []
    while (h := m.alloc_now("filler", int(GFP_ATOMIC), 0, 0)) is not None:
        held.append(h)
    return held


def _partial_failure(policy: str) -> tuple[Machine, list[Allocation], Counter[str], Any]:
    """A GFP_NOWAIT call of 8 pages that gets the queue's last 3 pages, then fails:
    the queue is empty, the import fails and so does the ordinary page."""
    m, _ = _machine()
    stats = Counter[str]()
    warm = _run(m, kmem_back_domain(m, "nf", _params(), 509, 0, 0, stats))
    assert warm is not None and len(nofreeq(m, 0)) == 3
    last3 = list(nofreeq(m, 0))
    _exhaust(m)
    before = _buddy_state(m)
    p = _params(gfp=NOWAIT, partial_failure=policy)
    got = _run(m, kmem_back_domain(m, "nf", p, 8, 0, 0, stats))
    assert got is None and stats["partial_failures"] == 1
    assert stats["import_failed"] >= 1 and m.env.now == 0  # NOWAIT: no time passed
    pfree = _buddy_state(m)[0]
    assert pfree == before[0]  # no page went back to (or came from) the buddy allocator
    assert all(h.alive and m.owner_of[h.pfn] is h for h in last3)
    return m, last3, stats, p


def test_leak_strands_the_pages_obtained() -> None:
    m, last3, stats, _ = _partial_failure("leak")
    assert stats["pages_stranded"] == 3 and not nofreeq(m, 0)
    assert not stats["pages_returned"] and not stats["pages_rolled_back"]
    _invariants(m)


def test_free_to_nofree_returns_them_to_the_queue_head_in_kmem_unback_order() -> None:
    """Behaviour 76 (M_NOWAIT) with D49480: kmem_unback() frees pages 0..i-1 in order,
    each to the queue head, so the last one obtained is the next one handed out."""
    m, last3, stats, p = _partial_failure("free_to_nofree")
    assert list(nofreeq(m, 0)) == last3[::-1] and stats["pages_returned"] == 3
    assert _one(m, p, stats) is last3[2]
    _invariants(m)


def test_batch_rolls_a_short_batch_back_restoring_the_queue() -> None:
    """D47050 style: the batch came up short, so the caller puts it back as it came
    out: the queue is as before the call (all or nothing)."""
    m, last3, stats, p = _partial_failure("batch")
    assert list(nofreeq(m, 0)) == last3 and stats["pages_rolled_back"] == 3
    assert _one(m, p, stats) is last3[0]
    _invariants(m)


def _spans(m: Machine) -> dict[str, list[Any]]:
    """The columns of the kmem_back_partial_failure spans."""
    cols = m.spans.columns.cols
    rows = [i for i, name in enumerate(cols["name"]) if name == ts.SPAN_NOFREE_PARTIAL]
    return {k: [v[i] for i in rows] for k, v in cols.items()}


def test_each_partial_failure_is_traced_as_a_span() -> None:
    m, _, _, _ = _partial_failure("leak")
    spans = _spans(m)
    assert spans["pages"] == [3] and spans["caller"] == ["nf"] and spans["nid"] == [0]
    assert "policy=leak" in spans["detail"][0] and "wanted=8" in spans["detail"][0]


def test_a_failure_before_any_page_is_not_a_partial_failure() -> None:
    m, _ = _machine()
    _exhaust(m)
    stats = Counter[str]()
    assert _run(m, kmem_back_domain(m, "nf", _params(gfp=NOWAIT), 4, 0, 0, stats)) is None
    assert not stats["partial_failures"] and not _spans(m)["name"]


def test_a_failed_import_falls_back_to_an_ordinary_order0_page() -> None:
    """No free order-9 block (every other page held by unmovable fillers: compaction and
    reclaim cannot make one): the import fails and an ordinary page is handed out."""
    m, tracer = _machine()
    held = _exhaust(m)
    for h in held[::2]:
        m.free(h)
    m.mm.drain_all_pages()
    p, stats = _params(), Counter[str]()
    page = _one(m, p, stats)
    orders = [(o, g, pfn) for pfn, o, g in _allocs(tracer)]
    assert orders[-2][:2] == (9, nofree_import_gfp(KERNEL)) and orders[-2][2] == -1
    assert orders[-1] == (0, KERNEL, page.pfn)
    assert stats["import_failed"] == 1 and stats["import_fallbacks"] == 1
    assert not nofreeq(m, 0)
    _invariants(m)


def test_scattered_mode_takes_plain_unmovable_order0_pages() -> None:
    m, tracer = _machine()
    p, stats = _params(mode="scattered"), Counter[str]()
    pages = _run(m, kmem_back_domain(m, "nf", p, 6, 0, 0, stats))
    assert pages is not None and len(pages) == 6
    assert [(o, g) for _, o, g in _allocs(tracer)] == [(0, KERNEL)] * 6
    assert all(m.mm.pages.info[h.pfn] >> MT_SHIFT == MT_UNMOVABLE for h in pages)
    assert not nofreeq(m, 0) and not stats["chunks_imported"]


def test_scattered_free_to_nofree_gives_the_pages_back_to_buddy() -> None:
    """Scattered mode has no queue: a GFP_NOWAIT call that fails part-way frees what it
    got with __free_pages()."""
    m, _ = _machine()
    held = _exhaust(m)
    for h in held[-2000:]:  # well above the watermarks again, for a while
        m.free(h)
    m.mm.drain_all_pages()
    stats = Counter[str]()
    p = _params(gfp=NOWAIT, mode="scattered")
    assert _run(m, kmem_back_domain(m, "nf", p, 3000, 0, 0, stats)) is None
    (got,) = _spans(m)["pages"]
    assert stats["partial_failures"] == 1 and stats["pages_freed"] == got >= 1
    assert not [h for h in m.owner_of.values() if h.owner == "nf"]
    _invariants(m)


def test_m_waitok_retries_the_failed_page_after_memalloc_retry_wait() -> None:
    """Behaviour 76 (M_WAITOK): a blocking mask that may fail (__GFP_NORETRY) retries
    page i, sleeping HZ/50 each time, until memory comes back; nothing is undone."""
    m, _ = _machine()
    held = _exhaust(m)
    gfp = KERNEL | int(GFP.NORETRY)
    wait = memalloc_retry_wait_ns(m, gfp)
    assert wait == m.mm.reclaim.cost.jiffy_ns * (m.mm.reclaim.cost.hz // 50)

    def release() -> Generator[Any, Any, None]:
        yield m.env.timeout(10 * wait)
        for h in held[: len(held) // 2]:
            m.free(h)

    m.env.process(release())
    stats = Counter[str]()
    pages = _run(m, kmem_back_domain(m, "nf", _params(gfp=gfp, partial_failure="leak"), 4,
                                     0, 0, stats))
    assert pages is not None and len(pages) == 4
    assert stats["waitok_retries"] >= 9 and m.env.now >= 10 * wait
    assert not stats["partial_failures"] and not stats["pages_stranded"]


def test_gfp_kernel_never_fails_it_oom_kills_instead() -> None:
    """Linux's GFP_KERNEL order-0 allocation does not fail: under exhaustion the slow
    path OOM-kills the filler, so the M_WAITOK retry loop never runs."""
    m, _ = _machine()
    _exhaust(m)
    stats = Counter[str]()
    pages = _run(m, kmem_back_domain(m, "nf", _params(), 4, 0, 0, stats))
    assert pages is not None and len(pages) == 4
    assert m.oom_killed("filler") and not stats["waitok_retries"]


def _owner_pages(m: Machine, name: str) -> set[int]:
    return {h.pfn for h in m.owner_of.values() if h.owner == name}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(1, 700), st.booleans(), st.sampled_from(
    ["leak", "free_to_nofree", "batch"]), st.integers(0, 1000)), min_size=1, max_size=8))
def test_pages_are_conserved_with_the_chunks_counted_as_allocated(
        calls: list[tuple[int, bool, str, int]]) -> None:
    """After any mix of calls (GFP_KERNEL or GFP_NOWAIT, each policy) and NOFREE frees:
    the buddy state is consistent with every chunk page allocated, and the caller's
    pages are exactly its queued, handed-out and stranded pages."""
    m, _ = _machine()
    stats = Counter[str]()
    handed: list[Allocation] = []
    for size, nowait, policy, pick in calls:
        p = _params(gfp=NOWAIT if nowait else KERNEL, partial_failure=policy)
        pages = _run(m, kmem_back_domain(m, "nf", p, size, 0, 0, stats))
        handed += pages or []
        if handed and pick % 3 == 0:
            vm_page_free_nofree(m, handed.pop(pick % len(handed)))
    _invariants(m)
    queued = [h.pfn for h in nofreeq(m, 0)]
    assert len(set(queued)) == len(queued) and not set(queued) & {h.pfn for h in handed}
    owned = _owner_pages(m, "nf")
    assert len(owned) == len(queued) + len(handed) + stats["pages_stranded"]
    assert m.owners["nf"].pages == len(owned)
    assert {h.pfn for h in handed} | set(queued) <= owned


NOFREE_YAML = """\
name: nf
seed: 5
duration: 1s
machine:
  nodes:
    - {memory: 128MiB, cpus: 2}
    - {memory: 128MiB, cpus: 2}
sysctl: {compaction_proactiveness: 0}
trace: {events: true}
workloads:
  - name: perm
    type: nofree
    rate: 2000/s
    size: {4KiB: 0.8, 16KiB: 0.2}
"""


def _simulate(tmp_path: Path, text: str, out: str) -> Any:
    from allocsim.run import simulate

    path = tmp_path / f"{out}.yaml"
    path.write_text(text)
    return simulate(load_experiment(path), tmp_path / out, report=False)


def test_nofree_workload_runs_and_counts_in_summary(tmp_path: Path) -> None:
    s = _simulate(tmp_path, NOFREE_YAML, "a").summary
    c = s["callers"]["perm"]
    assert c["kind:nofree"] == 1 and c["calls"] > 1000 and not c.get("failed")
    assert c["chunks_imported"] >= 2  # both nodes
    assert c["pages"] + c["nofreeq_size"] == 512 * c["chunks_imported"]
    assert s["owners"]["perm"]["pages"] == 512 * c["chunks_imported"]


def test_nofree_runs_are_deterministic(tmp_path: Path) -> None:
    a = _simulate(tmp_path, NOFREE_YAML, "a")
    b = _simulate(tmp_path, NOFREE_YAML, "b")
    assert a.summary["callers"] == b.summary["callers"]

    def digest(run_dir: Path) -> str:
        return hashlib.sha256((run_dir / "trace" / "events.parquet").read_bytes()).hexdigest()

    assert digest(a.run_dir) == digest(b.run_dir)


def test_dump_round_trips(tmp_path: Path) -> None:
    text = NOFREE_YAML + ("    mode: scattered\n    partial_failure: batch\n"
                          "    import_order: 8\n    import_gfp: GFP_NOWAIT\n    nid: 1\n")
    path = tmp_path / "rt.yaml"
    path.write_text(text)
    cfg = load_experiment(path)
    dumped: Any = dump_experiment(cfg)
    w = dumped["workloads"][0]
    assert (w["mode"], w["partial_failure"], w["import_order"], w["import_gfp"]) == (
        "scattered", "batch", 8, "GFP_NOWAIT")
    import yaml
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(dumped, sort_keys=False))
    assert load_experiment(again).workloads == cfg.workloads


@pytest.mark.parametrize("bad,key,expected", [
    ("mode: clustered", "workloads[0].mode", "nofree|scattered"),
    ("partial_failure: panic", "workloads[0].partial_failure", "leak|free_to_nofree|batch"),
    ("import_order: 11", "workloads[0].import_order", "machine.max_order"),
    ("gfp: GFP_HIGHUSER_MOVABLE", "workloads[0].gfp", "__GFP_MOVABLE"),
    ("import_gfp: GFP_KERNEL|__GFP_COMP", "workloads[0].import_gfp", "__GFP_COMP"),
    ("nid: 2", "workloads[0].nid", "a node of this machine"),
    ("lifetime: 1s", "workloads[0].lifetime", "one of the keys"),
    ("size: 2GiB", "workloads[0].size", "no larger than the machine's memory"),
])
def test_bad_nofree_keys_name_the_key(tmp_path: Path, bad: str, key: str,
                                      expected: str) -> None:
    text = NOFREE_YAML.replace("    size: {4KiB: 0.8, 16KiB: 0.2}\n", f"    {bad}\n") \
        if bad.startswith("size") else NOFREE_YAML + f"    {bad}\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert key in str(err.value) and expected in str(err.value)


def test_size_is_required(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(NOFREE_YAML.replace("    size: {4KiB: 0.8, 16KiB: 0.2}\n", ""))
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert "workloads[0].size" in str(err.value)
