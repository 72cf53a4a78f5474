"""Shared test setup: hypothesis profiles and small-machine helpers for the allocator core.

Profiles: ``ci`` (default; bounded so the whole property suite stays well under 60 s on
two cores) and ``dev`` (many more examples). Select with ``HYPOTHESIS_PROFILE=dev``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.constants import MIGRATE_TYPES
from simcore.mm.gfp import GFP, GFP_ATOMIC
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.tracepoints import Tracer
from simcore.mm.zone import Zone
from simcore.sim.machine import Allocation, Machine

settings.register_profile(
    "ci", max_examples=60, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow], derandomize=True,
)
settings.register_profile("dev", max_examples=300, stateful_step_count=80, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SMALL_PAGES = 64 << 8
"""64 MiB: ZONE_DMA [1, 4096) and ZONE_DMA32 [4096, 16384), one node."""


class CallLog(Tracer):
    """A tracer that keeps every call as ``(tracepoint, args)``."""

    enabled = True

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def named(self, name: str) -> list[tuple[Any, ...]]:
        """The argument tuples of every call to ``name``, in order."""
        return [args for n, args in self.calls if n == name]

    def mm_page_alloc(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("mm_page_alloc", args))

    def mm_page_free(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("mm_page_free", args))

    def mm_page_alloc_zone_locked(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("mm_page_alloc_zone_locked", args))

    def mm_page_pcpu_drain(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("mm_page_pcpu_drain", args))

    def mm_page_alloc_extfrag(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("mm_page_alloc_extfrag", args))

    def mm_page_alloc_fail(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("mm_page_alloc_fail", args))

    def bad_page(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("bad_page", args))

    def alloc_order_warn(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("alloc_order_warn", args))

    def sim_warning(self, *args: Any) -> None:  # noqa: D102
        self.calls.append(("sim_warning", args))


class Lab:
    """Helpers that put a zone into an exact state for a unit test."""

    @staticmethod
    def machine(
        memory_pages: int = SMALL_PAGES, cpus: int = 2, tracer: Tracer | None = None,
        sysctl: SysctlConfig | None = None, movable_pages: int = 0, reserved_pages: int = 0,
        **machine_kw: Any,
    ) -> PageAllocator:
        """A one-node machine (64 MiB by default)."""
        node = NodeConfig(memory_pages=memory_pages, cpus=cpus, movable_pages=movable_pages,
                          reserved_pages=reserved_pages)
        cfg = MachineConfig(nodes=(node,), **machine_kw)
        return PageAllocator(cfg, sysctl or SysctlConfig(), tracer)

    @staticmethod
    def bare_dma32(tracer: Tracer | None = None) -> tuple[PageAllocator, Zone]:
        """A 64 MiB machine whose DMA and DMA32 free lists are empty.

        Watermarks and lowmem_reserve are 0 and DMA32's pcp batch is 1, so a test places
        exactly the free blocks it needs in DMA32 ``[4096, 16384)`` and nothing else
        decides where a page comes from.
        """
        mm = Lab.machine(tracer=tracer)
        zone = mm.zones[1]
        Lab.clear(mm.zones[0])
        Lab.clear(zone)
        Lab.no_watermarks(mm)
        Lab.pcp_batch(zone, 1)
        return mm, zone

    @staticmethod
    def clear(zone: Zone) -> None:
        """Take every boot block off the zone's free lists (the pages become "nowhere")."""
        fa = zone.free_area
        for order in range(zone.max_order + 1):
            for mt in range(MIGRATE_TYPES):
                for pfn in list(fa.iter_list(order, mt)):
                    fa.remove(pfn, order, mt)
        zone.nr_free_pages = 0

    @staticmethod
    def place(zone: Zone, pfn: int, order: int, mt: int, label: bool = True) -> None:
        """Add a free block at the list tail, optionally labelling its pageblock ``mt``."""
        if label:
            zone.set_pageblock_migratetype(pfn, mt)
        zone.free_area.add(pfn, order, mt, tail=True)
        zone.nr_free_pages += 1 << order

    @staticmethod
    def no_watermarks(mm: PageAllocator) -> None:
        """Zero every watermark and lowmem_reserve so only the free lists decide."""
        for zone in mm.zones:
            zone.watermark = [0, 0, 0, 0]
            zone.lowmem_reserve = [0, 0, 0, 0]

    @staticmethod
    def pcp_batch(zone: Zone, batch: int) -> None:
        """Set every CPU's pcp batch of ``zone`` (1 = refill exactly one block)."""
        for pcp in zone.per_cpu_pageset:
            pcp.batch = batch

    @staticmethod
    def blocks(zone: Zone) -> dict[int, tuple[int, int]]:
        """``{pfn: (order, mt)}`` of every listed free block."""
        out = {}
        for order in range(zone.max_order + 1):
            for mt in range(MIGRATE_TYPES):
                for pfn in zone.free_area.iter_list(order, mt):
                    out[pfn] = (order, mt)
        return out

    @staticmethod
    def listed(zone: Zone, order: int, mt: int) -> list[int]:
        """One free list, head first."""
        return list(zone.free_area.iter_list(order, mt))


@pytest.fixture
def lab() -> Lab:
    return Lab()


@pytest.fixture
def call_log() -> CallLog:
    return CallLog()


@pytest.fixture
def small_mm() -> PageAllocator:
    return Lab.machine()


def traced_machine(nodes: int = 1, cpus: int = 2, memory_pages: int = 32768,
                   **machine: Any) -> tuple[Machine, CallLog]:
    """``nodes`` nodes of ``memory_pages`` (128 MiB) and ``cpus`` CPUs each, traced.

    ``machine`` holds more :class:`MachineConfig` fields; kcompactd never compacts
    proactively (``compaction_proactiveness`` 0).
    """
    tracer = CallLog()
    cfg = MachineConfig(nodes=tuple(NodeConfig(memory_pages=memory_pages, cpus=cpus)
                                    for _ in range(nodes)), **machine)
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1,
                   tracer=tracer), tracer


def run_process(m: Machine, body: Generator[Any, Any, Any]) -> Any:
    """Run ``body`` as a SimPy process until it ends; returns its value."""
    proc = m.env.process(body)
    m.env.run(until=proc)
    return proc.value


MachineFactory = Callable[..., PageAllocator]


class SpyMachine(Machine):
    """A machine that reports every allocation and free to hooks.

    ``on_alloc(handle)`` runs after each :meth:`Machine.alloc_now` and
    :meth:`Machine.alloc`, ``on_free(handle)``
    before each :meth:`Machine.free` (deferred frees included). A subclass, not
    patched methods: the compiled ``Machine`` is an extension type whose methods
    cannot be replaced on an instance, but a Python subclass overrides them.
    """

    on_alloc: Callable[[Allocation | None], None] = staticmethod(lambda h: None)
    on_free: Callable[[Allocation], None] = staticmethod(lambda h: None)

    def alloc_now(self, *args: Any, **kwargs: Any) -> Allocation | None:  # noqa: D102
        handle = super().alloc_now(*args, **kwargs)
        self.on_alloc(handle)
        return handle

    def alloc(self, *args: Any, **kwargs: Any) -> Generator[Any, Any, Allocation | None]:  # noqa: D102
        handle = yield from super().alloc(*args, **kwargs)
        self.on_alloc(handle)
        return handle

    def free(self, handle: Allocation, cpu: int | None = None) -> None:  # noqa: D102
        self.on_free(handle)
        super().free(handle, cpu)


def fragment_to_single_pages(machine: Machine) -> list[Allocation]:
    """Take every page (``ALLOC_NO_WATERMARKS``), then free those at odd pfns and drain
    the pcp lists: the free memory is half the machine, in single pages. Returns the
    handles still held."""
    taken = []
    gfp = int(GFP_ATOMIC | GFP.MEMALLOC)
    while (handle := machine.alloc_now("fill", gfp, 0, 0)) is not None:
        taken.append(handle)
    for handle in taken:
        if handle.pfn & 1:
            machine.free(handle)
    machine.mm.drain_all_pages()
    return [h for h in taken if h.alive]


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of ``configs/quickstart.yaml`` at its own seed, without a report.

    The golden digests and the quickstart's story both read it, so the suite pays for
    the run (about 3 s compiled, 10 s pure Python) once.
    """
    from allocsim.run import simulate
    from tests.golden import CONFIGS
    from workloads.registry import load_experiment

    out = tmp_path_factory.mktemp("quickstart")
    return Path(simulate(load_experiment(CONFIGS["quickstart"]), out, report=False).run_dir)


def _signal_state() -> tuple[object, object, frozenset[int]]:
    """SIGINT's and SIGTERM's handlers and the blocked signals of this thread."""
    blocked = frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM), blocked


SESSION_SIGNALS = _signal_state()
"""The signal state this test process started with (before any test or fixture ran)."""


def pytest_report_header() -> list[str]:
    """Say so when this process started with SIGINT ignored: a shell without job control
    starts a background job (``cmd &``) that way, and every process a test starts
    inherits it unless started as from a shell (``tests.crashkit.as_from_a_shell``)."""
    if SESSION_SIGNALS[0] is not signal.SIG_IGN:
        return []
    return ["signals: this process started with SIGINT ignored (SIG_IGN), as a background "
            "job of a non-interactive shell does; tests that send SIGINT reset it in "
            "their child processes"]


@pytest.fixture(autouse=True)
def _signals_left_as_found(request: pytest.FixtureRequest) -> Generator[None, None, None]:
    """Each test, and the fixtures it set up, leave SIGINT and SIGTERM as the session
    found them (handlers and mask).

    A process started by a later test inherits an ignored or blocked signal and then,
    as it should, ignores Ctrl-C or SIGTERM; that test would fail for another's fault.
    Compared with the session's start, not the test's, so a module fixture that changed
    them is caught too.
    """
    yield
    now = _signal_state()
    if now != SESSION_SIGNALS:
        raise AssertionError(f"after {request.node.nodeid}, (SIGINT, SIGTERM, blocked "
                             f"signals) is {now}, not {SESSION_SIGNALS} as at the start")
