"""The invariant audit of a running machine: ``allocsim run --check-invariants[=N]``.

Every ``N`` SimPy events the audit checks the whole machine, as a ``DEBUG_VM`` kernel
would if it checked everything at once:

* the allocator's own invariants (:func:`simcore.mm.invariants.check_invariants`):
  conservation of pages (free + pcp + held pages cover every managed page exactly once,
  apart from the pages bad frees leaked), alignment, complete merging, and the counters
  (``nr_free``, NR_FREE_PAGES, ``pcp->count``) against the lists;
* refcounts against owners: every live handle's head has the owner's reference plus the
  speculative references taken on it (:attr:`Machine.extra_refs`), a hugetlb pool page
  on the pool's free list is frozen (refcount 0), and every page held without a handle
  (:mod:`simcore.sim.heldpages`) has one reference;
* handles against the reverse map (what compaction rewrites when it migrates a block):
  ``owner_of[pfn].pfn == pfn``, the handle is alive, and the page there is an allocated
  block of the handle's order; every handle a deferred free is waiting for is still in
  the map (or was taken by reclaim or the OOM killer, or its caller freed or split it
  meanwhile: a misuse the deferred free records as a double free when it is applied);
* each caller's page count (``Owner.pages``) against the handles and held pages it owns.

The audit runs between SimPy events, where no allocator call is half done: a SimPy event
is the unit the audit counts and names. A check every ``N`` events finds a violation up
to ``N - 1`` events late; :func:`pin_first_bad_event` then replays the run (it is
deterministic) and checks every event of that window to name the first bad one.

SIMPLIFICATION: merging completeness is not checked at orders >= pageblock_order in a
zone that has unreserved a highatomic pageblock (see :mod:`simcore.mm.invariants`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from simpy.core import StopSimulation

from simcore.mm.invariants import InvariantError, check_invariants
from simcore.mm.pages import ORDER_MASK, PG_ALLOC, PG_HEAD
from simcore.sim.hugetlb import HUGETLB_KEY

if TYPE_CHECKING:
    from simcore.sim.machine import Machine


@dataclass(frozen=True)
class Violation:
    """The first SimPy event after which an invariant no longer held.

    Attributes:
        event: The event's number (1 = the first event the run processed).
        last_good: The last event after which every invariant held (0: the start).
        time_ns: Simulated time of the event.
        process: What the event resumed (a caller's SimPy process, kswapd, ...).
        rule: The broken invariant, as :class:`InvariantError` states it.
        trace_rows: The ``events.parquet`` rows the event wrote (start, end), if traced.
        pinned: True if every event in ``(last_good, event]`` was checked.
    """

    event: int
    last_good: int
    time_ns: int
    process: str
    rule: str
    trace_rows: tuple[int, int] | None
    pinned: bool

    def as_dict(self) -> dict[str, Any]:
        """For ``manifest.json``."""
        return {"event": self.event, "last_good_event": self.last_good,
                "time_ns": self.time_ns, "process": self.process, "rule": self.rule,
                "trace_rows": list(self.trace_rows) if self.trace_rows else None,
                "pinned": self.pinned}

    def describe(self) -> str:
        """One line for the terminal."""
        rows = (f", events.parquet rows {self.trace_rows[0]}..{self.trace_rows[1] - 1}"
                if self.trace_rows and self.trace_rows[1] > self.trace_rows[0] else "")
        when = f"{self.time_ns / 1e9:.9f}".rstrip("0").rstrip(".")
        first = "first bad event" if self.pinned else "found after event"
        return (f"invariant violated: {first} #{self.event} (t={when}s, {self.process}"
                f"{rows}): {self.rule}")


class InvariantViolation(Exception):
    """The audit found a broken invariant; the run stops here."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.describe())
        self.violation = violation


def holdings(m: Machine) -> tuple[dict[int, int], set[int]]:
    """Every allocated block the machine knows an owner of: ``({pfn: order}, frozen)``.

    The owners: live handles (``owner_of``), pages held without a handle, the hugetlb
    pool's gigantic pages (which have no handle) and the gigantic ranges a resize is
    still spending the allocation time of, blocks direct compaction captured for a
    request that is still spending the compaction's time, and pages only a speculative
    reference still keeps (their owner freed them while a walker held a reference:
    :func:`kept_by_references`). ``frozen``: the blocks whose refcount is 0 although
    they are not free: the hugetlb pool's free pages, a prepared gigantic range in
    flight, and captured blocks.
    """
    allocated, frozen = _owned(m)
    _add_kept(m, allocated, kept_by_references(m, allocated))
    return allocated, frozen


def _owned(m: Machine) -> tuple[dict[int, int], set[int]]:
    """:func:`holdings` but for the pages only speculative references keep."""
    pages = m.mm.pages
    allocated = {pfn: h.order for pfn, h in m.owner_of.items()}
    if m.held is not None:
        for pfn in np.flatnonzero(m.held.owner_np >= 0).tolist():
            allocated[pfn] = 0
    frozen: set[int] = set()
    pool = m.extras.get(HUGETLB_KEY)
    if pool is not None:
        for h in pool.state.hstates.values():
            for pfn in h.active:
                allocated.setdefault(pfn, h.order)
            for freelist in h.freelists:
                for pfn in freelist:
                    allocated.setdefault(pfn, h.order)
                    frozen.add(pfn)
        for pfn, nr in pool.contig_in_flight.items():
            if pages.flags[pfn] & PG_HEAD:  # prep_compound_gigantic_page() froze it
                allocated[pfn] = nr.bit_length() - 1
                frozen.add(pfn)
            else:  # alloc_contig_range()'s order-0 pages
                allocated.update(dict.fromkeys(range(pfn, pfn + nr), 0))
    for req in m.slow_requests.values():  # captured by direct compaction, in flight
        if req.captured >= 0:  # off the free lists, not yet prep_new_page()'d: refcount 0
            allocated[req.captured] = req.order
            frozen.add(req.captured)
    return allocated, frozen


def kept_by_references(m: Machine, owned: Mapping[int, int]) -> list[int]:
    """The pages a speculative reference keeps that no owner in ``owned`` holds."""
    return [pfn for pfn in m.extra_refs if pfn not in owned]


def _add_kept(m: Machine, allocated: dict[int, int], kept: list[int]) -> None:
    """A kept compound page is whole; a non-compound block kept its first page only."""
    pages = m.mm.pages
    for pfn in kept:
        allocated[pfn] = pages.info[pfn] & ORDER_MASK if pages.flags[pfn] & PG_HEAD else 0


def check_machine(m: Machine) -> None:
    """Raise :class:`InvariantError` if any invariant of the module notes is broken."""
    allocated, frozen = _owned(m)
    kept = kept_by_references(m, allocated)
    _add_kept(m, allocated, kept)
    keys, handles = _handles(m)
    _check_reverse_map(m, keys, handles)
    _check_refcounts(m, keys, handles, frozen, kept)
    _check_owner_pages(m, handles)
    check_invariants(m.mm, allocated, frozen)


def _handles(m: Machine) -> tuple[np.ndarray, list[Any]]:
    """The reverse map's keys (as an array) and its handles, in the same order."""
    keys = np.fromiter(m.owner_of.keys(), dtype=np.int64, count=len(m.owner_of))
    return keys, list(m.owner_of.values())


def _check_reverse_map(m: Machine, keys: np.ndarray, handles: list[Any]) -> None:
    """Vectorized over the handles; the message names the first bad one in map order."""
    pages = m.mm.pages
    n = len(handles)
    hpfn = np.fromiter((h.pfn for h in handles), np.int64, n)
    horder = np.fromiter((h.order for h in handles), np.int64, n)
    dead = np.fromiter((not h.alive or h.gone for h in handles), bool, n)
    info_order = pages.info_np[keys] & ORDER_MASK if n else keys
    bad = (hpfn != keys) | dead
    if n:
        bad |= ((pages.flags_np[keys] & PG_ALLOC) == 0) | (info_order != horder)
        if m.held is not None:
            bad |= m.held.owner_np[keys] >= 0
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        _explain_handle(m, int(keys[k]), handles[k])
    for due in m._pending_at.values():
        for h in due:  # a dead one its caller freed or split: a double free when applied
            if h.alive and not h.gone and m.owner_of.get(h.pfn) is not h:
                raise InvariantError(f"deferred free of {h.owner}'s order-{h.order} block "
                                     f"{h.pfn:#x}: the handle is not in the reverse map")


def _explain_handle(m: Machine, pfn: int, h: Any) -> None:
    pages = m.mm.pages
    where = f"owner_of[{pfn:#x}] ({h.owner}, order {h.order})"
    if h.pfn != pfn:
        raise InvariantError(f"{where}: the handle says pfn {h.pfn:#x} (stale after "
                             "migration?)")
    if not h.alive or h.gone:
        raise InvariantError(f"{where}: the handle is dead but still in the reverse map")
    if m.held is not None and m.held.owner[pfn] >= 0:
        raise InvariantError(f"{where}: also held without a handle")
    raise InvariantError(f"{where}: the page there is not an allocated order-{h.order} "
                         f"block (flags {pages.flags[pfn]:#x}, order {pages.order_of(pfn)})")


def _check_refcounts(m: Machine, keys: np.ndarray, handles: list[Any],
                     frozen: set[int], kept: list[int]) -> None:
    """Each handle's head: the owner's reference plus the speculative ones.

    ``kept``, the pages only speculative references keep: exactly those references.
    """
    ref = m.mm.pages.ref_np
    pool = m.extras.get(HUGETLB_KEY)
    want = np.ones(keys.size, dtype=np.int64)
    extra = m.extra_refs
    if extra:
        want += np.fromiter((extra.get(p, 0) for p in keys.tolist()), np.int64, keys.size)
    refs = ref[keys].astype(np.int64)
    bad = refs != want
    if pool is not None:  # a huge page in use: the pool's reference and its mappers'
        in_pool = np.isin(keys, np.fromiter(pool.handles, np.int64, len(pool.handles)))
        bad &= ~in_pool | (refs < want)
        bad &= ~np.isin(keys, np.fromiter(frozen, np.int64, len(frozen)))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        h = handles[k]
        raise InvariantError(f"{h.owner}'s order-{h.order} block {int(keys[k]):#x} has "
                             f"refcount {int(refs[k])}, expected {int(want[k])} (the owner's "
                             f"reference and {int(want[k]) - 1} speculative)")
    if m.held is not None:
        held = np.flatnonzero(m.held.owner_np >= 0)
        hwant = np.ones(held.size, dtype=np.int64)
        if extra:
            hwant += np.fromiter((extra.get(p, 0) for p in held.tolist()), np.int64, held.size)
        hbad = np.flatnonzero(ref[held] != hwant)
        if hbad.size:
            pfn = int(held[hbad[0]])
            raise InvariantError(f"held page {pfn:#x} has refcount {int(ref[pfn])}, "
                                 f"expected {int(hwant[hbad[0]])}")
    for pfn in kept:
        n = extra[pfn]
        if ref[pfn] != n:
            raise InvariantError(f"pfn {pfn:#x}, kept only by {n} speculative references, "
                                 f"has refcount {int(ref[pfn])}")


def _check_owner_pages(m: Machine, handles: list[Any]) -> None:
    owned: Counter[str] = Counter()
    for h in handles:
        owned[h.owner] += 1 << h.order
    if m.held is not None:
        idx = m.held.owner_np
        counts = np.bincount(idx[idx >= 0], minlength=len(m._owner_list))
        for i in np.flatnonzero(counts).tolist():
            owned[m._owner_list[i].name] += int(counts[i])
    pool = m.extras.get(HUGETLB_KEY)
    if pool is not None:
        for h in pool.state.hstates.values():
            if h.gigantic:
                owned["hugetlb"] += h.nr_huge_pages * h.nr_pages
        owned["hugetlb"] += sum(pool.contig_in_flight.values())
    for name, owner in m.owners.items():
        if owner.pages != owned[name]:
            raise InvariantError(f"caller {name} counts {owner.pages} pages, its handles and "
                                 f"held pages add up to {owned[name]}")


class WindowDone(Exception):
    """The audit's window is over (raised out of the SimPy loop of a pinning replay)."""


class Audit:
    """Checks the machine after every ``every``-th SimPy event of ``(first, last]``.

    :meth:`install` puts the audit in the environment's event loop (``env.step``), so
    the run's own ``env.run()`` calls are audited as they are: events are numbered the
    same however the run is cut into ``env.run(until=...)`` chunks, the chunks' own stop
    events included.
    """

    def __init__(self, machine: Machine, every: int, first: int = 0,
                 last: int | None = None) -> None:
        if every < 1:
            raise ValueError("check every N >= 1 events")
        self.machine = machine
        self.every = every
        self.first = first
        self.last = last
        self.events = 0
        self.last_good = first
        self.checks = 0
        self._step = machine.env.step

    def install(self) -> None:
        """Audit every event ``machine.env`` processes from now on."""
        self.machine.env.step = self.step  # type: ignore[method-assign]

    def step(self) -> None:
        """Process one SimPy event, then check if it is the audit's turn."""
        n = self.events + 1
        if self.last is not None and n > self.last:
            raise WindowDone
        m = self.machine
        due = n > self.first and ((n - self.first) % self.every == 0 or n == self.last)
        proc = _describe_next(m.env) if due else ""
        rows0 = m.tracer.events_traced
        self.events = n
        try:
            self._step()
        except StopSimulation:  # a chunk's end (env.run(until=...)): it is an event too
            if due:
                self._check(proc, rows0)
            raise
        if due:
            self._check(proc, rows0)

    def finish(self) -> None:
        """The run is over: check the events since the last check."""
        if self.events > self.last_good:
            self._check("the end of the run", self.machine.tracer.events_traced)

    def _check(self, proc: str, rows0: int) -> None:
        m = self.machine
        n = self.events
        self.checks += 1
        try:
            check_machine(m)
        except InvariantError as exc:
            pinned = self.last_good == n - 1
            rows = (rows0, m.tracer.events_traced) if pinned else None
            raise InvariantViolation(Violation(
                n, self.last_good, int(m.env.now), proc, str(exc), rows, pinned)) from None
        self.last_good = n


def _describe_next(env: Any) -> str:
    """What the next SimPy event resumes: its process's generator name, or the event kind."""
    queue = env._queue
    if not queue:
        return "nothing"
    event = queue[0][3]
    names = []
    for cb in event.callbacks or ():
        proc = getattr(cb, "__self__", None)
        gen = getattr(proc, "_generator", None)
        if gen is not None:
            names.append(getattr(gen, "__qualname__", getattr(gen, "__name__", "process")))
    return ", ".join(names) or type(event).__name__

