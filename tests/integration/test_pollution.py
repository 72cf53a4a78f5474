"""Polluted (mixed) pageblocks and their attribution to callers (simcore.sim.pollution)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.constants import MIGRATETYPE_NAMES, MT_CMA, MT_MOVABLE, MT_UNMOVABLE
from simcore.mm.contig import alloc_contig_range
from simcore.mm.gfp import GFP, GFP_KERNEL, GFP_NOWAIT
from simcore.mm.pages import MT_SHIFT, ORDER_MASK, PG_ALLOC, PG_BUDDY, PG_RESERVED, PG_TAIL
from simcore.sim.machine import Machine
from simcore.sim.pollution import (
    UNATTRIBUTED,
    mixed_by_caller,
    mixed_count_by_type,
    mixed_pageblocks,
    pollution_summary,
    rescan,
)

PAGES_64MIB = 64 << 8
KERNEL = int(GFP_KERNEL)
MOVABLE_NOWAIT = int(GFP_NOWAIT | GFP.MOVABLE)
RECLAIMABLE = int(GFP_KERNEL | GFP.RECLAIMABLE)


def _machine(pages: int = PAGES_64MIB) -> Machine:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=pages, cpus=2),))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=3)


def _kernel_scan(mm: object) -> dict[str, int]:
    """pagetypeinfo_showmixedcount_print(), page by page, as the kernel walks it."""
    pages = mm.pages  # type: ignore[attr-defined]
    pb = mm.pageblock_order  # type: ignore[attr-defined]
    count = [0] * len(MIGRATETYPE_NAMES)
    for zone in mm.zones:  # type: ignore[attr-defined]
        pfn = zone.zone_start_pfn
        while pfn < zone.end_pfn:
            block_end = min(((pfn >> pb) + 1) << pb, zone.end_pfn)
            block_mt = zone.get_pageblock_migratetype(pfn)
            while pfn < block_end:
                flags = pages.flags[pfn]
                if flags & PG_BUDDY:
                    pfn += 1 << (pages.info[pfn] & ORDER_MASK)
                    continue
                if flags & PG_RESERVED or not flags & PG_ALLOC or flags & PG_TAIL:
                    pfn += 1
                    continue
                if pages.info[pfn] >> MT_SHIFT != block_mt:
                    count[MT_MOVABLE if block_mt == MT_CMA else block_mt] += 1
                    pfn = block_end
                    break
                pfn += 1 << (pages.info[pfn] & ORDER_MASK)
    return {MIGRATETYPE_NAMES[mt]: count[mt] for mt in mm.migratetypes}  # type: ignore


def _fragment_movable(m: Machine, step: int = 2) -> list:
    """Fill memory with movable order-0 pages down to MIN, then free one in ``step``."""
    held = []
    while (h := m.alloc_now("filler", MOVABLE_NOWAIT, 0, 0)) is not None:
        held.append(h)
    held.sort(key=lambda h: h.pfn)
    for h in held[::step]:
        m.free(h)
    return [h for i, h in enumerate(held) if i % step]


@given(seed=st.integers(0, 2**32 - 1))
def test_mixed_scan_matches_the_kernel_walk(seed: int) -> None:
    m = _machine()
    rng = np.random.default_rng(seed)
    held = []
    masks = (KERNEL, MOVABLE_NOWAIT, RECLAIMABLE, int(GFP_KERNEL | GFP.COMP))
    for _ in range(400):
        if held and rng.random() < 0.4:
            m.free(held.pop(int(rng.integers(len(held)))))
            continue
        gfp = masks[int(rng.integers(len(masks)))]
        order = int(rng.choice([0, 0, 0, 1, 2, 3, 5]))
        h = m.alloc_now(f"c{int(rng.integers(3))}", gfp, order, int(rng.integers(2)))
        if h is not None:
            held.append(h)
    mixed = mixed_pageblocks(m.mm)
    assert mixed_count_by_type(m.mm, mixed) == _kernel_scan(m.mm)


def test_a_fresh_machine_has_no_mixed_blocks() -> None:
    m = _machine()
    m.alloc_now("kernel", KERNEL, 0, 0)  # steals a whole free pageblock: no pollution
    assert not mixed_pageblocks(m.mm).any()
    assert m.owners["kernel"].polluted == 0


@pytest.mark.parametrize(("step", "expected"), [
    # half of each pageblock free: every steal claims its block (now Unmovable), whose
    # filler pages become the foreign ones
    (2, {"Unmovable": {"filler"}}),
    # a third free: no claim, the kernel pages land in Movable blocks
    (3, {"Movable": {"kernel"}}),
])
def test_fallback_pollution_is_charged_to_the_owners_of_foreign_pages(
    step: int, expected: dict[str, set[str]]
) -> None:
    m = _machine()
    _fragment_movable(m, step)
    assert not mixed_pageblocks(m.mm).any()
    # The free blocks left below MIN go first, each claimed whole (clean); then the
    # steals must take order-0 holes in movable pageblocks.
    handles = [m.alloc_now("kernel", KERNEL, 0, 0) for _ in range(2000)]
    assert all(h is not None for h in handles)
    summary = pollution_summary(m)
    mixed = np.flatnonzero(mixed_pageblocks(m.mm))
    assert summary["mixed_pageblocks"] == len(mixed) >= 1
    pb = m.mm.pageblock_order
    by_type: dict[str, set[str]] = {}
    for blk in mixed.tolist():
        block_mt = m.mm.zones[-1].get_pageblock_migratetype(blk << pb)
        foreign = {h.owner for p, h in m.owner_of.items()
                   if p >> pb == blk and m.mm.pages.info[p] >> MT_SHIFT != block_mt}
        charged = m._owner_list[m.pb_polluter[blk]].name
        assert charged in foreign
        by_type.setdefault(MIGRATETYPE_NAMES[block_mt], set()).add(charged)
    assert by_type == expected
    assert UNATTRIBUTED not in summary["by_caller"]
    assert sum(summary["by_caller"].values()) == len(mixed)
    # the filler's movable requests may fall back once into DMA's first pageblock,
    # UNMOVABLE from boot; every other fallback is the kernel's
    extfrag = summary["extfrag_by_caller"]
    assert set(extfrag) <= {"kernel", "filler"} and extfrag.get("filler", 0) <= 1
    assert sum(extfrag.values()) == m.mm.vm["extfrag_steal"] and extfrag["kernel"] >= 1


def test_a_block_clean_again_loses_its_charge() -> None:
    m = _machine()
    filler = _fragment_movable(m)
    kernel = [m.alloc_now("kernel", KERNEL, 0, 0) for _ in range(2000)]
    charged = rescan(m)
    assert charged.any()
    for h in filler:  # a claimed block (now unmovable) is clean without its movable pages
        m.free(h)
    m.mm.drain_all_pages()
    mixed = rescan(m)
    assert mixed.sum() < charged.sum()
    assert (m.pb_polluter[~mixed] == -1).all()
    assert (m.pb_polluter[mixed] == m.owners["kernel"].idx).all()
    for h in kernel:
        m.free(h)
    m.mm.drain_all_pages()
    assert not rescan(m).any() and (m.pb_polluter == -1).all()


def test_uncharged_mixed_blocks_are_listed_as_unattributed() -> None:
    m = _machine()
    h = m.alloc_now("kernel", KERNEL, 0, 0)
    m.mm.zones[-1].set_pageblock_migratetype(h.pfn, MT_MOVABLE)  # relabelled behind our back
    mixed = mixed_pageblocks(m.mm)
    assert mixed_by_caller(m, mixed) == {UNATTRIBUTED: 1}


def test_requests_are_counted_per_caller() -> None:
    m = _machine()
    for _ in range(3):
        m.alloc_now("a", KERNEL, 0, 0)
    m.alloc_now("b", KERNEL, 20, 0)  # above max_order: a failed request
    assert (m.owners["a"].requests, m.owners["b"].requests) == (3, 1)


def test_census_counts_free_movable_only_and_pinned_pageblocks() -> None:
    m = _machine()
    pb = m.mm.pageblock_order
    before = pollution_summary(m)["by_node"]["0"]
    assert before["unmovable"] == before["movable_only"] == before["mixed"] == 0
    huge = m.alloc_now("thp", int(GFP_NOWAIT | GFP.MOVABLE | GFP.COMP), pb, 0)
    kernel = m.alloc_now("kernel", KERNEL, 0, 0)
    small = [m.alloc_now("user", int(GFP_NOWAIT | GFP.MOVABLE), 0, 0) for _ in range(3)]
    after = pollution_summary(m)["by_node"]["0"]
    assert huge.pfn >> pb != kernel.pfn >> pb
    blocks = {h.pfn >> pb for h in small} - {huge.pfn >> pb, kernel.pfn >> pb}
    # order-0 MOVABLE pages: compaction migrates them; a THP and a kernel page it does not
    assert len(blocks) == 1 and after["movable_only"] == 1 and after["unmovable"] == 2
    assert sum(after[k] for k in ("free", "movable_only", "unmovable", "no_allocation")) \
        == after["pageblocks"]
    assert after["free"] < before["free"]
    heads = np.flatnonzero(m.mm.pages.flags_np & PG_BUDDY)
    orders = m.mm.pages.info_np[heads] & ORDER_MASK
    assert after["free"] == sum(1 << (o - pb) for o in orders.tolist() if o >= pb)
    assert after["pageblocks"] == before["pageblocks"]


def test_an_allocation_larger_than_a_pageblock_makes_each_relabelled_block_mixed() -> None:
    # page_owner records every page of an order-10 block; the kernel's scan starts the
    # second pageblock on a tail page and compares its migratetype too
    m = _machine()
    pb = m.mm.pageblock_order
    big = m.alloc_now("thp", int(GFP_NOWAIT | GFP.MOVABLE | GFP.COMP), pb + 1, 0)
    assert big is not None and not mixed_pageblocks(m.mm).any()
    second = big.pfn + (1 << pb)
    m.mm.zones[-1].set_pageblock_migratetype(second, MT_UNMOVABLE)
    mixed = mixed_pageblocks(m.mm)
    assert np.flatnonzero(mixed).tolist() == [second >> pb]


def test_a_gigantic_range_taken_by_alloc_contig_pages_is_not_mixed() -> None:
    # split_map_pages() makes every page a MOVABLE order-0 page_owner allocation
    m = _machine()
    pb = m.mm.pageblock_order
    zone = m.mm.zones[-1]
    start = ((zone.managed_start_pfn >> (pb + 1)) + 1) << (pb + 1)
    ok, _ = alloc_contig_range(m.mm, zone, start, start + (1 << (pb + 1)), MT_MOVABLE, 0)
    assert ok
    assert not mixed_pageblocks(m.mm).any()
