"""The hugetlb pool in simulated time: ``nr_hugepages`` writes as SimPy processes.

One :class:`HugetlbPool` per machine (in :attr:`Machine.extras`, created on first use by
:func:`hugetlb_of`) holds the pure pool model (:class:`simcore.mm.hugetlb.Hugetlb`) and
runs each write to ``nr_hugepages`` as a process: ``set_max_huge_pages()`` allocates
every huge page through :meth:`Machine.alloc`, so a page that needs reclaim or
compaction advances the writer's clock by those stalls, and a gigantic page's
``alloc_contig_range()`` by its isolation and migration work. Writes to the same size
wait for each other (``h->resize_lock``). Each write is recorded for ``summary.json``
(``hugetlb.requests``) and traced as a ``hugetlb_resize`` span; the pool's warnings are
``hugetlb_warn`` spans carrying the kernel's text.

The pool's pages belong to the owner ``hugetlb``, which the OOM killer never picks: a
huge page is in no process's rss.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import simpy

from simcore.formats import trace_schema as ts
from simcore.mm import contig
from simcore.mm.hstate import Hstate
from simcore.mm.hugetlb import Hugetlb
from simcore.sim.machine import Allocation, Machine

HUGETLB_KEY = "hugetlb"
"""Where the pool lives in :attr:`Machine.extras`."""
POOL_OWNER = "hugetlb"
"""The owner of the pool's pages (and the caller of their allocations in the trace)."""


class MachineBackend:
    """:class:`simcore.mm.hugetlb.PoolBackend` through the machine, on ``cpu``."""

    def __init__(self, pool: HugetlbPool, cpu: int) -> None:
        self.pool = pool
        self.machine = pool.machine
        self.cpu = cpu
        self._cost_ns = 0
        self._in_flight: list[int] = []
        """Ranges :meth:`alloc_contig_pages` gave since the last :meth:`stall`."""

    def alloc_pages(self, gfp: int, order: int, nid: int) -> Generator[Any, Any, int]:
        """``__alloc_pages()`` by the pool owner, with its slow path in simulated time."""
        handle = yield from self.machine.alloc(POOL_OWNER, gfp, order, self.cpu, nid)
        if handle is None:
            return -1
        self.pool.handles[handle.pfn] = handle
        return int(handle.pfn)

    def free_pages(self, pfn: int, order: int) -> None:
        """``__free_pages()`` of a pool block (by its handle)."""
        self.machine.free(self.pool.handles.pop(pfn), self.cpu)

    def alloc_contig_pages(self, nr_pages: int, gfp: int, nid: int,
                           nodemask: frozenset[int]) -> int:
        """``alloc_contig_pages()`` now; its cost is spent by :meth:`stall`."""
        machine = self.machine
        machine.apply_pending_frees()
        machine._enter(POOL_OWNER, self.cpu)
        pfn, cost = contig.alloc_contig_pages(machine.mm, nr_pages, gfp, nid, nodemask,
                                              self.cpu)
        self._cost_ns += cost
        if pfn >= 0:
            machine.owners[POOL_OWNER].pages += nr_pages
            self.pool.contig_in_flight[pfn] = nr_pages
            self._in_flight.append(pfn)
        return pfn

    def free_contig_range(self, pfn: int, nr_pages: int) -> int:
        """``free_contig_range()``: the pool lets go of a gigantic range.

        Returns the pages still in use (another holder frees them later).
        """
        machine = self.machine
        machine._enter(POOL_OWNER, self.cpu)
        busy = contig.free_contig_range(machine.mm, pfn, nr_pages, self.cpu)
        machine.owners[POOL_OWNER].pages -= nr_pages
        self.pool.contig_in_flight.pop(pfn, None)
        return busy

    def stall(self) -> Generator[Any, Any, None]:
        """Spend the contiguous-range work done since the last call.

        The ranges allocated before it are in flight meanwhile
        (:attr:`HugetlbPool.contig_in_flight`); after it the caller makes each a pool
        page or frees it in the same SimPy event (``alloc_fresh_huge_page()``).
        """
        ns, self._cost_ns = self._cost_ns, 0
        if ns:
            yield self.machine.env.timeout(ns)
            self.machine.apply_pending_frees()
        for pfn in self._in_flight:
            self.pool.contig_in_flight.pop(pfn, None)
        self._in_flight.clear()


@dataclass
class _Request:
    """One ``nr_hugepages`` write: what was asked, and when it started and ended."""

    by: str
    h: Hstate
    nid: int | None
    requested: int
    at_ns: int
    end_ns: int = -1
    allocated: tuple[int, ...] = ()
    freed: int = 0
    pass_failed: bool = False
    after: dict[str, Any] | None = None
    """The pool (``Hstate.state()``) when the request completed."""


class HugetlbPool:
    """A machine's hugetlb pool, its resize processes and their record."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.state = Hugetlb(machine.mm)
        self.state.on_warn = self._warned
        self.handles: dict[int, Allocation] = {}
        """Head pfn -> the machine's handle of each 2 MiB pool block."""
        self.contig_in_flight: dict[int, int] = {}
        """First pfn -> pages of each gigantic range ``alloc_contig_pages()`` gave a resize
        that is spending the allocation's time (:meth:`MachineBackend.stall`): the pool's,
        but not yet a pool page (frozen and compound if ``prep_compound_gigantic_page()``
        succeeded, else order-0 pages of refcount 1). The invariant audit counts them."""
        self.requests: list[_Request] = []
        self._resize_lock: dict[int, simpy.Resource] = {}
        if POOL_OWNER not in machine.owners:
            machine.register_owner(POOL_OWNER, killable=False)

    def backend(self, cpu: int) -> MachineBackend:
        """The page allocator as the pool sees it, from ``cpu``."""
        return MachineBackend(self, cpu)

    def _warned(self, text: str, pfn: int) -> None:
        now = self.machine.trace_now()
        self.machine.spans.add(ts.SPAN_HUGETLB_WARN, self.state.page_to_nid(pfn),
                               self.machine._context, now, now, 0, f"{text} pfn={pfn:#x}")

    def resize(self, count: int, nid: int | None, order: int, cpu: int,
               by: str) -> Generator[Any, Any, _Request]:
        """A write of ``count`` to ``nr_hugepages`` (``nid`` None: the global file).

        A SimPy process body: waits for another resize of the same size, runs
        ``set_max_huge_pages()`` and records the request.
        """
        env = self.machine.env
        h = self.state.hstates[order]
        req = _Request(by, h, nid, count, int(env.now))
        self.requests.append(req)
        lock = self._resize_lock.setdefault(order, simpy.Resource(env, capacity=1))
        with lock.request() as turn:
            yield turn
            nodes = self.state.n_memory if nid is None else (nid,)
            result = yield from self.state.set_max_huge_pages(h, count, nid, nodes,
                                                              self.backend(cpu))
        req.end_ns = int(env.now)
        req.allocated = tuple(result.allocated_nids)
        req.freed = result.freed
        req.pass_failed = result.pass_failed
        req.after = h.state()
        entry = self.entry(req)
        self.machine.spans.add(
            ts.SPAN_HUGETLB_RESIZE, -1 if nid is None else nid, by, req.at_ns, req.end_ns,
            len(req.allocated) * h.nr_pages,
            f"size={h.size} count={count} node={-1 if nid is None else nid} "
            f"obtained={entry['obtained']} allocated={len(req.allocated)} "
            f"freed={req.freed} nr_hugepages={h.nr_huge_pages} "
            f"stopped_at_failed_pass={int(req.pass_failed)}")
        return req

    def put_page(self, pfn: int, cpu: int) -> None:
        """``put_page()`` on a pool page (the last reference runs ``free_huge_page()``)."""
        self.state.put_page(pfn, self.backend(cpu))

    def entry(self, req: _Request) -> dict[str, Any]:
        """The request as ``summary.json`` lists it (the pool now, if still running).

        ``obtained`` is the persistent pool after the write (pages that are not
        surplus), on the request's node or in total: what ``/proc/sys/vm/nr_hugepages``
        reads back (``max_huge_pages``); ``obtained_by_node`` is the persistent pool per
        node. The sysfs files (``/sys/kernel/mm/hugepages/.../nr_hugepages``, global or
        per node) read ``nr_huge_pages``, surplus included: ``pool_after``'s
        ``nr_hugepages`` and ``nr_hugepages_by_node``.
        """
        h = req.h
        after = req.after if req.after is not None else h.state()
        persistent = [n - s for n, s in zip(after["nr_hugepages_by_node"],
                                            after["surplus_hugepages_by_node"], strict=True)]
        end = req.end_ns if req.end_ns >= 0 else self.machine.now_ns
        by_node = Counter(req.allocated)
        return {
            "at_s": req.at_ns / 1e9, "by": req.by, "size": h.size, "node": req.nid,
            "requested": req.requested,
            "obtained": sum(persistent) if req.nid is None else persistent[req.nid],
            "obtained_by_node": persistent,
            "allocated": len(req.allocated),
            "allocated_by_node": [by_node[n] for n in range(len(persistent))],
            "freed": req.freed, "stopped_at_failed_pass": req.pass_failed,
            "seconds": (end - req.at_ns) / 1e9, "finished": req.end_ns >= 0,
            "pool_after": after,
        }

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s ``hugetlb``: every request, the pools, the warnings."""
        st = self.state
        return {
            "requests": [self.entry(r) for r in self.requests],
            "pools": {h.size: h.state() for h in st.hstates.values()},
            "freeze_retries": st.freeze_retries,
            "warnings": list(st.warnings),
        }


def hugetlb_of(machine: Machine) -> HugetlbPool:
    """The machine's hugetlb pool, created on first use."""
    pool = machine.extras.get(HUGETLB_KEY)
    if pool is None:
        pool = machine.extras[HUGETLB_KEY] = HugetlbPool(machine)
    assert isinstance(pool, HugetlbPool)
    return pool


def put_page(machine: Machine, pfn: int, cpu: int) -> None:
    """``put_page()`` by a holder of a reference (a speculative one, or a mapping).

    A pool page's last reference goes to ``free_huge_page()``, any other page's to the
    page allocator.
    """
    machine.apply_pending_frees()
    pool = machine.extras.get(HUGETLB_KEY)
    if isinstance(pool, HugetlbPool) and pfn in pool.state.page_hstate:
        pool.put_page(pfn, cpu)
    else:
        machine.mm.put_page(pfn, cpu)
