"""Multi-node allocation: zonelist order, spilling, __GFP_THISNODE, NOFRAGMENT, numa_*.

Expected values come from mm/page_alloc.c of Linux 6.1.20, worked out by hand below:
``find_next_best_node()`` and ``build_zonelists()`` for the node order,
``build_zonerefs_node()`` for the zone order inside a node, ``get_page_from_freelist()``
for the walk (watermark skip, the ALLOC_NOFRAGMENT restart), ``alloc_flags_nofragment()``
for when that flag is set and ``zone_statistics()`` for the NUMA counters.

The four-node machine: 32 MiB per node, laid out as x86_64 does (node 0 holds ZONE_DMA
[1, 4096) and ZONE_DMA32 [4096, 8192); nodes 1-3 are ZONE_DMA32 only), one CPU per node
(CPU c on node c), and an asymmetric SLIT (``node_distance(a, b)`` is ``DISTANCE[a][b]``;
row != column). With a CPU on every node the CPU penalty of find_next_best_node() adds
the same 1 to every candidate, so these node orders do not depend on which cpumasks the
kernel sees when it builds the zonelists (see test_boot_zonelists_see_no_cpu_on_x86_64).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.constants import ALLOC_NOFRAGMENT, MigrateType, ZoneType
from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.topology import ZoneSpan, build_node_orders

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.tracepoints import Tracer
    from simcore.mm.zone import Zone

KERNEL = int(GFP_KERNEL)
THISNODE = int(GFP_KERNEL | GFP.THISNODE)
DMA, DMA32, NORMAL = int(ZoneType.DMA), int(ZoneType.DMA32), int(ZoneType.NORMAL)
UNMOV, MOV = int(MigrateType.UNMOVABLE), int(MigrateType.MOVABLE)
NODE_PAGES = 32 << 8  # 32 MiB
CPUS = (1, 1, 1, 1)
DISTANCE = (
    (10, 20, 20, 20),
    (20, 10, 20, 30),
    (20, 20, 10, 40),
    (20, 20, 20, 10),
)
NUMA_COUNTERS = ("numa_hit", "numa_miss", "numa_foreign", "numa_local", "numa_other")


def _four_nodes(tracer: Tracer | None = None, cpus: tuple[int, ...] = CPUS) -> PageAllocator:
    nodes = tuple(NodeConfig(memory_pages=NODE_PAGES, cpus=c) for c in cpus)
    return PageAllocator(MachineConfig(nodes=nodes, distance=DISTANCE), SysctlConfig(), tracer)


def _numa(mm: PageAllocator) -> tuple[int, ...]:
    return tuple(mm.vm[name] for name in NUMA_COUNTERS)


# -- (a) zonelist order ---------------------------------------------------------------------


def test_find_next_best_node_rules_on_an_asymmetric_four_node_table() -> None:
    """Fallback order of every node, by hand from find_next_best_node() (6.1).

    Nodes 0-2 have CPUs in their cpumask_of_node(), node 3 has none (a memory-only node,
    e.g. CXL); this is the order build_zonelists() makes whenever it runs with those
    cpumasks (the pure function; what a booting machine gets is tested below).

    For node N, after N itself, the next node is the unused N_MEMORY node n with the
    smallest ``val(n) = (d[N][n] + [n < N] + [n has CPUs]) * 1024 + node_load[n]``
    (PENALTY_FOR_NODE_WITH_CPUS = 1, MAX_NUMNODES = 1 << CONFIG_NODES_SHIFT = 1024); the
    scan is in node order with a strict ``<``, so a tie goes to the lowest n.
    build_zonelists() adds 1 to ``node_load[n]`` when ``d[N][n] != d[N][prev]`` (prev
    starts as N), and __build_all_zonelists() zeroes node_load once, before the builds of
    nodes 0, 1, 2, 3 in turn, so the loads carry over from one build to the next.
    Loads are written L = [L0, L1, L2, L3].

    Node 0 (row 10 20 20 20), L = [0,0,0,0]:
      val: n1 = 21*1024, n2 = 21*1024, n3 = (20+0+0)*1024  -> 3 (no CPUs), d 20 != 10: L3=1
      n1 = n2 = 21504                                      -> 1 (tie: lower n), d 20 == 20
      -> 2.                                     order [0, 3, 1, 2], L = [0,0,0,1]
    Node 1 (row 20 10 20 30):
      n0 = (20+1+1)*1024 = 22528, n2 = (20+0+1)*1024 = 21504, n3 = 30*1024+1
                                                           -> 2, d 20 != 10: L2=1
      n0 = 22528 < n3 = 30721                              -> 0, d 20 == 20
      -> 3, d 30 != 20: L3=2.                   order [1, 2, 0, 3], L = [0,0,1,2]
    Node 2 (row 20 20 10 40):
      n0 = 22*1024+0, n1 = 22*1024+0, n3 = 40*1024+2       -> 0 (tie), d 20 != 10: L0=1
      n1 = 22528 < n3                                      -> 1, d 20 == 20
      -> 3, d 40 != 20: L3=3.                   order [2, 0, 1, 3], L = [1,0,1,3]
    Node 3 (row 20 20 20 10; every other node is below 3 and has CPUs):
      n0 = 22*1024+1, n1 = 22*1024+0, n2 = 22*1024+1       -> 1 (node_load), L1=1
      n0 = n2 = 22529                                      -> 0 (tie), then 2.
                                                order [3, 1, 0, 2]

    Each rule changes a line: without the CPU penalty node 0 is [0, 1, 2, 3]; without
    ``[n < N]`` node 1 is [1, 0, 2, 3]; without node_load (or with node_load reset per
    node) node 3 is [3, 0, 1, 2]; with ``<=`` ties node 0 is [0, 3, 2, 1]; reading the
    table by column (d[n][N]) makes node 1 start [1, 3, ...].
    """
    assert build_node_orders(DISTANCE, [True] * 4, [True, True, True, False]) == [
        [0, 3, 1, 2],
        [1, 2, 0, 3],
        [2, 0, 1, 3],
        [3, 1, 0, 2],
    ]


NO_PENALTY_ORDERS = [[0, 1, 2, 3], [1, 2, 0, 3], [2, 0, 1, 3], [3, 0, 1, 2]]
"""Node orders when the CPU penalty is the same for every node (all or none have CPUs).

val(n) = (d[N][n] + [n < N]) * 1024 + node_load[n] (a common +1 changes nothing):
  node 0: n1 = n2 = n3 = 20480 -> 1 (tie), L1=1; then 2, 3 (same distance).
          [0, 1, 2, 3], L = [0,1,0,0]
  node 1: n0 = 21*1024, n2 = 20*1024, n3 = 30*1024 -> 2, L2=1; then 0 (21504 < 30720,
          d 20 == 20); then 3, d 30 != 20: L3=1.     [1, 2, 0, 3], L = [0,1,1,1]
  node 2: n0 = 21504 + 0, n1 = 21504 + 1, n3 = 40960 + 1 -> 0 (node_load), L0=1; then 1;
          then 3, L3=2.                              [2, 0, 1, 3], L = [1,1,1,2]
  node 3: n0 = n1 = n2 = 21*1024 + 1 -> 0 (tie), then 1, 2.  [3, 0, 1, 2]
"""


def test_node_order_of_a_machine_with_cpus_on_every_node() -> None:
    mm = _four_nodes()
    assert [node.node_order for node in mm.nodes] == NO_PENALTY_ORDERS


@pytest.mark.xfail(strict=True, reason=(
    "x86_64 6.1.20 builds the boot zonelists in start_kernel() (build_all_zonelists(NULL)) "
    "before any CPU is in node_to_cpumask_map: numa_add_cpu() first runs in identify_cpu() "
    "via check_bugs() -> identify_boot_cpu(), later in start_kernel(), and for the other "
    "CPUs at smp_init(). So find_next_best_node() sees cpumask_of_node() empty for every "
    "node and PENALTY_FOR_NODE_WITH_CPUS never applies at boot; the model applies it to "
    "the nodes configured with CPUs (simcore/mm/topology.py build_node_orders())"))
def test_boot_zonelists_see_no_cpu_on_x86_64() -> None:
    """A machine with a memory-only node 3 boots with the no-penalty orders.

    init/main.c (6.1.20): setup_per_cpu_areas() allocates the (empty) node cpumasks
    (setup_node_to_cpumask_map()), then build_all_zonelists(NULL) runs, and only much
    later check_bugs() identifies the boot CPU (numa_add_cpu(0)); secondary CPUs join
    their node's mask as they come up. The zonelists are rebuilt afterwards only by
    memory hotplug, which the model does not have. Hence NO_PENALTY_ORDERS, not the
    [0, 3, 1, 2] ... of the test above.
    """
    mm = _four_nodes(cpus=(1, 1, 1, 0))
    assert [node.node_order for node in mm.nodes] == NO_PENALTY_ORDERS


def test_zonelist_is_node_major_highest_zone_first() -> None:
    # build_zonelists_in_node_order(): for each node of node_order, build_zonerefs_node()
    # appends its populated zones from the highest zone type down. The NOFALLBACK
    # zonelist (__GFP_THISNODE, build_thisnode_zonelists()) has the node's own zones only.
    mm = _four_nodes()
    zl = mm.zonelist(3, False, NORMAL)
    assert [(z.nid, z.name) for z in zl] == [
        (3, "DMA32"), (0, "DMA32"), (0, "DMA"), (1, "DMA32"), (2, "DMA32"),
    ]
    assert [(z.nid, z.name) for z in mm.zonelist(0, True, NORMAL)] == [(0, "DMA32"), (0, "DMA")]
    assert [z.nid for z in mm.zonelist(1, False, NORMAL)] == [1, 2, 0, 0, 3]
    # gfp_zone(__GFP_DMA) = ZONE_DMA: only DMA zones are eligible, node 0's is the one.
    assert [(z.nid, z.name) for z in mm.zonelist(2, False, DMA)] == [(0, "DMA")]


# -- (b) the next allocation comes from the next node of the fallback order ----------------


def _first_visits(nids: list[int]) -> list[int]:
    """The node sequence with consecutive repeats collapsed."""
    return [n for i, n in enumerate(nids) if i == 0 or nids[i - 1] != n]


def test_exhausted_local_node_spills_to_the_next_node_in_order() -> None:
    """GFP_KERNEL order-0 allocations from CPU 1 (node 1) until nothing is left.

    get_page_from_freelist() skips a zone that fails its watermark (node_reclaim_mode
    is 0) and takes the next zone of the zonelist: the fast path (ALLOC_WMARK_LOW)
    drains node 1, then node 2, 0 and 3 in node 1's order [1, 2, 0, 3] down to their
    LOW watermarks. Then the slow path's get_page_from_freelist() (ALLOC_WMARK_MIN,
    gfp_to_alloc_flags()) walks the same zonelist from the preferred zone again: node 1
    first, then 2, 0, 3, each down to MIN. There is nothing to reclaim; with
    ``__GFP_NORETRY`` the request then fails after one round instead of going to the
    OOM killer.
    """
    mm = _four_nodes()
    pfns: list[int] = []
    while (pfn := mm.alloc_pages(KERNEL | int(GFP.NORETRY), 0, 1, 1)) >= 0:
        pfns.append(pfn)
    assert _first_visits([mm.page_zone(pfn).nid for pfn in pfns]) == [1, 2, 0, 3, 1, 2, 0, 3]
    for zone in mm.zones:  # every zone ended at (not above) its MIN watermark, which
        # wmark_pages() raises by watermark_boost (the steals boosted ZONE_DMA)
        mark = zone.watermark[0] + zone.watermark_boost + zone.lowmem_reserve[NORMAL]
        assert zone.nr_free_pages <= mark
    check_invariants(mm, dict.fromkeys(pfns, 0))


def test_first_spilled_page_comes_from_the_nearest_node(lab: Lab) -> None:
    # Node 1's order is [1, 2, 0, 3]: with node 1 empty the page comes from node 2
    # (distance 20, above node 1, so no "[n < N]" penalty), not node 0 (also 20).
    mm = _four_nodes()
    for zone in mm.nodes[1].zones:
        lab.clear(zone)
    pfn = mm.alloc_pages(KERNEL, 0, 1, 1)
    assert mm.page_zone(pfn).nid == 2


# -- (c) __GFP_THISNODE ---------------------------------------------------------------------


def _free_pages_by_node(mm: PageAllocator) -> list[int]:
    return [sum(z.nr_free_pages + z.pcp_pages for z in n.zones) for n in mm.nodes]


def test_thisnode_fails_instead_of_spilling(call_log: CallLog) -> None:
    """__GFP_THISNODE uses ZONELIST_NOFALLBACK (gfp_zonelist()), node 0's zones only.

    The allocations drain node 0 down to MIN (fast path at LOW, then the slow path at
    MIN) and then fail; no page of another node is touched, nothing counts as a NUMA
    miss, and wake_all_kswapds() wakes node 0 only (once before and once after the MIN
    attempt of the failing request). Without the flag the same request spills to node 1.
    """
    mm = _four_nodes(call_log)
    before = _free_pages_by_node(mm)
    nids: set[int] = set()
    n = 0
    while (pfn := mm.alloc_pages(THISNODE, 0, 0, 0)) >= 0:
        nids.add(mm.page_zone(pfn).nid)
        n += 1
    assert nids == {0}
    assert _free_pages_by_node(mm)[1:] == before[1:]
    assert mm.vm["numa_hit"] == n
    assert (mm.vm["numa_miss"], mm.vm["numa_foreign"]) == (0, 0)
    assert mm.vm["pgalloc_fail"] == 1
    (fail,) = call_log.named("mm_page_alloc_fail")
    assert fail[:2] == (0, 0)  # nid 0, order 0
    wakeups = mm.vm["kswapd_wakeup"]
    mm.alloc_pages(THISNODE, 0, 0, 0)
    assert mm.vm["kswapd_wakeup"] == wakeups + 2  # node 0 only, at both wake points
    assert mm.page_zone(mm.alloc_pages(KERNEL, 0, 0, 0)).nid == 1


# -- (d) ALLOC_NOFRAGMENT and the remote-node restart ------------------------------------------

NORMAL_START = 1 << 20  # 4 GiB


def _span(nid: int, idx: int, start: int, pages: int) -> ZoneSpan:
    return ZoneSpan(nid, idx, start, pages, pages, pages, start, 0)


def _normal_on_two_nodes(
    lab: Lab, dma32_pageblock: bool, tracer: Tracer | None = None
) -> tuple[PageAllocator, Zone]:
    """Node 0: DMA, DMA32 and a 16 MiB Normal zone; node 1: a 16 MiB Normal zone.

    Node 0's DMA and DMA32 free lists are emptied, except (optionally) one free MOVABLE
    pageblock in DMA32; node 0's Normal zone keeps only one order-3 MOVABLE block at
    NORMAL_START + 512. Node 1 is untouched (all MOVABLE order-10 blocks). Watermarks 0.
    """
    nodes = (NodeConfig(memory_pages=1 << 16, cpus=1), NodeConfig(memory_pages=1 << 16, cpus=1))
    mm = PageAllocator(MachineConfig(nodes=nodes), SysctlConfig(), tracer, spans=[
        _span(0, DMA, 1, 4095),
        _span(0, DMA32, 4096, 12288),
        _span(0, NORMAL, NORMAL_START, 4096),
        _span(1, NORMAL, NORMAL_START + 4096, 4096),
    ])
    lab.no_watermarks(mm)
    dma, dma32, normal0, _ = mm.zones
    for zone in (dma, dma32, normal0):
        lab.clear(zone)
        lab.pcp_batch(zone, 1)
    if dma32_pageblock:
        lab.place(dma32, 8192, 9, MOV)
    lab.place(normal0, NORMAL_START + 512, 3, MOV)
    return mm, normal0


def test_nofragment_restarts_locally_before_using_a_remote_node(
    lab: Lab, call_log: CallLog
) -> None:
    """get_page_from_freelist() (6.1), GFP_KERNEL order 0 from node 0.

    alloc_flags_nofragment(): the preferred zone is Normal and node 0's DMA32 zone is
    populated, so the first walk has ALLOC_NOFRAGMENT: __rmqueue_fallback() may only
    steal blocks of order >= pageblock_order. Walk 1: node 0 Normal has no UNMOVABLE page
    and only an order-3 MOVABLE block (too small) -> NULL; DMA32 and DMA fail their
    watermark (nothing free); the next zone is node 1's Normal, on another node than the
    preferred zone, so the kernel clears ALLOC_NOFRAGMENT and restarts the walk from the
    preferred zone ("locality is more important than fragmentation avoidance"). Walk 2:
    node 0 Normal now steals the order-3 block (a fragmenting fallback). Node 1's free
    order-10 blocks, which walk 1 would have stolen from, are not touched.
    """
    mm, normal0 = _normal_on_two_nodes(lab, dma32_pageblock=False, tracer=call_log)
    assert mm.prepare_alloc_pages(KERNEL, 0).fast_flags & ALLOC_NOFRAGMENT
    node1_free = mm.zones[3].nr_free_pages
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert pfn == NORMAL_START + 512
    assert mm.page_zone(pfn) is normal0
    assert mm.zones[3].nr_free_pages == node1_free
    steals = [args[1:] for args in call_log.named("mm_page_alloc_extfrag")]
    assert steals == [(NORMAL_START + 512, 0, 3, UNMOV, MOV, True)]
    assert (mm.vm["numa_hit"], mm.vm["numa_miss"]) == (1, 0)


def test_nofragment_takes_a_local_lower_zone_pageblock_first(lab: Lab) -> None:
    # The restart only happens when the walk reaches a remote node: a whole free
    # pageblock in node 0's DMA32 zone satisfies walk 1 (ALLOC_NOFRAGMENT allows a
    # pageblock-sized steal), before node 1 is reached and before the order-3 block in
    # Normal is split.
    mm, normal0 = _normal_on_two_nodes(lab, dma32_pageblock=True)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)
    assert pfn == 8192
    assert mm.page_zone(pfn).name == "DMA32" and mm.page_zone(pfn).nid == 0
    assert lab.blocks(normal0) == {NORMAL_START + 512: (3, MOV)}


# -- (e) numa_hit / numa_miss / numa_foreign / numa_local / numa_other ---------------------


def test_numa_counters_after_a_known_sequence(lab: Lab) -> None:
    """zone_statistics(preferred_zone, z, 1) in 6.1, called once per allocation.

    hit if z's node is the preferred zone's node, else miss (and foreign, counted on
    the preferred zone); then local if z's node is numa_node_id() (the running CPU's
    node), else other. nr_account is 1 from rmqueue(), whatever the order. Failed
    allocations count nothing. CPU c runs on node c.

      step                                         served  hit miss for local other
      1 CPU 0, node 0, order 0                     node 0   1    0   0    1     0
      2 CPU 0, node 1, order 0                     node 1   2    0   0    1     1
      3 CPU 1, node 1, order 3 (counts 1, not 8)   node 1   3    0   0    2     1
      -- node 0 emptied; its order is [0, 1, 2, 3] --
      4 CPU 0, node 0 -> spills to node 1          node 1   3    1   1    2     2
      5 CPU 1, node 0 -> node 1 (a local miss)     node 1   3    2   2    3     2
      6 CPU 3, node 3                              node 3   4    2   2    4     2
      7 CPU 0, node 0, __GFP_THISNODE: fails       -        4    2   2    4     2
    """
    mm = _four_nodes()
    steps = [(0, 0, 0), (0, 1, 0), (1, 1, 3)]
    served = [mm.page_zone(mm.alloc_pages(KERNEL, order, nid, cpu)).nid
              for cpu, nid, order in steps]
    assert served == [0, 1, 1]
    assert _numa(mm) == (3, 0, 0, 2, 1)
    assert mm.vm["pgalloc_dma32"] == 1 + 1 + 8
    for zone in mm.nodes[0].zones:
        lab.clear(zone)
    served = [mm.page_zone(mm.alloc_pages(KERNEL, 0, nid, cpu)).nid
              for cpu, nid in [(0, 0), (1, 0), (3, 3)]]
    assert served == [1, 1, 3]
    assert _numa(mm) == (4, 2, 2, 4, 2)
    assert mm.alloc_pages(THISNODE, 0, 0, 0) == -1
    assert _numa(mm) == (4, 2, 2, 4, 2)
