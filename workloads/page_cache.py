"""The ``page_cache`` caller: a file set that grows, is re-read and is written.

Mirrors the buffered I/O paths of mm/filemap.c, mm/readahead.c, mm/truncate.c and
fs/fs-writeback.c of 6.1 for a filesystem without large folios (ext4 in 6.1):

- a read of a chunk (``filemap_read()`` → ``filemap_get_pages()``) marks every cached
  page of it accessed (``folio_mark_accessed()``: ``PG_referenced`` on the first read,
  activation on the next); a missing page starts a readahead of the missing pages of
  the chunk (``page_cache_ra_unbounded()``: order 0 with ``readahead_gfp_mask()`` =
  ``mapping_gfp_mask() | __GFP_NORETRY | __GFP_NOWARN``, under ``memalloc_nofs_save()``
  so ``__GFP_FS`` is off, and ``__GFP_COMP`` from ``filemap_alloc_folio()``: the oracle
  trace's ``GFP_NOFS|__GFP_HIGHMEM|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_HARDWALL|
  __GFP_MOVABLE``), which skips pages already cached and stops at the first failure;
  a page still missing then comes from ``filemap_create_folio()`` with the plain
  ``mapping_gfp_mask()`` (``GFP_HIGHUSER_MOVABLE``, plus ``__GFP_COMP``), and if that
  fails the read fails (``-ENOMEM``);
- a write of a chunk (``generic_perform_write()``) dirties every cached page of it
  (``folio_mark_dirty()``) and creates the missing ones with
  ``grab_cache_page_write_begin()``'s mask (``mapping_gfp_mask() | __GFP_WRITE``, plus
  ``__GFP_COMP``), dirty; it is not an access (no ``folio_mark_accessed()``). The file
  becomes dirty (``inode->dirtied_when``) at its first dirty page;
- every ``writeback_interval`` the flusher writes the files dirtied at least
  ``dirty_expire`` ago (``wb_check_old_data_flush()``, ``for_kupdate``): their pages
  become clean where they are on the LRU. Reclaim writes a dirty page it meets itself
  (see :mod:`simcore.mm.vmscan`);
- an unlinked file's pages are freed (``truncate_inode_pages_final()``; dirty pages
  are cancelled, not written).

All pages are MOVABLE and on the file LRU (``KIND_FILE``): reclaim frees clean ones,
writes dirty ones first, and a page it took (``handle.gone``) is read in again by the
next read that reaches it (a refault).

SIMPLIFICATIONS: reads and writes are whole, chunk-aligned pages (no partial-page
writes that must read first); the readahead window is the chunk (no ramp-up, no async
``PG_readahead`` lookahead); writeback completes at once and only the periodic (kupdate) writeback
runs: no background writeback above ``dirty_background_ratio`` and no
``balance_dirty_pages()`` throttling; ``__GFP_WRITE``'s dirty-node spreading is not
modelled by the allocator; no xarray node (slab) allocations; the page cache belongs
to no process, so the OOM killer never picks its owner.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Generator, Iterator
from typing import Any

import numpy as np

from simcore.config.types import WorkloadConfig
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE
from simcore.mm.lru import KIND_FILE
from simcore.sim.machine import LRU_DIRTY, Allocation, Machine
from workloads.page_cache_params import PageCacheParams
from workloads.stats import caller_stats
from workloads.synthetic import FOREVER, _lifetimes, issuing_cpus, poisson_arrivals

MAPPING_GFP = int(GFP_HIGHUSER_MOVABLE)
"""``mapping_gfp_mask()`` of a regular file (``inode_init_always()``)."""
FOLIO_GFP = MAPPING_GFP | int(GFP.COMP)
"""``filemap_create_folio()``: ``filemap_alloc_folio(mapping_gfp_mask())``."""
READAHEAD_GFP = (MAPPING_GFP | int(GFP.NORETRY | GFP.NOWARN | GFP.COMP)) & ~int(GFP.FS)
"""``page_cache_ra_unbounded()``: ``readahead_gfp_mask()`` under ``memalloc_nofs_save()``."""
WRITE_BEGIN_GFP = MAPPING_GFP | int(GFP.WRITE | GFP.COMP)
"""``grab_cache_page_write_begin()``: ``FGP_WRITE`` adds ``__GFP_WRITE``."""
NEVER = float("inf")


class CachedFile:
    """One file of the set: its page cache (``address_space``) and dirty state.

    Attributes:
        pages: Page index -> its page-cache page, or None (never read, or reclaimed).
        dirty: Indices of the pages dirtied since the last writeback.
        dirtied_ns: ``inode->dirtied_when`` (-1: clean).
    """

    __slots__ = ("pages", "dirty", "dirtied_ns")

    def __init__(self) -> None:
        self.pages: list[Allocation | None] = []
        self.dirty: set[int] = set()
        self.dirtied_ns = -1

    def lookup(self, index: int) -> Allocation | None:
        """``filemap_get_folio()``: the cached page at ``index`` (None if reclaimed)."""
        page = self.pages[index]
        if page is not None and page.gone:  # reclaim took it (and wrote it if dirty)
            self.pages[index] = None
            self.dirty.discard(index)
            return None
        return page


class PageCacheIO:
    """The context of one workload's I/O: who issues it, where, and its counters."""

    __slots__ = ("machine", "owner", "nid", "stats")

    def __init__(self, machine: Machine, owner: str, nid: int | None,
                 stats: Counter[str]) -> None:
        self.machine = machine
        self.owner = owner
        self.nid = nid
        self.stats = stats


# -- mm/readahead.c, mm/filemap.c -----------------------------------------------------------
def page_cache_ra_unbounded(io: PageCacheIO, f: CachedFile, start: int, end: int,
                            cpu: int) -> Generator[Any, Any, None]:
    """``page_cache_ra_unbounded()``: read the missing pages of ``[start, end)`` ahead.

    Pages already cached are skipped; the first page it cannot get ends the readahead.
    """
    machine = io.machine
    for index in range(start, end):
        if f.lookup(index) is not None:
            continue
        page = yield from machine.alloc(io.owner, READAHEAD_GFP, 0, cpu, io.nid)
        if page is None:
            return
        f.pages[index] = page
        io.stats["readahead_pages"] += 1


def filemap_read(io: PageCacheIO, f: CachedFile, start: int, end: int,
                 cpu: int) -> Generator[Any, Any, bool]:
    """``filemap_read()`` of pages ``[start, end)``: False if it failed with ``-ENOMEM``.

    Each page read is marked accessed (``folio_mark_accessed()``).
    """
    reclaim = io.machine.mm.reclaim
    for index in range(start, end):
        page = f.lookup(index)
        if page is None:  # filemap_get_pages(): page_cache_sync_readahead()
            yield from page_cache_ra_unbounded(io, f, index, end, cpu)
            page = f.lookup(index)
        if page is None:
            page = yield from io.machine.alloc(io.owner, FOLIO_GFP, 0, cpu, io.nid)
            if page is None:  # filemap_create_folio(): -ENOMEM
                return False
            f.pages[index] = page
        if reclaim.folio_mark_accessed(page.pfn):
            io.stats["activated"] += 1
    return True


def generic_perform_write(io: PageCacheIO, f: CachedFile, start: int, end: int,
                          cpu: int) -> Generator[Any, Any, bool]:
    """``generic_perform_write()`` of pages ``[start, end)``: False on ``-ENOMEM``.

    A cached page is dirtied in place; a missing one is created dirty
    (``grab_cache_page_write_begin()``).
    """
    machine = io.machine
    reclaim = machine.mm.reclaim
    for index in range(start, end):
        page = f.lookup(index)
        if page is None:
            page = yield from machine.alloc(io.owner, WRITE_BEGIN_GFP, 0, cpu, io.nid,
                                            LRU_DIRTY)
            if page is None:
                return False
            f.pages[index] = page
        else:
            reclaim.folio_set_dirty(page.pfn, True)
        f.dirty.add(index)
        if f.dirtied_ns < 0:  # __mark_inode_dirty(I_DIRTY_PAGES)
            f.dirtied_ns = int(machine.env.now)
    return True


def writeback_expired(io: PageCacheIO, files: list[CachedFile], expire_ns: int) -> int:
    """``wb_check_old_data_flush()``: write every file dirtied ``expire_ns`` ago or more.

    Returns the pages written (they become clean in place).
    """
    now = int(io.machine.env.now)
    reclaim = io.machine.mm.reclaim
    written = 0
    for f in files:
        if f.dirtied_ns < 0 or f.dirtied_ns + expire_ns > now:
            continue
        for index in sorted(f.dirty):
            page = f.lookup(index)
            if page is not None and reclaim.folio_set_dirty(page.pfn, False):
                written += 1
        f.dirty.clear()
        f.dirtied_ns = -1
    return written


def truncate_inode_pages(machine: Machine, f: CachedFile) -> int:
    """``truncate_inode_pages_final()``: free every cached page; returns how many."""
    freed = 0
    for index in range(len(f.pages)):
        page = f.lookup(index)
        if page is not None:
            machine.free(page)
            freed += 1
    f.pages.clear()
    f.dirty.clear()
    f.dirtied_ns = -1
    return freed


# -- the workload -------------------------------------------------------------------------
class FileSet:
    """The workload's files, their total length, and when each is unlinked."""

    __slots__ = ("files", "length", "unlinks", "current")

    def __init__(self) -> None:
        self.files: list[CachedFile] = []
        self.length = 0
        self.unlinks: list[tuple[int, int, CachedFile]] = []
        """Heap of ``(unlink_ns, sequence, file)``."""
        self.current: CachedFile | None = None
        """The file that growth appends to (None: start a new one)."""

    def pick_chunk(self, chunk: int,
                   rng: np.random.Generator) -> tuple[CachedFile, int, int] | None:
        """A chunk-aligned range at a uniformly drawn page of the set (None: empty)."""
        if not self.length:
            return None
        at = int(rng.integers(0, self.length))
        for f in self.files:
            if at < len(f.pages):
                start = at - at % chunk
                return f, start, min(start + chunk, len(f.pages))
            at -= len(f.pages)
        raise AssertionError("file set length out of step with its files")

    def unlink(self, machine: Machine, f: CachedFile) -> int:
        """Remove ``f`` from the set and free its pages."""
        self.files.remove(f)
        self.length -= len(f.pages)
        if self.current is f:
            self.current = None
        return truncate_inode_pages(machine, f)


def _grow(io: PageCacheIO, p: PageCacheParams, fs: FileSet, cpu: int,
          lifetimes: Iterator[int]) -> Generator[Any, Any, None]:
    """One growth chunk: extend the current file (or a new one) and read or write it."""
    env = io.machine.env
    f = fs.current
    if f is None:
        f = fs.current = CachedFile()
        fs.files.append(f)
        io.stats["files"] += 1
        life = next(lifetimes)
        if life != FOREVER:
            heapq.heappush(fs.unlinks, (int(env.now) + life, io.stats["files"], f))
    start = len(f.pages)
    end = min(start + p.chunk_pages, p.file_pages, start + p.size_pages - fs.length)
    f.pages.extend([None] * (end - start))
    fs.length += end - start
    if end == p.file_pages:
        fs.current = None
    io.stats["grown_pages"] += end - start
    if p.grow_by == "write":
        ok = yield from generic_perform_write(io, f, start, end, cpu)
    else:
        ok = yield from filemap_read(io, f, start, end, cpu)
    if not ok:
        io.stats[f"{p.grow_by}_failed"] += 1


def page_cache_workload(machine: Machine, spec: WorkloadConfig,
                        rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: growth, re-reads, writes, periodic writeback and unlinks.

    One process merges the streams, in time order (unlinks first at equal times, then
    writeback, growth, re-reads and writes). It ends when growth has stopped
    (``max_requests``) and every file is unlinked. ``summary.json`` ``callers`` counts
    ``files``, ``grown_pages``, ``readahead_pages``, ``activated``, ``reads``,
    ``writes``, ``read_failed``/``write_failed``, ``written_back`` and
    ``truncated_pages``.
    """
    p: PageCacheParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, KIND_FILE, killable=False)
    io = PageCacheIO(machine, name, p.nid, caller_stats(machine, name, "page_cache"))
    stats = io.stats
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    chunk = ((p.chunk_pages, 1.0),)
    streams = {kind: poisson_arrivals(rate, chunk, cpus, rng) for kind, rate in (
        ("grow", p.rate_per_s), ("read", p.reread_rate_per_s), ("write", p.write_rate_per_s))
        if rate is not None}
    lifetimes = _lifetimes(p.lifetime, rng)
    fs = FileSet()
    if p.start_ns:
        yield env.timeout(p.start_ns)
    now = int(env.now)
    due: dict[str, tuple[int, int]] = {}  # stream -> (time, cpu) of its next arrival
    for kind, stream in streams.items():
        gap, _, cpu = next(stream)
        due[kind] = (now + gap, cpu)
    if p.writeback_interval_ns:
        due["flush"] = (now + p.writeback_interval_ns, 0)
    grown = 0
    while "grow" in due or fs.files:
        at, kind, cpu = _next_event(due, fs)
        if at == NEVER:
            break
        if at > env.now:
            yield env.timeout(int(at) - int(env.now))
        if kind == "unlink":
            stats["truncated_pages"] += fs.unlink(machine, heapq.heappop(fs.unlinks)[2])
            continue
        if kind == "flush":
            stats["written_back"] += writeback_expired(io, fs.files, p.dirty_expire_ns)
            due[kind] = (int(env.now) + p.writeback_interval_ns, 0)
            continue
        if kind == "grow":
            if fs.length < p.size_pages:
                yield from _grow(io, p, fs, cpu, lifetimes)
                grown += 1
            if p.max_requests is not None and grown >= p.max_requests:
                del due["grow"]
                continue
        else:
            yield from _reread_or_write(io, p, fs, kind, cpu, rng)
        gap, _, cpu = next(streams[kind])
        due[kind] = (int(env.now) + gap, cpu)
    machine.owner_exit(name)


def _next_event(due: dict[str, tuple[int, int]], fs: FileSet) -> tuple[float, str, int]:
    """``(time, kind, cpu)`` of the workload's next event (time NEVER: none)."""
    kind = min(due, key=lambda k: (due[k][0], _ORDER[k])) if due else ""
    at, cpu = due[kind] if kind else (NEVER, 0)
    if fs.unlinks and fs.unlinks[0][0] <= at:
        return fs.unlinks[0][0], "unlink", 0
    return at, kind, cpu


_ORDER = {"flush": 0, "grow": 1, "read": 2, "write": 3}


def _reread_or_write(io: PageCacheIO, p: PageCacheParams, fs: FileSet, kind: str, cpu: int,
                     rng: np.random.Generator) -> Generator[Any, Any, None]:
    """A chunk re-read or overwrite at a random place of the set."""
    picked = fs.pick_chunk(p.chunk_pages, rng)
    if picked is None:
        return
    f, start, end = picked
    io.stats[f"{kind}s"] += 1
    if kind == "read":
        ok = yield from filemap_read(io, f, start, end, cpu)
    else:
        ok = yield from generic_perform_write(io, f, start, end, cpu)
    if not ok:
        io.stats[f"{kind}_failed"] += 1
