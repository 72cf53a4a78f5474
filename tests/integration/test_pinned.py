"""The pinned caller: pipe buffers (fs/pipe.c of 6.1), unmovable and never migrated."""

from __future__ import annotations

from conftest import run_process, traced_machine

from simcore.mm.constants import MT_UNMOVABLE
from simcore.mm.gfp import parse_gfp
from simcore.mm.invariants import check_invariants
from simcore.mm.lru import KIND_FILE
from simcore.mm.pages import MT_SHIFT, PG_HEAD
from simcore.sim.machine import Allocation
from workloads.page_cache import FOLIO_GFP
from workloads.pinned import PIPE_BUF_GFP, PinnedParams, pipe_write


def test_a_pipe_buffer_is_an_order0_unmovable_page_off_the_lru() -> None:
    # The oracle's fragmentation run traced its 4096 pipes' pages as this mask.
    assert PIPE_BUF_GFP == int(parse_gfp("GFP_HIGHUSER|__GFP_ACCOUNT"))
    m, tracer = traced_machine()
    bufs = run_process(m, pipe_write(m, "pipes", PinnedParams(rate_per_s=1.0, pages=3), 1))
    assert [(a[2], a[3]) for a in tracer.named("mm_page_alloc")] == [(0, PIPE_BUF_GFP)] * 3
    for page in bufs:
        assert page.order == 0 and page.lru == -1 and page.cpu == 1
        assert m.mm.pages.info[page.pfn] >> MT_SHIFT == MT_UNMOVABLE
        assert not m.mm.pages.flags[page.pfn] & PG_HEAD  # alloc_page(): not compound
        assert m.mm.reclaim.lruvecs[0].on_list(page.pfn) == -1


def test_pinned_pages_stay_put_while_compaction_moves_the_movable_ones() -> None:
    """compact_memory migrates page cache out of the way but never a pipe buffer: the
    buffers keep their pfns and their owner, however sparse their pageblocks get."""
    m, _ = traced_machine()
    m.register_owner("cache", KIND_FILE, killable=False)
    pipes = PinnedParams(rate_per_s=1.0, pages=8)
    cache: list[Allocation] = []
    bufs: list[Allocation] = []
    for _ in range(256):  # interleaved in time, as in the oracle's recipe
        for _ in range(32):
            page = m.alloc_now("cache", FOLIO_GFP, 0, 0)
            assert page is not None
            cache.append(page)
        bufs += run_process(m, pipe_write(m, "pipes", pipes, 0))
    for page in cache[::2]:  # holes everywhere
        m.free(page)
    where = {id(b): b.pfn for b in bufs}
    moved: list[int] = []
    compaction = m.mm.reclaim.compaction
    record = compaction.moved

    def moved_and_recorded(old: int, new: int) -> None:
        moved.append(old)
        record(old, new)

    compaction.moved = moved_and_recorded
    migrated, _ = compaction.compact_node(0, 0)
    assert migrated > 0 and len(moved) == migrated == m.mm.vm["pgmigrate_success"]
    assert all(b.alive and b.pfn == where[id(b)] for b in bufs)
    assert not set(moved) & set(where.values())
    assert all(m.mm.pages.info[b.pfn] >> MT_SHIFT == MT_UNMOVABLE for b in bufs)
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})
