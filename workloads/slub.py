"""SLUB: a cache's slab order and the bookkeeping of its slabs (mm/slub.c of 6.1.20).

The pure part of the ``slab`` caller (no SimPy, no randomness):

- sizing: ``calculate_sizes()`` (without debug metadata), ``calculate_order()`` and
  ``calc_slab_order()`` with ``slub_min_order`` 0, ``slub_max_order``
  ``PAGE_ALLOC_COSTLY_ORDER`` and ``slub_min_objects`` ``4 * (fls(nr_cpus) + 1)``; the
  ``oo``/``min`` pair (``oo_make()``), ``s->allocflags`` and ``s->min_partial``;
- the gfp masks of ``new_slab()`` and ``allocate_slab()``;
- :class:`KmemCache`: the slabs of one cache, as ``___slab_alloc()``, ``get_partial()``,
  ``deactivate_slab()``, ``__slab_free()`` and ``kmem_cache_shrink()`` move them between
  a CPU (``c->slab``), a node's partial list (``n->partial``) and no list (full). A slab
  is a row of typed per-slab columns (page handle, objects in use, capacity, node,
  state); an object is only a count: no Python object per object.

SIMPLIFICATION: no per-CPU partial lists (as ``CONFIG_SLUB_CPU_PARTIAL=n``): a slab
that gains a free object while full goes straight to its node's partial list tail, and
``get_partial_node()`` takes one slab. No per-object freelists: a CPU slab takes
objects until ``inuse == objects`` (``c->freelist``, remote frees to a frozen slab and
``DEACTIVATE_TO_TAIL`` are not distinguished: a deactivated slab goes to the head).
``get_any_partial()`` always searches the other nodes (the kernel skips it when
``get_cycles() % 1024 > remote_node_defrag_ratio``, 1000 by default: 2% of the time).
No debug flags, no ctor or ``SLAB_TYPESAFE_BY_RCU`` (the free pointer stays inside the
object), no ``SLAB_CACHE_DMA``, no pfmemalloc slabs, no memcg accounting, no cache
merging. Reclaimable slab is freed a whole page at a time by the machine's shrinker
(``simcore.mm.vmscan``): the live objects of a page it takes are gone with it (as if
the shrinker had freed them); the cache notices when it next touches that slab.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from simcore.mm.constants import PAGE_ALLOC_COSTLY_ORDER, PAGE_SIZE
from simcore.mm.gfp import GFP, GFP_RECLAIM, GFP_RECLAIM_MASK
from simcore.sim.machine import Allocation

MAX_OBJS_PER_PAGE = 32767
"""``slab->objects`` is 15 bits."""
SLUB_MIN_ORDER = 0
SLUB_MAX_ORDER = PAGE_ALLOC_COSTLY_ORDER
"""``slub_max_order``'s default."""
MIN_PARTIAL = 5
MAX_PARTIAL = 10
"""``s->min_partial`` bounds."""
WORD = 8
"""``sizeof(void *)``: objects are word aligned."""
GFP_CONSTRAINT_MASK = int(GFP.HARDWALL | GFP.THISNODE)
GFP_SLAB_BUG_MASK = int(GFP.DMA32 | GFP.HIGHMEM)
"""Bits a slab allocation must not carry (``kmalloc_fix_flags()`` warns and clears them)."""
_NEW_SLAB_MASK = int(GFP_RECLAIM_MASK) | GFP_CONSTRAINT_MASK
_NOWARN, _NORETRY, _NOFAIL = int(GFP.NOWARN), int(GFP.NORETRY), int(GFP.NOFAIL)
_NOMEMALLOC, _DIRECT_RECLAIM, _RECLAIM = int(GFP.NOMEMALLOC), int(GFP.DIRECT_RECLAIM), int(
    GFP_RECLAIM)

# Where a slab is (its state column).
SLOT_FREE, ON_CPU, ON_PARTIAL, FULL, GONE = range(5)
"""An unused row; a CPU's slab (frozen); on its node's partial list; full (on no
list); taken by the shrinker (its row is reused once its objects are all freed)."""


# -- sizing ---------------------------------------------------------------------------------
def get_order(size: int) -> int:
    """``get_order()``: the smallest order whose block holds ``size`` bytes."""
    return max(0, (size - 1) // PAGE_SIZE).bit_length()


def order_objects(order: int, size: int) -> int:
    """``order_objects()``: objects of ``size`` bytes in an order-``order`` slab."""
    return (PAGE_SIZE << order) // size


def fls(x: int) -> int:
    """``fls()``: the 1-based index of the most significant set bit (0 for 0)."""
    return x.bit_length()


def calc_slab_order(size: int, min_objects: int, max_order: int, fract_leftover: int,
                    min_order: int = SLUB_MIN_ORDER) -> int:
    """``calc_slab_order()``: the first order whose leftover is small enough.

    Orders are tried from ``get_order(min_objects * size)`` up; the first whose
    leftover is at most ``1/fract_leftover`` of the slab wins (``max_order + 1`` if none).
    """
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    order = max(min_order, get_order(min_objects * size))
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def slub_min_objects(nr_cpus: int) -> int:
    """``calculate_order()``'s default ``min_objects``: ``4 * (fls(nr_cpus) + 1)``."""
    return 4 * (fls(nr_cpus) + 1)


def calculate_order(size: int, nr_cpus: int, max_order: int = SLUB_MAX_ORDER,
                    page_max_order: int = 10) -> int:
    """``calculate_order()``: the order of a cache's slabs (``oo``), -1 if none fits.

    Mirrors 6.1: ``min_objects`` from the present CPUs, capped by what an order
    ``slub_max_order`` slab holds; then, for fewer and fewer objects, a leftover of
    1/16, 1/8 and 1/4; then one object within ``slub_max_order``; then one object at any
    order below ``MAX_ORDER`` (``page_max_order + 1``).

    Args:
        size: ``s->size``, the object size with its alignment.
        nr_cpus: ``num_present_cpus()`` (``nr_cpu_ids`` when that is 1 or less).
        max_order: ``slub_max_order``.
        page_max_order: The buddy allocator's largest order (``MAX_ORDER - 1``).
    """
    min_objects = min(slub_min_objects(nr_cpus), order_objects(max_order, size))
    while min_objects > 1:
        fraction = 16
        while fraction >= 4:
            order = calc_slab_order(size, min_objects, max_order, fraction)
            if order <= max_order:
                return order
            fraction //= 2
        min_objects -= 1
    order = calc_slab_order(size, 1, max_order, 1)
    if order <= max_order:
        return order
    order = calc_slab_order(size, 1, page_max_order + 1, 1)
    return order if order <= page_max_order else -1


def cache_size(object_size: int, align: int = WORD) -> int:
    """``s->size`` from ``calculate_sizes()`` without debug flags: word, then ``align``."""
    size = -(-object_size // WORD) * WORD
    return -(-size // align) * align


def calculate_min_partial(size: int) -> int:
    """``s->min_partial`` (``kmem_cache_open()``): ``ilog2(size) / 2`` within [5, 10]."""
    return max(MIN_PARTIAL, min(MAX_PARTIAL, (size.bit_length() - 1) // 2))


# -- gfp masks ------------------------------------------------------------------------------
def new_slab_flags(gfp: int, allocflags: int) -> int:
    """The mask ``allocate_slab()`` works with.

    ``new_slab()`` keeps the reclaim and constraint bits of the caller's mask, then
    ``s->allocflags`` is ORed in (``gfp_allowed_mask`` is every bit once boot is over).
    """
    return (gfp & _NEW_SLAB_MASK) | allocflags


def first_attempt_gfp(flags: int, oo_order: int, min_order: int) -> int:
    """``allocate_slab()``'s first attempt, at ``oo``'s order.

    ``(flags | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_NOFAIL``; when that may enter
    direct reclaim and ``oo`` is above ``min``, ``| __GFP_NOMEMALLOC`` and no reclaim at
    all (``& ~__GFP_RECLAIM``: not even a kswapd wake-up).
    """
    alloc_gfp = (flags | _NOWARN | _NORETRY) & ~_NOFAIL
    if alloc_gfp & _DIRECT_RECLAIM and oo_order > min_order:
        alloc_gfp = (alloc_gfp | _NOMEMALLOC) & ~_RECLAIM
    return alloc_gfp


# -- the cache ------------------------------------------------------------------------------
class KmemCache:
    """One ``struct kmem_cache`` and its slabs.

    A class because two SimPy processes share it: the caller's allocations and the
    frees of its expiring objects.

    Attributes:
        name: The cache name.
        size: ``s->size`` in bytes.
        oo, min: ``(order, objects)`` of a normal slab and of the fallback slab.
        allocflags: ``s->allocflags``: ``__GFP_COMP`` when ``oo``'s order is above 0,
            ``__GFP_RECLAIMABLE`` for a ``SLAB_RECLAIM_ACCOUNT`` cache.
        min_partial: ``s->min_partial``.
        stats: The caller's counters (SLUB's ``stat()`` items, lower case).
    """

    def __init__(self, name: str, size: int, nr_cpus: int, node_order: list[list[int]],
                 reclaimable: bool, stats: Counter[str], max_order: int = SLUB_MAX_ORDER,
                 page_max_order: int = 10) -> None:
        order = calculate_order(size, nr_cpus, max_order, page_max_order)
        if order < 0:
            raise ValueError(f"{name}: no slab order up to {page_max_order} holds {size} B")
        self.name = name
        self.size = size
        self.oo = (order, order_objects(order, size))
        min_order = get_order(size)
        self.min = (min_order, order_objects(min_order, size))
        self.allocflags = (int(GFP.COMP) if order else 0) | (
            int(GFP.RECLAIMABLE) if reclaimable else 0)
        self.min_partial = calculate_min_partial(size)
        self.stats = stats
        self.node_order = node_order
        """Per node, the nodes by distance (``get_any_partial()``'s zonelist walk)."""
        # One row per slab (``struct slab``).
        self.page: list[Allocation | None] = []
        self.inuse: list[int] = []
        self.objects: list[int] = []
        self.nid: list[int] = []
        self.state: list[int] = []
        self._spare: list[int] = []
        self.cpu_slab = [-1] * nr_cpus
        """``c->slab`` per CPU (a row, or -1)."""
        self.partial: list[OrderedDict[int, None]] = [OrderedDict() for _ in node_order]
        """``n->partial`` per node, head first."""
        self.discarded: list[Allocation] = []
        """Slab pages ``discard_slab()`` gave up; the caller frees them."""

    # -- rows ---------------------------------------------------------------------------
    def _new_row(self, page: Allocation, objects: int, nid: int) -> int:
        if self._spare:
            sid = self._spare.pop()
            self.page[sid], self.inuse[sid], self.objects[sid] = page, 0, objects
            self.nid[sid], self.state[sid] = nid, FULL
            return sid
        self.page.append(page)
        self.inuse.append(0)
        self.objects.append(objects)
        self.nid.append(nid)
        self.state.append(FULL)
        return len(self.page) - 1

    def _drop_row(self, sid: int) -> None:
        self.page[sid] = None
        self.state[sid] = SLOT_FREE
        self._spare.append(sid)

    def _gone(self, sid: int) -> bool:
        """Whether the shrinker took the slab's page; if so, take it off every list."""
        page = self.page[sid]
        if page is None or not page.gone:
            return False
        state = self.state[sid]
        if state == ON_PARTIAL:
            del self.partial[self.nid[sid]][sid]
        elif state == ON_CPU:
            self.cpu_slab[self.cpu_slab.index(sid)] = -1
        self.state[sid] = GONE
        self.stats["slabs_reclaimed"] += 1
        self.stats["objects_reclaimed"] += self.inuse[sid]
        if not self.inuse[sid]:
            self._drop_row(sid)
        return True

    def _discard(self, sid: int) -> None:
        """``discard_slab()``: the empty slab's page goes back to the buddy allocator."""
        page = self.page[sid]
        assert page is not None
        self.discarded.append(page)
        self.stats["free_slab"] += 1
        self._drop_row(sid)

    # -- allocation ---------------------------------------------------------------------
    def take_object(self, cpu: int, nid: int | None, local_nid: int) -> int:
        """The object fast path and the list part of ``___slab_alloc()``.

        Returns the row the object came from, or -1 when a new slab is needed
        (``new_slab()``, then :meth:`install`). ``nid`` None is ``NUMA_NO_NODE``.
        """
        sid = self.cpu_slab[cpu]
        if sid >= 0 and not self._gone(sid):
            if nid is not None and self.nid[sid] != nid:  # !node_match()
                self.stats["alloc_node_mismatch"] += 1
                self.deactivate_slab(sid)
            elif self.inuse[sid] < self.objects[sid]:
                self.inuse[sid] += 1
                return sid
            else:
                self.state[sid] = FULL  # get_freelist() found nothing: on no list
        self.cpu_slab[cpu] = -1
        sid = self.get_partial(nid, local_nid)
        if sid < 0:
            return -1
        self.stats["alloc_from_partial"] += 1
        self.state[sid] = ON_CPU
        self.cpu_slab[cpu] = sid
        self.inuse[sid] += 1
        return sid

    def install(self, page: Allocation, objects: int, cpu: int, nid: int) -> int:
        """A new slab becomes ``cpu``'s slab and gives one object; returns its row."""
        assert self.cpu_slab[cpu] < 0, "take_object() gave the CPU slab up"
        sid = self._new_row(page, objects, nid)
        self.state[sid] = ON_CPU
        self.cpu_slab[cpu] = sid
        self.inuse[sid] = 1
        self.stats["alloc_slab"] += 1
        return sid

    def get_partial(self, nid: int | None, local_nid: int) -> int:
        """``get_partial()``: a slab from the node's partial list, or -1.

        Then, for ``NUMA_NO_NODE`` only, ``get_any_partial()``: the nodes by distance
        that have more than ``min_partial`` partial slabs.
        """
        search = local_nid if nid is None else nid
        sid = self.get_partial_node(search)
        if sid >= 0 or nid is not None:
            return sid
        for node in self.node_order[local_nid]:
            if node != search and len(self.partial[node]) > self.min_partial:
                sid = self.get_partial_node(node)
                if sid >= 0:
                    return sid
        return -1

    def get_partial_node(self, nid: int) -> int:
        """``get_partial_node()``: the first live slab of the node's partial list."""
        partial = self.partial[nid]
        while partial:
            sid = next(iter(partial))
            if not self._gone(sid):  # _gone() takes a reclaimed slab off the list
                del partial[sid]
                return sid
        return -1

    def deactivate_slab(self, sid: int) -> None:
        """``deactivate_slab()``: a CPU gives its slab up.

        It is freed if empty and the node has ``min_partial`` partial slabs, else it
        goes to the partial list head, or on no list if full.
        """
        partial = self.partial[self.nid[sid]]
        if not self.inuse[sid] and len(partial) >= self.min_partial:
            self._discard(sid)
        elif self.inuse[sid] < self.objects[sid]:
            self.state[sid] = ON_PARTIAL
            partial[sid] = None
            partial.move_to_end(sid, last=False)  # DEACTIVATE_TO_HEAD
        else:
            self.state[sid] = FULL

    # -- freeing ------------------------------------------------------------------------
    def free_object(self, sid: int) -> None:
        """``__slab_free()`` of one object of row ``sid``.

        A CPU slab (frozen) only counts it. A slab left empty is discarded when its node
        already has ``min_partial`` partial slabs (counting it); a full slab that is not
        goes to the partial list tail.
        """
        state = self.state[sid]
        if state != GONE and self._gone(sid):
            state = GONE
        self.inuse[sid] -= 1
        inuse = self.inuse[sid]
        if state == GONE:
            if not inuse:
                self._drop_row(sid)
            return
        if state == ON_CPU:
            return
        partial = self.partial[self.nid[sid]]
        if not inuse and len(partial) >= self.min_partial:
            if state == ON_PARTIAL:
                del partial[sid]
            self._discard(sid)
        elif state == FULL:
            self.state[sid] = ON_PARTIAL
            partial[sid] = None  # add_partial(n, slab, DEACTIVATE_TO_TAIL)

    def shrink(self) -> None:
        """``kmem_cache_shrink()``: CPU slabs given up, empty partial slabs discarded.

        ``flush_all()`` deactivates every CPU slab, then ``__kmem_cache_do_shrink()``
        discards every empty slab of the partial lists.
        """
        for cpu, sid in enumerate(self.cpu_slab):
            if sid >= 0:
                self.cpu_slab[cpu] = -1
                if not self._gone(sid):
                    self.deactivate_slab(sid)
        for partial in self.partial:
            for sid in list(partial):
                if not self._gone(sid) and not self.inuse[sid]:
                    del partial[sid]
                    self._discard(sid)

    def pop_discarded(self) -> list[Allocation]:
        """The pages discarded since the last call (to be freed by the caller)."""
        pages, self.discarded = self.discarded, []
        return pages

    def live_slabs(self) -> int:
        """Slabs the cache holds (on a CPU, partial or full; not reclaimed)."""
        return sum(1 for s in self.state if s in (ON_CPU, ON_PARTIAL, FULL))
