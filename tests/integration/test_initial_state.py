"""A run started from a real host's ``/proc`` snapshot (``initial_state``).

On two oracle snapshots (right after boot, and after the fragmentation recipe) the
model's ``/proc/pagetypeinfo`` must print the snapshot's file byte for byte after setup;
the host owners must hold what ``meminfo`` says; every managed page must be free or held
exactly once; reclaim and compaction must act on the host's pages; the setup must be
deterministic; and bad configs must be one error naming the file and key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from allocsim.cli import main
from allocsim.run import simulate
from simcore.config.machine import dump_machine, parse_machine
from simcore.config.types import MachineConfig
from simcore.errors import ConfigError
from simcore.formats.meminfo import meminfo_pages, read_meminfo
from simcore.formats.procfs import ProcParseError, read_snapshot
from simcore.formats.procmachine import machine_from_proc
from simcore.formats.snapshots import pagetypeinfo
from simcore.mm.constants import MT_MOVABLE
from simcore.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import MT_SHIFT, PG_ALLOC, PG_MOVABLE_OWNER
from simcore.sim.initial_state import InitialState, apply_initial_state
from simcore.sim.machine import Machine
from workloads.registry import load_experiment

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
FRESH = ORACLE / "hugetlb-fresh" / "start"
FRAGMENTED = ORACLE / "hugetlb-fragmented-nocompact" / "fragmented"
SNAPSHOTS = [FRESH, FRAGMENTED]


def _setup(snapshot: Path, seed: int = 1) -> tuple[Machine, InitialState]:
    machine_cfg, sysctl = machine_from_proc(snapshot)
    machine = Machine(machine_cfg, sysctl, seed)
    return machine, apply_initial_state(machine, snapshot)


def _held(machine: Machine) -> dict[int, int]:
    assert machine.held is not None
    return dict.fromkeys(np.flatnonzero(machine.held.owner_np >= 0).tolist(), 0)


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_pagetypeinfo_is_the_snapshots_byte_for_byte(snapshot: Path) -> None:
    machine, state = _setup(snapshot)
    assert state.mismatches == ()
    mm = machine.mm
    assert pagetypeinfo(mm.zones, show_cma=mm.cma) == (snapshot / "pagetypeinfo").read_text()


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_every_managed_page_is_free_or_held_once(snapshot: Path) -> None:
    machine, _ = _setup(snapshot)
    check_invariants(machine.mm, _held(machine))  # coverage, no overlap, merging, counters
    snap = read_snapshot(snapshot)  # the host's pcp pages are on the same CPUs' lists
    for zone in machine.mm.zones:
        theirs = next(z for z in snap.zones if z.nid == zone.nid and z.name == zone.name)
        assert [p.count for p in zone.per_cpu_pageset] == [p.count for p in theirs.pcp]


def test_nr_free_pages_is_zoneinfos_pages_free() -> None:
    # The fresh snapshot's files were read at one moment: pagetypeinfo's free table adds
    # up to zoneinfo's "pages free" (neither counts the pcp pages).
    machine, _ = _setup(FRESH)
    snap = read_snapshot(FRESH)
    for zone in machine.mm.zones:
        theirs = next(z for z in snap.zones if z.nid == zone.nid and z.name == zone.name)
        assert zone.nr_free_pages == theirs.nr_free_pages


def test_a_zoneinfo_read_at_another_moment_is_reported() -> None:
    # The fragmented snapshot's zoneinfo shows 1535 more free DMA32 pages than its
    # pagetypeinfo: the model follows pagetypeinfo and says so.
    machine, state = _setup(FRAGMENTED)
    assert state.zoneinfo_free == ("node 0 zone DMA32: zoneinfo pages free 69249, "
                                   "pagetypeinfo's free lists 67714 (read at another moment)",)
    assert _setup(FRESH)[1].zoneinfo_free == ()


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
def test_owners_hold_what_meminfo_says(snapshot: Path) -> None:
    machine, state = _setup(snapshot)
    info = read_meminfo(snapshot / "meminfo")
    pages = state.owner_pages
    assert pages["host:page_cache"] == meminfo_pages(
        info["Cached"] + info["Buffers"] - info["Shmem"])
    assert pages["host:anon"] == meminfo_pages(info["AnonPages"])
    assert pages["host:shmem"] == meminfo_pages(info["Shmem"])
    assert pages["host:slab_reclaim"] + pages["host:slab_in_use"] == meminfo_pages(
        info["SReclaimable"])
    assert pages["host:slab_reclaim"] == 0  # no dentry-state: none assumed shrinkable
    assert "dentry-state" in state.assumptions[0]
    snap = read_snapshot(snapshot)
    assert state.pcp_pages == sum(p.count for z in snap.zones for p in z.pcp)
    mm = machine.mm
    assert state.pcp_pages == sum(z.pcp_pages for z in mm.zones)
    allocated = mm.managed_pages - mm.nr_free_pages
    assert sum(pages.values()) + state.pcp_pages == allocated
    kernel_known = meminfo_pages(info["SUnreclaim"] + info["KernelStack"] + info["PageTables"])
    assert pages["host:kernel"] >= kernel_known
    for name, n in pages.items():
        assert machine.owners[name].pages == n
        assert machine.held is not None and machine.held.count(machine.owners[name].idx) == n


def test_host_pages_are_on_their_lists_and_in_their_pageblocks() -> None:
    machine, state = _setup(FRAGMENTED)
    mm = machine.mm
    stats = mm.reclaim.node_stats()
    info = read_meminfo(FRAGMENTED / "meminfo")
    file_pages = state.owner_pages["host:page_cache"]
    assert stats["nr_active_file"] + stats["nr_inactive_file"] == file_pages
    share = info["Active(file)"] / (info["Active(file)"] + info["Inactive(file)"])
    assert stats["nr_active_file"] == round(file_pages * share)
    assert stats["nr_inactive_anon"] + stats["nr_active_anon"] == (
        state.owner_pages["host:anon"] + state.owner_pages["host:shmem"])
    assert stats["nr_slab_reclaimable"] == (state.owner_pages["host:slab_reclaim"]
                                            + state.owner_pages["host:slab_in_use"])
    assert machine.held is not None
    anon = np.flatnonzero(machine.held.owner_np == machine.owners["host:anon"].idx)
    assert (mm.pages.flags_np[anon] == PG_ALLOC | PG_MOVABLE_OWNER).all()
    assert (mm.pages.ref_np[anon] == 1).all()
    kernel = np.flatnonzero(machine.held.owner_np == machine.owners["host:kernel"].idx)
    assert (mm.pages.info_np[kernel] >> MT_SHIFT == 0).all()  # requested UNMOVABLE


@pytest.mark.parametrize("snapshot", SNAPSHOTS, ids=lambda p: p.name)
@pytest.mark.parametrize(("mt", "names"), [
    (MT_MOVABLE, ("host:page_cache", "host:anon", "host:shmem")),
    (2, ("host:slab_reclaim", "host:slab_in_use")),  # RECLAIMABLE
])
def test_owners_fill_their_own_pageblocks_first(snapshot: Path, mt: int,
                                                names: tuple[str, ...]) -> None:
    """An owner's page lies outside its pageblock type only when that type is full.

    Full: every allocated page of the type's pageblocks belongs to an owner of that
    type (the pcp pages are free, on pcp lists). (Right after boot the host's Normal
    MOVABLE blocks are its free order-10 blocks and its memblock-reserved memory, so
    shmem goes elsewhere.)
    """
    machine, _ = _setup(snapshot)
    mm = machine.mm
    assert machine.held is not None
    owner = machine.held.owner_np
    label = np.repeat(np.frombuffer(mm.pageblock_mt, dtype=np.uint8) & 7,
                      1 << mm.pageblock_order)[: len(owner)]
    mine = {machine.owners[n].idx for n in names}
    outside = np.isin(owner, list(mine)) & (label != mt)
    if outside.any():
        inside = np.unique(owner[(owner >= 0) & (label == mt)]).tolist()
        assert set(inside) <= mine


def test_setup_is_deterministic_and_seeded() -> None:
    a, _ = _setup(FRAGMENTED, seed=5)
    b, _ = _setup(FRAGMENTED, seed=5)
    c, _ = _setup(FRAGMENTED, seed=6)
    assert a.held is not None and b.held is not None and c.held is not None
    for name in ("flags_np", "info_np", "ref_np", "lru_np"):
        assert getattr(a.mm.pages, name).tobytes() == getattr(b.mm.pages, name).tobytes()
    assert a.held.owner_np.tobytes() == b.held.owner_np.tobytes()
    assert bytes(a.mm.pageblock_mt) == bytes(b.mm.pageblock_mt)
    for za, zb in zip(a.mm.zones, b.mm.zones, strict=True):
        for order in range(za.max_order + 1):
            for mt in range(6):
                assert list(za.free_area.iter_list(order, mt)) == \
                    list(zb.free_area.iter_list(order, mt))
    assert a.held.owner_np.tobytes() != c.held.owner_np.tobytes()  # another seed: another layout
    assert pagetypeinfo(a.mm.zones) == pagetypeinfo(c.mm.zones)  # with the same counts


def test_workload_streams_do_not_depend_on_the_initial_state() -> None:
    machine, _ = _setup(FRESH, seed=3)
    fresh = Machine(*machine_from_proc(FRESH), 3)
    assert [r.integers(1 << 30) for r in machine.spawn_rngs(3)] == \
        [r.integers(1 << 30) for r in fresh.spawn_rngs(3)]


def test_reclaim_frees_the_hosts_page_cache() -> None:
    machine, state = _setup(FRAGMENTED)
    before = state.owner_pages["host:page_cache"]
    handles = []
    while machine.stats.pages_reclaimed < 2000:  # pressure: more than is free
        handle = machine.alloc_now("pressure", int(GFP_KERNEL), 0, 0)
        assert handle is not None
        handles.append(handle)
    owner = machine.owners["host:page_cache"]
    assert owner.pages < before
    assert machine.stats.pages_reclaimed >= before - owner.pages
    assert machine.held is not None
    assert machine.held.count(owner.idx) == owner.pages
    allocated = _held(machine)
    allocated.update({h.pfn: h.order for h in handles})
    check_invariants(machine.mm, allocated)


def test_the_shrinker_frees_the_unused_share_of_reclaimable_slab_only(tmp_path: Path) -> None:
    snap = tmp_path / "snap"
    shutil.copytree(FRAGMENTED, snap)
    (snap / "dentry-state").write_text("30000\t10000\t45\t0\t0\t0\n")  # 1/3 unused
    (snap / "inode-state").write_text("0\t0\t0\t0\t0\t0\t0\n")
    machine, state = _setup(snap)
    shrinkable = state.owner_pages["host:slab_reclaim"]
    in_use = state.owner_pages["host:slab_in_use"]
    assert shrinkable == round((shrinkable + in_use) / 3) > 0
    reclaim = machine.mm.reclaim
    freed = 0
    while done := reclaim.shrink_slab(reclaim.lruvecs[0], 0, 0):  # priority 0: scan all
        freed += done
    assert freed == shrinkable
    assert machine.owners["host:slab_reclaim"].pages == 0
    assert machine.owners["host:slab_in_use"].pages == in_use
    assert reclaim.node_stats()["nr_slab_reclaimable"] == in_use
    check_invariants(machine.mm, _held(machine))


def test_compaction_migrates_the_hosts_movable_pages() -> None:
    machine, state = _setup(FRAGMENTED)
    assert machine.held is not None
    anon = machine.owners["host:anon"]
    before = set(machine.held.pfns_of(anon.idx).tolist())
    slab = [machine.held.pfns_of(machine.owners[n].idx).tolist()
            for n in ("host:slab_reclaim", "host:slab_in_use")]
    compaction = machine.mm.reclaim.compaction
    compaction.compact_node(0, 0)
    assert [machine.held.pfns_of(machine.owners[n].idx).tolist()  # slab is not PageLRU
            for n in ("host:slab_reclaim", "host:slab_in_use")] == slab
    moved = machine.mm.vm["pgmigrate_success"]
    assert moved > 0
    after = set(machine.held.pfns_of(anon.idx).tolist())
    assert after != before and len(after) == len(before) == anon.pages
    for name, pages in state.owner_pages.items():  # migration keeps every owner's pages
        assert machine.held.count(machine.owners[name].idx) == pages
    check_invariants(machine.mm, _held(machine))


def test_the_oom_killer_frees_the_hosts_anonymous_memory() -> None:
    machine, state = _setup(FRAGMENTED)
    freed = machine._oom_kill("host:anon")
    assert freed == state.owner_pages["host:anon"]
    assert machine.owners["host:anon"].pages == 0
    assert machine.held is not None
    assert machine.held.count(machine.owners["host:anon"].idx) == 0
    check_invariants(machine.mm, _held(machine))


def test_a_machine_that_has_allocated_is_refused() -> None:
    machine = Machine(*machine_from_proc(FRESH), 1)
    machine.alloc_now("early", int(GFP_HIGHUSER_MOVABLE), 0, 0)
    with pytest.raises(ValueError, match="freshly built"):
        apply_initial_state(machine, FRESH)


def test_zones_other_than_the_snapshots_are_named() -> None:
    cfg, sysctl = machine_from_proc(FRESH)
    node = dataclasses.replace(cfg.nodes[0], reserved_by_zone=(158, 16896, 16174, 0))
    machine = Machine(MachineConfig(**{**cfg.__dict__, "nodes": (node,)}), sysctl, 1)
    with pytest.raises(ProcParseError, match="zone DMA32: managed 110557 in the snapshot"):
        apply_initial_state(machine, FRESH)


# -- the config key -------------------------------------------------------------------
def _write_config(tmp_path: Path, machine: str, initial: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(f"""name: exp
seed: 1
duration: 100ms
machine: {machine}
initial_state: {initial}
workloads:
  - {{name: q, type: synthetic, rate: 100/s, order: 0, lifetime: 1ms}}
""")
    return path


def _snapshot_copy(tmp_path: Path) -> Path:
    snap = tmp_path / "snap"
    shutil.copytree(FRESH, snap)
    return snap


def test_from_proc_alone_means_the_machines_snapshot(tmp_path: Path) -> None:
    _snapshot_copy(tmp_path)
    cfg = load_experiment(_write_config(tmp_path, "{from_proc: snap}", "from_proc"))
    assert cfg.initial_state == str((tmp_path / "snap").resolve())
    cfg2 = load_experiment(_write_config(tmp_path, "{from_proc: snap}", "{from_proc: snap}"))
    assert cfg2 == cfg
    assert load_experiment(_write_config(tmp_path, "{from_proc: snap}", "fresh")) \
        .initial_state is None


def test_a_snapshot_matching_an_explicit_machine_is_accepted(tmp_path: Path) -> None:
    snap = _snapshot_copy(tmp_path)
    machine = parse_machine({"from_proc": str(snap)}, "machine", "<test>")
    explicit = yaml.safe_dump(dump_machine(machine), default_flow_style=True).strip()
    cfg = load_experiment(_write_config(tmp_path, explicit, "{from_proc: snap}"))
    assert cfg.initial_state == str(snap.resolve())


@pytest.mark.parametrize(("machine", "initial", "key", "expected"), [
    ("{nodes: [{memory: 1GiB}]}", "bogus", "initial_state",
     "expected fresh, from_proc or {from_proc: DIR}"),
    ("{nodes: [{memory: 1GiB}]}", "[from_proc]", "initial_state",
     "expected fresh, from_proc or {from_proc: DIR}"),
    ("{nodes: [{memory: 1GiB}]}", "from_proc", "initial_state",
     "with a machine not imported from /proc"),
    ("{nodes: [{memory: 1GiB}]}", "{from_proc: snap}", "initial_state.from_proc",
     "a snapshot whose zones are the machine's"),
    ("{from_proc: snap}", "{from_proc: nowhere}", "initial_state.from_proc",
     "a /proc snapshot directory"),
    ("{from_proc: snap}", "{from_proc: snap, extra: 1}", "initial_state.extra",
     "one of the keys from_proc"),
])
def test_bad_initial_state_is_one_error_naming_the_key(
        tmp_path: Path, machine: str, initial: str, key: str, expected: str) -> None:
    _snapshot_copy(tmp_path)
    path = _write_config(tmp_path, machine, initial)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.key == key and info.value.source == str(path)
    assert expected in str(info.value)


def test_the_mismatching_zone_is_named(tmp_path: Path) -> None:
    _snapshot_copy(tmp_path)
    path = _write_config(tmp_path, "{nodes: [{memory: 1GiB}]}", "{from_proc: snap}")
    with pytest.raises(ConfigError,
                       match="node 0 zone DMA: present 3998 in the snapshot, 4095 in the"):
        load_experiment(path)


def test_a_snapshot_without_meminfo_is_refused(tmp_path: Path) -> None:
    (_snapshot_copy(tmp_path) / "meminfo").unlink()
    path = _write_config(tmp_path, "{from_proc: snap}", "from_proc")
    with pytest.raises(ConfigError, match="a meminfo file") as info:
        load_experiment(path)
    assert info.value.key == "initial_state.from_proc"


def test_a_broken_meminfo_exits_2_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot_copy(tmp_path)
    text = (snap / "meminfo").read_text().replace("Shmem:", "Shmem =", 1)
    (snap / "meminfo").write_text(text)
    line = text.splitlines().index(next(x for x in text.splitlines() if "Shmem =" in x)) + 1
    path = _write_config(tmp_path, "{from_proc: snap}", "from_proc")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"meminfo:{line}: expected 'Name:" in err
    assert "Traceback" not in err


def test_bad_initial_state_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _snapshot_copy(tmp_path)
    path = _write_config(tmp_path, "{from_proc: snap}", "sometimes")
    assert main(["run", str(path), "-o", str(tmp_path / "runs"), "--no-report", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("initial_state: expected fresh, from_proc or {from_proc: DIR}, "
                        "got 'sometimes'")


def test_the_run_directory_records_where_the_state_came_from(tmp_path: Path) -> None:
    snap = _snapshot_copy(tmp_path)  # a quarter of the dentries and inodes unused
    (snap / "dentry-state").write_text("20000\t8000\t45\t0\t1200\t0\n")
    (snap / "inode-state").write_text("20000\t2000\t0\t0\t0\t0\t0\n")
    cfg = load_experiment(_write_config(tmp_path, "{from_proc: snap}", "from_proc"))
    result = simulate(cfg, tmp_path / "runs", report=False)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    recorded = manifest["initial_state"]
    assert recorded["from_proc"] == str(snap.resolve())
    assert recorded["sha256"] == {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                                  for p in snap.iterdir()}
    assert recorded["mismatches"] == []
    assert recorded["owner_pages"]["host:slab_reclaim"] == 1073  # 4292 / 4
    assert recorded["owner_pages"]["host:slab_in_use"] == 3219
    assert recorded["assumptions"] == []
    config = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert config["initial_state"] == {"from_proc": str(snap.resolve())}
    assert (result.run_dir / "pagetypeinfo.txt").is_file()


def test_run_says_where_its_state_came_from_what_it_assumed_and_where_it_differs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    snap = _snapshot_copy(tmp_path)
    path = _write_config(tmp_path, "{from_proc: snap}", "from_proc")
    assert main(["run", str(path), "-o", str(tmp_path / "runs"), "--no-report", "-q"]) == 0
    out = capsys.readouterr().out
    assert f"starting state: the snapshot's (initial_state from_proc: {snap.resolve()})" in out
    assert "initial state: no dentry-state and inode-state" in out
    assert "differs from the snapshot" not in out
    # a snapshot counting more pageblocks than the zone has: the state differs, and says so
    text = (snap / "pagetypeinfo").read_text()
    line = "Node 0, zone   Normal           55          191           10"
    assert line in text
    (snap / "pagetypeinfo").write_text(text.replace(
        line, "Node 0, zone   Normal           55          291           10"))
    assert main(["run", str(path), "-o", str(tmp_path / "runs2"), "--no-report", "-q"]) == 0
    assert "initial state: differs from the snapshot in" in capsys.readouterr().out
