"""The hugetlb pool: hstates, ``nr_hugepages`` resizes, fresh huge pages and their freezing.

Mirrors mm/hugetlb.c of 6.1.20:

- one :class:`~simcore.mm.hstate.Hstate` per huge page size (x86_64: 2 MiB, order 9;
  1 GiB, order 18, *gigantic* because its order is above ``max_order``) with the pool
  counts, per node and in total, the per-node free lists and
  ``next_nid_to_alloc``/``next_nid_to_free``;
- ``set_max_huge_pages()``: surplus pages become persistent first, then
  ``alloc_pool_huge_page()`` allocates one page per pass, round-robin over the allowed
  nodes from ``next_nid_to_alloc`` (``for_each_node_mask_to_alloc()``), the first node
  that supplies one winning, until a whole pass fails; a shrink frees free pages
  (``remove_pool_huge_page()`` round-robin from ``next_nid_to_free``) and turns in-use
  pages beyond the new count into surplus (``adjust_pool_surplus()``);
- ``alloc_buddy_huge_page()``: ``htlb_alloc_mask() | __GFP_THISNODE | __GFP_COMP |
  __GFP_NOWARN``, plus ``__GFP_RETRY_MAYFAIL`` unless the node is in the resize's
  ``node_alloc_noretry`` (set when a try-hard attempt fails, cleared when an attempt
  without it succeeds); then ``page_ref_freeze(head, 1)``: when a speculative reference
  holds the count above 1 the block goes back with ``__free_pages()`` (which frees nothing
  until that holder's ``put_page()``, spec behaviour 42) and the allocation is retried
  once; a second failure is warned about ("HugeTLB head page unexpected inflated ref
  count") and fails. ``htlb_buddy_alloc_success``/``htlb_buddy_alloc_fail`` count the
  outcomes (spec behaviours 45-47);
- gigantic pages come from ``alloc_contig_pages(GFP_HIGHUSER | __GFP_THISNODE)``
  (:mod:`simcore.mm.contig`), and ``prep_compound_gigantic_page()`` freezes every page
  (a failure frees the range and the allocation is retried once); they are not counted
  in ``htlb_buddy_*``;
- ``free_huge_page()`` (a page's last reference dropped: back on the free list, or to
  the buddy allocator when its node has surplus pages), ``update_and_free_page()``, and
  for pages in use ``dequeue_huge_page_nodemask()``.

The page allocator is reached through a :class:`PoolBackend`: the timed layer
(:mod:`simcore.sim.hugetlb`) allocates through ``Machine.alloc`` so each huge page
takes its slow path's simulated time; :class:`NoClockBackend` uses the allocator with
no clock. Speculative references between ``__alloc_pages()`` returning and the freeze
come from :attr:`Hugetlb.racers` (pfn walkers on other CPUs).

SIMPLIFICATIONS: no reservations (``resv_huge_pages`` stays 0), no overcommit (no
surplus pages are allocated at fault time), no subpools, cgroups, mempolicies or CMA; no
vmemmap optimisation; ``try_to_free_low()`` is a no-op as on x86_64 (no HIGHMEM). A
gigantic head records ``max_order`` in its 4-bit order field.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from simcore.mm import contig, page_misuse
from simcore.mm.constants import MT_MOVABLE
from simcore.mm.gfp import GFP, gfp_zone
from simcore.mm.hstate import (
    HUGE_PAGE_ORDERS,
    Hstate,
    hstate_next_node_to_alloc,
    hstate_next_node_to_free,
    htlb_alloc_mask,
)
from simcore.mm.pages import MT_SHIFT, PG_ALLOC, PG_HEAD, PG_TAIL

if TYPE_CHECKING:
    from simcore.mm.page_alloc import PageAllocator

WARN_HEAD_INFLATED = "HugeTLB head page unexpected inflated ref count"
WARN_GIGANTIC_INFLATED = "HugeTLB page can not be used due to unexpected inflated ref count"
GFP_COMP_NOWARN = int(GFP.COMP | GFP.NOWARN)
GFP_RETRY_MAYFAIL = int(GFP.RETRY_MAYFAIL)
GFP_THISNODE = int(GFP.THISNODE)


class PoolBackend(Protocol):
    """How the pool reaches the page allocator (``cpu``: the CPU the work runs on)."""

    cpu: int

    def alloc_pages(self, gfp: int, order: int, nid: int) -> Generator[Any, Any, int]:
        """``__alloc_pages(gfp, order, nid)`` as a sub-generator: the pfn or -1."""
        ...

    def free_pages(self, pfn: int, order: int) -> None:
        """``__free_pages()`` of a block :meth:`alloc_pages` returned."""

    def alloc_contig_pages(self, nr_pages: int, gfp: int, nid: int,
                           nodemask: frozenset[int]) -> int:
        """``alloc_contig_pages()``: the first pfn or -1; its cost is spent by :meth:`stall`."""
        ...

    def free_contig_range(self, pfn: int, nr_pages: int) -> int:
        """``free_contig_range()``: the pages still in use (the kernel WARNs)."""
        ...

    def stall(self) -> Generator[Any, Any, None]:
        """Spend the cost of the contiguous-range work done so far."""
        ...


class NoClockBackend:
    """The page allocator with no clock: slow paths and migrations take no time."""

    def __init__(self, mm: PageAllocator, cpu: int = 0) -> None:
        self.mm = mm
        self.cpu = cpu
        self.cost_ns = 0
        """What the contiguous-range work would have cost."""

    def alloc_pages(self, gfp: int, order: int, nid: int) -> Generator[Any, Any, int]:
        """``__alloc_pages()``, fast and slow path at once."""
        return self.mm.alloc_pages(gfp, order, nid, self.cpu)
        yield  # a generator that never yields

    def free_pages(self, pfn: int, order: int) -> None:
        """``__free_pages()``."""
        self.mm.free_pages(pfn, order, self.cpu)

    def alloc_contig_pages(self, nr_pages: int, gfp: int, nid: int,
                           nodemask: frozenset[int]) -> int:
        """``alloc_contig_pages()``; the cost is added to :attr:`cost_ns`."""
        pfn, cost = contig.alloc_contig_pages(self.mm, nr_pages, gfp, nid, nodemask, self.cpu)
        self.cost_ns += cost
        return pfn

    def free_contig_range(self, pfn: int, nr_pages: int) -> int:
        """``free_contig_range()``: the pages still in use."""
        return contig.free_contig_range(self.mm, pfn, nr_pages, self.cpu)

    def stall(self) -> Generator[Any, Any, None]:
        """No clock: nothing to spend."""
        return
        yield


@dataclass
class ResizeResult:
    """What one ``set_max_huge_pages()`` did.

    The nodes of the pages it allocated, the pages it freed to the buddy allocator, and
    whether it stopped at a pass in which no node could supply a page.
    """

    allocated_nids: list[int] = field(default_factory=list)
    freed: int = 0
    pass_failed: bool = False


def _no_warn(text: str, pfn: int) -> None:
    """The default warning sink: :attr:`Hugetlb.warnings` only."""


class Hugetlb:
    """The hugetlb state of one machine: its hstates and the pages in their pools.

    Attributes:
        mm: The page allocator.
        n_memory: ``node_states[N_MEMORY]``: the nodes with memory.
        hstates: Huge page order -> :class:`Hstate`.
        page_hstate: Head pfn -> hstate, for every page in a pool (free or in use).
        racers: Called ``(pfn, nr_pages, compound)`` between an allocation and its
            freeze: each may take speculative references on the new pages (pfn
            walkers, GUP-fast). ``compound``: one compound block (a 2 MiB page), else
            ``nr_pages`` separate pages of refcount 1 (a gigantic range before
            ``prep_compound_gigantic_page()``).
        warnings: The ``pr_warn()`` texts, in order; ``on_warn(text, pfn)`` sees each.
        freeze_retries: Allocations retried because a freeze met a speculative reference.
    """

    def __init__(self, mm: PageAllocator) -> None:
        self.mm = mm
        self.n_memory = tuple(node.nid for node in mm.nodes if node.node_present_pages)
        self.hstates = {order: Hstate(order, len(mm.nodes), self.n_memory[0],
                                      order > mm.max_order) for order in HUGE_PAGE_ORDERS}
        self.page_hstate: dict[int, Hstate] = {}
        self.racers: list[Callable[[int, int, bool], None]] = []
        self.warnings: list[str] = []
        self.on_warn: Callable[[str, int], None] = _no_warn
        self.freeze_retries = 0

    def page_to_nid(self, pfn: int) -> int:
        """``page_to_nid()``."""
        return self.mm.page_zone(pfn).nid

    def free_gigantic_page(self, pfn: int, nr_pages: int, be: PoolBackend) -> None:
        """``free_gigantic_page()`` → ``free_contig_range()``.

        It WARNs when pages of the range are still in use (a speculative holder frees
        them later).
        """
        busy = be.free_contig_range(pfn, nr_pages)
        if busy:
            self._warn(f"{busy} pages are still in use!", pfn)

    def _warn(self, text: str, pfn: int) -> None:
        self.warnings.append(text)
        self.on_warn(text, pfn)

    def _race(self, pfn: int, nr_pages: int, compound: bool) -> None:
        for racer in self.racers:
            racer(pfn, nr_pages, compound)

    # -- fresh pages --------------------------------------------------------------------
    def alloc_buddy_huge_page(self, h: Hstate, gfp: int, nid: int, noretry: set[int] | None,
                              be: PoolBackend) -> Generator[Any, Any, int]:
        """``alloc_buddy_huge_page()``: a frozen compound block, or -1."""
        try_hard = noretry is None or nid not in noretry
        gfp |= GFP_COMP_NOWARN | (GFP_RETRY_MAYFAIL if try_hard else 0)
        retry = True
        while True:
            pfn = yield from be.alloc_pages(gfp, h.order, nid)
            if pfn < 0:
                break
            self._race(pfn, h.nr_pages, True)
            if self.mm.page_ref_freeze(pfn, 1):
                break
            be.free_pages(pfn, h.order)  # drops our reference: the other holder frees it
            if retry:  # retry once
                retry = False
                self.freeze_retries += 1
                continue
            self._warn(WARN_HEAD_INFLATED, pfn)
            pfn = -1
            break
        self.mm.vm.add("htlb_buddy_alloc_success" if pfn >= 0 else "htlb_buddy_alloc_fail", 1)
        if noretry is not None:
            if pfn >= 0 and not try_hard:  # an overall state change: try hard again
                noretry.discard(nid)
            elif pfn < 0 and try_hard:
                noretry.add(nid)
        return pfn

    def prep_compound_gigantic_page(self, pfn: int, order: int) -> bool:
        """``prep_compound_gigantic_page()``: freeze every page, make it compound.

        Stops at the first page whose refcount is not 1 (a speculative reference) and
        undoes what it froze, so nothing changes on failure.
        """
        nr = 1 << order
        self._race(pfn, nr, False)
        pages = self.mm.pages
        inflated = (pages.ref_np[pfn:pfn + nr] != 1).nonzero()[0]
        if inflated.size:
            self._warn(WARN_GIGANTIC_INFLATED, pfn + int(inflated[0]))
            return False
        pages.ref_np[pfn:pfn + nr] = 0
        pages.flags_np[pfn + 1:pfn + nr] = PG_TAIL
        pages.flags[pfn] = PG_ALLOC | PG_HEAD
        pages.info[pfn] = min(order, self.mm.max_order) | (MT_MOVABLE << MT_SHIFT)
        return True

    def alloc_fresh_huge_page(self, h: Hstate, gfp: int, nid: int,
                              nodes_allowed: tuple[int, ...], noretry: set[int] | None,
                              be: PoolBackend) -> Generator[Any, Any, int]:
        """``alloc_fresh_huge_page()``: a new, frozen pool page (counted), or -1."""
        retry = False
        while True:
            if h.gigantic:  # alloc_gigantic_page(): no hugetlb CMA areas
                pfn = be.alloc_contig_pages(h.nr_pages, gfp, nid, frozenset(nodes_allowed))
                prepped = pfn >= 0 and self.prep_compound_gigantic_page(pfn, h.order)
                yield from be.stall()
                if pfn >= 0 and not prepped:
                    self.free_gigantic_page(pfn, h.nr_pages, be)
                    if not retry:  # retry ONCE
                        retry = True
                        continue
                    pfn = -1
            else:
                pfn = yield from self.alloc_buddy_huge_page(h, gfp, nid, noretry, be)
            break
        if pfn >= 0:  # prep_new_huge_page()
            self.page_hstate[pfn] = h
            h.nr_huge_pages += 1
            h.nr_huge_pages_node[self.page_to_nid(pfn)] += 1
        return pfn

    def alloc_pool_huge_page(self, h: Hstate, nodes_allowed: tuple[int, ...],
                             noretry: set[int] | None,
                             be: PoolBackend) -> Generator[Any, Any, int]:
        """``alloc_pool_huge_page()``: one pass over the nodes; the new free page or -1."""
        gfp = htlb_alloc_mask(h) | GFP_THISNODE
        pfn = -1
        for _ in nodes_allowed:  # for_each_node_mask_to_alloc()
            node = hstate_next_node_to_alloc(h, nodes_allowed)
            pfn = yield from self.alloc_fresh_huge_page(h, gfp, node, nodes_allowed,
                                                        noretry, be)
            if pfn >= 0:
                break
        if pfn >= 0:
            self.free_huge_page(pfn, be)  # into the pool
        return pfn

    # -- the pool lists -----------------------------------------------------------------
    def enqueue_huge_page(self, h: Hstate, pfn: int) -> None:
        """``enqueue_huge_page()``: onto the head of its node's free list."""
        nid = self.page_to_nid(pfn)
        h.freelists[nid][pfn] = None
        h.free_huge_pages += 1
        h.free_huge_pages_node[nid] += 1

    def dequeue_huge_page_node_exact(self, h: Hstate, nid: int) -> int:
        """``dequeue_huge_page_node_exact()``: the head of the node's free list, in use."""
        freelist = h.freelists[nid]
        if not freelist:
            return -1
        pfn = next(reversed(freelist))
        del freelist[pfn]
        h.active[pfn] = None
        self.mm.pages.ref[pfn] = 1  # set_page_refcounted()
        h.free_huge_pages -= 1
        h.free_huge_pages_node[nid] -= 1
        return pfn

    def dequeue_huge_page_nodemask(self, h: Hstate, nid: int) -> int:
        """``dequeue_huge_page_nodemask()``: a free pool page, nearest node first, or -1."""
        zonelist = self.mm.zonelist(nid, False, int(gfp_zone(htlb_alloc_mask(h))))
        tried = -1
        for zone in zonelist:
            if zone.nid == tried:
                continue
            tried = zone.nid
            pfn = self.dequeue_huge_page_node_exact(h, tried)
            if pfn >= 0:
                return pfn
        return -1

    def remove_hugetlb_page(self, h: Hstate, pfn: int, adjust_surplus: bool) -> None:
        """``remove_hugetlb_page()``: out of the pool, refcount 1 again."""
        nid = self.page_to_nid(pfn)
        if pfn in h.freelists[nid]:  # HPageFreed()
            del h.freelists[nid][pfn]
            h.free_huge_pages -= 1
            h.free_huge_pages_node[nid] -= 1
        else:
            h.active.pop(pfn, None)
        if adjust_surplus:
            h.surplus_huge_pages -= 1
            h.surplus_huge_pages_node[nid] -= 1
        self.mm.pages.ref[pfn] = 1  # set_page_refcounted()
        h.nr_huge_pages -= 1
        h.nr_huge_pages_node[nid] -= 1
        del self.page_hstate[pfn]

    def update_and_free_page(self, h: Hstate, pfn: int, be: PoolBackend) -> None:
        """``update_and_free_page()``: back to the buddy allocator."""
        if not h.gigantic:
            be.free_pages(pfn, h.order)
            return
        # destroy_compound_gigantic_page(): every page an order-0 page of refcount 1.
        pages = self.mm.pages
        pages.ref_np[pfn:pfn + h.nr_pages] = 1
        pages.info_np[pfn:pfn + h.nr_pages] = 0
        pages.flags_np[pfn:pfn + h.nr_pages] = PG_ALLOC
        self.free_gigantic_page(pfn, h.nr_pages, be)

    def free_huge_page(self, pfn: int, be: PoolBackend) -> None:
        """``free_huge_page()``: the destructor, when a pool page's refcount reaches 0."""
        h = self.page_hstate[pfn]
        nid = self.page_to_nid(pfn)
        h.active.pop(pfn, None)
        if h.surplus_huge_pages_node[nid]:
            self.remove_hugetlb_page(h, pfn, True)
            self.update_and_free_page(h, pfn, be)
        else:
            self.enqueue_huge_page(h, pfn)

    def put_page(self, pfn: int, be: PoolBackend) -> None:
        """``put_page()`` on a pool page: the last reference runs :meth:`free_huge_page`."""
        ref = self.mm.pages.ref
        if ref[pfn] <= 0:  # folio_put() takes it below 0, silently
            page_misuse.put_page_unreferenced(self.mm, pfn)
            return
        ref[pfn] -= 1
        if not ref[pfn]:
            self.free_huge_page(pfn, be)

    def remove_pool_huge_page(self, h: Hstate, nodes_allowed: tuple[int, ...],
                              acct_surplus: bool) -> int:
        """``remove_pool_huge_page()``: a free page off the next node to free, or -1."""
        for _ in nodes_allowed:
            node = hstate_next_node_to_free(h, nodes_allowed)
            if (not acct_surplus or h.surplus_huge_pages_node[node]) and h.freelists[node]:
                pfn = next(reversed(h.freelists[node]))
                self.remove_hugetlb_page(h, pfn, acct_surplus)
                return pfn
        return -1

    @staticmethod
    def adjust_pool_surplus(h: Hstate, nodes_allowed: tuple[int, ...], delta: int) -> bool:
        """``adjust_pool_surplus()``: move one page into (+1) or out of (-1) surplus."""
        for _ in nodes_allowed:
            if delta < 0:
                node = hstate_next_node_to_alloc(h, nodes_allowed)
                if h.surplus_huge_pages_node[node]:
                    break
            else:
                node = hstate_next_node_to_free(h, nodes_allowed)
                if h.surplus_huge_pages_node[node] < h.nr_huge_pages_node[node]:
                    break
        else:
            return False
        h.surplus_huge_pages += delta
        h.surplus_huge_pages_node[node] += delta
        return True

    # -- the resize ---------------------------------------------------------------------
    def set_max_huge_pages(self, h: Hstate, count: int, nid: int | None,
                           nodes_allowed: tuple[int, ...],
                           be: PoolBackend) -> Generator[Any, Any, ResizeResult]:
        """``set_max_huge_pages()``: a write of ``count`` to ``nr_hugepages``.

        ``nid`` None is the global file (``nodes_allowed``: N_MEMORY); a node's file
        counts only that node's pages (the other nodes' pages are added to ``count``).
        """
        result = ResizeResult()
        noretry: set[int] = set()  # node_alloc_noretry
        if nid is not None:
            count += h.nr_huge_pages - h.nr_huge_pages_node[nid]
        while h.surplus_huge_pages and count > h.persistent_huge_pages:
            if not self.adjust_pool_surplus(h, nodes_allowed, -1):
                break
        while count > h.persistent_huge_pages:
            pfn = yield from self.alloc_pool_huge_page(h, nodes_allowed, noretry, be)
            if pfn < 0:
                result.pass_failed = True
                h.max_huge_pages = h.persistent_huge_pages
                return result
            result.allocated_nids.append(self.page_to_nid(pfn))
        min_count = max(count, h.resv_huge_pages + h.nr_huge_pages - h.free_huge_pages)
        removed: list[int] = []
        while min_count < h.persistent_huge_pages:
            pfn = self.remove_pool_huge_page(h, nodes_allowed, False)
            if pfn < 0:
                break
            removed.append(pfn)
        for pfn in removed:  # update_and_free_pages_bulk()
            self.update_and_free_page(h, pfn, be)
        result.freed = len(removed)
        while count < h.persistent_huge_pages:
            if not self.adjust_pool_surplus(h, nodes_allowed, 1):
                break
        h.max_huge_pages = h.persistent_huge_pages
        return result
