"""The names and layout of Linux 6.1's ``/proc/vmstat``: mirrors ``vmstat_text[]``.

``vmstat_text[]`` in mm/vmstat.c lists the zone stat items (``enum zone_stat_item``),
the NUMA events (``enum numa_stat_item``), the node stat items (``enum
node_stat_item``), the two writeback thresholds and the VM events (``enum
vm_event_item`` of include/linux/vm_event_item.h), each section cut by ``#ifdef``. The
tuples here are those names for the oracle kernel's config (Debian's 6.1 x86_64:
CONFIG_ZSMALLOC, NUMA, SWAP, NUMA_BALANCING, MIGRATION, COMPACTION, HUGETLB_PAGE,
TRANSPARENT_HUGEPAGE with PUD support, MEMORY_BALLOON with BALLOON_COMPACTION, KSM,
ZSWAP, ZONE_DMA, ZONE_DMA32 and ZONE_DEVICE on; CMA, HIGHMEM, DEBUG_TLBFLUSH and
SHADOW_CALL_STACK off), in its order, which a real ``/proc/vmstat`` of that kernel
shows (tests/data/oracle). vmstat_show() prints ``name value`` for each, then the
deprecated ``nr_unstable 0``.

The same tuples name the lines of ``/proc/zoneinfo``: its ``per-node stats`` block
holds :data:`NODE_STAT_ITEMS`, and a populated zone's counters are
:data:`ZONE_STAT_ITEMS` then :data:`NUMA_EVENT_ITEMS` (zoneinfo_show_print()).

This module is pure: names and text, no model state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

ZONE_STAT_ITEMS: tuple[str, ...] = (
    "nr_free_pages", "nr_zone_inactive_anon", "nr_zone_active_anon",
    "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable",
    "nr_zone_write_pending", "nr_mlock", "nr_bounce", "nr_zspages", "nr_free_cma",
)
"""``enum zone_stat_item`` (``nr_zspages``: CONFIG_ZSMALLOC)."""

NUMA_EVENT_ITEMS: tuple[str, ...] = (
    "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other",
)
"""``enum numa_stat_item`` (CONFIG_NUMA)."""

NODE_STAT_ITEMS: tuple[str, ...] = (
    "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
    "nr_unevictable", "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon",
    "nr_isolated_file", "workingset_nodes", "workingset_refault_anon",
    "workingset_refault_file", "workingset_activate_anon", "workingset_activate_file",
    "workingset_restore_anon", "workingset_restore_file", "workingset_nodereclaim",
    "nr_anon_pages", "nr_mapped", "nr_file_pages", "nr_dirty", "nr_writeback",
    "nr_writeback_temp", "nr_shmem", "nr_shmem_hugepages", "nr_shmem_pmdmapped",
    "nr_file_hugepages", "nr_file_pmdmapped", "nr_anon_transparent_hugepages",
    "nr_vmscan_write", "nr_vmscan_immediate_reclaim", "nr_dirtied", "nr_written",
    "nr_throttled_written", "nr_kernel_misc_reclaimable", "nr_foll_pin_acquired",
    "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages",
    "nr_sec_page_table_pages", "nr_swapcached", "pgpromote_success", "pgpromote_candidate",
)
"""``enum node_stat_item`` (``nr_swapcached``: CONFIG_SWAP; ``pgpromote_*``:
CONFIG_NUMA_BALANCING)."""

WRITEBACK_STAT_ITEMS: tuple[str, ...] = ("nr_dirty_threshold", "nr_dirty_background_threshold")
"""``enum writeback_stat_item``: global_dirty_limits()."""

ZONE_SUFFIXES: tuple[str, ...] = ("dma", "dma32", "normal", "movable", "device")
"""``TEXTS_FOR_ZONES()``: every zone type of the config, ZONE_DEVICE included."""

VM_EVENT_ITEMS: tuple[str, ...] = (
    "pgpgin", "pgpgout", "pswpin", "pswpout",
    *(f"pgalloc_{z}" for z in ZONE_SUFFIXES),
    *(f"allocstall_{z}" for z in ZONE_SUFFIXES),
    *(f"pgskip_{z}" for z in ZONE_SUFFIXES),
    "pgfree", "pgactivate", "pgdeactivate", "pglazyfree", "pgfault", "pgmajfault",
    "pglazyfreed", "pgrefill", "pgreuse", "pgsteal_kswapd", "pgsteal_direct",
    "pgdemote_kswapd", "pgdemote_direct", "pgscan_kswapd", "pgscan_direct",
    "pgscan_direct_throttle", "pgscan_anon", "pgscan_file", "pgsteal_anon", "pgsteal_file",
    "zone_reclaim_failed", "pginodesteal", "slabs_scanned", "kswapd_inodesteal",
    "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly", "pageoutrun",
    "pgrotated", "drop_pagecache", "drop_slab", "oom_kill", "numa_pte_updates",
    "numa_huge_pte_updates", "numa_hint_faults", "numa_hint_faults_local",
    "numa_pages_migrated", "pgmigrate_success", "pgmigrate_fail", "thp_migration_success",
    "thp_migration_fail", "thp_migration_split", "compact_migrate_scanned",
    "compact_free_scanned", "compact_isolated", "compact_stall", "compact_fail",
    "compact_success", "compact_daemon_wake", "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned", "htlb_buddy_alloc_success", "htlb_buddy_alloc_fail",
    "unevictable_pgs_culled", "unevictable_pgs_scanned", "unevictable_pgs_rescued",
    "unevictable_pgs_mlocked", "unevictable_pgs_munlocked", "unevictable_pgs_cleared",
    "unevictable_pgs_stranded", "thp_fault_alloc", "thp_fault_fallback",
    "thp_fault_fallback_charge", "thp_collapse_alloc", "thp_collapse_alloc_failed",
    "thp_file_alloc", "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped",
    "thp_split_page", "thp_split_page_failed", "thp_deferred_split_page", "thp_split_pmd",
    "thp_scan_exceed_none_pte", "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte",
    "thp_split_pud", "thp_zero_page_alloc", "thp_zero_page_alloc_failed", "thp_swpout",
    "thp_swpout_fallback", "balloon_inflate", "balloon_deflate", "balloon_migrate",
    "swap_ra", "swap_ra_hit", "ksm_swpin_copy", "cow_ksm", "zswpin", "zswpout",
    "direct_map_level2_splits", "direct_map_level3_splits",
)
"""``enum vm_event_item`` (CONFIG_VM_EVENT_COUNTERS)."""

VMSTAT_TEXT: tuple[str, ...] = (
    *ZONE_STAT_ITEMS, *NUMA_EVENT_ITEMS, *NODE_STAT_ITEMS, *WRITEBACK_STAT_ITEMS,
    *VM_EVENT_ITEMS,
)
"""``vmstat_text[]``: every line of ``/proc/vmstat`` before the deprecated ones."""
DEPRECATED_COUNTERS: tuple[str, ...] = ("nr_unstable",)
"""Printed as 0 after the last item, so userspace that reads them keeps working."""
_KERNEL_NAMES = frozenset((*VMSTAT_TEXT, *DEPRECATED_COUNTERS))


def is_kernel_counter(name: str) -> bool:
    """Whether 6.1's ``/proc/vmstat`` (oracle config) has a line called ``name``."""
    return name in _KERNEL_NAMES


def format_proc_vmstat(values: Mapping[str, int]) -> str:
    """Text of ``/proc/vmstat``: mirrors vmstat_start() and vmstat_show().

    Every name of :data:`VMSTAT_TEXT` in order, with its value from ``values`` (0 for a
    name it lacks), then ``nr_unstable 0``. Names of ``values`` that are not kernel
    counters are not printed (see :func:`format_simulator_vmstat`).
    """
    lines = [f"{name} {values.get(name, 0)}\n" for name in VMSTAT_TEXT]
    lines += [f"{name} 0\n" for name in DEPRECATED_COUNTERS]
    return "".join(lines)


def simulator_counters(values: Mapping[str, int], first: Iterable[str] = ()) -> list[str]:
    """The names of ``values`` that are not kernel counters: ``first``, then the others."""
    names = [name for name in first if not is_kernel_counter(name)]
    seen = set(names)
    names += [n for n in values if not is_kernel_counter(n) and n not in seen]
    return names


def format_simulator_vmstat(values: Mapping[str, int], first: Iterable[str] = ()) -> str:
    """``name value`` lines of the simulator-only counters (``vmstat_simulator.txt``).

    The layout is ``/proc/vmstat``'s, so the same parser reads it; the names are the
    counters of ``values`` that 6.1 does not have (``first`` in that order, then the
    rest in mapping order).
    """
    return "".join(f"{name} {values.get(name, 0)}\n"
                   for name in simulator_counters(values, first))
