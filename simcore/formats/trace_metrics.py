"""Metrics derived from a trace of ``kmem:`` page events, by one rule for every trace.

The same functions read a real trace (imported by :mod:`simcore.formats.ftrace`) and the
model's own (a run's ``trace/events.parquet``), so a number compared between the two is
derived the same way from both.

**Where an allocation was served.** In 6.1, ``rmqueue()`` serves an order that
``pcp_allowed_order()`` admits from the CPU's pcp list (``rmqueue_pcplist()``), refilling
an empty list with ``rmqueue_bulk()``: one ``mm_page_alloc_zone_locked`` per block moved
to the list (a batch of at least two, ``max(batch >> order, 2)``), then ``mm_page_alloc``
of the list's first block. Any other allocation takes one block off the buddy lists
(``rmqueue_buddy()``): one ``mm_page_alloc_zone_locked`` of that very block, then its
``mm_page_alloc``. So, per CPU: an ``mm_page_alloc`` preceded (since that CPU's previous
``mm_page_alloc``) by exactly one ``mm_page_alloc_zone_locked`` of the same pfn was served
from the buddy lists; every other successful allocation from the pcp list. A refill of a
single block (a pcp ``batch`` of 1) reads as buddy, in both traces alike.

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
    """The columns the metrics need, in trace order: event code, CPU, pfn (<= 0: failed)."""

    code: np.ndarray
    cpu: np.ndarray
    pfn: np.ndarray

    @classmethod
    def read(cls, path: Path) -> PageEvents:
        """Read an imported trace or a run's ``events.parquet`` (both have these columns)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["event", "cpu", "pfn"])
        events = table.column("event")
        code = np.zeros(len(table), dtype=np.int8)
        for name, value in _CODES.items():
            code[pc.equal(events, name).to_numpy(zero_copy_only=False)] = value
        return cls(code, table.column("cpu").to_numpy().astype(np.int64),
                   table.column("pfn").to_numpy().astype(np.int64))


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
    locked: dict[int, list[int]] = {}
    pcp = buddy = 0
    idx = np.flatnonzero((ev.code == EV_ALLOC) | (ev.code == EV_ZONE_LOCKED))
    codes, cpus, pfns = ev.code[idx].tolist(), ev.cpu[idx].tolist(), ev.pfn[idx].tolist()
    for code, cpu, pfn in zip(codes, cpus, pfns, strict=True):
        if code == EV_ZONE_LOCKED:
            locked.setdefault(cpu, []).append(pfn)
            continue
        taken = locked.pop(cpu, [])
        if pfn <= 0:
            continue
        if taken == [pfn]:
            buddy += 1
        else:
            pcp += 1
    return ServedFrom(pcp, buddy)


def extfrag_events(ev: PageEvents) -> int:
    """The ``mm_page_alloc_extfrag`` events (fallback steals)."""
    return int((ev.code == EV_EXTFRAG).sum())
