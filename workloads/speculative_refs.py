"""The ``speculative_refs`` caller: transient page references, as pfn walkers and GUP-fast take.

A background process that, at Poisson times (``rate``), picks a random pfn of the
machine and tries ``get_page_unless_zero()`` on it (spec behaviour 43: it fails on free
pages, frozen pages and tails, and succeeds on any allocated head); with ``mode:
gup_fast`` it goes to the pfn's compound head first, as ``try_get_folio()`` does. A
reference it gets is dropped with ``put_page()`` ``hold`` later. Such a reference keeps
a page its owner frees (``__free_pages()`` frees nothing of a compound page, only the
tail of a non-compound one: spec behaviours 41 and 42) until the ``put_page()``, stops
compaction from migrating the page and reclaim from freeing it, and makes hugetlb's
``page_ref_freeze()`` fail.

The hugetlb freeze window. In the kernel a walker can only meet a fresh huge page between
``__alloc_pages()`` returning it and ``page_ref_freeze()``. The model gives that window
no simulated time, so this workload also registers as a racer with the hugetlb pool
(:attr:`simcore.mm.hugetlb.Hugetlb.racers`): for each fresh huge page it takes a
reference with the probability that one of its takes lands on the page during
``race_window`` (``1 - exp(-rate * race_window * k / nr_pfns)``, ``k`` the pfns that lead
to the page: the head of a compound 2 MiB block for a pfn walker, all its pfns for
GUP-fast or for the separate pages of a gigantic range). With the default 1 us window
that is very rare, as in the kernel; widen it to exercise the retry path.

SIMPLIFICATIONS: the walker does nothing with the page it holds (the kernel's walkers
check it and often let go at once); ``hold`` is fixed; the race is the probability
above rather than simulated instructions.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_duration_ns,
    expect_mapping,
    expect_rate_per_s,
    expect_str,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate
from simcore.sim.hugetlb import hugetlb_of, put_page
from simcore.sim.machine import Machine
from workloads.schema import SPECULATIVE_REFS
from workloads.stats import caller_stats
from workloads.synthetic import issuing_cpus
from workloads.synthetic_params import _cpus, _optional_int, check_cpus_and_node

SPECULATIVE_KEYS = names(SPECULATIVE_REFS)
SPECULATIVE_REQUIRED = required(SPECULATIVE_REFS)
MODES = ("pfn", "gup_fast")
BATCH = 4096
"""Random draws per batch."""


@dataclass(frozen=True)
class SpeculativeRefsParams:
    """Parsed parameters of one ``speculative_refs`` workload.

    Attributes:
        rate_per_s: References tried per second.
        hold_ns: How long a reference is held before ``put_page()``.
        mode: ``pfn`` (a pfn walker) or ``gup_fast`` (the compound head of the pfn).
        race_window_ns: The time between a huge page's allocation and its freeze.
        start_ns: When the walker starts.
        max_requests: Stop after this many tries (None: never).
        cpus: The CPUs it runs on (None: every CPU).
    """

    rate_per_s: float
    hold_ns: int = 20_000
    mode: str = "pfn"
    race_window_ns: int = 1_000
    start_ns: int = 0
    max_requests: int | None = None
    cpus: tuple[int, ...] | None = None


def parse_speculative_refs_params(raw: Mapping[str, object], key_prefix: str,
                                  source: str) -> Mapping[str, object]:
    """Parse a ``speculative_refs`` workload's keys; ``rate`` is required."""
    data = expect_mapping(raw, key_prefix, source, SPECULATIVE_KEYS, SPECULATIVE_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    return {"params": SpeculativeRefsParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        hold_ns=expect_duration_ns(data.get("hold", "20us"), key("hold"), source, 1),
        mode=expect_str(data.get("mode", "pfn"), key("mode"), source, MODES),
        race_window_ns=expect_duration_ns(data.get("race_window", "1us"), key("race_window"),
                                          source),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
    )}


def check_speculative_refs_params(params: Mapping[str, object], machine: MachineConfig,
                                  key_prefix: str, source: str) -> None:
    """Reject CPUs the machine does not have."""
    p = params["params"]
    assert isinstance(p, SpeculativeRefsParams)
    check_cpus_and_node(p.cpus, None, machine, key_prefix, source)


def dump_speculative_refs_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_speculative_refs_params`, in human units."""
    p = params["params"]
    if not isinstance(p, SpeculativeRefsParams):
        raise TypeError(f"expected SpeculativeRefsParams under 'params', got {p!r}")
    return {"rate": format_rate(p.rate_per_s), "hold": format_duration(p.hold_ns),
            "mode": p.mode, "race_window": format_duration(p.race_window_ns),
            "start": format_duration(p.start_ns), "max_requests": p.max_requests,
            "cpus": None if p.cpus is None else list(p.cpus)}


class Walker:
    """One walker's references: taking, racing fresh huge pages, and dropping them."""

    def __init__(self, machine: Machine, name: str, p: SpeculativeRefsParams,
                 rng: np.random.Generator) -> None:
        self.machine = machine
        self.p = p
        self.rng = rng
        self.cpus = issuing_cpus(machine, p.cpus)
        self.stats = caller_stats(machine, name, "speculative_refs")
        self.name = name

    def take(self, pfn: int, cpu: int) -> bool:
        """``get_page_unless_zero()``; on success, ``put_page()`` after ``hold``."""
        m = self.machine
        m.apply_pending_frees()
        if self.p.mode == "gup_fast":
            pfn = m.mm.pages.compound_head(pfn, m.mm.max_order)
        if not m.mm.get_page_unless_zero(pfn):
            return False
        self.stats["refs"] += 1
        m.extra_refs[pfn] = m.extra_refs.get(pfn, 0) + 1
        m.env.process(self._put_later(pfn, cpu))
        return True

    def _put_later(self, pfn: int, cpu: int) -> Generator[Any, Any, None]:
        yield self.machine.env.timeout(self.p.hold_ns)
        m = self.machine
        m._enter(self.name, cpu)
        left = m.extra_refs.pop(pfn) - 1
        if left:
            m.extra_refs[pfn] = left
        put_page(m, pfn, cpu)

    def race(self, pfn: int, nr_pages: int, compound: bool) -> None:
        """A fresh huge page before its freeze: maybe one of our takes lands on it."""
        p = self.p
        reach = 1 if compound and p.mode == "pfn" else nr_pages
        lam = p.rate_per_s * p.race_window_ns * 1e-9 * reach / self.machine.mm.pages.nr_pages
        if self.rng.random() >= -math.expm1(-lam):
            return
        target = pfn if compound else pfn + int(self.rng.integers(nr_pages))
        if self.take(target, self.cpus[0]):
            self.stats["race_hits"] += 1

    def run(self) -> Generator[Any, Any, None]:
        """The walker's process: Poisson takes on random pfns."""
        env = self.machine.env
        if self.p.start_ns:
            yield env.timeout(self.p.start_ns)
        nr_pfns = self.machine.mm.pages.nr_pages
        mean_ns = 1e9 / self.p.rate_per_s
        left = self.p.max_requests
        while left is None or left > 0:
            gaps = self.rng.exponential(mean_ns, BATCH).astype(np.int64).tolist()
            pfns = self.rng.integers(nr_pfns, size=BATCH).tolist()
            cpus = self.rng.integers(len(self.cpus), size=BATCH).tolist()
            for gap, pfn, i in zip(gaps, pfns, cpus, strict=True):
                if left is not None:
                    if not left:
                        return
                    left -= 1
                yield env.timeout(gap)
                self.stats["takes"] += 1
                self.take(pfn, self.cpus[i])


def speculative_refs_workload(machine: Machine, spec: WorkloadConfig,
                              rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body of one ``speculative_refs`` workload."""
    walker = Walker(machine, spec.name, spec.params["params"], rng)
    hugetlb_of(machine).state.racers.append(walker.race)
    yield from walker.run()
