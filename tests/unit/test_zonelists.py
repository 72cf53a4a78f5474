"""Zonelists, N_MEMORY and ALLOC_NOFRAGMENT use populated_zone() (present pages).

A zone can have present pages and no managed ones: every page memblock-reserved, as a
real ``/proc/zoneinfo`` may show (``proc show`` builds such machines from explicit
:class:`~simcore.mm.topology.ZoneSpan` spans). 6.1 lists such a zone in the zonelists
(``build_zonerefs_node()``), counts its node in N_MEMORY (``free_area_init()``), and
``alloc_flags_nofragment()`` checks ``populated_zone()`` of the node's DMA32 zone.

build_all_zonelists() also decides ``page_group_by_mobility_disabled``, which the model
does not simulate: the config refuses machines that small.
"""

from __future__ import annotations

import pytest

from simcore.config.parse import parse_config
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.errors import ConfigError
from simcore.mm.constants import ALLOC_NOFRAGMENT, ZoneType
from simcore.mm.gfp import GFP_KERNEL, GFP_NOWAIT
from simcore.mm.invariants import check_invariants
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.topology import ZoneSpan, boot_managed_estimate, layout_machine

KERNEL = int(GFP_KERNEL)
DMA, DMA32, NORMAL = int(ZoneType.DMA), int(ZoneType.DMA32), int(ZoneType.NORMAL)
NORMAL_START = 1 << 20  # 4 GiB


def _span(nid: int, idx: int, start: int, spanned: int, present: int, managed: int) -> ZoneSpan:
    """A zone whose unmanaged pages (holes and reserved) sit at its start."""
    return ZoneSpan(nid, idx, start, spanned, present, managed, start, spanned - managed)


def _machine(spans: list[ZoneSpan], nr_nodes: int = 2) -> PageAllocator:
    nodes = tuple(NodeConfig(memory_pages=1 << 16, cpus=1) for _ in range(nr_nodes))
    return PageAllocator(MachineConfig(nodes=nodes), SysctlConfig(), spans=spans)


def _two_nodes_node1_unmanaged() -> PageAllocator:
    """Node 0: DMA + DMA32, all managed. Node 1: a Normal zone with no managed page."""
    return _machine([
        _span(0, DMA, 1, 4095, 4095, 4095),
        _span(0, DMA32, 4096, 28672, 28672, 28672),
        _span(1, NORMAL, NORMAL_START, 32768, 32768, 0),
    ])


def test_node_with_present_but_no_managed_pages_is_in_n_memory() -> None:
    mm = _two_nodes_node1_unmanaged()
    # find_next_best_node() walks N_MEMORY: node 1 has present pages, so node 0's
    # fallback order reaches it (it did not when managed pages decided).
    assert mm.nodes[0].node_order == [0, 1]
    assert mm.nodes[1].node_order == [1, 0]


def test_unmanaged_populated_zone_is_listed_and_preferred() -> None:
    mm = _two_nodes_node1_unmanaged()
    normal1 = mm.nodes[1].node_zones[NORMAL]
    dma32, dma = mm.nodes[0].node_zones[DMA32], mm.nodes[0].node_zones[DMA]
    assert mm.zonelist(1, False, NORMAL) == (normal1, dma32, dma)
    assert mm.zonelist(0, False, NORMAL) == (dma32, dma, normal1)
    ac = mm.prepare_alloc_pages(KERNEL, 1)
    assert ac.preferred_zone is normal1
    # The zone fails its watermark (nothing managed), so the page comes from node 0:
    # zone_statistics() counts a miss against the preferred zone's node 1.
    ev = mm.vm
    pfn = mm.alloc_pages(KERNEL, 0, 1, 0)
    assert mm.page_zone(pfn) is dma32
    assert (ev["numa_hit"], ev["numa_miss"], ev["numa_foreign"]) == (0, 1, 1)
    check_invariants(mm, {pfn: 0})


def test_kswapd_is_not_woken_for_an_unmanaged_zone() -> None:
    # wake_all_kswapds() skips !managed_zone(); wakeup_kswapd() returns for it too.
    mm = _two_nodes_node1_unmanaged()
    for zone in mm.zones:
        zone.watermark = [1 << 30] * 4  # every zone fails: the slow path wakes kswapd
    assert mm.alloc_pages(int(GFP_NOWAIT), 0, 1, 0) == -1
    assert mm.vm["kswapd_wakeup"] == 2  # node 0 only, at both wake points
    normal1 = mm.nodes[1].node_zones[NORMAL]
    assert normal1 is not None
    mm.wakeup_kswapd(normal1, KERNEL, 0, NORMAL)
    assert mm.vm["kswapd_wakeup"] == 2


def test_kswapd_woken_for_the_first_managed_zone_of_each_node() -> None:
    # Node 1's Normal zone comes first in its zonelist but has no managed page: the
    # wakeup goes to node 1's DMA32 zone (last_pgdat is only set for managed zones).
    mm = _machine([
        _span(0, DMA, 1, 4095, 4095, 4095),
        _span(0, DMA32, 4096, 28672, 28672, 28672),
        _span(1, DMA32, 32768, 32768, 32768, 32768),
        _span(1, NORMAL, NORMAL_START, 32768, 32768, 0),
    ])
    assert [z.nid for z in mm.zonelist(1, False, NORMAL)] == [1, 1, 0, 0]
    for zone in mm.zones:
        zone.watermark = [1 << 30] * 4
    assert mm.alloc_pages(int(GFP_NOWAIT), 0, 1, 0) == -1
    assert mm.vm["kswapd_wakeup"] == 4  # nodes 1 and 0, at both wake points


def test_nofragment_needs_a_populated_dma32_zone_on_numa() -> None:
    # Node 0's DMA32 zone spans pfns but all are holes (present 0): populated_zone()
    # is false, so with two nodes the Normal zone gets no ALLOC_NOFRAGMENT.
    mm = _machine([
        _span(0, DMA, 1, 4095, 4095, 4095),
        _span(0, DMA32, 4096, 28672, 0, 0),
        _span(0, NORMAL, NORMAL_START, 32768, 32768, 32768),
        _span(1, NORMAL, NORMAL_START + 32768, 32768, 32768, 32768),
    ])
    assert mm.nodes[0].node_zones[DMA32] is not None
    assert [z.zone_idx for z in mm.nodes[0].zones] == [DMA, NORMAL]
    assert not mm.prepare_alloc_pages(KERNEL, 0).fast_flags & ALLOC_NOFRAGMENT
    # One node: the kernel assumes DMA32 is populated when Normal is (UMA).
    one = _machine([
        _span(0, DMA, 1, 4095, 4095, 4095),
        _span(0, DMA32, 4096, 28672, 0, 0),
        _span(0, NORMAL, NORMAL_START, 32768, 32768, 32768),
    ], nr_nodes=1)
    assert one.prepare_alloc_pages(KERNEL, 0).fast_flags & ALLOC_NOFRAGMENT
    check_invariants(mm, {})


def test_invariants_hold_for_spans_with_holes() -> None:
    # The oracle's DMA zone: spanned 4095, present 3998, managed 3840. The managed
    # range starts after every unmanaged page (holes and reserved), not after
    # present - managed of them.
    mm = _machine([
        _span(0, DMA, 1, 4095, 3998, 3840),
        _span(0, DMA32, 4096, 126976, 120000, 99239),
    ], nr_nodes=1)
    assert mm.zones[0].managed_start_pfn == 1 + 4095 - 3840
    assert mm.managed_pages == mm.nr_free_pages == 3840 + 99239
    check_invariants(mm, {})


@pytest.mark.parametrize(("memory", "cma", "ok"), [
    ("10MiB", False, False),  # 2559 managed pages (pfn 0 is a hole) < 512 * 5
    ("12MiB", False, True),
    ("12MiB", True, False),  # with CONFIG_CMA, MIGRATE_TYPES is 6: 3072 pages
    ("14MiB", True, True),
])
def test_config_refuses_machines_without_mobility_grouping(
    memory: str, cma: bool, ok: bool
) -> None:
    # build_all_zonelists(): page_group_by_mobility_disabled below
    # pageblock_nr_pages * MIGRATE_TYPES pages; the model does not simulate that mode.
    doc = {"name": "t", "seed": 1, "duration": "1ms",
           "machine": {"nodes": [{"memory": memory}], "cma": cma}}
    if ok:
        assert parse_config(doc, "tiny.yaml").machine.cma is cma
        return
    with pytest.raises(ConfigError, match=r"tiny.yaml: machine.nodes: .*grouping by mobility"):
        parse_config(doc, "tiny.yaml")


def test_mobility_check_uses_the_boot_estimate_not_the_reserved_memory() -> None:
    """build_all_zonelists() runs before memblock frees memory: reservations don't count.

    64 MiB node, 56 MiB reserved: free_area_init_core() gives 16127 pages at boot, well
    over 2560, so 6.1 keeps grouping by mobility although only 8 MiB end up managed.
    """
    doc = {"name": "t", "seed": 1, "duration": "1ms",
           "machine": {"nodes": [{"memory": "64MiB", "reserved": "56MiB"}]}}
    cfg = parse_config(doc, "reserved.yaml")
    spans = layout_machine(cfg.machine)
    assert sum(span.managed_pages for span in spans) < 2560
    # DMA: 4095 present, memmap ceil(4095*64/4096) = 64, all 4095 reserved (dma_reserve)
    # is not subtracted as it is not below the remaining 4031; DMA32: 12288 present,
    # memmap 192 -> 12096.
    assert [boot_managed_estimate(span) for span in spans if span.present_pages] == [
        4031, 12096]
