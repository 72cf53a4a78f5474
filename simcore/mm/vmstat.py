"""``/proc/vmstat`` counters.

Counter names are the literal ``/proc/vmstat`` names of Linux 6.1 where the kernel has
the event, and they are printed in the order of ``vmstat_text[]`` in mm/vmstat.c (zone
stat items, NUMA event items, node stat items, then ``enum vm_event_item`` of
include/linux/vm_event_item.h) for the oracle kernel's config (CONFIG_NUMA,
CONFIG_ZONE_DMA, CONFIG_ZONE_DMA32 and CONFIG_ZONE_DEVICE on, no CONFIG_HIGHMEM). A few
counters exist only in the simulator; they are listed in :data:`SIM_ONLY`. The text of
``/proc/vmstat`` (every line 6.1 prints, the ones the model does not keep as 0) and of
the simulator-only counters is made by :mod:`simcore.formats.procstate`.

Counters the model cannot raise stay 0, as they would on a kernel that never took the
path: ``pgalloc_device`` (ZONE_DEVICE pages never come from the buddy allocator),
``allocstall_device`` and ``pgskip_device`` (6.1 counts them per zone index up to
ZONE_MOVABLE, so they are 0 on real hosts too), ``pgscan_direct_throttle`` (the
pfmemalloc throttle is not modelled), and
``numa_interleave`` (6.1 counts it in alloc_page_interleave() for MPOL_INTERLEAVE
allocations; the model has no memory policies).
"""

from __future__ import annotations

import numpy as np

VMSTAT_ZONE_SUFFIXES = ("dma", "dma32", "normal", "movable", "device")
"""``TEXTS_FOR_ZONES()`` of the oracle kernel: every zone type, ZONE_DEVICE included
(the model has no ZONE_DEVICE, but the kernel prints its counters)."""

NUMA_EVENTS: tuple[str, ...] = (
    "numa_hit",
    "numa_miss",
    "numa_foreign",
    "numa_interleave",
    "numa_local",
    "numa_other",
)
"""``enum numa_stat_item`` (CONFIG_NUMA), printed right after the zone stat items."""

KERNEL_EVENTS: tuple[str, ...] = (
    *NUMA_EVENTS,
    "pswpout",
    *(f"pgalloc_{zone}" for zone in VMSTAT_ZONE_SUFFIXES),
    *(f"allocstall_{zone}" for zone in VMSTAT_ZONE_SUFFIXES),
    *(f"pgskip_{zone}" for zone in VMSTAT_ZONE_SUFFIXES),
    "pgfree",
    "pgactivate",
    "pgdeactivate",
    "pgrefill",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgscan_direct_throttle",
    "pgscan_anon",
    "pgscan_file",
    "pgsteal_anon",
    "pgsteal_file",
    "slabs_scanned",
    "kswapd_low_wmark_hit_quickly",
    "kswapd_high_wmark_hit_quickly",
    "pageoutrun",
    "pgrotated",
    "drop_pagecache",
    "drop_slab",
    "oom_kill",
    "pgmigrate_success",
    "pgmigrate_fail",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "compact_stall",
    "compact_fail",
    "compact_success",
    "compact_daemon_wake",
    "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail",
    "thp_fault_alloc",
    "thp_fault_fallback",
)
"""The kernel event counters the model keeps, in ``vmstat_text[]`` order (the zone and
node items come from the zones and LRU lists: :mod:`simcore.formats.procstate`)."""

SIM_ONLY: tuple[str, ...] = (
    "pgalloc_fail",  # __alloc_pages() calls that returned NULL
    "extfrag_steal",  # __rmqueue_fallback() steals (mm_page_alloc_extfrag events)
    "extfrag_fragmenting",  # steals of a block smaller than a pageblock
    "extfrag_pageblock_claimed",  # steals after which the pageblock changed owner
    "kswapd_wakeup",  # wakeup_kswapd() calls that woke kswapd (mm_vmscan_wakeup_kswapd)
    "kcompactd_wakeup",  # wakeup_kcompactd() calls that woke kcompactd (its tracepoint)
    "highatomic_reserved",  # reserve_highatomic_pageblock() conversions
    "bad_page",  # "BUG: Bad page state" reports
    "bad_page_leaked_pages",  # pages leaked because a free, drain or allocation check failed
    "free_order_leaked_pages",  # pages leaked silently by a free of too small an order
    "alloc_order_warn",  # __alloc_pages() with order >= MAX_ORDER (NULL, no pgalloc_fail)
)
COUNTERS: tuple[str, ...] = KERNEL_EVENTS + SIM_ONLY
"""Every counter the model keeps; a counter's index here is its ``enum`` value."""
VMSTAT_INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTERS)}
"""Counter name -> index in :attr:`VmStat.v` (the model's ``enum vm_event_item``)."""


class VmStat:
    """Event counters in an int64 array indexed by :data:`VMSTAT_INDEX`.

    The hot paths bump ``vm.v[index]`` (``count_vm_events()``); everything else reads
    counters by name (``vm["pgfree"]``) or as a dict.
    """

    def __init__(self) -> None:
        self.values = np.zeros(len(COUNTERS), dtype=np.int64)
        self.v = self.values.data

    def __getitem__(self, name: str) -> int:
        return int(self.v[VMSTAT_INDEX[name]])

    def add(self, name: str, delta: int) -> None:
        """Add ``delta`` to the counter ``name`` (off the hot paths)."""
        self.v[VMSTAT_INDEX[name]] += delta

    def as_dict(self) -> dict[str, int]:
        """A copy of every counter."""
        return {name: int(value) for name, value in zip(COUNTERS, self.values, strict=True)}
