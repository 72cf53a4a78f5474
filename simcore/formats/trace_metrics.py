"""Metrics derived from a trace of ``kmem:`` page events, by one rule for every trace.

The same functions read a real trace (imported by :mod:`simcore.formats.ftrace`) and the
model's own (a run's ``trace/events.parquet``), so a number compared between the two is
derived the same way from both.

**Where an allocation was served.** In 6.1 (without CONFIG_CMA, as on the oracle's
kernel), ``rmqueue()`` serves every order ``pcp_allowed_order()`` admits through the CPU's
pcp list (``rmqueue_pcplist()``), refilling an empty list with ``rmqueue_bulk()``: one
``mm_page_alloc_zone_locked`` per block moved to the list, then ``mm_page_alloc`` of the
list's first block. Any other allocation takes one block off the buddy lists
(``rmqueue_buddy()``): one ``mm_page_alloc_zone_locked`` of that very block, then its
``mm_page_alloc``. ``__rmqueue_smallest()`` prints ``percpu_refill=1`` exactly when the
order is pcp-allowed and the migratetype a pcp one, i.e. when the block is on its way
to a pcp list (a highatomic block of ``rmqueue_buddy()``'s ALLOC_HARDER path has 0). So,
per CPU: an ``mm_page_alloc`` whose CPU's last page-allocator events since its previous
``mm_page_alloc`` are exactly one ``mm_page_alloc_zone_locked`` of the same pfn with
``percpu_refill=0`` was served from the buddy lists; every other successful allocation
from a pcp list.

Two cases read wrongly, in both traces alike: a compaction capture
(``compaction_capture()`` hands the block straight to the allocator, with no
``mm_page_alloc_zone_locked``) reads as pcp-served, and ``mm_page_alloc_zone_locked``
events of a bulk-allocator refill (which has no ``mm_page_alloc``) are counted with the
CPU's next allocation.

**Fallback steals** are the ``mm_page_alloc_extfrag`` events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

EV_OTHER, EV_ALLOC, EV_ZONE_LOCKED, EV_EXTFRAG = 0, 1, 2, 3
_CODES = {"mm_page_alloc": EV_ALLOC, "mm_page_alloc_zone_locked": EV_ZONE_LOCKED,
          "mm_page_alloc_extfrag": EV_EXTFRAG}


@dataclass(frozen=True)
class PageEvents:
    """The columns the metrics need, in trace order.

    Event code, CPU, pfn (<= 0: failed), ``percpu_refill`` (-1 where it does not apply).
    """

    code: np.ndarray
    cpu: np.ndarray
    pfn: np.ndarray
    refill: np.ndarray

    @classmethod
    def read(cls, path: Path) -> PageEvents:
        """Read an imported trace or a run's ``events.parquet`` (both have these columns)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["event", "cpu", "pfn", "percpu_refill"])
        events = table.column("event")
        code = np.zeros(len(table), dtype=np.int8)
        for name, value in _CODES.items():
            code[pc.equal(events, name).to_numpy(zero_copy_only=False)] = value
        return cls(code, table.column("cpu").to_numpy().astype(np.int64),
                   table.column("pfn").to_numpy().astype(np.int64),
                   table.column("percpu_refill").to_numpy().astype(np.int64))


@dataclass(frozen=True)
class ServedFrom:
    """Successful allocations by where they were served (see the module docstring)."""

    pcp: int
    buddy: int

    @property
    def pcp_share(self) -> float | None:
        """Share of successful allocations served from pcp lists (None: none)."""
        total = self.pcp + self.buddy
        return None if total == 0 else self.pcp / total


def served_from(ev: PageEvents) -> ServedFrom:
    """Classify every successful ``mm_page_alloc`` as pcp- or buddy-served."""
    locked: dict[int, list[tuple[int, int]]] = {}
    pcp = buddy = 0
    idx = np.flatnonzero((ev.code == EV_ALLOC) | (ev.code == EV_ZONE_LOCKED))
    rows = zip(ev.code[idx].tolist(), ev.cpu[idx].tolist(), ev.pfn[idx].tolist(),
               ev.refill[idx].tolist(), strict=True)
    for code, cpu, pfn, refill in rows:
        if code == EV_ZONE_LOCKED:
            locked.setdefault(cpu, []).append((pfn, refill))
            continue
        taken = locked.pop(cpu, [])
        if pfn <= 0:
            continue
        if taken == [(pfn, 0)]:
            buddy += 1
        else:
            pcp += 1
    return ServedFrom(pcp, buddy)


def extfrag_events(ev: PageEvents) -> int:
    """The ``mm_page_alloc_extfrag`` events (fallback steals)."""
    return int((ev.code == EV_EXTFRAG).sum())
