"""Kernel constants and enumerations shared by the whole model.

Mirrors ``include/linux/mmzone.h``, ``include/linux/pageblock-flags.h`` and
``mm/internal.h`` of Linux 6.1 (x86_64 defaults).

Orders here are *inclusive*: ``max_order = 10`` means orders 0..10, which the 6.1 kernel
spells ``MAX_ORDER = 11`` (an exclusive bound). We follow the inclusive spelling that
later kernels adopted (``MAX_PAGE_ORDER``) to avoid off-by-one errors in config files.
"""

from __future__ import annotations

import enum
from typing import NewType

Pfn = NewType("Pfn", int)
Order = NewType("Order", int)
Nid = NewType("Nid", int)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

DEFAULT_MAX_ORDER = 10
"""Largest buddy order, inclusive (6.1's ``MAX_ORDER - 1``)."""

DEFAULT_PAGEBLOCK_ORDER = 9
PAGE_ALLOC_COSTLY_ORDER = 3
NEED_SLOWPATH = -2
"""What ``PageAllocator.alloc_pages_fast()`` returns when the slow path must run."""
"""Orders above this are "costly" (``include/linux/mmzone.h``)."""


class MigrateType(enum.IntEnum):
    """``enum migratetype``, numbered as with ``CONFIG_CMA`` and ``CONFIG_MEMORY_ISOLATION``.

    These are the model's *internal* values, the same on every machine, so the hot path
    compares fixed ints. The kernel's own numbering depends on its config: without
    ``CONFIG_CMA`` (the oracle's Debian kernel) there is no CMA entry and ISOLATE is 4.
    What the user sees (trace columns, ``/proc`` columns) is translated at the export
    boundary with :func:`kernel_migratetype_numbers`.
    """

    UNMOVABLE = 0
    MOVABLE = 1
    RECLAIMABLE = 2
    HIGHATOMIC = 3
    CMA = 4
    ISOLATE = 5


# The same values as plain ints, for the hot paths (an IntEnum member costs an attribute
# lookup per use and is not a C constant in the compiled build).
SUBSECTION_PAGES = 512
"""``PAGES_PER_SUBSECTION`` (2 MiB on x86_64): the granularity at which SPARSEMEM_VMEMMAP
records which parts of a memory section hold memory (``subsection_map``)."""
MT_UNMOVABLE = int(MigrateType.UNMOVABLE)
MT_MOVABLE = int(MigrateType.MOVABLE)
MT_RECLAIMABLE = int(MigrateType.RECLAIMABLE)
MT_HIGHATOMIC = int(MigrateType.HIGHATOMIC)
MT_CMA = int(MigrateType.CMA)
MT_ISOLATE = int(MigrateType.ISOLATE)

MIGRATE_PCPTYPES = 3
"""Number of migratetypes that have per-CPU lists (UNMOVABLE, MOVABLE, RECLAIMABLE)."""
MIGRATE_TYPES = 6
"""Internal number of migratetypes (free lists per order). The kernel's ``MIGRATE_TYPES``
is :func:`kernel_migrate_types` (5 without ``CONFIG_CMA``)."""

MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")
"""Spelling used by ``/proc/pagetypeinfo`` (``migratetype_names[]`` in mm/page_alloc.c),
indexed by internal migratetype."""


def kernel_migratetype_numbers(cma: bool) -> tuple[int, ...]:
    """Internal migratetype -> the kernel's ``enum migratetype`` value for this config.

    With ``CONFIG_CMA`` the numbering is the internal one. Without it MIGRATE_CMA does
    not exist (mapped to -1; no CMA pageblock exists on such a machine) and
    MIGRATE_ISOLATE is 4.
    """
    if cma:
        return tuple(int(mt) for mt in MigrateType)
    return tuple(-1 if mt == MigrateType.CMA else mt - (mt > MigrateType.CMA)
                 for mt in MigrateType)


def kernel_migrate_types(cma: bool) -> int:
    """The kernel's ``MIGRATE_TYPES``: 6 with ``CONFIG_CMA``, 5 without (6.1, x86_64)."""
    return MIGRATE_TYPES if cma else MIGRATE_TYPES - 1


def kernel_migratetypes(cma: bool) -> tuple[int, ...]:
    """Internal migratetypes that exist in the kernel built with/without ``CONFIG_CMA``."""
    return tuple(int(mt) for mt in MigrateType if cma or mt != MigrateType.CMA)


class ZoneType(enum.IntEnum):
    """``enum zone_type`` on x86_64 without ``CONFIG_HIGHMEM``."""

    DMA = 0
    DMA32 = 1
    NORMAL = 2
    MOVABLE = 3


ZONE_NAMES = ("DMA", "DMA32", "Normal", "Movable")
"""Spelling used by ``/proc/zoneinfo`` and ``/proc/buddyinfo`` (``zone_names[]``)."""

MAX_NR_ZONES = len(ZoneType)


class WatermarkIndex(enum.IntEnum):
    """``enum zone_watermarks``: index into ``zone->_watermark``."""

    MIN = 0
    LOW = 1
    HIGH = 2
    PROMO = 3


# Fallback order for __rmqueue_fallback(): the ``fallbacks[][]`` table in
# mm/page_alloc.c (6.1). HIGHATOMIC, CMA and ISOLATE never fall back.
FALLBACKS: dict[int, tuple[int, ...]] = {
    MigrateType.UNMOVABLE: (MigrateType.RECLAIMABLE, MigrateType.MOVABLE),
    MigrateType.MOVABLE: (MigrateType.RECLAIMABLE, MigrateType.UNMOVABLE),
    MigrateType.RECLAIMABLE: (MigrateType.UNMOVABLE, MigrateType.MOVABLE),
}

# Distances (include/linux/topology.h).
LOCAL_DISTANCE = 10
REMOTE_DISTANCE = 20
RECLAIM_DISTANCE = 30

# alloc_flags bits as plain ints for the hot path (mm/internal.h, 6.1). The typed
# flag enum with the same values is simcore.mm.gfp.AllocFlags.
ALLOC_WMARK_MIN = 0x0
ALLOC_WMARK_LOW = 0x1
ALLOC_WMARK_HIGH = 0x2
ALLOC_WMARK_MASK = 0x3
ALLOC_NO_WATERMARKS = 0x4
ALLOC_OOM = 0x8
ALLOC_HARDER = 0x10
ALLOC_HIGH = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_KSWAPD = 0x800
