"""The catalog of an experiment file's core sections (see :mod:`simcore.config.schema`).

Every key of ``machine:``, ``sysctl:``, ``trace:``, ``cost:``, ``limits:``,
``actions:``, ``initial_state`` and ``sweep:``, with its type, default, unit and help.
The defaults of ``sysctl:``, ``cost:``, ``limits:`` and ``trace:`` are read from the
dataclasses that hold them (:mod:`simcore.config.types`), so they are written once.
The workload kinds' keys are in :mod:`workloads.schema`.
"""

from __future__ import annotations

import dataclasses

from simcore.config.schema import (
    BOOL,
    DURATION,
    MAPPING,
    SIZE,
    STRING,
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
from simcore.config.types import CostConfig, LimitsConfig, SysctlConfig, TraceConfig
from simcore.config.units import format_duration
from simcore.mm.constants import DEFAULT_MAX_ORDER, DEFAULT_PAGEBLOCK_ORDER

INT_MAX = 2**31 - 1
NAME = Type("name", {"type": "string", "pattern": r"^[A-Za-z0-9_.-]+$"},
            "letters, digits, '_', '.' or '-'")
RANGES = list_of(Type("pfn range", {"type": "string"}, "'START-END' bytes, END inclusive, "
                      "as /proc/iomem prints it: '0x100000-0x1ffdcfff'"), 1)
ZONE_SIZE = "Reserved (present, not managed) memory of this zone."

NODE_KEYS = (
    Key("memory", SIZE, "The node's RAM, laid out by machine.layout (DMA < 16 MiB, DMA32 < "
        "4 GiB, Normal above); a multiple of the pageblock size.",
        Derived("required unless present is given"), example="256MiB"),
    Key("present", RANGES, "The node's physical memory map instead of memory, as a real "
        "host's memblock (ascending, not overlapping).", Derived("laid out from memory")),
    Key("cpus", integer(0, 8192), "CPUs of the node (one pcp list set each).", 1),
    Key("movable", SIZE, "Memory at the top of the node that forms ZONE_MOVABLE "
        "(like movablecore=); a multiple of the pageblock size.", 0),
    Key("reserved", one_of("size, or mapping zone -> size", SIZE),
        "Memory present but not managed (memblock reservations): one size taken from the "
        "lowest zones first, or a size per zone type.", 0,
        keys=tuple(Key(z, SIZE, ZONE_SIZE, 0) for z in ("DMA", "DMA32", "Normal", "Movable"))),
    Key("reserved_at", RANGES, "Ranges known to be reserved (e.g. the kernel image in "
        "/proc/iomem); they count toward the zones' reserved memory.", Derived("none")),
)

MACHINE_KEYS = (
    Key("nodes", entries("list of nodes", 1, 64), "The NUMA nodes, node 0 first.",
        Derived("required unless from_proc is given"), NODE_KEYS,
        json_extra={"anyOf": [{"required": ["memory"]}, {"required": ["present"]}]}),
    Key("distance", nullable(list_of(list_of(integer(10, 255)))), "NUMA distance matrix "
        "(SLIT): 10 on the diagonal, 11..255 elsewhere; it orders the zonelists "
        "(build_zonelists()). null: 20 between any two nodes.", None),
    Key("max_order", integer(1, 16), "Largest buddy order, inclusive (6.1's MAX_ORDER - 1; "
        "a kernel config choice).", DEFAULT_MAX_ORDER),
    Key("pageblock_order", integer(1, 16), "pageblock_order (a kernel config choice: "
        "HUGETLB_PAGE_ORDER on x86_64); at most max_order.", DEFAULT_PAGEBLOCK_ORDER),
    Key("transparent_hugepage", choice("always", "madvise", "never"), "THP mode (/sys/kernel/"
        "mm/transparent_hugepage/enabled): enables the order-9 pcp list and raises "
        "min_free_kbytes (set_recommended_min_free_kbytes()).", "always"),
    Key("cma", BOOL, "CONFIG_CMA: the migratetype numbering (ISOLATE is 4 without CMA, 5 "
        "with it) and the CMA column of pagetypeinfo; no CMA area is modelled.", False),
    Key("swap", SIZE, "Swap space (swapon); anonymous memory is reclaimable only while some "
        "is free. 0: no swap.", 0),
    Key("layout", choice("flat", "x86"), "How nodes given by memory are placed: flat (one "
        "after another from pfn 1) or x86 (a PC's low memory with its holes, the rest above "
        "4 GiB).", "flat"),
    Key("below_4g", SIZE, "layout x86: RAM below 4 GiB.", Derived("QEMU pc's rule")),
    Key("from_proc", STRING, "A /proc snapshot directory (allocsim proc capture), relative "
        "to this file: the machine (and the sysctl defaults) of a real host; only swap, cma "
        "and transparent_hugepage may be given beside it.", Derived("absent: nodes")),
)
FROM_PROC_EXTRAS = ("swap", "cma", "transparent_hugepage")
"""Machine keys allowed beside ``from_proc`` (the snapshot does not say them)."""

_SYSCTL = SysctlConfig()
SYSCTL_HELP = {
    "min_free_kbytes": ("'auto' or " + integer(0, INT_MAX).text,
                        "vm.min_free_kbytes: the min watermark's total; auto derives it as "
                        "calculate_min_free_kbytes() and the THP raise do.", "KiB"),
    "watermark_scale_factor": (integer(1, 3000), "vm.watermark_scale_factor: the gap "
                               "between the watermarks, in 1/10000 of a zone.", ""),
    "watermark_boost_factor": (integer(0, INT_MAX), "vm.watermark_boost_factor: how far a "
                               "fragmenting fallback boosts the watermarks (1/10000 of high).",
                               ""),
    "lowmem_reserve_ratio": (list_of(integer(0, INT_MAX), 4, 5), "vm.lowmem_reserve_ratio: "
                             "one ratio per zone type (DMA, DMA32, Normal, Movable[, Device]), "
                             "as /proc prints it.", ""),
    "percpu_pagelist_high_fraction": ("0 or an integer >= 8", "vm.percpu_pagelist_high_"
                                      "fraction: pcp high as a fraction of the zone (0: the "
                                      "default sizing).", ""),
    "extfrag_threshold": (integer(0, 1000), "vm.extfrag_threshold: compaction_suitable()'s "
                          "fragmentation-index cut-off.", ""),
    "compaction_proactiveness": (integer(0, 100), "vm.compaction_proactiveness: kcompactd "
                                 "compacts in the background above the score it sets "
                                 "(0: never).", ""),
    "swappiness": (integer(0, 200), "vm.swappiness: the anon share of reclaim's scan "
                   "balance.", ""),
}


def _sysctl_type(spec: object) -> Type:
    if isinstance(spec, Type):
        return spec
    json = ({"anyOf": [{"const": "auto"}, {"type": "integer", "minimum": 0}]}
            if str(spec).startswith("'auto'") else {"type": "integer", "minimum": 0})
    return Type(str(spec), json)


def _sysctl_default(name: str) -> object:
    value = getattr(_SYSCTL, name)
    return "auto" if value is None else list(value) if isinstance(value, tuple) else value


SYSCTL_KEYS = tuple(
    Key(name, dataclasses.replace(_sysctl_type(t), unit=unit), text, _sysctl_default(name))
    for name, (t, text, unit) in SYSCTL_HELP.items())
ACTION_SYSCTL_KEYS = tuple(dataclasses.replace(k, default=Derived("unchanged"))
                           for k in SYSCTL_KEYS)

_TRACE = TraceConfig()
TRACE_KEYS = (
    Key("events", BOOL, "Record every allocator event (trace/events.parquet).", _TRACE.events),
    Key("snapshot_interval", DURATION, "Period of the free-memory snapshots "
        "(trace/snapshots.parquet).", format_duration(_TRACE.snapshot_interval_ns)),
    Key("proc_snapshots", list_of(DURATION), "Simulated times at which a proc/t=<s>s/ "
        "snapshot directory is written, besides proc/start and proc/end.", []),
)

COST_HELP = {
    "pcp_hit": "An order-0..3 allocation served from a per-CPU list (rmqueue_pcplist()).",
    "buddy": "A block taken from the buddy lists under zone->lock (rmqueue_buddy()).",
    "fallback": "A __rmqueue_fallback() steal of a pageblock.",
    "direct_reclaim": "One try_to_free_pages() call, besides the pages it scans and frees.",
    "reclaim_scan": "Per page reclaim isolates and examines.",
    "reclaim_clean": "Per clean page-cache or slab page reclaim frees.",
    "reclaim_dirty": "Per dirty page written back before it can be freed.",
    "reclaim_swap": "Per anonymous page written to swap.",
    "compact_scan": "Per page either compaction scanner examines.",
    "compact_migrate": "Per page compaction migrates (copy and remap).",
    "oom_kill": "One out_of_memory() call that kills (selection, kill, oom_reaper).",
}
_COST = CostConfig()
COST_KEYS = (*(Key(name, DURATION, text, format_duration(getattr(_COST, name + "_ns")))
               for name, text in COST_HELP.items()),
             Key("hz", integer(100, 1000), "CONFIG_HZ: one jiffy is a throttled reclaimer's "
                 "sleep; kswapd naps HZ/10.", _COST.hz))

LIMITS_KEYS = (
    Key("nofail_stall", DURATION, "A __GFP_NOFAIL request stalled longer than this is "
        "reported by caller.", format_duration(LimitsConfig().nofail_stall_ns)),
)

DO_KEYS = (
    Key("sysctl", MAPPING, "Write /proc/sys/vm sysctls (vm. prefix allowed); the handler's "
        "recomputation follows (setup_per_zone_wmarks(), ...).", Derived("-"),
        ACTION_SYSCTL_KEYS),
    Key("drop_caches", integer(1, 3), "echo N > /proc/sys/vm/drop_caches (the string "
        "drop_caches means 3).", Derived("-")),
    Key("compact_memory", choice(1), "echo 1 > /proc/sys/vm/compact_memory: compact every "
        "zone of every node (also the string compact_memory).", Derived("-")),
    Key("nr_hugepages", one_of("count, or mapping", integer(0)), "Write nr_hugepages: a count "
        "(2 MiB pages, global), or {count, node, size}.", Derived("-"), (
            Key("count", integer(0), "Huge pages asked for.", example=8),
            Key("node", nullable(integer(0)), "The node's own nr_hugepages file; null: the "
                "global one.", None),
            Key("size", choice("2MiB", "1GiB"), "Huge page size.", "2MiB"))),
)
ACTION_KEYS = (
    Key("at", DURATION, "When the action happens (before the end of the run; equal times "
        "run in file order).", example="100ms"),
    Key("do", one_of("drop_caches | compact_memory, or a mapping of one action",
                     choice("drop_caches", "compact_memory")),
        "What to do: one of the keys below, or the string drop_caches or compact_memory.",
        keys=DO_KEYS, example="drop_caches"),
)

SWEEP_KEYS = (
    Key("grid", Type("mapping key path -> list of values", {"type": "object",
        "additionalProperties": {"type": "array", "minItems": 1}}, form="mapping"),
        "Every combination of these values; the last key varies fastest.",
        Derived("absent: points"), open_keys=True),
    Key("points", list_of(Type("mapping key path -> value", {"type": "object"}), 1),
        "A list of points, each setting any key paths (instead of grid).",
        Derived("absent: grid")),
    Key("replicates", integer(1, 100_000), "Runs per point; replicate r of every point has "
        "the seed SeedSequence(seed).spawn(replicates)[r].", 1),
)


def experiment_keys(workload_keys: tuple[Key, ...],
                    variants: tuple[tuple[str, str, tuple[Key, ...]], ...]) -> Key:
    """The whole file: the core sections, with ``workloads:``' common keys and kinds."""
    return Key("", MAPPING, "An allocsim experiment file.", Derived("-"), (
        Key("name", NAME, "The run's name (its run directory is <name>-seed<seed>).",
            example="example"),
        Key("seed", integer(0), "The only source of randomness (one SeedSequence, spawned "
            "per workload).", example=42),
        Key("duration", DURATION, "Simulated time the run lasts.", example="1s"),
        Key("machine", MAPPING, "The simulated machine: nodes, zones and memory map, "
            "distances, CPUs and build-time constants.", keys=MACHINE_KEYS,
            json_extra={"anyOf": [{"required": ["nodes"]}, {"required": ["from_proc"]}]}),
        Key("sysctl", MAPPING, "/proc/sys/vm knobs (6.1 defaults; from_proc: the "
            "snapshot's).", {}, SYSCTL_KEYS),
        Key("trace", MAPPING, "What the run records.", {}, TRACE_KEYS),
        Key("workloads", entries("list of workloads"), "The callers: each entry's type "
            "chooses its kind and keys.", [], workload_keys, variants),
        Key("cost", MAPPING, "What each step of an allocation costs (a simulator-only "
            "model; set your hardware's).", {}, COST_KEYS),
        Key("limits", MAPPING, "What the run reports as a problem.", {}, LIMITS_KEYS),
        Key("actions", entries("list of actions"), "Scheduled writes to the machine "
            "during the run.", [], ACTION_KEYS),
        Key("initial_state", one_of("fresh | from_proc, or {from_proc: DIR}",
                                    choice("fresh", "from_proc")),
            "The state the run starts from: a fresh boot, the machine's own snapshot, or "
            "another snapshot whose zones are the machine's.", "fresh",
            (Key("from_proc", STRING, "A /proc snapshot directory (relative to this file) "
                 "with zoneinfo, pagetypeinfo and meminfo.", example="snap"),)),
        Key("sweep", MAPPING, "Only for allocsim sweep: the points and replicates to run "
            "(exactly one of grid and points).", Derived("absent: one run"), SWEEP_KEYS),
        Key("study", Type("mapping", {"type": "object"}, form="mapping"), "Only for allocsim "
            "sweep: the questions the sweep answers (estimate, threshold), its fresh-box "
            "baseline and per-node callers; checked by allocsim.sweep.study.",
            Derived("absent"), open_keys=True),
    ))
