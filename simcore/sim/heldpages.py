"""Order-0 pages held by owners without one :class:`~simcore.sim.machine.Allocation` each.

A run that starts from a real host's state (:mod:`simcore.sim.initial_state`) gives the
host's memory to a few owners (page cache, anonymous memory, slab, the kernel): up to
millions of order-0 pages. A handle per page would cost a Python object and a reverse-map
entry per page; instead the owner of each such page is one int16 per pfn here
(``Owner.idx``, -1: none). The machine consults it where it consults ``owner_of``: when
reclaim frees a page (:meth:`pop`), when compaction migrates one (:meth:`move`) and when
the OOM killer kills an owner (:meth:`pfns_of`). Nobody frees these pages explicitly: they
go only by reclaim, migration's free of the old page, or the OOM killer.
"""

from __future__ import annotations

import numpy as np

NO_OWNER = -1


class HeldPages:
    """The owner (``Owner.idx``) of every order-0 page held without a handle."""

    def __init__(self, nr_pages: int) -> None:
        self.owner_np = np.full(nr_pages, NO_OWNER, dtype=np.int16)
        self.owner = self.owner_np.data

    def hold(self, pfns: np.ndarray, idx: int) -> None:
        """Record ``idx`` as the owner of the order-0 pages ``pfns``."""
        self.owner_np[pfns] = idx

    def pop(self, pfn: int) -> int:
        """The owner of ``pfn``, which it no longer holds (KeyError if nobody held it)."""
        idx = int(self.owner[pfn])
        if idx == NO_OWNER:
            raise KeyError(pfn)
        self.owner[pfn] = NO_OWNER
        return idx

    def move(self, old_pfn: int, new_pfn: int) -> None:
        """The page at ``old_pfn`` was migrated to ``new_pfn`` (the owner follows it)."""
        self.owner[new_pfn] = self.pop(old_pfn)

    def pfns_of(self, idx: int) -> np.ndarray:
        """The pfns ``idx`` holds, ascending."""
        return np.flatnonzero(self.owner_np == idx)

    def count(self, idx: int) -> int:
        """Pages ``idx`` holds."""
        return int(np.count_nonzero(self.owner_np == idx))
