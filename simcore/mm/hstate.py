"""``struct hstate``: one huge page size, its pool counts and its node round-robin.

Mirrors mm/hugetlb.c of 6.1.20: the hstate fields the pool uses (``nr_huge_pages``,
``free_huge_pages``, ``surplus_huge_pages`` and their ``_node`` arrays,
``hugepage_freelists``, ``hugepage_activelist``, ``next_nid_to_alloc``,
``next_nid_to_free``), the node iterators ``hstate_next_node_to_alloc()`` and
``hstate_next_node_to_free()`` (``for_each_node_mask_to_alloc()``/``_to_free()`` take one
node per step, wrapping over the allowed nodes), and ``htlb_alloc_mask()``
(include/linux/hugetlb.h). The pool's operations are in :mod:`simcore.mm.hugetlb`.

Pure code: no SimPy, no I/O, no randomness.
"""

from __future__ import annotations

from typing import Any

from simcore.mm.gfp import GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE

HPAGE_PMD_ORDER = 9
HPAGE_PUD_ORDER = 18
HUGE_PAGE_ORDERS = (HPAGE_PMD_ORDER, HPAGE_PUD_ORDER)
"""The x86_64 hstates: 2 MiB (PMD) and 1 GiB (PUD, ``X86_FEATURE_GBPAGES``)."""


class Hstate:
    """``struct hstate``: one huge page size and its pool.

    Attributes:
        order: ``huge_page_order()``; nr_pages: ``pages_per_huge_page()``.
        gigantic: ``hstate_is_gigantic()``: the order is above ``max_order``.
        nr_huge_pages, free_huge_pages, surplus_huge_pages: Pool counts (``_node``: per node).
        freelists: ``hugepage_freelists[nid]``: free pool pages; the last key is the head.
        active: ``hugepage_activelist``: pool pages in use.
    """

    def __init__(self, order: int, nr_nodes: int, first_node: int, gigantic: bool) -> None:
        self.order = order
        self.nr_pages = 1 << order
        self.gigantic = gigantic
        self.max_huge_pages = 0
        self.nr_huge_pages = 0
        self.free_huge_pages = 0
        self.surplus_huge_pages = 0
        self.resv_huge_pages = 0
        self.nr_huge_pages_node = [0] * nr_nodes
        self.free_huge_pages_node = [0] * nr_nodes
        self.surplus_huge_pages_node = [0] * nr_nodes
        self.freelists: list[dict[int, None]] = [{} for _ in range(nr_nodes)]
        self.active: dict[int, None] = {}
        self.next_nid_to_alloc = first_node
        self.next_nid_to_free = first_node

    @property
    def name(self) -> str:
        """The sysfs directory: ``hugepages-2048kB``."""
        return f"hugepages-{self.nr_pages * 4}kB"

    @property
    def size(self) -> str:
        """``2MiB`` or ``1GiB``."""
        kib = self.nr_pages * 4
        return f"{kib >> 20}GiB" if kib >= 1 << 20 else f"{kib >> 10}MiB"

    @property
    def persistent_huge_pages(self) -> int:
        """``persistent_huge_pages()``: pool pages that are not surplus."""
        return self.nr_huge_pages - self.surplus_huge_pages

    def state(self) -> dict[str, Any]:
        """What ``/sys/kernel/mm/hugepages/<name>/`` shows, with the per-node counts."""
        return {"nr_hugepages": self.nr_huge_pages, "free_hugepages": self.free_huge_pages,
                "surplus_hugepages": self.surplus_huge_pages,
                "nr_hugepages_by_node": list(self.nr_huge_pages_node),
                "free_hugepages_by_node": list(self.free_huge_pages_node),
                "surplus_hugepages_by_node": list(self.surplus_huge_pages_node)}


def next_node_allowed(nid: int, nodes_allowed: tuple[int, ...]) -> int:
    """``next_node_allowed()``: the next allowed node after ``nid``, wrapping around."""
    for node in nodes_allowed:
        if node > nid:
            return node
    return nodes_allowed[0]


def get_valid_node_allowed(nid: int, nodes_allowed: tuple[int, ...]) -> int:
    """``get_valid_node_allowed()``: ``nid`` if allowed, else the next allowed node."""
    return nid if nid in nodes_allowed else next_node_allowed(nid, nodes_allowed)


def hstate_next_node_to_alloc(h: Hstate, nodes_allowed: tuple[int, ...]) -> int:
    """``hstate_next_node_to_alloc()``: this pass's node; advances ``next_nid_to_alloc``."""
    nid = get_valid_node_allowed(h.next_nid_to_alloc, nodes_allowed)
    h.next_nid_to_alloc = next_node_allowed(nid, nodes_allowed)
    return nid


def hstate_next_node_to_free(h: Hstate, nodes_allowed: tuple[int, ...]) -> int:
    """``hstate_next_node_to_free()``: as above, for ``next_nid_to_free``."""
    nid = get_valid_node_allowed(h.next_nid_to_free, nodes_allowed)
    h.next_nid_to_free = next_node_allowed(nid, nodes_allowed)
    return nid


def htlb_alloc_mask(h: Hstate) -> int:
    """``htlb_alloc_mask()``: movable unless gigantic (``hugepage_movable_supported()``)."""
    return int(GFP_HIGHUSER if h.gigantic else GFP_HIGHUSER_MOVABLE)
