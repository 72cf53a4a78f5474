"""Importer for ``/proc/sys/fs/dentry-state`` and ``/proc/sys/fs/inode-state``.

The superblock shrinker, which frees the dentry and inode caches (the bulk of
``SReclaimable`` on most hosts), counts only the objects on its LRU lists: dentries
nobody holds and inodes nobody uses (``super_cache_count()``, fs/super.c, through
``list_lru_shrink_count()``, plus a filesystem's own ``nr_cached_objects()``).
``/proc/meminfo``'s ``SReclaimable`` counts every page of a ``SLAB_RECLAIM_ACCOUNT``
cache, in-use objects included, so it says how much slab is *accounted* reclaimable,
not how much a shrinker can free. These two files say that for dentries and inodes:

``dentry-state``
    ``nr_dentry nr_unused age_limit want_pages nr_negative dummy`` (6.1's ``struct
    dentry_stat_t``, fs/dcache.c; every kernel prints six numbers, older ones with
    ``dummy`` where ``nr_negative`` is now).
``inode-state``
    ``nr_inodes nr_unused`` and five dummies (``struct inodes_stat_t``, fs/inode.c; the
    second field is ``get_nr_inodes_unused()``).

SIMPLIFICATIONS: the share is of objects, not pages (an inode is larger than a dentry,
and an unused dentry keeps its inode off the inode LRU); the other
``SLAB_RECLAIM_ACCOUNT`` caches (``radix_tree_node``, freed by the workingset shadow
shrinker; ``buffer_head``, freed with page-cache reclaim) are taken to have the same
share.

:func:`read_fs_state` gives the share of those objects on the shrinkers' lists, which
:mod:`simcore.sim.initial_state` applies to ``SReclaimable``. Broken input raises
:class:`~simcore.formats.proctables.ProcParseError` naming the file, the line and what was
expected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from simcore.formats.procfs import read_text_file
from simcore.formats.proctables import MAX_DIGITS, ProcParseError, numbered_lines

DENTRY_STATE, INODE_STATE = "dentry-state", "inode-state"
"""Their names in a snapshot directory (as in ``/proc/sys/fs``)."""


@dataclass(frozen=True)
class CacheState:
    """One cache's objects: all of them, and those on its shrinker's LRU list."""

    total: int
    unused: int


def parse_state(text: str, path: str) -> CacheState:
    """Parse one of the two files: its first line's first two numbers.

    More unused objects than objects (the kernel sums the two per-CPU counters one
    after the other, without a lock) is read as all of them unused.

    Raises:
        ProcParseError: Not one line of at least two non-negative integers.
    """
    lines = [(n, line) for n, line in numbered_lines(text) if line.strip()]
    want = "one line of numbers, 'nr_total nr_unused ...' (a copy of /proc/sys/fs/*-state)"
    if len(lines) != 1:
        lineno = lines[1][0] if len(lines) > 1 else None
        raise ProcParseError(path, lineno, want, f"{len(lines)} lines")
    lineno, line = lines[0]
    fields = line.split()
    if len(fields) < 2 or not all(f.isascii() and f.isdigit() and len(f) <= MAX_DIGITS
                                  for f in fields):
        raise ProcParseError(path, lineno, want, line)
    total, unused = int(fields[0]), int(fields[1])
    return CacheState(total, min(unused, total))


def read_fs_state(snapshot_dir: Path) -> float | None:
    """The share of dentries and inodes on the shrinkers' lists, or None without the files.

    ``(dentry unused + inode unused) / (dentries + inodes)``: both files are needed (one
    alone says nothing of the other cache's pages); 0.0 when both caches are empty.
    """
    paths = [snapshot_dir / DENTRY_STATE, snapshot_dir / INODE_STATE]
    if not all(p.is_file() for p in paths):
        return None
    states = []
    for path in paths:
        try:
            text = read_text_file(path)
        except OSError as exc:
            raise ProcParseError(str(path), None, "a readable file", str(exc)) from None
        states.append(parse_state(text, str(path)))
    total = sum(s.total for s in states)
    return sum(s.unused for s in states) / total if total else 0.0
