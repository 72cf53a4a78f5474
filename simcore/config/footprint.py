"""How much host memory a simulated machine needs, estimated before it is built.

The estimate follows what :class:`simcore.mm.page_alloc.PageAllocator` allocates: the
``mem_map`` arrays (:class:`simcore.mm.pages.PageArray`, 8 bytes per pfn up to the last
node's end rounded up to a max-order block), two bytes per pageblock (``pageblock_mt``
and ``pb_zone``), and an allowance for the list nodes of the free lists and per-CPU lists, and
the interpreter itself. Pure arithmetic on the config: no I/O, nothing is built.

SIMPLIFICATION: the list-node arrays grow with fragmentation (one node per free
block, doubling when full) and the workloads keep one handle per live allocation; the
allowance covers a free block per pageblock, not a machine fragmented down to order 0
everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from simcore.config.types import MachineConfig
from simcore.mm.topology import layout_machine

PAGE_STATE_BYTES = 8
"""``ref`` (int16) + ``info`` (uint8) + ``flags`` (uint8) + ``lru`` (int32) per pfn."""
PAGEBLOCK_BYTES = 2
"""``pageblock_mt`` and ``pb_zone`` (one byte each) per pageblock."""
FREE_BLOCK_BYTES = 64
"""One list node (``nxt``, ``prv``: int32, ``pfn``: int64) per free block, times the
slack of doubling, and the copy made while the arrays grow."""
BASELINE_BYTES = 256 << 20
"""Python, numpy, SimPy, pyarrow and the trace buffers: measured at about 200 MiB."""


@dataclass(frozen=True)
class Footprint:
    """The estimate, by part, in bytes."""

    nr_pfns: int
    page_state: int
    pageblocks: int
    free_lists: int
    baseline: int

    @property
    def total(self) -> int:
        """Everything added up."""
        return self.page_state + self.pageblocks + self.free_lists + self.baseline


def nr_pfns(machine: MachineConfig) -> int:
    """Length of ``mem_map``, as PageAllocator sizes it.

    It runs to the end of the highest zone (holes included), rounded up to a whole
    max-order block.
    """
    align = 1 << machine.max_order
    end = max(span.end_pfn for span in layout_machine(machine))
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
