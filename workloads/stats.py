"""Per-caller event counts for ``summary.json`` (``callers``): what the named callers did.

A caller counts its own operations (``vmalloc`` calls and fallbacks, forks and stack-cache
hits, ...) in a :class:`collections.Counter` kept in :attr:`Machine.extras`; the run writes
them under ``callers`` in ``summary.json`` and the CLI prints them.
"""

from __future__ import annotations

from collections import Counter

from simcore.sim.machine import Machine

STATS_KEY = "caller_stats"
"""Where the counters live in :attr:`Machine.extras`: caller name -> Counter."""


def caller_stats(machine: Machine, name: str, kind: str) -> Counter[str]:
    """The counters of caller ``name`` (a workload of ``kind``), created on first use."""
    table: dict[str, Counter[str]] = machine.extras.setdefault(STATS_KEY, {})
    if name not in table:
        table[name] = Counter({"kind:" + kind: 1})
    return table[name]
