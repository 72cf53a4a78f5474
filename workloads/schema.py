"""The keys of each workload kind (the ``workloads:`` entries), for :mod:`simcore.config.schema`.

Each kind's parser takes its allowed and required keys from its tuple here
(``SYNTHETIC_KEYS = names(SYNTHETIC)``), and ``workloads.registry.experiment_schema()``
adds them to the core catalog. Keys several kinds share (``cpus``, ``nid``, ``start``,
...) are written once.
"""

from __future__ import annotations

import dataclasses

from simcore.config.schema import (
    BOOL,
    DURATION,
    FRACTION,
    GFP,
    MAPPING,
    NUMBER,
    RATE,
    REQUIRED,
    SIZE,
    Derived,
    Key,
    Type,
    choice,
    entries,
    integer,
    list_of,
    nullable,
    one_of,
)
from simcore.config.schema_keys import NAME

_WEIGHTS = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "number",
                                                                           "exclusiveMinimum": 0}}
ORDER = Key("order", one_of("order, or mapping order -> weight", integer(0, 16),
                            Type("mapping", _WEIGHTS)),
            "Order of each request, or a distribution of orders (weights summing to 1).", 0)
SIZES = one_of("size, or mapping size -> weight", SIZE, Type("mapping", _WEIGHTS))
BURST = one_of("count, or mapping count -> weight", integer(1, 100_000),
               Type("mapping", _WEIGHTS))
LIFETIME = Key(
    "lifetime", one_of("duration (exponential mean) | forever, or a mapping", DURATION,
                       choice("forever")),
    "How long each allocation is held: an exponential mean, forever, or one of the forms "
    "below.", example="10ms", keys=(
        Key("exponential", DURATION, "Exponential lifetimes of this mean.", Derived("-")),
        Key("fixed", DURATION, "Every lifetime exactly this.", Derived("-")),
        Key("lognormal", MAPPING, "Lognormal lifetimes.", Derived("-"), (
            Key("median", DURATION, "The median, exp(mu).", example="10ms"),
            Key("sigma", NUMBER, "The underlying normal's standard deviation (> 0).",
                example=1.0))),
    ))
CPUS = Key("cpus", nullable(list_of(integer(0), 1)), "CPUs that issue the requests, round "
           "robin (distinct); null: every CPU.", None)
NID = Key("nid", nullable(integer(0)), "Preferred node; null: the issuing CPU's node.", None)
MAX_REQUESTS = Key("max_requests", nullable(integer(1)), "Stop after this many requests; "
                   "null: when the run ends.", None)
START = Key("start", DURATION, "When the caller starts issuing.", "0ns")
OOM_SCORE_ADJ = Key("oom_score_adj", integer(-1000, 1000), "The caller's oom_score_adj "
                    "(-1000: never OOM-killed).", 0)
PLACEMENT = (CPUS, NID, MAX_REQUESTS, START)


def _rate(what: str) -> Key:
    return Key("rate", RATE, f"Poisson arrival rate of {what}.", example="100/s")


def _gfp(default: str, text: str = "The gfp mask of each request.") -> Key:
    return Key("gfp", GFP, text, default)


def _lifetime(default: object, what: str) -> Key:
    return dataclasses.replace(LIFETIME, default=default,
                               help=f"How long {what} lives: an exponential mean, forever, "
                                    "or one of the forms below.")


def _max_requests(what: str) -> Key:
    return dataclasses.replace(MAX_REQUESTS, help=f"Stop after this many {what}; null: "
                               "when the run ends.")


SYNTHETIC = (
    _rate("allocation requests"), ORDER, LIFETIME, _gfp("GFP_KERNEL"), *PLACEMENT,
    Key("memory", choice("unreclaimable", "anon", "file", "slab"), "What the pages are: "
        "kernel memory reclaim cannot take, anonymous (reclaimable with swap), page cache, "
        "or reclaimable slab.", "unreclaimable"),
    Key("dirty", FRACTION, "Fraction of file pages dirty when allocated (memory: file).", 0.0),
    Key("hot", FRACTION, "Fraction of reclaimable pages kept in use (reclaim never frees "
        "them).", 0.0),
    OOM_SCORE_ADJ,
)
VMALLOC = (
    _rate("vmalloc() calls"),
    Key("size", SIZES, "Area size, or a distribution of sizes; whole pages.", example="64KiB"),
    _lifetime(REQUIRED, "an area"), _gfp("GFP_KERNEL"),
    Key("huge_vmap", BOOL, "vmalloc_huge() (VM_ALLOW_HUGE_VMAP): >= 2 MiB per node is "
        "backed by split order-9 blocks.", False),
    CPUS, NID, _max_requests("calls"), START, OOM_SCORE_ADJ,
)
THREADS = (
    _rate("fork bursts"),
    Key("burst", BURST, "Forks per arrival, or a distribution of them.", 1),
    _lifetime(REQUIRED, "a thread"),
    Key("vmap_stack", BOOL, "CONFIG_VMAP_STACK (a kernel config choice): vmalloc'ed stacks "
        "with a per-CPU cache, else one order-2 block.", True),
    Key("new_mm", BOOL, "Each fork is a process with its own page tables (else a thread).",
        True),
    Key("pti", BOOL, "CONFIG_PAGE_TABLE_ISOLATION: the PGD is an order-1 block.", True),
    Key("page_tables", integer(0, 64), "Order-0 page-table pages below the PGD per process.",
        6),
    Key("slab_objects", BOOL, "A fork allocates its slab objects (task_struct, ...).", True),
    Key("vmas", integer(1, 65530), "VMAs of the forking process (one vm_area_struct each).",
        16),
    Key("rcu_grace", DURATION, "The RCU grace period before a deferred stack free.", "10ms"),
    CPUS, dataclasses.replace(NID, help="Node of the task_struct and stack "
                              "(kthread_create_on_node()); null: NUMA_NO_NODE."),
    _max_requests("forks"), START, OOM_SCORE_ADJ,
)
NOFREE = (
    _rate("kmem_malloc(M_NEVERFREED) calls"),
    Key("size", SIZES, "Pages per call, or a distribution of sizes.", example="4KiB"),
    _gfp("GFP_KERNEL", "The caller's mask: blocking plays M_WAITOK, non-blocking M_NOWAIT."),
    Key("mode", choice("nofree", "scattered"), "nofree: clustered in imported chunks "
        "(FreeBSD); scattered: plain UNMOVABLE order-0 pages (the baseline).", "nofree"),
    Key("import_order", integer(0), "Order of a NOFREE chunk (VM_NOFREE_IMPORT_ORDER).", 9),
    Key("import_gfp", nullable(GFP), "Mask of a chunk import; null: derived from gfp.", None),
    Key("partial_failure", choice("leak", "free_to_nofree", "batch"), "What a non-blocking "
        "call that fails part-way does with the pages it got.", "free_to_nofree"),
    CPUS, NID, _max_requests("calls"), START,
)
PAGE_CACHE = (
    Key("size", SIZE, "The file set's size when fully grown.", example="64MiB"),
    _rate("growth chunks"),
    Key("chunk", SIZE, "Pages per read or write (a readahead window).", "128KiB"),
    Key("grow_by", choice("read", "write"), "read: readahead, clean pages; write: buffered "
        "writes, dirty pages.", "read"),
    Key("file_size", nullable(SIZE), "Length of each file; null: the whole set.", None),
    _lifetime("forever", "a file"),
    Key("reread_rate", nullable(RATE), "Chunk re-reads at random places; null: none.", None),
    Key("write_rate", nullable(RATE), "Chunk overwrites at random places; null: none.", None),
    Key("dirty_expire", DURATION, "dirty_expire_centisecs: age at which dirty data is "
        "written.", "30s"),
    Key("writeback_interval", DURATION, "dirty_writeback_centisecs (0ns: no periodic "
        "writeback).", "5s"),
    CPUS, NID, _max_requests("growth chunks"), START,
)
ANON = (
    _rate("regions (an mmap() written all over)"),
    Key("size", SIZES, "Region size, or a distribution of sizes.", example="4MiB"),
    _lifetime(REQUIRED, "a region"),
    Key("madvise", BOOL, "The region has MADV_HUGEPAGE.", False),
    Key("nohugepage", BOOL, "The region has MADV_NOHUGEPAGE (no THP).", False),
    Key("defrag", choice("always", "defer", "defer+madvise", "madvise", "never"),
        "/sys/kernel/mm/transparent_hugepage/defrag.", "madvise"),
    Key("hot", FRACTION, "Fraction of the folios kept in use (reclaim never frees them).",
        0.0),
    Key("page_tables", BOOL, "Allocate the PTE page of each 2 MiB range.", True),
    CPUS, NID, _max_requests("regions"), START, OOM_SCORE_ADJ,
)
PINNED = (
    _rate("pipes"),
    Key("pages", integer(1, 256), "Pages written into each pipe (one buffer each).", 1),
    _lifetime("forever", "a pipe"), _gfp("GFP_HIGHUSER|__GFP_ACCOUNT", "The buffers' mask."),
    CPUS, NID, _max_requests("pipes"), START,
)
SLAB = (
    Key("object_size", SIZE, "The object size (slabinfo's <objsize>), 1 byte..4 MiB.",
        example=192),
    Key("align", integer(8, 4096), "The cache's alignment, a power of two.", 8),
    Key("reclaimable", BOOL, "SLAB_RECLAIM_ACCOUNT: __GFP_RECLAIMABLE slabs the shrinker "
        "may free.", False),
    _rate("kmem_cache_alloc() calls"), _lifetime(REQUIRED, "an object"),
    _gfp("GFP_KERNEL", "The caller's mask (no __GFP_DMA32 or __GFP_HIGHMEM)."),
    Key("slub_max_order", integer(0), "The slub_max_order= boot parameter.", 3),
    CPUS, dataclasses.replace(NID, help="kmem_cache_alloc_node()'s node; null: NUMA_NO_NODE."),
    _max_requests("objects"), START,
)
ATOMIC_BURSTS = (
    _rate("bursts"),
    Key("burst", BURST, "Allocations per burst (the NAPI weight), or a distribution.", 64),
    dataclasses.replace(ORDER, help="Order of plain allocations, or a distribution (not "
                        "with page_frag)."),
    Key("page_frag", BOOL, "Each allocation is a __page_frag_cache_refill() (order 3, then "
        "0).", False),
    _lifetime(REQUIRED, "an allocation"),
    _gfp("GFP_ATOMIC", "The mask; it must not allow direct reclaim."),
    Key("spacing", DURATION, "Time between the allocations of a burst.", "0ns"),
    CPUS, NID, _max_requests("bursts"), START,
)
HUGETLB = (
    Key("size", choice("2MiB", "1GiB"), "The huge page size.", "2MiB"),
    Key("resize", entries("list of writes", 1), "Its nr_hugepages writes.", keys=(
        Key("at", DURATION, "When (within the run).", example="1s"),
        Key("count", integer(0), "The pool size written.", example=8),
        Key("node", nullable(integer(0)), "The node's own file; null: the global one.", None),
    ), example=[{"at": "0ns", "count": 8}]),
    Key("use", FRACTION, "Fraction of the pool it maps after each write.", 0.0),
    Key("release", nullable(DURATION), "When it unmaps everything; null: never.", None),
    Key("cpus", nullable(list_of(integer(0), 1)), "Its CPU (the first is used); null: CPU "
        "0.", None),
)
SPECULATIVE_REFS = (
    Key("rate", RATE, "References tried per second.", example="1000/s"),
    Key("hold", DURATION, "How long a reference is held before put_page().", "20us"),
    Key("mode", choice("pfn", "gup_fast"), "pfn: a pfn walker; gup_fast: the pfn's compound "
        "head.", "pfn"),
    Key("race_window", DURATION, "Time between a huge page's allocation and its freeze.",
        "1us"),
    START, _max_requests("tries"), CPUS,
)

WORKLOAD_KEYS = (
    Key("name", NAME, "The caller's name in traces and tables (unique).", example="w"),
    Key("type", choice("synthetic", "vmalloc", "threads", "nofree", "page_cache", "anon",
                       "pinned", "slab", "atomic_bursts", "hugetlb", "speculative_refs"),
        "The workload kind (below).", example="synthetic"),
)
KINDS: tuple[tuple[str, str, tuple[Key, ...]], ...] = (
    ("synthetic", "alloc_pages_node() of drawn orders with drawn lifetimes.", SYNTHETIC),
    ("vmalloc", "__vmalloc_node_range() areas freed by vfree().", VMALLOC),
    ("threads", "copy_process(): kernel stacks, page tables, slab objects.", THREADS),
    ("nofree", "A what-if: FreeBSD's NOFREE allocator on the Linux model.", NOFREE),
    ("page_cache", "A file set that grows, is re-read, written and written back.",
     PAGE_CACHE),
    ("anon", "Anonymous regions faulted in, with THP.", ANON),
    ("pinned", "Pipe buffers: long-lived unmovable pages.", PINNED),
    ("slab", "One SLUB cache.", SLAB),
    ("atomic_bursts", "Network-like GFP_ATOMIC refill bursts.", ATOMIC_BURSTS),
    ("hugetlb", "nr_hugepages writes and faults of the pool.", HUGETLB),
    ("speculative_refs", "Transient page references (pfn walkers, GUP-fast).",
     SPECULATIVE_REFS),
)
"""Kind -> (one line, its keys), in the registry's order."""
