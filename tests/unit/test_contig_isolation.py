"""Range isolation for alloc_contig_range() (mm/page_isolation.c of 6.1): which pages
``has_unmovable_pages()`` refuses, and what a failed ``start_isolate_page_range()``
leaves behind."""

from __future__ import annotations

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.constants import MT_ISOLATE, MT_MOVABLE, MT_UNMOVABLE
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.lru import KIND_ANON, KIND_SLAB
from simcore.mm.page_isolation import (
    has_unmovable_pages,
    start_isolate_page_range,
    undo_isolate_page_range,
)
from simcore.mm.page_isolation import test_pages_isolated as pages_isolated
from simcore.sim.machine import Machine

MOVABLE = int(GFP_HIGHUSER_MOVABLE)


def _machine() -> Machine:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=64 * 256, cpus=1, reserved_pages=64),))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1)


def test_what_has_unmovable_pages_refuses() -> None:
    m = _machine()
    m.register_owner("anon", lru=KIND_ANON)
    m.register_owner("slab", lru=KIND_SLAB)
    zone = m.mm.zones[1]
    lv = m.mm.reclaim.lruvecs[0]
    cases = {
        "anon": (m.alloc_now("anon", MOVABLE, 0, 0), True),  # PageLRU
        "movable": (m.alloc_now("app", MOVABLE, 0, 0), True),  # __PageMovable
        "thp": (m.alloc_now("thp", MOVABLE | int(GFP.COMP), 4, 0), True),
        "kernel": (m.alloc_now("kernel", int(GFP_KERNEL), 0, 0), False),
        "slab": (m.alloc_now("slab", int(GFP_KERNEL | GFP.RECLAIMABLE), 0, 0), False),
        "compound": (m.alloc_now("drv", int(GFP_KERNEL | GFP.COMP), 2, 0), False),
    }
    for name, (h, movable) in cases.items():
        assert h is not None and zone.spans(h.pfn), name
        found = has_unmovable_pages(zone, lv, h.pfn, h.pfn + (1 << h.order))
        assert (found < 0) == movable, name
    dma = m.mm.zones[0]  # its first 64 pages are reserved (memblock)
    assert has_unmovable_pages(dma, lv, dma.zone_start_pfn, dma.zone_start_pfn + 512) >= 0
    free = zone.end_pfn - 512
    assert has_unmovable_pages(zone, lv, free, zone.end_pfn) == -1  # free pages are fine


def test_a_failed_isolation_leaves_the_earlier_pageblocks_movable() -> None:
    """start_isolate_page_range() isolates the first and last pageblock before the
    middle ones; an unmovable page in the middle undoes them to MIGRATE_MOVABLE, even
    one that was UNMOVABLE before, as in the kernel."""
    m = _machine()
    zone = m.mm.zones[1]
    lv = m.mm.reclaim.lruvecs[0]
    start = zone.end_pfn - 4096
    zone.set_pageblock_migratetype(start, MT_UNMOVABLE)
    m.mm.pages.ref_np[start + 1024 + 7] = 1  # placed: a held page in the third pageblock
    ok, scanned = start_isolate_page_range(zone, lv, start, start + 4096, MT_MOVABLE)
    assert not ok and scanned == 512 + 512 + 512 + 8
    assert zone.get_pageblock_migratetype(start) == MT_MOVABLE
    assert zone.nr_isolate_pageblock == 0
    m.mm.pages.ref_np[start + 1024 + 7] = 0
    ok, _ = start_isolate_page_range(zone, lv, start, start + 4096, MT_MOVABLE)
    assert ok and zone.nr_isolate_pageblock == 8
    assert zone.get_pageblock_migratetype(start + 2048) == MT_ISOLATE
    assert pages_isolated(zone, start, start + 4096)
    undo_isolate_page_range(zone, start, start + 4096, MT_MOVABLE)
    assert zone.nr_isolate_pageblock == 0
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})
