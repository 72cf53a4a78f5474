"""The root object: one simulated machine running in a SimPy environment.

``Machine`` holds the SimPy environment (integer nanoseconds), the RNG streams (one
``numpy.random.SeedSequence``, spawned once per workload), the pure
:class:`~simcore.mm.page_alloc.PageAllocator`, the tracer and the per-caller counters.
Nothing lives at module level.

Allocations are returned as :class:`Allocation` handles that record their owner. A
handle is an object the allocator can update: when later work (compaction) moves a
movable allocation to new pfns, it rewrites ``handle.pfn`` and the reverse map, so
callers never hold raw pfns.

Deferred frees. A caller that knows when it will free a block hands the handle to
:meth:`Machine.defer_free` with its expiry instead of waking up (one SimPy event) to
free it. The machine keeps a heap of pending expiry times, each with its frees in the
order they were deferred, and applies the due ones, in that order, at the start of
every allocator call (:meth:`~Machine.alloc_now`, :meth:`~Machine.free`,
:meth:`~Machine.split`) and whenever someone is about to look at the allocator's state
(snapshots, the end of the run), through :meth:`Machine.apply_pending_frees`. So the
allocator sees the same sequence of operations as with one SimPy event per free, and
while a deferred free is applied :meth:`Machine.trace_now` (the tracer's clock) and
:attr:`Machine.now_ns` read its expiry, not ``env.now``.

Equal timestamps: a deferred free with expiry ``t`` is applied before any allocator
call or snapshot at ``t``; deferred frees with the same expiry are applied in the
order they were deferred (machine-wide).
"""

from __future__ import annotations

import heapq
import operator
from collections import Counter
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from simcore.config.types import ExperimentConfig, MachineConfig, SysctlConfig
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.tracepoints import NullTracer, Tracer


class Allocation:
    """A handle on one allocated block (the caller's ``struct page *``).

    Handles compare by identity. An extension type in the compiled build (see
    ``machine.pxd``), so its fields are C fields there.

    Attributes:
        pfn: Current first pfn; updated in place if the block is migrated.
        order: Block order.
        owner: The caller (workload instance name).
        gfp: The gfp_mask it was allocated with.
        cpu: The CPU that allocated it.
        alive: False once freed.
    """

    __slots__ = ("pfn", "order", "owner", "gfp", "cpu", "alive")

    def __init__(
        self, pfn: int, order: int, owner: str, gfp: int, cpu: int, alive: bool = True
    ) -> None:
        self.pfn = pfn
        self.order = order
        self.owner = owner
        self.gfp = gfp
        self.cpu = cpu
        self.alive = alive

    def __repr__(self) -> str:
        return (f"Allocation(pfn={self.pfn:#x}, order={self.order}, owner={self.owner!r}, "
                f"gfp={self.gfp:#x}, cpu={self.cpu}, alive={self.alive})")


class CallerStats:
    """Per-run request accounting for ``summary.json``."""

    __slots__ = ("alloc_requests", "pages_allocated", "pages_freed", "free_requests",
                 "failures_by_order", "failures_by_caller")

    def __init__(self) -> None:
        self.alloc_requests = 0
        self.pages_allocated = 0
        self.pages_freed = 0
        self.free_requests = 0
        self.failures_by_order: Counter[int] = Counter()
        self.failures_by_caller: Counter[str] = Counter()


class Machine:
    """A simulated machine: SimPy environment + page allocator + RNG streams."""

    def __init__(
        self,
        machine: MachineConfig,
        sysctl: SysctlConfig,
        seed: int,
        tracer: Tracer | None = None,
        mm: PageAllocator | None = None,
    ) -> None:
        self.env = simpy.Environment(initial_time=0)
        self.tracer = tracer if tracer is not None else NullTracer()
        self.mm = mm if mm is not None else PageAllocator(machine, sysctl, self.tracer)
        self.seed_sequence = np.random.SeedSequence(seed)
        self.stats = CallerStats()
        self.owner_of: dict[int, Allocation] = {}
        """Reverse map: head pfn -> live handle (what compaction and reclaim use).

        Handles whose deferred free is due but not yet applied are still in it: call
        :meth:`apply_pending_frees` before reading it."""
        self._pending: list[int] = []
        """Deferred frees: a heap of the distinct expiry times (ns) still pending."""
        self._pending_at: dict[int, list[Allocation]] = {}
        """Deferred frees: expiry -> the handles due then, in the order they were deferred."""
        self._nr_pending = 0
        self._stamp_ns = -1
        """The expiry of the deferred free being applied; -1 outside one."""

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, tracer: Tracer | None = None) -> Machine:
        """Build the machine an experiment describes."""
        return cls(cfg.machine, cfg.sysctl, cfg.seed, tracer)

    @property
    def now_ns(self) -> int:
        """Simulated time in integer nanoseconds (see :meth:`trace_now`)."""
        return self.trace_now()

    def trace_now(self) -> int:
        """The time of the allocator operation in progress, in ns: the tracer's clock.

        ``env.now``, except while a deferred free is applied: then its expiry.
        """
        stamp = self._stamp_ns
        return stamp if stamp >= 0 else int(self.env.now)

    @property
    def nr_cpus(self) -> int:
        """CPUs of all nodes."""
        return self.mm.nr_cpus

    def spawn_rngs(self, n: int) -> list[np.random.Generator]:
        """``n`` independent RNG streams, spawned from the run's seed in a fixed order."""
        return [np.random.default_rng(s) for s in self.seed_sequence.spawn(n)]

    def cpu_node(self, cpu: int) -> int:
        """``cpu_to_node()``."""
        return self.mm.cpu_to_node[cpu]

    # -- the caller-facing API ----------------------------------------------------------
    def alloc(
        self, owner: str, gfp: int, order: int, cpu: int, nid: int | None = None
    ) -> Generator[Any, Any, Allocation | None]:
        """``alloc_pages_node(nid, gfp, order)`` issued by ``owner`` on ``cpu``.

        A SimPy sub-generator (``handle = yield from machine.alloc(...)``): the slow
        path will spend simulated time once reclaim and compaction are modelled; today
        the whole request completes at the current instant. Returns None on failure.
        """
        return self.alloc_now(owner, gfp, order, cpu, nid)
        yield  # pragma: no cover - marks this function as a generator

    def alloc_now(
        self, owner: str, gfp: int, order: int, cpu: int, nid: int | None = None
    ) -> Allocation | None:
        """The synchronous part of :meth:`alloc` (no simulated time passes)."""
        self.apply_pending_frees()  # returns at once when nothing is due
        mm = self.mm
        if nid is None:
            nid = mm.cpu_to_node[cpu]
        self.tracer.set_context(owner, cpu)
        mm.current_comm = owner
        pfn = mm.alloc_pages(gfp, order, nid, cpu)
        stats = self.stats
        stats.alloc_requests += 1
        if pfn < 0:
            stats.failures_by_order[order] += 1
            stats.failures_by_caller[owner] += 1
            return None
        stats.pages_allocated += 1 << order
        handle = Allocation(pfn, order, owner, gfp, cpu)
        self.owner_of[pfn] = handle
        return handle

    def free(self, handle: Allocation, cpu: int | None = None) -> None:
        """``__free_pages(page, order)`` by the handle's owner (on ``cpu``)."""
        if handle is None:  # e.g. a failed alloc() (the compiled build must not read it)
            raise TypeError("free() of None: the allocation it came from failed")
        if self._stamp_ns < 0:  # not one of the frees apply_pending_frees() is applying
            self.apply_pending_frees()
        if not handle.alive:
            raise ValueError(f"{handle.owner}: handle for pfn {handle.pfn:#x} already freed")
        cpu = handle.cpu if cpu is None else cpu
        self.tracer.set_context(handle.owner, cpu)
        handle.alive = False
        self.owner_of.pop(handle.pfn, None)
        self.stats.free_requests += 1
        if self.mm.free_pages(handle.pfn, handle.order, cpu):
            self.stats.pages_freed += 1 << handle.order

    def split(self, handle: Allocation) -> list[Allocation]:
        """``split_page()``: one order-0 handle per page, each freed on its own."""
        self.apply_pending_frees()
        if not self.mm.split_page(handle.pfn, handle.order):
            return [handle]
        self.owner_of.pop(handle.pfn, None)
        handle.alive = False
        parts = [
            Allocation(handle.pfn + i, 0, handle.owner, handle.gfp, handle.cpu)
            for i in range(1 << handle.order)
        ]
        for part in parts:
            self.owner_of[part.pfn] = part
        return parts

    # -- deferred frees -----------------------------------------------------------------
    def defer_free(self, handle: Allocation, expiry_ns: int) -> None:
        """Free ``handle`` at ``expiry_ns`` without a SimPy event.

        The free (on the CPU that allocated the block) is applied by the first
        :meth:`apply_pending_frees` at or after that time, stamped with ``expiry_ns``.
        The caller must not free or split the handle itself after this.

        Raises:
            TypeError: ``expiry_ns`` is not an integer (simulated time is integer ns).
            ValueError: ``expiry_ns`` is in the past.
        """
        if handle is None:
            raise TypeError("defer_free() of None: the allocation it came from failed")
        try:
            expiry_ns = operator.index(expiry_ns)
        except TypeError:
            raise TypeError(f"{handle.owner}: expiry {expiry_ns!r} is not integer ns") from None
        if expiry_ns < self.env.now:
            raise ValueError(f"{handle.owner}: free of pfn {handle.pfn:#x} deferred to "
                             f"{expiry_ns} ns, before now ({self.env.now} ns)")
        due = self._pending_at.get(expiry_ns)
        if due is None:
            self._pending_at[expiry_ns] = [handle]
            heapq.heappush(self._pending, expiry_ns)
        else:
            due.append(handle)
        self._nr_pending += 1

    @property
    def pending_frees(self) -> int:
        """Deferred frees not applied yet."""
        return self._nr_pending

    def apply_pending_frees(self) -> None:
        """Apply, in expiry order, every deferred free whose expiry is <= ``env.now``.

        Each free runs as :meth:`free` would have at its expiry: its trace events carry
        the expiry as their time.
        """
        pending = self._pending
        now = self.env.now
        if not pending or pending[0] > now:
            return
        try:
            while pending and pending[0] <= now:
                expiry = pending[0]
                due = self._pending_at[expiry]
                self._stamp_ns = expiry
                done = 0
                try:
                    while done < len(due):  # in deferral order
                        handle = due[done]
                        done += 1
                        self._nr_pending -= 1
                        self.free(handle)
                finally:  # a free that raises leaves the frees after it pending
                    del due[:done]
                heapq.heappop(pending)
                del self._pending_at[expiry]
        finally:
            self._stamp_ns = -1
