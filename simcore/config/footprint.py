"""How much host memory a simulated machine needs, estimated before it is built.

The estimate follows what :class:`simcore.mm.page_alloc.PageAllocator` allocates: the
``mem_map`` arrays (:class:`simcore.mm.pages.PageArray`, 8 bytes per pfn up to the last
node's end rounded up to a max-order block), two bytes per pageblock (``pageblock_mt``
and ``pb_zone``), and an allowance for the list nodes of the free lists and per-CPU lists, and
the interpreter itself. For a run (:func:`estimate_run_footprint`), the periodic snapshots
too: their rows stay in memory until the run ends, so a long ``duration`` at a short
``trace.snapshot_interval`` can need more than the machine. Pure arithmetic on the config:
no I/O, nothing is built.

SIMPLIFICATION: the list-node arrays grow with fragmentation (one node per free
block, doubling when full) and the workloads keep one handle per live allocation; the
allowance covers a free block per pageblock, not a machine fragmented down to order 0
everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from simcore.config.machine import MAX_NODES
from simcore.config.types import ExperimentConfig, MachineConfig
from simcore.mm.constants import MIGRATE_TYPES
from simcore.mm.topology import layout_machine, node_ranges

PAGE_STATE_BYTES = 8
"""``ref`` (int16) + ``info`` (uint8) + ``flags`` (uint8) + ``lru`` (int32) per pfn."""
PAGEBLOCK_BYTES = 2
"""``pageblock_mt`` and ``pb_zone`` (one byte each) per pageblock."""
FREE_BLOCK_BYTES = 64
"""One list node (``nxt``, ``prv``: int32, ``pfn``: int64) per free block, times the
slack of doubling, and the copy made while the arrays grow."""
BASELINE_BYTES = 256 << 20
"""Python, numpy, SimPy, pyarrow and the trace buffers: measured at about 200 MiB."""
SNAPSHOT_ROW_BYTES = 40
"""One free-level row of a snapshot (``simcore.sim.recorder``: time, nid, order and count
in ``array`` buffers, zone and migratetype as list entries), with the buffers' slack."""
SNAPSHOT_ZONE_BYTES = 256
"""One zone's headline row of a snapshot (about 20 numbers)."""


@dataclass(frozen=True)
class Footprint:
    """The estimate, by part, in bytes."""

    nr_pfns: int
    page_state: int
    pageblocks: int
    free_lists: int
    baseline: int
    snapshots: int = 0
    """The periodic snapshots' rows, for a run (0 for a machine alone)."""
    nr_snapshots: int = 0

    @property
    def total(self) -> int:
        """Everything added up."""
        return (self.page_state + self.pageblocks + self.free_lists + self.baseline
                + self.snapshots)


def nr_pfns(machine: MachineConfig) -> int:
    """Length of ``mem_map``, as PageAllocator sizes it.

    It runs to the end of the highest zone (holes included), rounded up to a whole
    max-order block.
    """
    align = 1 << machine.max_order
    # The highest zone of a node ends where its memory does: no zone is laid out for this
    # (a config of a million nodes is estimated in a second, not built in minutes).
    end = max(ranges[-1][1] for ranges in node_ranges(machine))
    return -(-end // align) * align


def estimate_footprint(machine: MachineConfig) -> Footprint:
    """The host memory a machine needs once built and booted (see the module docstring)."""
    pfns = nr_pfns(machine)
    pageblocks = pfns >> machine.pageblock_order
    return Footprint(
        nr_pfns=pfns,
        page_state=pfns * PAGE_STATE_BYTES,
        pageblocks=pageblocks * PAGEBLOCK_BYTES,
        free_lists=pageblocks * FREE_BLOCK_BYTES,
        baseline=BASELINE_BYTES,
    )


def estimate_run_footprint(cfg: ExperimentConfig) -> Footprint:
    """:func:`estimate_footprint` of the run's machine, plus its periodic snapshots.

    ``simcore.sim.recorder`` keeps, per snapshot and zone, one row per migratetype and
    order and one headline row, from time 0 to the end, every ``snapshot_interval``.
    """
    machine = estimate_footprint(cfg.machine)
    count = cfg.duration_ns // cfg.trace.snapshot_interval_ns + 1
    per_zone = MIGRATE_TYPES * (cfg.machine.max_order + 1) * SNAPSHOT_ROW_BYTES \
        + SNAPSHOT_ZONE_BYTES
    nodes = cfg.machine.nodes
    zones = len(layout_machine(cfg.machine)) if len(nodes) <= MAX_NODES else 4 * len(nodes)
    return dataclasses.replace(machine, snapshots=count * zones * per_zone, nr_snapshots=count)
