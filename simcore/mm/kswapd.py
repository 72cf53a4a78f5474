"""kswapd: the wake filter, ``balance_pgdat()`` and the sleep logic, as generators.

Mirrors mm/vmscan.c (6.1): ``wakeup_kswapd()``, ``pgdat_balanced()``,
``pgdat_watermark_boosted()``, ``prepare_kswapd_sleep()``, ``kswapd_try_to_sleep()``,
``kswapd()``, ``balance_pgdat()`` and ``kswapd_shrink_node()``.

The pure core has no clock, so the kswapd thread is a generator that says what it does
with time: it yields an int (ns of reclaim work), :data:`NAP` (sleep ``HZ/10`` unless
woken; the driver sends back whether it was woken) or :data:`SLEEP` (sleep until woken).
:mod:`simcore.sim.machine` runs one per node as a SimPy process.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from simcore.mm.constants import MAX_NR_ZONES
from simcore.mm.gfp import GFP
from simcore.mm.vmscan import DEF_PRIORITY, MAX_RECLAIM_RETRIES, SWAP_CLUSTER_MAX, ScanControl
from simcore.mm.vmstat import VMSTAT_INDEX
from simcore.mm.zone import managed_zone

if TYPE_CHECKING:
    from simcore.mm.vmscan import Reclaim
    from simcore.mm.zone import Zone

NAP = "nap"
SLEEP = "sleep"
WMARK_HIGH = 2
GFP_DIRECT_RECLAIM = int(GFP.DIRECT_RECLAIM)
GFP_KERNEL = int(GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM | GFP.IO | GFP.FS)
_VM_KSWAPD_WAKEUP = VMSTAT_INDEX["kswapd_wakeup"]

KswapdStep = Generator[int | str, bool | None, int]


def zone_watermark_ok_safe(zone: Zone, order: int, mark: int, highest_zoneidx: int) -> bool:
    """``zone_watermark_ok_safe()`` (the model's NR_FREE_PAGES is always exact)."""
    return bool(zone.watermark_ok(order, mark, highest_zoneidx, 0, zone.nr_free_pages))


def pgdat_balanced(reclaim: Reclaim, nid: int, order: int, highest_zoneidx: int) -> bool:
    """``pgdat_balanced()``: some zone passes its high watermark (plus boost).

    Checked for the managed zones up to ``highest_zoneidx``, at ``order``; also true
    when there is no such zone.
    """
    zones = reclaim.managed_zones(nid, highest_zoneidx)
    if not zones:
        return True
    return any(zone_watermark_ok_safe(z, order, z.wmark_pages(WMARK_HIGH), highest_zoneidx)
               for z in zones)


def pgdat_watermark_boosted(reclaim: Reclaim, nid: int, highest_zoneidx: int) -> bool:
    """``pgdat_watermark_boosted()``: some zone up to ``highest_zoneidx`` is boosted."""
    zones = reclaim.mm.nodes[nid].node_zones[: highest_zoneidx + 1]
    return any(z is not None and z.watermark_boost for z in zones)


def wakeup_kswapd(reclaim: Reclaim, zone: Zone, gfp: int, order: int,
                  highest_zoneidx: int) -> bool:
    """``wakeup_kswapd()``: raise the node's kswapd order and zone, and wake it if needed.

    Nothing for a zone with no managed pages. kswapd is woken only while it waits, and
    not when the node is hopeless (``kswapd_failures``) or balanced and not boosted; in
    those cases a caller that cannot reclaim directly wakes kcompactd instead. Returns
    True if kswapd was woken (``mm_vmscan_wakeup_kswapd``).
    """
    if not managed_zone(zone):
        return False
    st = reclaim.kswapd[zone.nid]
    if st.highest_zoneidx == MAX_NR_ZONES or st.highest_zoneidx < highest_zoneidx:
        st.highest_zoneidx = highest_zoneidx
    if st.order < order:
        st.order = order
    if not st.waiting:
        return False
    if (st.failures >= MAX_RECLAIM_RETRIES
            or pgdat_balanced(reclaim, zone.nid, order, highest_zoneidx)
            and not pgdat_watermark_boosted(reclaim, zone.nid, highest_zoneidx)):
        if not gfp & GFP_DIRECT_RECLAIM:
            reclaim.compaction.wakeup_kcompactd(zone.nid, order, highest_zoneidx)
        return False
    reclaim.mm.vm.v[_VM_KSWAPD_WAKEUP] += 1
    reclaim.span("mm_vmscan_wakeup_kswapd", zone.nid, 0, 0,
                 f"zid={highest_zoneidx} order={order}")
    st.woken = True
    if st.thread:  # autoremove_wake_function(): off kswapd_wait once woken
        st.waiting = False
    st.wake()
    return True


def prepare_kswapd_sleep(reclaim: Reclaim, nid: int, order: int, highest_zoneidx: int) -> bool:
    """``prepare_kswapd_sleep()``: hopeless, or balanced."""
    if reclaim.kswapd[nid].failures >= MAX_RECLAIM_RETRIES:
        return True
    return pgdat_balanced(reclaim, nid, order, highest_zoneidx)


def kswapd_highest_zoneidx(reclaim: Reclaim, nid: int, prev: int) -> int:
    """``kswapd_highest_zoneidx()``."""
    cur = reclaim.kswapd[nid].highest_zoneidx
    return prev if cur == MAX_NR_ZONES else cur


def kswapd_try_to_sleep(reclaim: Reclaim, nid: int, alloc_order: int, reclaim_order: int,
                        highest_zoneidx: int) -> KswapdStep:
    """``kswapd_try_to_sleep()``: nap HZ/10 if balanced, then sleep if still balanced.

    A kswapd woken during its nap (or not balanced after it) counts
    ``kswapd_low_wmark_hit_quickly`` (or ``_high_``) and returns to reclaim.
    """
    st = reclaim.kswapd[nid]
    woken = False
    st.waiting, st.woken = True, False
    if prepare_kswapd_sleep(reclaim, nid, reclaim_order, highest_zoneidx):
        reclaim.compaction.reset_isolation_suitable(nid)
        reclaim.compaction.wakeup_kcompactd(nid, alloc_order, highest_zoneidx)
        woken = bool((yield NAP))
        if woken:
            st.highest_zoneidx = kswapd_highest_zoneidx(reclaim, nid, highest_zoneidx)
            if st.order < reclaim_order:
                st.order = reclaim_order
    if not woken and prepare_kswapd_sleep(reclaim, nid, reclaim_order, highest_zoneidx):
        reclaim.span("mm_vmscan_kswapd_sleep", nid, 0, 0, "")
        yield SLEEP
    else:
        name = "kswapd_low_wmark_hit_quickly" if woken else "kswapd_high_wmark_hit_quickly"
        reclaim.mm.vm.add(name, 1)
    st.waiting = False
    return 0


def kswapd(reclaim: Reclaim, nid: int) -> KswapdStep:
    """``kswapd()``: the node's reclaim thread, forever.

    The model starts after boot, when kswapd has long been asleep: the first step is
    the sleep (the kernel's first ``kswapd_try_to_sleep()`` naps HZ/10 at boot first).
    """
    st = reclaim.kswapd[nid]
    st.order, st.highest_zoneidx = 0, MAX_NR_ZONES
    highest = MAX_NR_ZONES - 1
    st.waiting = True
    if not st.woken:
        yield SLEEP
    st.waiting = False
    asleep_at_boot = True  # woken out of that sleep: straight on to reclaim
    while True:
        alloc_order = reclaim_order = st.order
        highest = kswapd_highest_zoneidx(reclaim, nid, highest)
        while True:  # kswapd_try_sleep:
            if not asleep_at_boot:
                yield from kswapd_try_to_sleep(reclaim, nid, alloc_order, reclaim_order,
                                               highest)
            asleep_at_boot = False
            alloc_order = st.order
            highest = kswapd_highest_zoneidx(reclaim, nid, highest)
            st.order, st.highest_zoneidx = 0, MAX_NR_ZONES
            reclaim.span("mm_vmscan_kswapd_wake", nid, 0, 0,
                         f"zid={highest} order={alloc_order}")
            reclaim_order = yield from balance_pgdat(reclaim, nid, alloc_order, highest)
            if reclaim_order >= alloc_order:
                break


def set_reclaim_active(reclaim: Reclaim, nid: int, highest_zoneidx: int,
                       active: bool) -> None:
    """``update_reclaim_active()``: set or clear the zones' ZONE_RECLAIM_ACTIVE.

    While it is set, their pcp lists are capped at 4 × batch (``nr_pcp_high()``).
    """
    for zone in reclaim.managed_zones(nid, highest_zoneidx):
        zone.reclaim_active = active


def kswapd_shrink_node(reclaim: Reclaim, nid: int, sc: ScanControl) -> bool:
    """``kswapd_shrink_node()``: reclaim the sum of the zones' high watermarks.

    Once an order > 0 run has reclaimed ``compact_gap(order)`` (2 << order) pages it
    continues for order 0. Returns True if it scanned its whole target.
    """
    sc.nr_to_reclaim = sum(max(z.wmark_pages(WMARK_HIGH), SWAP_CLUSTER_MAX)
                           for z in reclaim.managed_zones(nid, sc.reclaim_idx))
    reclaim.shrink_node(nid, sc)
    if sc.order and sc.nr_reclaimed >= 2 << sc.order:
        sc.order = 0
    return sc.nr_scanned >= sc.nr_to_reclaim


def balance_pgdat(reclaim: Reclaim, nid: int, order: int, highest_zoneidx: int) -> KswapdStep:
    """``balance_pgdat()``: reclaim until the node is balanced, then remove the boost.

    Yields the cost of each priority round. Records each zone's boost at the start;
    boosted reclaim neither writes nor swaps and stops raising priority at
    DEF_PRIORITY - 2; at the end the recorded boosts are subtracted and, if any, kcompactd
    is woken at pageblock_order. A run that reclaimed nothing counts a kswapd failure.
    Returns the order it ended with.
    """
    mm = reclaim.mm
    st = reclaim.kswapd[nid]
    sc = ScanControl(0, GFP_KERNEL, highest_zoneidx, order, kswapd=True,
                     cpu=_node_cpu(reclaim, nid))
    mm.vm.add("pageoutrun", 1)
    zones = reclaim.managed_zones(nid, highest_zoneidx)
    zone_boosts = [(z, z.watermark_boost) for z in zones]
    nr_boost_reclaim = sum(b for _, b in zone_boosts)
    boosted = bool(nr_boost_reclaim)
    total_reclaimed = 0
    elapsed = 0
    while True:  # restart:
        set_reclaim_active(reclaim, nid, highest_zoneidx, True)
        sc.priority = DEF_PRIORITY
        restart = False
        balanced_out = False
        while sc.priority >= 1:
            before = sc.nr_reclaimed
            raise_priority = True
            sc.reclaim_idx = highest_zoneidx
            balanced = pgdat_balanced(reclaim, nid, sc.order, highest_zoneidx)
            if not balanced and nr_boost_reclaim:
                nr_boost_reclaim = 0
                restart = True
                break
            if not nr_boost_reclaim and balanced:
                balanced_out = True
                break
            if nr_boost_reclaim and sc.priority == DEF_PRIORITY - 2:
                raise_priority = False
            sc.may_writepage = not nr_boost_reclaim
            sc.may_swap = not nr_boost_reclaim
            cost_before = sc.cost_ns
            # kswapd_age_node(): age the active anon list when its inactive list is low.
            lv = reclaim.lruvecs[nid]
            if reclaim.swap_pages and reclaim.inactive_is_low(lv, 0):
                reclaim.shrink_active_list(SWAP_CLUSTER_MAX, lv, sc, 1)
            if sc.priority < DEF_PRIORITY - 2:
                sc.may_writepage = True
            sc.nr_scanned = 0
            if kswapd_shrink_node(reclaim, nid, sc):
                raise_priority = False
            if sc.cost_ns > cost_before:
                elapsed += sc.cost_ns - cost_before
                yield sc.cost_ns - cost_before
            nr_reclaimed = sc.nr_reclaimed - before
            nr_boost_reclaim -= min(nr_boost_reclaim, nr_reclaimed)
            if nr_boost_reclaim and not nr_reclaimed:
                break
            if raise_priority or not nr_reclaimed:
                sc.priority -= 1
        if restart:
            total_reclaimed = sc.nr_reclaimed
            continue
        if not balanced_out and not sc.nr_reclaimed:
            st.failures += 1
        total_reclaimed = sc.nr_reclaimed
        break
    set_reclaim_active(reclaim, nid, highest_zoneidx, False)
    if boosted:
        for zone, boost in zone_boosts:
            if boost:
                zone.watermark_boost -= min(zone.watermark_boost, boost)
        reclaim.compaction.wakeup_kcompactd(nid, mm.pageblock_order, highest_zoneidx)
    reclaim.span("mm_vmscan_kswapd_run", nid, total_reclaimed, elapsed,
                 f"order={order} zid={highest_zoneidx} priority={sc.priority}", elapsed)
    return sc.order


def _node_cpu(reclaim: Reclaim, nid: int) -> int:
    """The CPU kswapd runs on: the node's first, or CPU 0 for a CPU-less node."""
    cpus = reclaim.mm.nodes[nid].cpus
    return cpus[0] if cpus else 0
