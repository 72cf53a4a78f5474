"""Property tests of ``initial_state`` setup on random small pagetypeinfo-like states.

Two sources of snapshots for a 32 MiB machine (zones DMA and DMA32):

- *reachable* states: another machine of the same shape allocates and frees at random
  through the real allocator; its ``zoneinfo`` (with its pcp counts) and
  ``pagetypeinfo`` become the snapshot, with a random ``meminfo``. Setup must reproduce
  the pagetypeinfo text exactly and report no mismatch;
- *arbitrary* tables: free counts and pageblock counts drawn at random, feasible or not.

Either way, after setup: free + held pages cover every managed page exactly once, free
blocks are aligned and merged as ``__free_one_page()`` leaves them, the counters match
the lists (:func:`simcore.mm.invariants.check_invariants`), the owners hold every
allocated page, and whenever setup reports no mismatch the model prints the snapshot's
pagetypeinfo.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procstate import zoneinfo_text
from simcore.formats.proctables import PagetypeInfo
from simcore.formats.snapshots import format_pagetypeinfo, pagetypeinfo, pagetypeinfo_tables
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.sim.initial_state import InitialState, apply_initial_state
from simcore.sim.machine import Machine

CFG = MachineConfig(nodes=(NodeConfig(memory_pages=32 << 8, cpus=2),))
GFPS = (int(GFP_KERNEL | GFP.NORETRY), int(GFP_HIGHUSER_MOVABLE | GFP.NORETRY),
        int(GFP_ATOMIC), int(GFP_KERNEL | GFP.RECLAIMABLE | GFP.NORETRY))
OWNER_KEYS = ("Cached", "AnonPages", "Shmem", "SReclaimable")

ops = st.lists(st.tuples(st.integers(0, len(GFPS) - 1), st.sampled_from((0, 0, 1, 2, 3, 5, 9)),
                         st.booleans()), max_size=400)
meminfo_kb = st.fixed_dictionaries({k: st.integers(0, 8192) for k in OWNER_KEYS})
fs_state = st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(sorted)
"""``(unused, total)`` dentries and inodes together, or no dentry-state/inode-state."""


def _meminfo(kb: dict[str, int]) -> str:
    return (f"Buffers: 0 kB\nCached: {kb['Cached'] + kb['Shmem']} kB\n"
            f"AnonPages: {kb['AnonPages']} kB\nShmem: {kb['Shmem']} kB\n"
            f"SReclaimable: {kb['SReclaimable']} kB\nActive(file): 1 kB\n"
            "Inactive(file): 3 kB\n")


def _write_snapshot(directory: Path, source: Machine, ptinfo: str, kb: dict[str, int],
                    fs: list[int] | None = None) -> None:
    (directory / "zoneinfo").write_text(zoneinfo_text(source.mm))
    (directory / "pagetypeinfo").write_text(ptinfo)
    (directory / "meminfo").write_text(_meminfo(kb))
    if fs is not None:  # all of the unused objects are dentries, half of all objects
        unused, total = fs
        (directory / "dentry-state").write_text(f"{total - total // 2}\t{unused}\t45\t0\t0\t0\n")
        (directory / "inode-state").write_text(f"{total // 2}\t0\t0\t0\t0\t0\t0\n")


def _setup(directory: Path, seed: int) -> tuple[Machine, InitialState]:
    machine = Machine(CFG, SysctlConfig(), seed)
    return machine, apply_initial_state(machine, directory)


def _check_state(machine: Machine, state: InitialState, ptinfo: str) -> None:
    mm = machine.mm
    assert machine.held is not None
    held = np.flatnonzero(machine.held.owner_np >= 0)
    check_invariants(mm, dict.fromkeys(held.tolist(), 0))
    pcp = sum(z.pcp_pages for z in mm.zones)
    assert pcp == state.pcp_pages
    assert len(held) == mm.managed_pages - mm.nr_free_pages - pcp == sum(
        state.owner_pages.values())
    if not state.mismatches:
        assert pagetypeinfo(mm.zones) == ptinfo


@settings(max_examples=25)
@given(ops=ops, kb=meminfo_kb, fs=fs_state, seed=st.integers(0, 2**32))
def test_reachable_states_are_reproduced_exactly(ops: list[tuple[int, int, bool]],
                                                 kb: dict[str, int], fs: list[int] | None,
                                                 seed: int) -> None:
    source = Machine(CFG, SysctlConfig(), 0)
    live = []
    for i, (g, order, free_later) in enumerate(ops):
        handle = source.alloc_now("src", GFPS[g], order, i % 2)
        if handle is not None and free_later:
            live.append(handle)
    for handle in live[::2]:
        source.free(handle)
    ptinfo = pagetypeinfo(source.mm.zones)
    with tempfile.TemporaryDirectory() as tmp:
        _write_snapshot(Path(tmp), source, ptinfo, kb, fs)
        machine, state = _setup(Path(tmp), seed)
    wanted_free = {k: (v * 1024) // 4096 for k, v in kb.items()}
    allocated = machine.mm.managed_pages - machine.mm.nr_free_pages
    table_notes = [m for m in state.mismatches if "meminfo asks" not in m]
    assert table_notes == []
    _check_state(machine, state, ptinfo)
    for theirs, ours in zip(source.mm.zones, machine.mm.zones, strict=True):  # same CPUs
        assert [p.count for p in ours.per_cpu_pageset] == [
            p.count for p in theirs.per_cpu_pageset]
    assert (fs is None) == bool(state.assumptions)
    if sum(wanted_free.values()) + state.pcp_pages <= allocated:
        assert state.owner_pages["host:anon"] == wanted_free["AnonPages"]
        assert state.owner_pages["host:page_cache"] == wanted_free["Cached"]
        assert state.owner_pages["host:shmem"] == wanted_free["Shmem"]
        slab = wanted_free["SReclaimable"]
        shrinkable = round(slab * fs[0] / fs[1]) if fs and fs[1] else 0
        assert state.owner_pages["host:slab_reclaim"] == shrinkable
        assert state.owner_pages["host:slab_in_use"] == slab - shrinkable
        stats = machine.mm.reclaim.node_stats()
        assert stats["nr_slab_reclaimable"] == slab
        assert machine.mm.reclaim.lruvecs[0].shrinkable_slab_pages() == shrinkable
        assert state.mismatches == ()


@st.composite
def tables(draw: st.DrawFn) -> PagetypeInfo:
    """Random free and pageblock counts for the machine's zones, feasible or not."""
    fresh = Machine(CFG, SysctlConfig(), 0)
    model = pagetypeinfo_tables(fresh.mm.zones)
    free: dict[tuple[int, str, str], tuple[int, ...]] = {}
    blocks: dict[tuple[int, str], tuple[int, ...]] = {}
    for (nid, zone), row in model.block_counts.items():
        n = sum(row)
        unmovable = draw(st.integers(0, n))
        reclaimable = draw(st.integers(0, n - unmovable))
        highatomic = draw(st.integers(0, min(1, n - unmovable - reclaimable)))
        movable = n - unmovable - reclaimable - highatomic
        blocks[(nid, zone)] = (unmovable, movable, reclaimable, highatomic, 0)
        for mt in model.block_types:
            if mt == "Isolate":
                free[(nid, zone, mt)] = (0,) * 11
                continue
            free[(nid, zone, mt)] = tuple(draw(st.integers(0, 12)) for _ in range(9)) + \
                (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    return PagetypeInfo(model.pageblock_order, free, model.block_types, blocks)


@settings(max_examples=30)
@given(info=tables(), kb=meminfo_kb, seed=st.integers(0, 2**32))
def test_any_tables_leave_a_consistent_state(info: PagetypeInfo, kb: dict[str, int],
                                            seed: int) -> None:
    source = Machine(CFG, SysctlConfig(), 0)
    ptinfo = format_pagetypeinfo(info)
    with tempfile.TemporaryDirectory() as tmp:
        _write_snapshot(Path(tmp), source, ptinfo, kb)
        machine, state = _setup(Path(tmp), seed)
    _check_state(machine, state, ptinfo)
