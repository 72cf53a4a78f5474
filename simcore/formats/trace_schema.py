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
SPANS_FILE = "trace/spans.parquet"
BUDDYINFO_FILE = "trace/buddyinfo.parquet"
ZONESTAT_FILE = "trace/zonestat.parquet"
PAGEBLOCKS_FILE = "trace/pageblocks.parquet"
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

SIM_WARNING = "sim_warning"
"""Simulator-only event (no kernel tracepoint, no kernel message): a caller's misuse that
the kernel does not report (it goes silently wrong there), such as ``__free_pages()``
with an order smaller than the block's. ``reason`` is ``"<kind>: <what happened>"``,
the kind one of :data:`MISUSE_KINDS` (read it with :func:`misuse_kind`); the text says
what 6.1 does and, where the model refuses to corrupt itself as the kernel would, what
the model did instead (see :mod:`simcore.mm.page_misuse`)."""

# -- sim_warning reasons: "<kind>: <text>" ------------------------------------------------
MISUSE_DOUBLE_FREE = "double free"
"""``__free_pages()`` or ``put_page()`` of a page whose reference was already dropped."""
MISUSE_WRONG_ORDER = "wrong order"
"""A block freed with another order than it was allocated with (too small: the rest
leaks; too large over clean pages: the kernel would free pages it does not own)."""
MISUSE_FROZEN_PAGE = "frozen page"
"""A reference dropped while ``page_ref_freeze()`` holds the count at 0."""
MISUSE_USE_AFTER_FREE = "use after free"
"""A caller touched the memory of a block it had freed (:meth:`Machine.touch`)."""
MISUSE_TAIL_PAGE = "tail page"
"""A reference dropped on a page inside a block that is not a compound tail
(``page_folio()`` is the page itself), or ``__free_pages()`` on a compound tail."""
MISUSE_UNFREEZE = "page_ref_unfreeze"
"""``page_ref_unfreeze()`` of a page that is not frozen, or with a count <= 0."""
MISUSE_SPLIT_PAGE = "split_page"
"""``split_page()`` of a page that is not an allocated non-compound block of that order."""
MISUSE_BAD_PFN = "bad pfn"
"""A free of a pfn that is no block: beyond the memory map or not aligned to its order."""
MISUSE_KINDS = (MISUSE_DOUBLE_FREE, MISUSE_WRONG_ORDER, MISUSE_FROZEN_PAGE,
                MISUSE_USE_AFTER_FREE, MISUSE_TAIL_PAGE, MISUSE_UNFREEZE, MISUSE_SPLIT_PAGE,
                MISUSE_BAD_PFN)


def misuse_kind(reason: str) -> str:
    """The kind of a ``sim_warning`` reason (one of :data:`MISUSE_KINDS`)."""
    return reason.partition(": ")[0]


EVENT_NAMES = (
    MM_PAGE_ALLOC,
    MM_PAGE_FREE,
    MM_PAGE_ALLOC_ZONE_LOCKED,
    MM_PAGE_PCPU_DRAIN,
    MM_PAGE_ALLOC_EXTFRAG,
    MM_PAGE_ALLOC_FAIL,
    BAD_PAGE,
    ALLOC_ORDER_WARN,
    SIM_WARNING,
)

# -- the ``path`` column: where an allocation was served from ----------------------------
PATH_NONE = "none"  # events that are not allocations (frees, drains)
PATH_PCP = "pcp"  # served from a per-CPU list (rmqueue_pcplist)
PATH_BUDDY = "buddy"  # served from the requested migratetype's free lists
PATH_FALLBACK = "fallback"  # served after __rmqueue_fallback() stole from another type
PATH_FAILURE = "failure"  # the allocation failed
PATHS = (PATH_NONE, PATH_PCP, PATH_BUDDY, PATH_FALLBACK, PATH_FAILURE)

# -- the ``stage`` column: the deepest step of __alloc_pages() a request went through -----
STAGE_FAST = "fast"  # get_page_from_freelist() at the LOW watermark, before the slow path
STAGE_SLOW_RETRY = "slow:retry"  # slow-path attempts only (MIN, adjusted alloc_flags)
STAGE_SLOW_RECLAIM = "slow:reclaim"  # it ran direct reclaim (and no compaction or OOM)
STAGE_SLOW_COMPACTION = "slow:compaction"  # it ran direct compaction (not OOM)
STAGE_SLOW_OOM = "slow:oom"  # it reached __alloc_pages_may_oom()
STAGE_FAIL = "fail"  # the request returned NULL
STAGES = (STAGE_FAST, STAGE_SLOW_RETRY, STAGE_SLOW_RECLAIM, STAGE_SLOW_COMPACTION,
          STAGE_SLOW_OOM, STAGE_FAIL)

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
    ("reason", "string"),  # bad_page (kernel's) / sim_warning ("kind: text") / failure reason
    ("stage", "string"),  # mm_page_alloc only: STAGES; "" otherwise
    ("latency_ns", "int64"),  # mm_page_alloc only: the request's latency; -1 otherwise
)

# -- trace/spans.parquet: reclaim, kswapd, compaction, OOM, actions, hugetlb -------------
# One row per span or instant, named after its tracepoint. A span's work is done when it
# starts and the time to end_ns is what it cost (the caller or kswapd is busy until then);
# instants (wakeups, sleeps, actions) have end_ns == start_ns.
SPAN_KSWAPD_WAKE = "mm_vmscan_kswapd_wake"  # kswapd starts a balance_pgdat() run (instant)
SPAN_KSWAPD_RUN = "mm_vmscan_kswapd_run"  # one balance_pgdat() run: start to end, pages freed
SPAN_KSWAPD_SLEEP = "mm_vmscan_kswapd_sleep"  # kswapd goes to sleep (instant)
SPAN_WAKEUP_KSWAPD = "mm_vmscan_wakeup_kswapd"  # an allocation woke kswapd (instant)
SPAN_DIRECT_RECLAIM = "mm_vmscan_direct_reclaim"  # _begin to _end: one try_to_free_pages()
SPAN_COMPACTION = "mm_compaction"  # mm_compaction_begin to _end: one compact_zone(), status
SPAN_COMPACTION_DEFER = "mm_compaction_defer_compaction"  # defer_compaction() (instant)
SPAN_COMPACTION_DEFERRED = "mm_compaction_deferred"  # compaction_deferred() said skip
SPAN_KCOMPACTD_WAKE = "mm_compaction_kcompactd_wake"  # kcompactd_do_work() starts (instant)
SPAN_OOM_KILL = "oom_kill"  # out_of_memory() killed an owner: pages freed, the kill's cost
SPAN_ACTION = "action"  # a scheduled action from the config's actions: list (instant)
# simulator-only (FreeBSD has no tracepoint there): a nofree workload's kmem_malloc() call
# failed part-way (instant): pages = those its partial_failure policy stranded or gave back
SPAN_NOFREE_PARTIAL = "kmem_back_partial_failure"
SPAN_HUGETLB_RESIZE = "hugetlb_resize"  # one nr_hugepages write: start to end, pages allocated
SPAN_HUGETLB_WARN = "hugetlb_warn"  # a hugetlb pr_warn() (instant; the kernel's text)
# simulator-only (the kernel records no polluter): a pageblock became mixed and was charged
# to ``caller`` (simcore.sim.pollution), instant; nid: its node; pages: the pageblock's
# pages; detail: "pfn=<first pfn of the pageblock> zone=<zone name>"
SPAN_PAGEBLOCK_POLLUTED = "pageblock_polluted"
SPAN_NAMES = (SPAN_KSWAPD_WAKE, SPAN_KSWAPD_RUN, SPAN_KSWAPD_SLEEP, SPAN_WAKEUP_KSWAPD,
              SPAN_DIRECT_RECLAIM, SPAN_COMPACTION, SPAN_COMPACTION_DEFER,
              SPAN_COMPACTION_DEFERRED, SPAN_KCOMPACTD_WAKE, SPAN_OOM_KILL, SPAN_ACTION,
              SPAN_NOFREE_PARTIAL, SPAN_HUGETLB_RESIZE, SPAN_HUGETLB_WARN,
              SPAN_PAGEBLOCK_POLLUTED)
SPAN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "string"),  # SPAN_NAMES
    ("nid", "int16"),  # the node (-1: machine-wide)
    ("caller", "string"),  # the allocating caller; "kswapdN" for kswapd; "" for actions
    ("start_ns", "int64"),
    ("end_ns", "int64"),
    ("pages", "int64"),  # pages reclaimed / freed by the kill / by the action
    ("detail", "string"),  # order, zone index, priority, victim, action arguments ...
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
    # The zone's pageblocks by what they hold (simcore.sim.pollution.zone_census):
    # allocations compaction migrates, all of them (what compaction could turn into free
    # huge pages), at least one it does not migrate, and mixed (polluted) ones among all.
    ("pageblocks_movable_only", "int64"),
    ("pageblocks_unmovable", "int64"),
    ("pageblocks_mixed", "int64"),
)

# The pageblock map at the end of the run: one row per pageblock of every zone.
CENSUS_FREE = "free"  # part of a free buddy block of at least pageblock order
CENSUS_MOVABLE_ONLY = "movable_only"  # holds allocations, all of which compaction migrates
CENSUS_UNMOVABLE = "unmovable"  # holds an allocation compaction does not migrate
CENSUS_NO_ALLOCATION = "no_allocation"  # no allocation, yet not wholly free
CENSUS_CLASSES = (CENSUS_FREE, CENSUS_MOVABLE_ONLY, CENSUS_UNMOVABLE, CENSUS_NO_ALLOCATION)
PAGEBLOCKS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("nid", "int16"),
    ("zone", "string"),
    ("pfn", "int64"),  # the pageblock's first pfn (a zone's edge block may be partial)
    ("migratetype", "string"),  # get_pageblock_migratetype(), MIGRATETYPE_NAMES spelling
    ("census", "string"),  # CENSUS_CLASSES
    ("mixed", "int16"),  # 1: holds an allocation of another migratetype (page_owner's mixed)
    ("caller", "string"),  # the caller charged with polluting it ("" if none)
)
