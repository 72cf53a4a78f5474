"""``/proc/vmstat`` counters.

Counter names are the literal ``/proc/vmstat`` names of Linux 6.1 (``vmstat_text[]``
in mm/vmstat.c) where the kernel has the event. A few counters exist only in the
simulator; they are listed in :data:`SIM_ONLY` and printed after the kernel ones.
"""

from __future__ import annotations

from simcore.constants import ZONE_NAMES

KERNEL_EVENTS: tuple[str, ...] = (
    *(f"pgalloc_{z.lower()}" for z in ZONE_NAMES),
    "pgfree",
    *(f"allocstall_{z.lower()}" for z in ZONE_NAMES),
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "numa_local",
    "numa_other",
    "compact_stall",
    "compact_fail",
    "compact_success",
    "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail",
)
SIM_ONLY: tuple[str, ...] = (
    "pgalloc_fail",  # __alloc_pages() calls that returned NULL
    "extfrag_steal",  # __rmqueue_fallback() steals (mm_page_alloc_extfrag events)
    "extfrag_fragmenting",  # steals of a block smaller than a pageblock
    "extfrag_pageblock_claimed",  # steals after which the pageblock changed owner
    "kswapd_wakeup",  # wakeup_kswapd() calls that would wake kswapd
    "highatomic_reserved",  # reserve_highatomic_pageblock() conversions
    "bad_page",  # "BUG: Bad page state" reports
    "bad_page_leaked_pages",  # pages leaked because a free failed its checks
    "alloc_order_warn",  # __alloc_pages() with order >= MAX_ORDER (NULL, no pgalloc_fail)
)


class VmStat:
    """Event counters, as a plain dict keyed by the vmstat name."""

    __slots__ = ("ev",)

    def __init__(self) -> None:
        self.ev: dict[str, int] = dict.fromkeys(KERNEL_EVENTS + SIM_ONLY, 0)

    def __getitem__(self, name: str) -> int:
        return self.ev[name]

    def as_dict(self) -> dict[str, int]:
        """A copy of every counter."""
        return dict(self.ev)

    def format(self, nr_free_pages: int) -> str:
        """Text in ``/proc/vmstat`` layout (``name value`` lines).

        The simulator-only counters follow a ``# simulator-only`` comment line so that
        a ``diff`` against a real host lines up.
        """
        lines = [f"nr_free_pages {nr_free_pages}"]
        lines += [f"{k} {self.ev[k]}" for k in KERNEL_EVENTS]
        lines.append("# simulator-only")
        lines += [f"{k} {self.ev[k]}" for k in SIM_ONLY]
        return "\n".join(lines) + "\n"
