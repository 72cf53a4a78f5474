"""Writes to ``/proc/sys/vm`` during a run: each recomputes what the kernel's handler does.

Mirrors the 6.1 handlers: ``min_free_kbytes_sysctl_handler()`` and
``watermark_scale_factor_sysctl_handler()`` (``setup_per_zone_wmarks()``, which also
resets every boost and updates the pcp sizes), ``lowmem_reserve_ratio_sysctl_handler()``
(``setup_per_zone_lowmem_reserve()``), ``percpu_pagelist_high_fraction_sysctl_handler()``
(``zone_pcp_update()``), and plain stores for ``watermark_boost_factor``,
``swappiness``, ``extfrag_threshold`` and ``compaction_proactiveness``
(``compaction_proactiveness_sysctl_handler()`` also wakes every kcompactd for a proactive
check).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator


def write_sysctl(mm: PageAllocator, name: str, value: Any) -> str:
    """Write ``vm.<name> = value``; returns what was recomputed (for the action log)."""
    mm.sysctl = dataclasses.replace(mm.sysctl, **{name: value})
    if name in ("min_free_kbytes", "watermark_scale_factor"):
        mm.setup_per_zone_wmarks()
        return "watermarks recomputed, boosts cleared, pcp high/batch resized"
    if name == "lowmem_reserve_ratio":
        mm.setup_per_zone_lowmem_reserve()
        return "lowmem_reserve recomputed"
    if name == "percpu_pagelist_high_fraction":
        mm.zone_pcp_update()
        return "pcp high/batch recomputed"
    if name == "watermark_boost_factor":
        for zone in mm.zones:
            zone.watermark_boost_factor = value
        return "stored (used by the next boost)"
    if name == "extfrag_threshold":
        mm.reclaim.compaction.extfrag_threshold = value
        return "stored (used by compaction_suitable())"
    if name == "compaction_proactiveness":
        mm.reclaim.compaction.proactiveness = value
        mm.reclaim.compaction.trigger_proactive()
        return "stored; kcompactd woken for a proactive check" if value else "stored"
    if name == "swappiness":
        mm.reclaim.swappiness = value
        return "stored (used by the next reclaim)"
    return "stored"
