"""Page reclaim: shrinking a node's LRU lists and slab, and direct reclaim.

Mirrors mm/vmscan.c (6.1, classic LRU; MGLRU off as on the oracle kernel):
``shrink_node()`` → ``prepare_scan_count()``, ``get_scan_count()``, ``shrink_lruvec()``
(``shrink_list()``, ``shrink_inactive_list()``, ``shrink_active_list()``,
``shrink_folio_list()``) and ``shrink_slab()``; ``try_to_free_pages()`` →
``do_try_to_free_pages()`` → ``shrink_zones()``; ``consider_reclaim_throttle()`` and
``reclaim_throttle()``; ``zone_reclaimable_pages()``; ``drop_caches``. kswapd is in
:mod:`simcore.mm.kswapd`.

Everything here is synchronous and returns what it did and what it cost (a
:class:`ScanControl`); the timed layer spends that time. Reclaimed pages go back to the
buddy allocator through :meth:`Reclaim.release` (the owner's bookkeeping, then
``__free_pages()``), so they land on the free lists where they really are.

SIMPLIFICATIONS (also listed in the README):

- Once ``nr_to_reclaim`` is met, ``shrink_lruvec()`` stops (the kernel first scales
  the other lists' remaining scan down proportionally and finishes those). A direct
  reclaimer at DEF_PRIORITY scans its whole target either way, as in the kernel.
- The anon/file balance uses ``vm.swappiness`` alone: the recent reclaim costs
  (``anon_cost``/``file_cost``) and refaults (workingset) are not tracked.
- A dirty page-cache page that reclaim meets is written back at once (priced
  ``reclaim_dirty_ns`` and charged to that reclaimer) and rotated to the tail of the
  inactive list, so the next scan frees it clean. The kernel marks it ``PG_reclaim``,
  activates it and leaves the write to the flusher threads. Direct reclaim without
  ``__GFP_FS`` skips dirty pages.
- No memory cgroups, no ``throttle_direct_reclaim()`` (the pfmemalloc wait), no
  writeback throttling (``VMSCAN_THROTTLE_WRITEBACK``); ``reclaim_throttle()`` is
  modelled for ``VMSCAN_THROTTLE_NOPROGRESS``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from simcore.config.types import CostConfig
from simcore.mm.compaction import (
    COMPACT_CONTINUE,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    Compaction,
    compact_gap,
)
from simcore.mm.constants import MAX_NR_ZONES, PAGE_ALLOC_COSTLY_ORDER, ZoneType
from simcore.mm.gfp import GFP, gfp_zone
from simcore.mm.lru import (
    DIRTY,
    HOT,
    KIND_ANON,
    KIND_FILE,
    KIND_SLAB,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_NAMES,
    NR_LRU_LISTS,
    ORDER_MASK,
    PG_REFERENCED,
    SLAB,
    Lruvec,
    entry_pages,
    is_active_lru,
    is_file_lru,
    pack,
)
from simcore.mm.oom_kill import OomCandidate
from simcore.mm.vmstat import VMSTAT_ZONE_SUFFIXES
from simcore.mm.zone import managed_zone

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator
    from simcore.mm.zone import Zone

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32
MAX_RECLAIM_RETRIES = 16
SHRINK_BATCH = 128
DEFAULT_SEEKS = 2
DEACTIVATE_ANON, DEACTIVATE_FILE = 1, 2
GFP_IO = int(GFP.IO)
GFP_FS = int(GFP.FS)

ReleaseFn = Callable[[int, int, int, int], None]
"""``release(pfn, order, cpu, kind)``: give a reclaimed block back (owner, then buddy)."""
SpanFn = Callable[..., None]
"""``span(name, nid, pages, duration_ns, detail, ago_ns=0)``: a reclaim tracepoint for
the run, which started ``ago_ns`` before now and lasted ``duration_ns``."""


class ScanControl:
    """``struct scan_control``: one reclaim invocation, and what it did and cost.

    Attributes:
        nr_to_reclaim: Pages to reclaim before stopping.
        gfp: The reclaim context (``current_gfp_context()`` of the request).
        reclaim_idx: Highest zone index whose pages may be reclaimed.
        order: The allocation order reclaim works for.
        priority: Scan priority: each list is scanned ``size >> priority``.
        may_writepage, may_swap: Whether dirty pages may be written and anon swapped.
        kswapd: Run by kswapd (counts ``pgscan_kswapd``) rather than a direct reclaimer.
        cpu: The CPU whose pcp lists receive the freed pages.
        nr_scanned, nr_reclaimed: Pages isolated and freed (``nr_scanned`` is per round).
        cost_ns: Time the work took (:class:`~simcore.config.types.CostConfig`).
        throttled_ns: Time slept in ``reclaim_throttle()``.
    """

    __slots__ = ("nr_to_reclaim", "gfp", "reclaim_idx", "order", "priority",
                 "may_writepage", "may_swap", "may_deactivate", "force_deactivate",
                 "skipped_deactivate", "cache_trim_mode", "file_is_tiny", "compaction_ready",
                 "kswapd", "cpu", "nr_scanned", "nr_reclaimed", "cost_ns", "throttled_ns")

    def __init__(self, nr_to_reclaim: int, gfp: int, reclaim_idx: int, order: int,
                 kswapd: bool, cpu: int) -> None:
        self.nr_to_reclaim = nr_to_reclaim
        self.gfp = gfp
        self.reclaim_idx = reclaim_idx
        self.order = order
        self.priority = DEF_PRIORITY
        self.may_writepage = True
        self.may_swap = True
        self.may_deactivate = 0
        self.force_deactivate = False
        self.skipped_deactivate = False
        self.cache_trim_mode = False
        self.file_is_tiny = False
        self.compaction_ready = False
        self.kswapd = kswapd
        self.cpu = cpu
        self.nr_scanned = 0
        self.nr_reclaimed = 0
        self.cost_ns = 0
        self.throttled_ns = 0


class KswapdState:
    """A node's kswapd fields of ``pg_data_t``.

    Attributes:
        nid: The node.
        order: ``kswapd_order``: the largest order a waker asked for.
        highest_zoneidx: ``kswapd_highest_zoneidx`` (MAX_NR_ZONES: none asked).
        failures: ``kswapd_failures``: runs in a row that reclaimed nothing.
        waiting: kswapd is on ``kswapd_wait`` (napping or asleep), so a wakeup wakes it.
        woken: A wakeup arrived while it waited (cleared when it runs).
        wake: Called to wake the kswapd process (the timed layer sets it).
        thread: A kswapd process runs (the timed layer). Without one, the node's kswapd
            is taken to be asleep whenever it is woken, so every wakeup counts.
    """

    __slots__ = ("nid", "order", "highest_zoneidx", "failures", "waiting", "woken", "wake",
                 "thread")

    def __init__(self, nid: int) -> None:
        self.nid = nid
        self.order = 0
        self.highest_zoneidx = MAX_NR_ZONES
        self.failures = 0
        self.waiting = True
        self.woken = False
        self.thread = False
        self.wake: Callable[[], None] = _nothing


class Reclaim:
    """The reclaim state of one machine: per-node LRUs, swap, and the cost model.

    Attributes:
        mm: The page allocator whose pages are reclaimed.
        lruvecs: One :class:`~simcore.mm.lru.Lruvec` per node.
        swap_pages, swap_used: Swap space and the pages in it.
        swappiness: ``vm.swappiness``.
        cost: The cost model.
        release: Gives reclaimed blocks back (default: ``__free_pages()`` directly).
        span: Receives reclaim tracepoints (default: none).
    """

    def __init__(self, mm: PageAllocator, swap_pages: int, swappiness: int,
                 cost: CostConfig) -> None:
        self.mm = mm
        self.vm = mm.vm
        self.lruvecs = [Lruvec(node.nid, len(ZoneType), mm.pages) for node in mm.nodes]
        self.swap_pages = swap_pages
        self.swap_used = 0
        self.swappiness = swappiness
        self.cost = cost
        self.release: ReleaseFn = self._free_directly
        self.span: SpanFn = _no_span
        self.kswapd = [KswapdState(node.nid) for node in mm.nodes]
        self.compaction = Compaction(mm, mm.sysctl.extfrag_threshold,
                                     mm.sysctl.compaction_proactiveness, mm.vm, cost)
        self.compaction.kswapd_running = self.kswapd_running
        self.compaction.reclaimable = self.zone_reclaimable_pages
        self.oom_candidates: Callable[[], list[OomCandidate]] = list
        """The owners the OOM killer may choose from (the machine sets it; none here)."""
        self.oom_kill: Callable[[str], int] = _cannot_kill
        """Kills an owner and frees its memory; returns the pages freed."""
        self.oom_lock_held = False
        """``oom_lock``: an OOM kill is in progress (its cost is being spent)."""
        self.oom_progress = False
        """``did_some_progress`` of the last ``__alloc_pages_may_oom()``."""

    def _free_directly(self, pfn: int, order: int, cpu: int, kind: int) -> None:
        self.mm.free_pages(pfn, order, cpu)

    # -- the owners' side ---------------------------------------------------------------
    def lru_add(self, pfn: int, order: int, kind: int, dirty: bool = False,
                referenced: bool = False) -> None:
        """Put a new reclaimable allocation on its node's lists (``folio_add_lru()``)."""
        zone = self.mm.page_zone(pfn)
        self.lruvecs[zone.nid].add(pfn, kind, pack(order, zone.zone_idx, dirty, referenced))

    def lru_del(self, pfn: int) -> bool:
        """Take a block its owner frees off the lists; False if it was not on one."""
        nid = self.mm.page_zone(pfn).nid
        return self.lruvecs[nid].delete(pfn) >= 0

    def folio_mark_accessed(self, pfn: int) -> bool:
        """``folio_mark_accessed()`` (mm/swap.c): a read of the page-cache page at ``pfn``.

        Sets ``PG_referenced``, or activates an inactive page that has it (counting
        ``pgactivate``). Returns whether the page was activated.
        """
        pages = self.lruvecs[self.mm.page_zone(pfn).nid].mark_accessed(pfn)
        if pages:
            self.vm.add("pgactivate", pages)
        return pages > 0

    def folio_set_dirty(self, pfn: int, dirty: bool) -> bool:
        """``folio_mark_dirty()`` (``dirty``) or a completed writeback (not ``dirty``).

        Returns whether ``PG_dirty`` changed. The page keeps its place on its list.
        """
        return self.lruvecs[self.mm.page_zone(pfn).nid].set_dirty(pfn, dirty)

    def kswapd_running(self, nid: int) -> bool:
        """``kswapd_is_running()``: the node's kswapd is awake (not napping or asleep)."""
        st = self.kswapd[nid]
        return bool(st.thread) and not st.waiting

    def swap_free(self, pages: int) -> None:
        """An owner freed (or lost) memory that was swapped out: release its slots."""
        self.swap_used -= min(pages, self.swap_used)

    def managed_zones(self, nid: int, highest_zoneidx: int | None = None) -> list[Zone]:
        """The node's managed zones, up to ``highest_zoneidx`` (all by default)."""
        zones = self.mm.nodes[nid].node_zones
        if highest_zoneidx is not None:
            zones = zones[: highest_zoneidx + 1]
        return [z for z in zones if z is not None and managed_zone(z)]

    def node_stats(self) -> dict[str, int]:
        """The LRU sizes and reclaimable slab of all nodes (``/proc/vmstat`` levels)."""
        out = {f"nr_{name}": sum(lv.size(lru) for lv in self.lruvecs)
               for lru, name in enumerate(LRU_NAMES)}
        out["nr_slab_reclaimable"] = sum(lv.slab_pages() for lv in self.lruvecs)
        return out

    # -- counters the slow path and kswapd read -----------------------------------------
    def can_reclaim_anon_pages(self) -> bool:
        """``can_reclaim_anon_pages()``: swap space is left (no demotion modelled)."""
        return self.swap_used < self.swap_pages

    def zone_reclaimable_pages(self, zone: Zone) -> int:
        """``zone_reclaimable_pages()``: file LRU pages, plus anon ones if swap is left.

        Like the kernel's, it leaves out reclaimable slab.
        """
        lv = self.lruvecs[zone.nid]
        z = zone.zone_idx
        nr = lv.zone_size(z, LRU_INACTIVE_FILE) + lv.zone_size(z, LRU_ACTIVE_FILE)
        if self.can_reclaim_anon_pages():
            nr += lv.zone_size(z, LRU_INACTIVE_ANON) + lv.zone_size(z, LRU_ACTIVE_ANON)
        return nr

    # -- shrink_node and its parts ------------------------------------------------------
    def inactive_is_low(self, lv: Lruvec, inactive_lru: int) -> bool:
        """``inactive_is_low()``: inactive × sqrt(10 × GiB of the pair) < active."""
        inactive = lv.size(inactive_lru)
        active = lv.size(inactive_lru + 1)
        gb = (inactive + active) >> 18
        ratio = _int_sqrt(10 * gb) if gb else 1
        return inactive * ratio < active

    def prepare_scan_count(self, lv: Lruvec, sc: ScanControl) -> None:
        """``prepare_scan_count()``: deactivation, cache-trim mode and tiny-file mode."""
        if sc.force_deactivate:
            sc.may_deactivate = DEACTIVATE_ANON | DEACTIVATE_FILE
        else:
            sc.may_deactivate = 0
            if self.inactive_is_low(lv, LRU_INACTIVE_ANON):
                sc.may_deactivate |= DEACTIVATE_ANON
            if self.inactive_is_low(lv, LRU_INACTIVE_FILE):
                sc.may_deactivate |= DEACTIVATE_FILE
        inactive_file = lv.size(LRU_INACTIVE_FILE)
        sc.cache_trim_mode = bool(inactive_file >> sc.priority
                                  and not sc.may_deactivate & DEACTIVATE_FILE)
        free = 0
        total_high = 0
        for z in self.managed_zones(lv.nid):
            free += z.nr_free_pages
            total_high += z.wmark_pages(2)
        file = lv.size(LRU_INACTIVE_FILE) + lv.size(LRU_ACTIVE_FILE)
        sc.file_is_tiny = bool(file + free <= total_high
                               and not sc.may_deactivate & DEACTIVATE_ANON
                               and lv.size(LRU_INACTIVE_ANON) >> sc.priority)

    def get_scan_count(self, lv: Lruvec, sc: ScanControl) -> list[int]:
        """``get_scan_count()``: pages to scan on each list this round."""
        swappiness = self.swappiness
        if not sc.may_swap or not self.can_reclaim_anon_pages():
            balance = "file"
        elif not sc.priority and swappiness:
            balance = "equal"
        elif sc.file_is_tiny:
            balance = "anon"
        elif sc.cache_trim_mode:
            balance = "file"
        else:
            balance = "fract"
        # SIMPLIFICATION: anon_cost == file_cost == 0, so the fractions are
        # swappiness and 200 - swappiness.
        fraction = (swappiness, 200 - swappiness)
        denominator = fraction[0] + fraction[1]
        nr = [0] * NR_LRU_LISTS
        for lru in range(NR_LRU_LISTS):
            file = int(is_file_lru(lru))
            scan = lv.size(lru, sc.reclaim_idx) >> sc.priority
            if balance == "fract":
                scan = scan * fraction[file] // denominator if denominator else 0
            elif balance == "file" and not file or balance == "anon" and file:
                scan = 0
            nr[lru] = scan
        return nr

    def shrink_lruvec(self, lv: Lruvec, sc: ScanControl) -> None:
        """``shrink_lruvec()``: scan the lists in SWAP_CLUSTER_MAX chunks."""
        nr = self.get_scan_count(lv, sc)
        start = sc.nr_reclaimed  # the kernel's local nr_reclaimed
        proportional = not sc.kswapd and sc.priority == DEF_PRIORITY
        while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
            for lru in range(NR_LRU_LISTS):
                if nr[lru]:
                    chunk = min(nr[lru], SWAP_CLUSTER_MAX)
                    nr[lru] -= chunk
                    self.shrink_list(lru, chunk, lv, sc)
            if sc.nr_reclaimed - start >= sc.nr_to_reclaim and not proportional:
                break
        if self.swap_pages and self.inactive_is_low(lv, LRU_INACTIVE_ANON):
            self.shrink_active_list(SWAP_CLUSTER_MAX, lv, sc, LRU_ACTIVE_ANON)

    def shrink_list(self, lru: int, nr_to_scan: int, lv: Lruvec, sc: ScanControl) -> None:
        """``shrink_list()``."""
        if is_active_lru(lru):
            bit = DEACTIVATE_FILE if is_file_lru(lru) else DEACTIVATE_ANON
            if sc.may_deactivate & bit:
                self.shrink_active_list(nr_to_scan, lv, sc, lru)
            else:
                sc.skipped_deactivate = True
            return
        self.shrink_inactive_list(nr_to_scan, lv, sc, lru)

    def _isolate(self, nr_to_scan: int, lv: Lruvec, sc: ScanControl,
                 lru: int) -> tuple[list[int], int]:
        """``isolate_lru_folios()``: up to ``nr_to_scan`` pages from the tail of ``lru``.

        Pages of zones above ``reclaim_idx`` are skipped (``pgskip_<zone>``) and spliced
        back to the head of the list. Returns the entries taken (flat: pfn, packed,
        ...) and ``total_scan``, the pages looked at (the skipped ones included), which
        the counters use.
        """
        taken, total_scan = lv.isolate(lru, nr_to_scan, sc.reclaim_idx)
        v = self.vm
        for zone_idx, pages in enumerate(lv.skipped):
            if pages:
                v.add(f"pgskip_{VMSTAT_ZONE_SUFFIXES[zone_idx]}", pages)
        return taken, total_scan

    def shrink_inactive_list(self, nr_to_scan: int, lv: Lruvec, sc: ScanControl,
                             lru: int) -> None:
        """``shrink_inactive_list()`` + ``shrink_folio_list()`` for one chunk.

        ``folio_check_references()``: a hot page found young is kept once (and gets
        ``PG_referenced``), and activated the next time; any other page loses
        ``PG_referenced`` (``folio_test_clear_referenced()``) and is reclaimed: clean
        page cache and slab are freed, dirty page cache is written first (see the
        module docstring) unless it was referenced (``FOLIOREF_RECLAIM_CLEAN``: kept
        for the flusher), anon is swapped out if the context allows IO (and activated
        if swap is full). ``sc.nr_scanned`` counts the pages taken, not those skipped.
        Order-0 pages are freed together at the end, the last one scanned first
        (``free_unref_page_list()`` of the ``free_folios`` list); larger blocks at once.
        A page someone else holds a reference on (a pfn walker, GUP) is kept: the
        kernel's ``__remove_mapping()`` cannot freeze its refcount. SIMPLIFICATION: the
        model keeps it before writing or swapping it out, the kernel after.
        """
        taken, total_scan = self._isolate(nr_to_scan, lv, sc, lru)
        file = is_file_lru(lru)
        cost = self.cost
        v = self.vm
        sc.cost_ns += total_scan * cost.reclaim_scan_ns
        v.add("pgscan_kswapd" if sc.kswapd else "pgscan_direct", total_scan)
        v.add("pgscan_file" if file else "pgscan_anon", total_scan)
        if not taken:
            return
        reclaimed = 0
        nr_taken = 0
        kind = KIND_FILE if file else KIND_ANON
        free_folios: list[int] = []
        ref = self.mm.pages.ref
        for i in range(0, len(taken), 2):
            pfn = taken[i]
            packed = taken[i + 1]
            pages = 1 << (packed & ORDER_MASK)
            nr_taken += pages
            if packed & HOT:
                if packed & PG_REFERENCED:  # FOLIOREF_ACTIVATE
                    lv.put(pfn, lru + 1, packed)
                    v.add("pgactivate", pages)
                else:  # FOLIOREF_KEEP: one more trip round the inactive list
                    lv.put(pfn, lru, packed | PG_REFERENCED)
                continue
            referenced = packed & PG_REFERENCED  # folio_test_clear_referenced()
            packed &= ~PG_REFERENCED
            if ref[pfn] > 1:  # __remove_mapping(): folio_ref_freeze() meets another reference
                lv.put(pfn, lru, packed)  # keep_locked: back on its list, not freed
                continue
            if not file:
                if not sc.may_swap or not sc.gfp & GFP_IO:
                    lv.put(pfn, lru, packed)  # keep: no IO allowed here
                    continue
                if self.swap_pages - self.swap_used < pages:
                    lv.put(pfn, lru + 1, packed)  # add_to_swap() failed: activate
                    v.add("pgactivate", pages)
                    continue
                self.swap_used += pages
                sc.cost_ns += pages * cost.reclaim_swap_ns
                v.add("pswpout", pages)
            elif packed & DIRTY:
                # SIMPLIFICATION: a referenced dirty page is kept (FOLIOREF_RECLAIM_CLEAN)
                # in every reclaim; the kernel keeps it only for kswapd on a node marked
                # PGDAT_DIRTY, and otherwise activates it with PG_reclaim set.
                if referenced or not sc.may_writepage or not (sc.kswapd or sc.gfp & GFP_FS):
                    lv.put(pfn, lru, packed)  # keep: FOLIOREF_RECLAIM_CLEAN, or no writing here
                    continue
                sc.cost_ns += pages * cost.reclaim_dirty_ns
                lv.put(pfn, lru, packed & ~DIRTY, oldest=True)  # folio_rotate_reclaimable()
                v.add("pgrotated", pages)
                continue
            else:
                sc.cost_ns += pages * cost.reclaim_clean_ns
            reclaimed += pages
            if packed & ORDER_MASK:
                self.release(pfn, packed & ORDER_MASK, sc.cpu, kind)
            else:
                free_folios.append(pfn)
        for i in range(len(free_folios) - 1, -1, -1):
            self.release(free_folios[i], 0, sc.cpu, kind)
        sc.nr_scanned += nr_taken
        sc.nr_reclaimed += reclaimed
        v.add("pgsteal_kswapd" if sc.kswapd else "pgsteal_direct", reclaimed)
        v.add("pgsteal_file" if file else "pgsteal_anon", reclaimed)

    def shrink_active_list(self, nr_to_scan: int, lv: Lruvec, sc: ScanControl,
                           lru: int) -> None:
        """``shrink_active_list()``: move pages from the active tail to the inactive head.

        Every page goes back: the kernel keeps only referenced executable file pages
        active, and the model has none.
        """
        taken, total_scan = self._isolate(nr_to_scan, lv, sc, lru)
        pages = 0
        for i in range(0, len(taken), 2):
            packed = taken[i + 1]
            lv.put(taken[i], lru - 1, packed)
            pages += 1 << (packed & ORDER_MASK)
        v = self.vm
        v.add("pgrefill", total_scan)
        v.add("pgdeactivate", pages)
        sc.cost_ns += total_scan * self.cost.reclaim_scan_ns

    def shrink_slab(self, lv: Lruvec, priority: int, cpu: int) -> int:
        """``shrink_slab()`` → ``do_shrink_slab()`` for the node's one shrinker.

        ``delta = (freeable >> priority) * 4 / seeks`` plus the deferred work, capped at
        twice the freeable count, scanned in batches of SHRINK_BATCH; what is left is
        deferred to the next call. Returns the pages freed.

        SIMPLIFICATION: the shrinkers ignore ``__GFP_FS`` (the superblock shrinkers of
        the kernel stop without it).
        """
        freeable = lv.shrinkable_slab_pages()
        if not freeable:
            return 0
        nr = lv.nr_deferred
        lv.nr_deferred = 0
        delta = (freeable >> priority) * 4 // DEFAULT_SEEKS
        total_scan = min((nr >> priority) + delta, 2 * freeable)
        scanned = freed = 0
        while total_scan >= SHRINK_BATCH or total_scan >= freeable:
            nr_to_scan = min(SHRINK_BATCH, total_scan)
            done = self._free_slab(lv, nr_to_scan, cpu)
            if not done:
                break  # SHRINK_STOP: nothing left to free
            freed += done
            scanned += nr_to_scan
            total_scan -= nr_to_scan
        lv.nr_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
        self.vm.add("slabs_scanned", scanned)
        return freed

    def _free_slab(self, lv: Lruvec, nr_to_scan: int, cpu: int) -> int:
        """Free up to ``nr_to_scan`` pages of the oldest reclaimable slab."""
        freed = 0
        while freed < nr_to_scan and lv.nr_entries[SLAB]:
            pfn, packed = lv.pop_oldest_slab()
            self.release(pfn, packed & ORDER_MASK, cpu, KIND_SLAB)
            freed += entry_pages(packed)
        return freed

    def shrink_node(self, nid: int, sc: ScanControl) -> None:
        """``shrink_node()``: the node's LRU lists, then its slab.

        Again while ``should_continue_reclaim()`` says so. Reclaim that frees anything
        resets ``kswapd_failures``.
        """
        lv = self.lruvecs[nid]
        start = sc.nr_reclaimed
        while True:  # again:
            before = sc.nr_reclaimed
            self.prepare_scan_count(lv, sc)
            self.shrink_lruvec(lv, sc)
            slab = self.shrink_slab(lv, sc.priority, sc.cpu)
            sc.nr_reclaimed += slab
            sc.cost_ns += slab * self.cost.reclaim_clean_ns
            if not self.should_continue_reclaim(nid, sc.nr_reclaimed - before, sc):
                break
        if sc.nr_reclaimed > start:
            self.kswapd[nid].failures = 0

    def should_continue_reclaim(self, nid: int, nr_reclaimed: int, sc: ScanControl) -> bool:
        """``should_continue_reclaim()``: more reclaim for a high-order request?

        Only for reclaim/compaction (order > 0, costly or at raised priority): go on
        while the last pass freed something, no zone is ready for compaction, and the
        inactive lists hold more than ``compact_gap(order)``.
        """
        in_reclaim_compaction = sc.order and (sc.order > PAGE_ALLOC_COSTLY_ORDER
                                              or sc.priority < DEF_PRIORITY - 2)
        if not in_reclaim_compaction or not nr_reclaimed:
            return False
        for zone in self.managed_zones(nid, sc.reclaim_idx):
            if self.compaction.suitable(zone, sc.order, sc.reclaim_idx) in (
                    COMPACT_SUCCESS, COMPACT_CONTINUE):
                return False
        lv = self.lruvecs[nid]
        inactive = lv.size(LRU_INACTIVE_FILE)
        if self.can_reclaim_anon_pages():
            inactive += lv.size(LRU_INACTIVE_ANON)
        return inactive > compact_gap(sc.order)

    # -- direct reclaim -----------------------------------------------------------------
    def try_to_free_pages(
        self, zonelist: tuple[Zone, ...], order: int, gfp: int, cpu: int, caller: str = ""
    ) -> ScanControl:
        """``try_to_free_pages()`` → ``do_try_to_free_pages()``.

        Counts ``allocstall_<zone of gfp_zone()>`` (again if it retries with forced
        deactivation), then shrinks the zonelist's
        nodes at priority 12 down to 0 until SWAP_CLUSTER_MAX pages are reclaimed.
        Returns the scan control: ``nr_reclaimed`` (or 1 if it stopped because
        compaction is ready), with the time spent in ``cost_ns`` and ``throttled_ns``.
        """
        reclaim_idx = int(gfp_zone(gfp))
        sc = ScanControl(SWAP_CLUSTER_MAX, gfp, reclaim_idx, order, kswapd=False, cpu=cpu)
        sc.cost_ns = self.cost.direct_reclaim_ns
        v = self.vm
        first = zonelist[0].nid if zonelist else -1
        for attempt in range(2):  # retry: (again once for skipped_deactivate)
            v.add(f"allocstall_{VMSTAT_ZONE_SUFFIXES[reclaim_idx]}", 1)
            sc.priority = DEF_PRIORITY
            while True:
                sc.nr_scanned = 0
                self.shrink_zones(zonelist, sc)
                if sc.nr_reclaimed >= sc.nr_to_reclaim or sc.compaction_ready:
                    break
                sc.priority -= 1
                if sc.priority < 0:
                    break
            if sc.nr_reclaimed or sc.compaction_ready or not sc.skipped_deactivate or attempt:
                break
            sc.force_deactivate = True
            sc.skipped_deactivate = False
        if first >= 0:
            self.span("mm_vmscan_direct_reclaim", first, sc.nr_reclaimed,
                      sc.cost_ns + sc.throttled_ns,
                      f"order={order} priority={max(sc.priority, 0)}")
        if not sc.nr_reclaimed and sc.compaction_ready:
            sc.nr_reclaimed = 1
        return sc

    def shrink_zones(self, zonelist: tuple[Zone, ...], sc: ScanControl) -> None:
        """``shrink_zones()``: each node of the zonelist once, up to ``reclaim_idx``."""
        last_nid = -1
        first_nid = -1
        for zone in zonelist:
            if zone.zone_idx > sc.reclaim_idx:
                continue
            if sc.order > PAGE_ALLOC_COSTLY_ORDER and self.compaction_ready(zone, sc):
                sc.compaction_ready = True
                continue
            if zone.nid == last_nid:
                continue
            last_nid = zone.nid
            if first_nid < 0:
                first_nid = zone.nid
            self.shrink_node(zone.nid, sc)
        if first_nid >= 0:
            self.consider_reclaim_throttle(first_nid, sc)

    def compaction_ready(self, zone: Zone, sc: ScanControl) -> bool:
        """``compaction_ready()``: enough free memory for compaction to proceed.

        SUCCESS from ``compaction_suitable()``, or CONTINUE with the zone above its high
        watermark plus ``compact_gap(order)`` at order 0.
        """
        suitable = self.compaction.suitable(zone, sc.order, sc.reclaim_idx)
        if suitable == COMPACT_SUCCESS:
            return True
        if suitable == COMPACT_SKIPPED:
            return False
        mark = zone.wmark_pages(2) + compact_gap(sc.order)
        return bool(zone.watermark_ok(0, mark, sc.reclaim_idx, 0, zone.nr_free_pages))

    def consider_reclaim_throttle(self, nid: int, sc: ScanControl) -> None:
        """``consider_reclaim_throttle()``: throttle a direct reclaimer that freed nothing.

        At priority 1 with nothing reclaimed it sleeps one jiffy
        (``reclaim_throttle(VMSCAN_THROTTLE_NOPROGRESS)``), unless the node is hopeless
        (``skip_throttle_noprogress()``).
        """
        if sc.nr_reclaimed > sc.nr_scanned >> 3 or sc.kswapd:
            return
        if sc.priority == 1 and not sc.nr_reclaimed and not self.skip_throttle_noprogress(nid):
            sc.throttled_ns += self.cost.jiffy_ns

    def skip_throttle_noprogress(self, nid: int) -> bool:
        """``skip_throttle_noprogress()``: no point in waiting for this node.

        True if kswapd gave up on it, or at most half of its reclaimable pages wait for
        writeback (``2 × write_pending <= reclaimable``).
        """
        if self.kswapd[nid].failures >= MAX_RECLAIM_RETRIES:
            return True
        lv = self.lruvecs[nid]
        zones = self.managed_zones(nid)
        reclaimable = sum(self.zone_reclaimable_pages(z) for z in zones)
        write_pending = sum(lv.nr_dirty_zone[z.zone_idx] for z in zones)
        return 2 * write_pending <= reclaimable

    # -- /proc/sys/vm/drop_caches -------------------------------------------------------
    def drop_caches(self, what: int, cpu: int) -> int:
        """``drop_caches_sysctl_handler()``: 1 drops clean page cache, 2 slab, 3 both.

        Returns the pages freed. Page cache first, every node: every clean page-cache
        page that is not mapped (hot) nor held by someone else is freed
        (``invalidate_mapping_pages()``, ``mapping_evict_folio()``); a dirty
        one that is not mapped goes to the head of the inactive list instead, losing
        ``PG_referenced`` (``deactivate_file_folio()``; ``pgdeactivate`` if it was
        active); mapped pages stay. Then ``drop_slab()``: per node, ``shrink_slab()`` at
        priority 0 again while ``freed >> shift++ > 1``.
        """
        freed = 0
        v = self.vm
        if what & 1:
            ref = self.mm.pages.ref
            for lv in self.lruvecs:
                for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
                    for pfn, packed in lv.entries(lru):
                        if packed & HOT or ref[pfn] > 1:  # mapping_evict_folio()
                            continue
                        lv.delete(pfn)
                        if packed & DIRTY:
                            lv.put(pfn, LRU_INACTIVE_FILE, packed & ~PG_REFERENCED)
                            if lru == LRU_ACTIVE_FILE:
                                v.add("pgdeactivate", entry_pages(packed))
                            continue
                        self.release(pfn, packed & ORDER_MASK, cpu, KIND_FILE)
                        freed += entry_pages(packed)
            v.add("drop_pagecache", 1)
        if what & 2:
            for lv in self.lruvecs:  # drop_slab() -> drop_slab_node()
                shift = 0
                while True:
                    node_freed = self.shrink_slab(lv, 0, cpu)
                    freed += node_freed
                    if node_freed >> shift <= 1:
                        break
                    shift += 1
            v.add("drop_slab", 1)
        return freed


def _int_sqrt(x: int) -> int:
    """``int_sqrt()``."""
    return math.isqrt(x)


def _cannot_kill(victim: str) -> int:
    raise AssertionError(f"no owner registry: cannot kill {victim}")


def _nothing() -> None:
    """The default kswapd waker: no kswapd process runs (a model without time)."""


def _no_span(name: str, nid: int, pages: int, duration_ns: int, detail: str,
             ago_ns: int = 0) -> None:
    """The default span sink: records nothing."""
