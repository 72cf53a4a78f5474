"""The root object: one simulated machine running in a SimPy environment.

``Machine`` holds the SimPy environment (integer nanoseconds), the RNG streams (one
``numpy.random.SeedSequence``, spawned once per workload), the pure
:class:`~simcore.mm.page_alloc.PageAllocator`, the tracer and the per-caller counters.
Nothing lives at module level.

Allocations are returned as :class:`Allocation` handles that record their owner. A
handle is an object the allocator can update: when later work (compaction) moves a
movable allocation to new pfns, it rewrites ``handle.pfn`` and the reverse map, so
callers never hold raw pfns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from simcore.config.types import ExperimentConfig, MachineConfig, SysctlConfig
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.tracepoints import NullTracer, Tracer


@dataclass(slots=True, eq=False)
class Allocation:
    """A handle on one allocated block (the caller's ``struct page *``).

    Attributes:
        pfn: Current first pfn; updated in place if the block is migrated.
        order: Block order.
        owner: The caller (workload instance name).
        gfp: The gfp_mask it was allocated with.
        cpu: The CPU that allocated it.
        alive: False once freed.
    """

    pfn: int
    order: int
    owner: str
    gfp: int
    cpu: int
    alive: bool = True


@dataclass
class CallerStats:
    """Per-run request accounting for ``summary.json``."""

    alloc_requests: int = 0
    pages_allocated: int = 0
    pages_freed: int = 0
    free_requests: int = 0
    failures_by_order: Counter[int] = field(default_factory=Counter)
    failures_by_caller: Counter[str] = field(default_factory=Counter)


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
        """Reverse map: head pfn -> live handle (what compaction and reclaim use)."""

    @classmethod
    def from_config(cls, cfg: ExperimentConfig, tracer: Tracer | None = None) -> Machine:
        """Build the machine an experiment describes."""
        return cls(cfg.machine, cfg.sysctl, cfg.seed, tracer)

    @property
    def now_ns(self) -> int:
        """Simulated time in integer nanoseconds."""
        return int(self.env.now)

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
