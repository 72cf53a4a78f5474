"""The page-cache caller (mm/filemap.c, mm/readahead.c, fs/fs-writeback.c of 6.1)."""

from __future__ import annotations

from collections import Counter

from conftest import run_process, traced_machine

from simcore.mm.constants import ZoneType
from simcore.mm.gfp import GFP_KERNEL, parse_gfp
from simcore.mm.lru import (
    DIRTY,
    KIND_FILE,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_FILE,
    PG_REFERENCED,
)
from simcore.mm.vmscan import ScanControl
from simcore.sim.machine import Allocation, Machine
from workloads.page_cache import (
    FOLIO_GFP,
    READAHEAD_GFP,
    WRITE_BEGIN_GFP,
    CachedFile,
    PageCacheIO,
    filemap_read,
    generic_perform_write,
    truncate_inode_pages,
    writeback_expired,
)


def _io(m: Machine) -> PageCacheIO:
    m.register_owner("cache", KIND_FILE, killable=False)
    return PageCacheIO(m, "cache", None, Counter())


def _file(nr_pages: int) -> CachedFile:
    f = CachedFile()
    f.pages.extend([None] * nr_pages)
    return f


def _fill(m: Machine, owner: str) -> None:
    """Allocate unreclaimable pages until the MIN watermark (clearing the boosts)."""
    while True:
        while m.alloc_now(owner, 0, 0, 0) is not None:
            pass
        if not any(z.watermark_boost for z in m.mm.zones):
            return
        for z in m.mm.zones:
            z.watermark_boost = 0


def _where(m: Machine, page: Allocation) -> tuple[int, int]:
    """``(list, packed entry)`` of a page on the LRU."""
    lv = m.mm.reclaim.lruvecs[0]
    where = lv.on_list(page.pfn)
    return where, int(lv.meta[lv.lru[page.pfn]]) & 0xFFFF


def _shrink_inactive_file(m: Machine, nr: int, gfp: int = int(GFP_KERNEL)) -> ScanControl:
    """One ``shrink_inactive_list()`` chunk of the file LRU by a direct reclaimer."""
    sc = ScanControl(nr, gfp, int(ZoneType.NORMAL), 0, kswapd=False, cpu=0)
    m.mm.reclaim.shrink_inactive_list(nr, m.mm.reclaim.lruvecs[0], sc, LRU_INACTIVE_FILE)
    return sc


def test_masks_are_the_kernels_and_match_the_oracle_trace() -> None:
    # The oracle's fragmentation run (ext4, 6.1) traced 103,168 readahead pages as this.
    assert READAHEAD_GFP == int(parse_gfp(
        "GFP_NOFS|__GFP_HIGHMEM|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL|"
        "__GFP_MOVABLE"))
    assert FOLIO_GFP == int(parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_COMP"))
    assert WRITE_BEGIN_GFP == int(parse_gfp("GFP_HIGHUSER_MOVABLE|__GFP_WRITE|__GFP_COMP"))


def test_a_first_read_reads_ahead_and_marks_every_page_referenced() -> None:
    m, tracer = traced_machine()
    io = _io(m)
    f = _file(32)
    assert run_process(m, filemap_read(io, f, 0, 32, 0))
    allocs = [(a[2], a[3]) for a in tracer.named("mm_page_alloc")]
    assert allocs == [(0, READAHEAD_GFP)] * 32
    for page in f.pages:
        assert page is not None
        where, packed = _where(m, page)
        assert where == LRU_INACTIVE_FILE and packed & PG_REFERENCED and not packed & DIRTY
    assert io.stats["readahead_pages"] == 32 and m.mm.vm["pgactivate"] == 0


def test_a_second_read_activates_and_reclaim_frees_only_the_pages_read_once() -> None:
    """folio_mark_accessed(): the re-read pages move to the active list; a reclaim pass
    over the inactive list frees the others (referenced once, clean:
    FOLIOREF_RECLAIM_CLEAN) and cannot reach the re-read ones."""
    m, _ = traced_machine()
    io = _io(m)
    f = _file(64)
    run_process(m, filemap_read(io, f, 0, 64, 0))
    run_process(m, filemap_read(io, f, 0, 32, 0))
    reread = f.pages[:32]
    once = f.pages[32:]
    for p in reread:  # folio_activate(), PG_referenced cleared
        assert p is not None and _where(m, p)[0] == LRU_ACTIVE_FILE
        assert not _where(m, p)[1] & PG_REFERENCED
    assert m.mm.vm["pgactivate"] == 32 and io.stats["activated"] == 32
    sc = _shrink_inactive_file(m, 64)
    assert sc.nr_reclaimed == 32
    assert all(p is not None and p.gone for p in once)
    assert all(p is not None and p.alive for p in reread)
    # a read after reclaim reads the pages in again (refault)
    assert run_process(m, filemap_read(io, f, 32, 64, 0))
    assert all(p is not None and p.alive for p in f.pages)


def test_reclaim_frees_clean_cache_and_writes_dirty_cache_before_freeing_it() -> None:
    """shrink_folio_list(): clean pages are freed at once; a dirty page is written and
    rotated (pgrotated), and only the next pass frees it. A dirty page that was
    referenced is kept unwritten (FOLIOREF_RECLAIM_CLEAN) and loses the reference."""
    m, _ = traced_machine()
    io = _io(m)
    clean, dirty, referenced_dirty = _file(16), _file(16), _file(16)
    run_process(m, generic_perform_write(io, dirty, 0, 16, 0))
    run_process(m, filemap_read(io, referenced_dirty, 0, 16, 0))
    run_process(m, generic_perform_write(io, referenced_dirty, 0, 16, 0))
    run_process(m, filemap_read(io, clean, 0, 16, 0))
    lv = m.mm.reclaim.lruvecs[0]
    assert sum(lv.nr_dirty_zone) == 32
    sc = _shrink_inactive_file(m, 48)
    assert sc.nr_reclaimed == 16 and all(p is not None and p.gone for p in clean.pages)
    assert all(p is not None and p.alive for p in dirty.pages + referenced_dirty.pages)
    assert m.mm.vm["pgrotated"] == 16  # only the unreferenced dirty pages were written
    assert sum(lv.nr_dirty_zone) == 16
    for p in referenced_dirty.pages:
        assert p is not None and _where(m, p)[1] & (DIRTY | PG_REFERENCED) == DIRTY
    sc = _shrink_inactive_file(m, 32)
    assert all(p is not None and p.gone for p in dirty.pages)  # written: now freed
    assert m.mm.vm["pgrotated"] == 32  # and the others written on this pass


def test_a_write_dirties_cached_pages_in_place_and_creates_missing_ones_dirty() -> None:
    m, tracer = traced_machine()
    io = _io(m)
    f = _file(8)
    run_process(m, filemap_read(io, f, 0, 4, 0))
    m.env.run(until=1_000)
    run_process(m, generic_perform_write(io, f, 0, 8, 0))
    allocs = [a[3] for a in tracer.named("mm_page_alloc")]
    assert allocs == [READAHEAD_GFP] * 4 + [WRITE_BEGIN_GFP] * 4
    assert f.dirty == set(range(8)) and f.dirtied_ns == 1_000
    assert sum(m.mm.reclaim.lruvecs[0].nr_dirty_zone) == 8
    for p in f.pages[:4]:  # dirtied where they were: still referenced, inactive
        assert p is not None and _where(m, p)[0] == LRU_INACTIVE_FILE


def test_the_flusher_writes_files_dirtied_dirty_expire_ago() -> None:
    m, _ = traced_machine()
    io = _io(m)
    old, new = _file(4), _file(4)
    run_process(m, generic_perform_write(io, old, 0, 4, 0))
    m.env.run(until=20)
    run_process(m, generic_perform_write(io, new, 0, 4, 0))
    m.env.run(until=100)
    assert writeback_expired(io, [old, new], 100) == 4  # old: dirtied at 0, 100 ago
    assert old.dirtied_ns == -1 and not old.dirty and new.dirtied_ns == 20
    assert sum(m.mm.reclaim.lruvecs[0].nr_dirty_zone) == 4
    m.env.run(until=120)
    assert writeback_expired(io, [old, new], 100) == 4
    assert sum(m.mm.reclaim.lruvecs[0].nr_dirty_zone) == 0


def test_a_failed_readahead_falls_back_to_filemap_create_folio() -> None:
    """filemap_get_pages(): readahead (__GFP_NORETRY) gives up after one reclaim round;
    the page being read then comes from filemap_create_folio() with the plain mapping
    mask, which may OOM-kill; the next page starts a new readahead."""
    m, tracer = traced_machine()
    io = _io(m)
    _fill(m, "victim")  # unreclaimable, killable
    f = _file(4)
    assert run_process(m, filemap_read(io, f, 0, 4, 0))
    allocs = [(a[1] >= 0, a[3]) for a in tracer.named("mm_page_alloc")
              if a[3] != 0]
    assert allocs[:2] == [(False, READAHEAD_GFP), (True, FOLIO_GFP)]
    assert allocs[2:] == [(True, READAHEAD_GFP)] * 3
    assert m.mm.vm["oom_kill"] == 1 and m.oom_killed("victim")


def test_truncate_frees_every_cached_page_dirty_ones_included() -> None:
    m, _ = traced_machine()
    io = _io(m)
    f = _file(40)
    run_process(m, filemap_read(io, f, 0, 20, 0))
    run_process(m, generic_perform_write(io, f, 20, 40, 0))
    free_before = sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones)
    assert truncate_inode_pages(m, f) == 40
    assert sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones) == free_before + 40
    assert m.owners["cache"].pages == 0 and not m.owner_of
    assert sum(m.mm.reclaim.lruvecs[0].nr_dirty_zone) == 0
