"""Watermark, ``lowmem_reserve`` and per-CPU pageset (pcp) sizing arithmetic.

Pure integer functions, no state. They mirror Linux 6.1 ``mm/page_alloc.c``
(``calculate_min_free_kbytes()``, ``__setup_per_zone_wmarks()``,
``setup_per_zone_lowmem_reserve()``, ``nr_free_zone_pages()``, ``zone_batchsize()``,
``zone_highsize()``, ``zone_set_pageset_high_and_batch()``) and ``mm/khugepaged.c``
(``set_recommended_min_free_kbytes()``). Sizes are in pages unless the name says KiB.

Zones are passed as parallel sequences (one entry per zone). Functions that need the
zone *type* take an optional ``zone_idx`` sequence; when it is ``None`` entry ``i`` is
zone type ``i`` of a single node (DMA, DMA32, Normal, Movable, ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from simcore.mm.constants import MIGRATE_PCPTYPES, PAGE_SHIFT, ZoneType

KIB_PER_PAGE = 1 << (PAGE_SHIFT - 10)
MIN_FREE_KBYTES_FLOOR = 128
MIN_FREE_KBYTES_CEIL = 262144
SWAP_CLUSTER_MAX = 32
HIGHMEM_MIN_WMARK_CEIL = 128
WATERMARK_SCALE_DIVISOR = 10000
PCP_BATCH_MAX_PAGES = (1 << 20) >> PAGE_SHIFT
"""``SZ_1M / PAGE_SIZE``: zone_batchsize() never batches more than 1 MiB."""
GFP_USER_ZONE = int(ZoneType.NORMAL)
"""``gfp_zone(GFP_USER)`` on x86_64: the highest zone counted as "lowmem"."""


def int_sqrt(x: int) -> int:
    """Return floor(sqrt(x)), as the kernel's lib/math/int_sqrt.c does.

    Raises:
        ValueError: if ``x`` is negative (the kernel's argument is unsigned).
    """
    return math.isqrt(x)


def _zone_types(n: int, zone_idx: Sequence[int] | None) -> Sequence[int]:
    if zone_idx is None:
        return range(n)
    if len(zone_idx) != n:
        raise ValueError(f"zone_idx has {len(zone_idx)} entries, expected {n}")
    return zone_idx


def nr_free_buffer_pages(
    managed: Sequence[int],
    high_wmark: Sequence[int],
    zone_idx: Sequence[int] | None = None,
) -> int:
    """Pages above the high watermark in all zones up to ZONE_NORMAL.

    Mirrors nr_free_buffer_pages() -> nr_free_zone_pages(gfp_zone(GFP_USER)) in
    mm/page_alloc.c. The kernel walks the local node's fallback zonelist, which holds
    every populated zone of every node, so pass the zones of all nodes.

    Args:
        managed: managed pages per zone.
        high_wmark: ``high_wmark_pages()`` per zone (including any boost).
        zone_idx: zone type per entry; ``None`` means entry i is zone type i.

    Returns:
        Sum over zones of type <= NORMAL of ``max(0, managed - high)``.
    """
    if len(high_wmark) != len(managed):
        raise ValueError("managed and high_wmark differ in length")
    types = _zone_types(len(managed), zone_idx)
    return sum(
        max(0, size - high)
        for size, high, idx in zip(managed, high_wmark, types, strict=True)
        if idx <= GFP_USER_ZONE
    )


def calculate_min_free_kbytes(nr_free_buffer_pages: int, user_min_free_kbytes: int = -1) -> int:
    """Boot-time ``min_free_kbytes``.

    Mirrors calculate_min_free_kbytes() in mm/page_alloc.c.

    Args:
        nr_free_buffer_pages: result of :func:`nr_free_buffer_pages` at that moment.
        user_min_free_kbytes: value written by the user to the sysctl, or -1 if none.
            The computed value only replaces it when it is larger.

    Returns:
        ``clamp(int_sqrt(lowmem_kbytes * 16), 128, 262144)``, or the user's value.
    """
    lowmem_kbytes = nr_free_buffer_pages * KIB_PER_PAGE
    new_min_free_kbytes = int_sqrt(lowmem_kbytes * 16)
    if new_min_free_kbytes > user_min_free_kbytes:
        return min(max(new_min_free_kbytes, MIN_FREE_KBYTES_FLOOR), MIN_FREE_KBYTES_CEIL)
    return user_min_free_kbytes


def recommended_min_free_kbytes(
    nr_populated_zones_upto_normal: int,
    nr_free_buffer_pages: int,
    pageblock_nr_pages: int = 512,
    migrate_pcptypes: int = MIGRATE_PCPTYPES,
) -> int:
    """The khugepaged recommended ``min_free_kbytes`` in KiB.

    Mirrors set_recommended_min_free_kbytes() in mm/khugepaged.c: two free pageblocks
    per zone plus ``MIGRATE_PCPTYPES**2`` pageblocks per zone for fallbacks, capped at
    5% of ``nr_free_buffer_pages`` (computed with the watermarks in force at the time).
    The kernel applies it only if it is larger than the current ``min_free_kbytes``.
    """
    per_zone = pageblock_nr_pages * 2 + pageblock_nr_pages * migrate_pcptypes * migrate_pcptypes
    recommended_pages = per_zone * nr_populated_zones_upto_normal
    recommended_pages = min(recommended_pages, nr_free_buffer_pages // 20)
    return recommended_pages * KIB_PER_PAGE


def default_min_free_kbytes(
    managed: Sequence[int],
    zone_idx: Sequence[int] | None = None,
    *,
    thp_enabled: bool,
    watermark_scale_factor: int = 10,
    pageblock_nr_pages: int = 512,
    present: Sequence[int] | None = None,
) -> int:
    """The ``min_free_kbytes`` a kernel ends up with at boot.

    Replays init_per_zone_wmark_min() (calculate_min_free_kbytes() while every
    watermark is still 0, then __setup_per_zone_wmarks()) and, when THP is
    ``always`` or ``madvise``, khugepaged's set_recommended_min_free_kbytes(), whose
    5% cap uses the high watermarks from the first step.

    set_recommended_min_free_kbytes() counts populated zones (present pages), so a
    zone whose every page is reserved still counts.

    Args:
        managed: managed pages per zone, all nodes, at boot (before init memory is freed).
        zone_idx: zone type per entry; ``None`` means entry i is zone type i.
        thp_enabled: ``transparent_hugepage/enabled`` is ``always`` or ``madvise``.
        watermark_scale_factor: the sysctl value in force at boot.
        pageblock_nr_pages: pages per pageblock.
        present: present pages per zone; ``None`` means equal to ``managed``.
    """
    types = _zone_types(len(managed), zone_idx)
    zeros = [0] * len(managed)
    min_free_kbytes = calculate_min_free_kbytes(nr_free_buffer_pages(managed, zeros, types))
    if not thp_enabled:
        return min_free_kbytes
    wmarks = setup_per_zone_wmarks(managed, None, min_free_kbytes, watermark_scale_factor)
    highs = [wmark[2] for wmark in wmarks]
    populated = managed if present is None else present
    nr_zones = sum(
        1 for size, idx in zip(populated, types, strict=True) if size > 0 and idx <= GFP_USER_ZONE
    )
    recommended = recommended_min_free_kbytes(
        nr_zones, nr_free_buffer_pages(managed, highs, types), pageblock_nr_pages
    )
    return max(recommended, min_free_kbytes)


def setup_per_zone_wmarks(
    managed: Sequence[int],
    is_highmem: Sequence[bool] | None,
    min_free_kbytes: int,
    watermark_scale_factor: int,
) -> list[tuple[int, int, int, int]]:
    """Per-zone ``_watermark[]``; mirrors __setup_per_zone_wmarks() in mm/page_alloc.c.

    ``lowmem_pages`` is a sum over every zone of every node, so pass all zones at once.
    The returned values exclude ``watermark_boost`` (the kernel resets it to 0 here).

    Args:
        managed: managed pages per zone (all nodes).
        is_highmem: per-zone ZONE_HIGHMEM flag; ``None`` means no highmem (x86_64).
        min_free_kbytes: the sysctl value.
        watermark_scale_factor: the sysctl value (1..3000, in 1/10000 of managed).

    Returns:
        ``(min, low, high, promo)`` per zone, in pages.
    """
    highmem = [False] * len(managed) if is_highmem is None else list(is_highmem)
    if len(highmem) != len(managed):
        raise ValueError("managed and is_highmem differ in length")
    pages_min = min_free_kbytes // KIB_PER_PAGE
    lowmem_pages = sum(size for size, high in zip(managed, highmem, strict=True) if not high)
    result = []
    for size, high in zip(managed, highmem, strict=True):
        # The kernel divides by lowmem_pages unconditionally; with no lowmem at all
        # there is nothing to reserve, so treat the share as 0 instead of crashing.
        tmp = pages_min * size // lowmem_pages if lowmem_pages else 0
        if high:
            wmark_min = min(max(size // 1024, SWAP_CLUSTER_MAX), HIGHMEM_MIN_WMARK_CEIL)
        else:
            wmark_min = tmp
        # mult_frac(size, wsf, 10000) is exactly floor(size * wsf / 10000).
        delta = max(tmp >> 2, size * watermark_scale_factor // WATERMARK_SCALE_DIVISOR)
        low = wmark_min + delta
        result.append((wmark_min, low, low + delta, low + 2 * delta))
    return result


def setup_per_zone_lowmem_reserve(managed: Sequence[int], ratio: Sequence[int]) -> list[list[int]]:
    """``lowmem_reserve[][]`` of the zones of one node.

    Mirrors setup_per_zone_lowmem_reserve() in mm/page_alloc.c.

    For zone i and each higher zone type j, ``lowmem_reserve[j]`` is the managed pages
    of zones i+1..j divided by ``ratio[i]``; it is 0 when the ratio is 0 (or below 1,
    which the sysctl handler turns into 0) or zone i has no managed pages. Entries
    j <= i and the whole row of the last zone type are never written, so stay 0.

    Args:
        managed: managed pages per zone type of ONE node, indexed by zone type.
        ratio: ``sysctl_lowmem_reserve_ratio``, indexed by zone type; it needs at
            least ``len(managed) - 1`` entries.

    Returns:
        ``lowmem_reserve[i][j]`` for i, j in ``range(len(managed))``.
    """
    nr_zones = len(managed)
    if len(ratio) < nr_zones - 1:
        raise ValueError(f"ratio has {len(ratio)} entries, need {nr_zones - 1}")
    reserve = [[0] * nr_zones for _ in range(nr_zones)]
    for i in range(nr_zones - 1):
        zone_ratio = ratio[i] if ratio[i] >= 1 else 0
        clear = zone_ratio == 0 or managed[i] == 0
        upper_pages = 0
        for j in range(i + 1, nr_zones):
            upper_pages += managed[j]
            reserve[i][j] = 0 if clear else upper_pages // zone_ratio
    return reserve


def zone_batchsize(managed: int) -> int:
    """The pcp ``batch`` of a zone.

    Mirrors zone_batchsize() in mm/page_alloc.c.

    About 0.1% of the zone or 1 MiB, whichever is smaller, divided by 4 and clamped to
    ``2**n - 1``. The kernel's zone_batchsize() can return 0 for tiny zones;
    zone_set_pageset_high_and_batch() stores ``max(1, batch)``, and that stored value
    is what this function returns (a 16 MiB DMA zone gets 1, a >= 1 GiB zone 63).
    """
    batch = min(managed >> 10, PCP_BATCH_MAX_PAGES) // 4
    batch = max(batch, 1)
    batch = _rounddown_pow_of_two(batch + batch // 2) - 1
    return max(1, batch)


def _rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def zone_highsize(
    managed: int,
    low_wmark: int,
    batch: int,
    cpus_of_node: int,
    percpu_pagelist_high_fraction: int,
    nr_online_cpus: int,
    cpu_online: int = 0,
) -> int:
    """The pcp ``high`` of a zone.

    Mirrors zone_highsize() in mm/page_alloc.c.

    Args:
        managed: managed pages of the zone.
        low_wmark: ``low_wmark_pages(zone)``, i.e. including the boost at that moment.
        batch: the stored pcp batch (see :func:`zone_batchsize`).
        cpus_of_node: online CPUs of the zone's node (``cpumask_of_node``).
        percpu_pagelist_high_fraction: the sysctl; 0 means "use the low watermark".
        nr_online_cpus: all online CPUs; used when the node has no CPU.
        cpu_online: 1 while a CPU is being onlined (hotplug callback), else 0.

    Returns:
        ``max(total / nr_split_cpus, 4 * batch)``.
    """
    if percpu_pagelist_high_fraction:
        total_pages = managed // percpu_pagelist_high_fraction
    else:
        total_pages = low_wmark
    nr_split_cpus = cpus_of_node + cpu_online
    if not nr_split_cpus:
        nr_split_cpus = nr_online_cpus
    return max(total_pages // nr_split_cpus, batch << 2)


def pageset_high_and_batch(
    managed: int,
    low_wmark: int,
    cpus_of_node: int,
    percpu_pagelist_high_fraction: int,
    nr_online_cpus: int,
    cpu_online: int = 0,
) -> tuple[int, int]:
    """``(high, batch)`` of every pcp of a zone; mirrors zone_set_pageset_high_and_batch().

    Arguments are those of :func:`zone_highsize`.
    """
    batch = zone_batchsize(managed)
    high = zone_highsize(
        managed,
        low_wmark,
        batch,
        cpus_of_node,
        percpu_pagelist_high_fraction,
        nr_online_cpus,
        cpu_online,
    )
    return high, batch
