"""The compaction interface the slow path, reclaim and kswapd call.

Compaction (mm/compaction.c: the scanners, migration, deferral, kcompactd) is the next
issue. Until it lands, every entry point answers as a kernel whose compaction finds
nothing to do: ``compaction_suitable()`` says COMPACT_SKIPPED, direct compaction returns
COMPACT_SKIPPED without counting ``compact_stall``, and a kcompactd wakeup is only
counted (simulator-only ``kcompactd_wakeup``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simcore.mm.zone import Zone

COMPACT_SKIPPED = "skipped"
COMPACT_DEFERRED = "deferred"
COMPACT_SUCCESS = "success"
COMPACT_COMPLETE = "complete"


class Compaction:
    """Compaction as seen from reclaim and the allocator (nothing is compacted yet)."""

    def __init__(self) -> None:
        self.kcompactd_wakeups = 0

    def suitable(self, zone: Zone, order: int, highest_zoneidx: int) -> str:
        """``compaction_suitable()``."""
        return COMPACT_SKIPPED

    def try_to_compact_pages(self, gfp: int, order: int, alloc_flags: int,
                             priority: int) -> tuple[str, int]:
        """``try_to_compact_pages()``: ``(result, cost_ns)``."""
        return COMPACT_SKIPPED, 0

    def wakeup_kcompactd(self, nid: int, order: int, highest_zoneidx: int) -> None:
        """``wakeup_kcompactd()``."""
        self.kcompactd_wakeups += 1
