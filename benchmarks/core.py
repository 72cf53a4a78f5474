"""Figure 1 (bare core) and the per-size cost of figure 4: the pure core with no SimPy.

The driver calls ``PageAllocator.alloc_pages(gfp, order, nid, cpu)`` and
``PageAllocator.free_pages(pfn, order, cpu)`` directly, with no tracing. It keeps a
fixed number of live blocks (``LIVE_BLOCKS`` slots); each step frees the block in a
pre-drawn slot and allocates a new one into it, so a step is two operations and the
live set stays the same size. Everything random (gfp, order, node, CPU, slot) is drawn
with numpy before the clock starts and turned into lists, so the loop itself is a
``zip`` over lists and two calls. What the loop costs on its own is measured with
stub alloc/free functions (:func:`driver_ops_per_s`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.gfp import GFP_HIGHUSER_MOVABLE, GFP_KERNEL, GFP_TRANSHUGE_LIGHT
from simcore.mm.page_alloc import PageAllocator

GIB_PAGES = (1 << 30) >> 12
CPUS_PER_NODE = 4
ORDERS = (0, 1, 2, 3, 9)
ORDER_WEIGHTS = (0.90, 0.02, 0.02, 0.02, 0.04)
"""90% order 0, 2% each of orders 1-3, 4% order 9."""
LIVE_BLOCKS = 4096
"""Blocks held at once: about 88k pages (350 MiB) at the mean block size of the mix."""

AllocFn = Callable[[int, int, int, int], int]
FreeFn = Callable[[int, int, int], bool]


def build_allocator(gib: int) -> PageAllocator:
    """A ``gib`` GiB machine: two nodes of ``gib / 2`` GiB with 4 CPUs each, pcp on."""
    node = NodeConfig(gib * GIB_PAGES // 2, cpus=CPUS_PER_NODE)
    return PageAllocator(MachineConfig(nodes=(node, node)), SysctlConfig())


@dataclass(frozen=True)
class Requests:
    """Pre-drawn steps, one list per argument (lists index faster than arrays)."""

    gfp: list[int]
    order: list[int]
    nid: list[int]
    cpu: list[int]
    slot: list[int]


def draw_requests(rng: np.random.Generator, steps: int, slots: int) -> Requests:
    """``steps`` requests of the mix; orders 0-3 are half GFP_KERNEL, half movable.

    Order 9 uses GFP_TRANSHUGE_LIGHT (a THP fault). CPUs are uniform over both nodes and
    each request asks for its CPU's node; slots are uniform over ``0 .. slots-1``.
    """
    order = rng.choice(np.array(ORDERS), size=steps, p=ORDER_WEIGHTS)
    small = np.where(rng.random(steps) < 0.5, int(GFP_KERNEL), int(GFP_HIGHUSER_MOVABLE))
    gfp = np.where(order == 9, int(GFP_TRANSHUGE_LIGHT), small)
    cpu = rng.integers(0, 2 * CPUS_PER_NODE, size=steps)
    return Requests(gfp.tolist(), order.tolist(), (cpu // CPUS_PER_NODE).tolist(),
                    cpu.tolist(), rng.integers(0, slots, size=steps).tolist())


def drive(alloc: AllocFn, free: FreeFn, live_pfn: list[int], live_order: list[int],
          req: Requests) -> int:
    """Free the block in each step's slot, then allocate into it; returns operations.

    A slot holding -1 (empty, or a failed allocation) skips the free.
    """
    skipped = 0
    for gfp, order, nid, cpu, j in zip(req.gfp, req.order, req.nid, req.cpu, req.slot,
                                       strict=True):
        pfn = live_pfn[j]
        if pfn >= 0:
            free(pfn, live_order[j], cpu)
        else:
            skipped += 1
        live_pfn[j] = alloc(gfp, order, nid, cpu)
        live_order[j] = order
    return 2 * len(req.slot) - skipped


class CoreBench:
    """One machine with its live set filled, measured in chunks of ``steps`` steps."""

    def __init__(self, gib: int, steps: int, seed: int = 1) -> None:
        t0 = time.perf_counter()
        self.mm = build_allocator(gib)
        self.build_seconds = time.perf_counter() - t0
        self.pages = gib * GIB_PAGES
        self.steps = steps
        self.rng = np.random.default_rng(seed)
        self.live_pfn = [-1] * LIVE_BLOCKS
        self.live_order = [0] * LIVE_BLOCKS
        fill = draw_requests(self.rng, LIVE_BLOCKS, LIVE_BLOCKS)
        fill = Requests(fill.gfp, fill.order, fill.nid, fill.cpu, list(range(LIVE_BLOCKS)))
        drive(self.mm.alloc_pages, self.mm.free_pages, self.live_pfn, self.live_order, fill)

    def ops_per_s(self) -> float:
        """Alloc + free operations per second of one chunk (drawn before the clock)."""
        req = draw_requests(self.rng, self.steps, LIVE_BLOCKS)
        alloc, free = self.mm.alloc_pages, self.mm.free_pages
        t0 = time.perf_counter()
        ops = drive(alloc, free, self.live_pfn, self.live_order, req)
        return ops / (time.perf_counter() - t0)

    def failed_slots(self) -> int:
        """Slots whose last allocation failed (0 on a machine with room to spare)."""
        return self.live_pfn.count(-1)


def _stub_alloc(gfp: int, order: int, nid: int, cpu: int) -> int:
    return 0


def _stub_free(pfn: int, order: int, cpu: int) -> bool:
    return True


def driver_ops_per_s(steps: int, seed: int = 1) -> float:
    """The driver loop alone: :func:`drive` with stub alloc/free functions."""
    req = draw_requests(np.random.default_rng(seed), steps, LIVE_BLOCKS)
    live_pfn, live_order = [0] * LIVE_BLOCKS, [0] * LIVE_BLOCKS
    t0 = time.perf_counter()
    ops = drive(_stub_alloc, _stub_free, live_pfn, live_order, req)
    return ops / (time.perf_counter() - t0)
