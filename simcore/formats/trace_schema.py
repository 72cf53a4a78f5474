"""The on-disk schema of a run directory's traces.

This module is the one piece of ``simcore`` that ``reports`` imports. It names the files
and columns that the recording tracer writes, so the two sides cannot drift apart.

Events follow the ftrace ``kmem:`` tracepoints of ``include/trace/events/kmem.h`` (6.1):
one row per tracepoint hit, with the tracepoint's own fields plus the simulator's context
(time, caller, CPU, node, zone, path, outcome).
"""

from __future__ import annotations

# -- files inside a run directory -------------------------------------------------------
EVENTS_FILE = "trace/events.parquet"
BUDDYINFO_FILE = "trace/buddyinfo.parquet"
ZONESTAT_FILE = "trace/zonestat.parquet"
MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
VMSTAT_FILE = "vmstat.txt"
REPORT_DIR = "report"

# -- event names (the ``event`` column) --------------------------------------------------
MM_PAGE_ALLOC = "mm_page_alloc"
MM_PAGE_FREE = "mm_page_free"
MM_PAGE_ALLOC_ZONE_LOCKED = "mm_page_alloc_zone_locked"
MM_PAGE_PCPU_DRAIN = "mm_page_pcpu_drain"
MM_PAGE_ALLOC_EXTFRAG = "mm_page_alloc_extfrag"
MM_PAGE_ALLOC_FAIL = "mm_page_alloc_fail"
"""Simulator event: an ``__alloc_pages`` call returned NULL (the kernel's warn_alloc)."""
BAD_PAGE = "bad_page"
"""Simulator event: the kernel's "BUG: Bad page state" report (``bad_page()``)."""
ALLOC_ORDER_WARN = "alloc_order_warn"
"""Simulator event: ``__alloc_pages()`` was asked for an order >= MAX_ORDER and returned
NULL at its ``WARN_ON_ONCE_GFP()``, before ``trace_mm_page_alloc`` (so there is no
``mm_page_alloc`` row and no warn_alloc line). ``reason`` says whether the kernel
printed its one-time WARNING (not with ``__GFP_NOWARN``, and only the first time)."""

EVENT_NAMES = (
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_PCPU_DRAIN,
    MM_PAGE_ALLOC_EXTFRAG,
    MM_PAGE_ALLOC_FAIL,
    BAD_PAGE,
    ALLOC_ORDER_WARN,
)

# -- the ``path`` column: where an allocation was served from ----------------------------
PATH_NONE = "none"  # events that are not allocations (frees, drains)
PATH_PCP = "pcp"  # served from a per-CPU list (rmqueue_pcplist)
PATH_BUDDY = "buddy"  # served from the requested migratetype's free lists
PATH_FALLBACK = "fallback"  # served after __rmqueue_fallback() stole from another type
PATH_FAILURE = "failure"  # the allocation failed
PATHS = (PATH_NONE, PATH_PCP, PATH_BUDDY, PATH_FALLBACK, PATH_FAILURE)

# -- the ``outcome`` column -------------------------------------------------------------
OUTCOME_OK = "ok"
OUTCOME_FAIL = "fail"
OUTCOMES = (OUTCOME_OK, OUTCOME_FAIL)

# Columns of EVENTS_FILE, in order, with their Arrow types. String columns are written
# dictionary-encoded. ``-1`` means "not applicable" in the integer columns.
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_ns", "int64"),  # simulated time, integer nanoseconds
    ("event", "string"),  # one of EVENT_NAMES
    ("caller", "string"),  # workload / owner name ("" for kernel-internal events)
    ("cpu", "int16"),
    ("nid", "int16"),
    ("zone", "string"),  # ZONE_NAMES spelling, "" when no zone (failed allocation)
    ("order", "int16"),
    ("gfp", "int64"),  # gfp_mask bits (simcore.mm.gfp.GFP); format with format_gfp()
    ("migratetype", "int16"),  # requested migratetype (as the kernel traces it), see below
    ("pfn", "int64"),  # first pfn of the block; -1 on failure
    ("outcome", "string"),  # OUTCOMES
    ("path", "string"),  # PATHS
    ("fallback_order", "int16"),  # mm_page_alloc_extfrag only
    ("fallback_migratetype", "int16"),  # mm_page_alloc_extfrag only
    ("change_ownership", "int16"),  # mm_page_alloc_extfrag only (0/1)
    ("percpu_refill", "int16"),  # mm_page_alloc_zone_locked only (0/1)
    ("reason", "string"),  # bad_page reason, failure reason; "" otherwise
)

MIGRATETYPE_COLUMNS = ("migratetype", "fallback_migratetype")
"""Columns holding an ``enum migratetype`` value. They use the kernel's numbering for the
machine's config (``machine.cma``): without CONFIG_CMA, MIGRATE_ISOLATE is 4, as in the
oracle's traces; with it, CMA is 4 and ISOLATE 5 (simcore.mm.constants)."""

# Long-format periodic snapshot of /proc/pagetypeinfo levels: one row per
# (time, node, zone, migratetype, order) with the number of free blocks.
BUDDYINFO_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_ns", "int64"),
    ("nid", "int16"),
    ("zone", "string"),
    ("migratetype", "string"),  # MIGRATETYPE_NAMES spelling
    ("order", "int16"),
    ("nr_free", "int64"),  # free blocks (not pages), pcp excluded
)

# Periodic per-zone state: one row per (time, node, zone).
ZONESTAT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("time_ns", "int64"),
    ("nid", "int16"),
    ("zone", "string"),
    ("managed_pages", "int64"),
    ("nr_free_pages", "int64"),  # NR_FREE_PAGES: buddy free pages, pcp excluded
    ("pcp_pages", "int64"),  # pages held on per-CPU lists
    ("wmark_min", "int64"),
    ("wmark_low", "int64"),
    ("wmark_high", "int64"),
    ("watermark_boost", "int64"),
    ("nr_reserved_highatomic", "int64"),
)
