"""The ``anon`` caller: anonymous memory that processes fault in, THP-sized where THP is on.

Mirrors the anonymous write-fault path of mm/memory.c and mm/huge_memory.c of 6.1:

- a region (one ``mmap()`` of ``size``, written all over at once) is faulted 2 MiB range
  by 2 MiB range. Where ``hugepage_vma_check()`` allows THP (machine
  ``transparent_hugepage`` ``always``, or ``madvise`` and the region has
  ``MADV_HUGEPAGE``; never with ``MADV_NOHUGEPAGE``), ``do_huge_pmd_anonymous_page()``
  asks ``vma_alloc_folio()`` for an order-9 folio with ``vma_thp_gfp_mask()``'s mask
  for the ``defrag`` mode. Under the default policy that is first one attempt on the
  local node with ``__GFP_THISNODE | __GFP_NORETRY`` added and, only if the mask may
  reclaim directly, a second one with the plain mask on every node. Success counts
  ``thp_fault_alloc`` (after the deposited page table, ``pte_alloc_one()``); failure
  counts ``thp_fault_fallback`` and the range is faulted page by page
  (``VM_FAULT_FALLBACK``);
- a range without THP (or the tail of a region shorter than 2 MiB) gets its PTE page
  (``pte_alloc()``, ``GFP_PGTABLE_USER``) and then one page per fault from
  ``do_anonymous_page()``: ``alloc_zeroed_user_highpage_movable()`` is
  ``GFP_HIGHUSER_MOVABLE | __GFP_ZERO``, and ``__folio_alloc()`` adds ``__GFP_COMP``;
- a fault that cannot get its page or page table (``VM_FAULT_OOM``, after the slow
  path's own OOM kill) fails the region: everything it got is freed;
- the pages sit on the anon LRU (order-9 folios as one entry) and are swapped out by
  reclaim when there is swap; the region is unmapped (``zap_pte_range()``, the page
  tables in ``free_pgtables()``) when its lifetime ends.

SIMPLIFICATIONS: regions are 2 MiB-aligned and written at once (no read faults, so
no huge zero page; no later faults; no khugepaged collapse); only the PTE-level page
table is allocated (one per 2 MiB range), the PMD/PUD pages above it are not; no memcg
charge (so no ``thp_fault_fallback_charge``); ``defrag`` is the machine-wide
``/sys/kernel/mm/transparent_hugepage/defrag`` as this workload sees it (give every
anon workload the same). Reclaim swaps an order-9 folio whole (as ``add_to_swap()``
with ``CONFIG_THP_SWAP`` does when a swap cluster is free), never splits it, and does
not count ``thp_swpout``; compaction never migrates it (6.1 skips compound pages too).
``nid`` is an ``MPOL_PREFERRED`` policy: the THP attempt and the pages start on that
node instead of the local one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_bool,
    expect_duration_ns,
    expect_int,
    expect_mapping,
    expect_number,
    expect_rate_per_s,
    expect_str,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate
from simcore.errors import ConfigError
from simcore.mm.gfp import GFP, GFP_HIGHUSER_MOVABLE, GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT
from simcore.mm.lru import KIND_ANON
from simcore.sim.machine import LRU_HOT, LRU_NONE, Allocation, Machine
from workloads.schema import ANON
from workloads.stats import caller_stats
from workloads.synthetic import (
    FOREVER,
    _lifetimes,
    exit_after,
    issuing_cpus,
    poisson_arrivals,
)
from workloads.synthetic_params import (
    LifetimeSpec,
    _cpus,
    _dump_lifetime,
    _lifetime,
    _optional_int,
    check_cpus_and_node,
)
from workloads.threads import PGTABLE_GFP
from workloads.vmalloc import _size_weights, check_sizes_fit, dump_sizes

ANON_KEYS = names(ANON)
ANON_REQUIRED = required(ANON)
DEFRAG_MODES = ("always", "defer", "defer+madvise", "madvise", "never")
"""``/sys/kernel/mm/transparent_hugepage/defrag`` (6.1's default: ``madvise``)."""
HPAGE_PMD_ORDER = 9
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER
ANON_PAGE_GFP = int(GFP_HIGHUSER_MOVABLE | GFP.ZERO | GFP.COMP)
"""An order-0 anonymous fault: ``alloc_zeroed_user_highpage_movable()`` through
``vma_alloc_folio()`` → ``__folio_alloc()`` (which ORs in ``__GFP_COMP``)."""
GFP_THISNODE_NORETRY = int(GFP.THISNODE | GFP.NORETRY)
GFP_DIRECT_RECLAIM = int(GFP.DIRECT_RECLAIM)
FAULT_OK, FAULT_FALLBACK, FAULT_OOM = 0, 1, 2
"""0, ``VM_FAULT_FALLBACK`` and ``VM_FAULT_OOM``."""


@dataclass(frozen=True)
class AnonParams:
    """Parsed parameters of one ``anon`` workload.

    Attributes:
        rate_per_s: Poisson arrival rate of regions (an ``mmap()`` written all over).
        size_weights: ``(pages, probability)`` pairs: the region sizes.
        lifetime: How long a region lives before it is unmapped.
        madvise: The region has ``MADV_HUGEPAGE`` (``VM_HUGEPAGE``).
        nohugepage: The region has ``MADV_NOHUGEPAGE`` (no THP at all).
        defrag: The THP ``defrag`` mode (one of :data:`DEFRAG_MODES`).
        hot: Fraction of the folios the process keeps using (reclaim never frees them).
        page_tables: Allocate the PTE page of each 2 MiB range.
        cpus, nid, max_requests, start_ns, oom_score_adj: As for the synthetic workload
            (``nid``: an ``MPOL_PREFERRED`` node; ``max_requests`` counts regions).
    """

    rate_per_s: float
    size_weights: tuple[tuple[int, float], ...]
    lifetime: LifetimeSpec
    madvise: bool = False
    nohugepage: bool = False
    defrag: str = "madvise"
    hot: float = 0.0
    page_tables: bool = True
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0
    oom_score_adj: int = 0

    def expected_requests(self, duration_ns: int) -> float:
        """Mean page allocations of a run of ``duration_ns`` (every region order 0)."""
        active_s = max(0, duration_ns - self.start_ns) / 1e9
        regions = self.rate_per_s * active_s
        if self.max_requests is not None:
            regions = min(regions, self.max_requests)
        mean = sum(pages * w for pages, w in self.size_weights)
        return regions * mean * (1 + 1 / HPAGE_PMD_NR)


def _fraction(value: object, key: str, source: str) -> float:
    number = expect_number(value, key, source)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(source, key, "a fraction in 0..1", value)
    return number


def parse_anon_params(raw: Mapping[str, object], key_prefix: str,
                      source: str) -> Mapping[str, object]:
    """Parse an ``anon`` workload's keys; ``rate``, ``size`` and ``lifetime`` are required.

    Raises:
        ConfigError: Naming e.g. ``workloads[0].defrag``.
    """
    data = expect_mapping(raw, key_prefix, source, ANON_KEYS, ANON_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    params = AnonParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        size_weights=_size_weights(data["size"], key("size"), source),
        lifetime=_lifetime(data["lifetime"], key("lifetime"), source),
        madvise=expect_bool(data.get("madvise", False), key("madvise"), source),
        nohugepage=expect_bool(data.get("nohugepage", False), key("nohugepage"), source),
        defrag=expect_str(data.get("defrag", "madvise"), key("defrag"), source,
                          choices=DEFRAG_MODES),
        hot=_fraction(data.get("hot", 0.0), key("hot"), source),
        page_tables=expect_bool(data.get("page_tables", True), key("page_tables"), source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
        oom_score_adj=expect_int(data.get("oom_score_adj", 0), key("oom_score_adj"), source,
                                 -1000, 1000),
    )
    if params.madvise and params.nohugepage:
        raise ConfigError(source, key("nohugepage"),
                          "false when madvise is true (MADV_HUGEPAGE and MADV_NOHUGEPAGE "
                          "exclude each other)", True)
    return {"params": params}


def check_anon_params(params: Mapping[str, object], machine: MachineConfig,
                      key_prefix: str, source: str) -> None:
    """Reject CPUs or a node the machine lacks, and regions larger than its memory."""
    p = params["params"]
    assert isinstance(p, AnonParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)
    check_sizes_fit(p.size_weights, machine, key_prefix, source, "regions")


def dump_anon_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_anon_params`, in human units."""
    p = params["params"]
    if not isinstance(p, AnonParams):
        raise TypeError(f"expected AnonParams under 'params', got {p!r}")
    return {
        "rate": format_rate(p.rate_per_s),
        "size": dump_sizes(p.size_weights),
        "lifetime": _dump_lifetime(p.lifetime),
        "madvise": p.madvise,
        "nohugepage": p.nohugepage,
        "defrag": p.defrag,
        "hot": p.hot,
        "page_tables": p.page_tables,
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
        "oom_score_adj": p.oom_score_adj,
    }


# -- mm/huge_memory.c, mm/mempolicy.c, mm/memory.c ----------------------------------------
def thp_vma_allowed(enabled: str, madvise: bool, nohugepage: bool) -> bool:
    """``hugepage_vma_check()`` at a fault in an anonymous VMA (sysfs enforced).

    ``enabled`` is ``/sys/kernel/mm/transparent_hugepage/enabled``.
    """
    if nohugepage or enabled == "never":  # VM_NOHUGEPAGE; !hugepage_flags_enabled()
        return False
    return enabled == "always" or madvise  # madvise mode: VM_HUGEPAGE only


def vma_thp_gfp_mask(defrag: str, madvised: bool) -> int:
    """``vma_thp_gfp_mask()``: the THP fault mask for a ``defrag`` mode.

    ``always``: ``GFP_TRANSHUGE``, plus ``__GFP_NORETRY`` unless madvised; ``defer``:
    ``GFP_TRANSHUGE_LIGHT | __GFP_KSWAPD_RECLAIM``; ``defer+madvise``: LIGHT plus direct
    reclaim if madvised, else kswapd; ``madvise``: LIGHT plus direct reclaim if
    madvised; ``never``: ``GFP_TRANSHUGE_LIGHT``.
    """
    light = int(GFP_TRANSHUGE_LIGHT)
    if defrag == "always":
        return int(GFP_TRANSHUGE) | (0 if madvised else int(GFP.NORETRY))
    if defrag == "defer":
        return light | int(GFP.KSWAPD_RECLAIM)
    if defrag == "defer+madvise":
        return light | int(GFP.DIRECT_RECLAIM if madvised else GFP.KSWAPD_RECLAIM)
    if defrag == "madvise":
        return light | (GFP_DIRECT_RECLAIM if madvised else 0)
    if defrag == "never":
        return light
    raise ValueError(f"unknown THP defrag mode {defrag!r}")


def vma_alloc_folio_thp(machine: Machine, owner: str, gfp: int, cpu: int, nid: int | None,
                        lru_flags: int = 0) -> Generator[Any, Any, Allocation | None]:
    """``vma_alloc_folio(gfp, HPAGE_PMD_ORDER, vma, addr, true)`` under the default policy.

    First ``__folio_alloc_node(gfp | __GFP_THISNODE | __GFP_NORETRY)`` on the local (or
    preferred) node; then, only if ``gfp`` has ``__GFP_DIRECT_RECLAIM``, ``__folio_alloc()``
    with ``gfp`` from that node with fallback to the others.
    """
    node = machine.cpu_node(cpu) if nid is None else nid
    folio = yield from machine.alloc(owner, gfp | GFP_THISNODE_NORETRY, HPAGE_PMD_ORDER,
                                     cpu, node, lru_flags)
    if folio is None and gfp & GFP_DIRECT_RECLAIM and not machine.oom_killed(owner):
        folio = yield from machine.alloc(owner, gfp, HPAGE_PMD_ORDER, cpu, node, lru_flags)
    return folio


def do_huge_pmd_anonymous_page(
    machine: Machine, owner: str, p: AnonParams, cpu: int, lru_flags: int,
    got: list[Allocation],
) -> Generator[Any, Any, int]:
    """``do_huge_pmd_anonymous_page()`` (a write fault): FAULT_OK, _FALLBACK or _OOM.

    The folio and its deposited page table are appended to ``got``.
    """
    vm = machine.mm.vm
    gfp = vma_thp_gfp_mask(p.defrag, p.madvise)
    folio = yield from vma_alloc_folio_thp(machine, owner, gfp, cpu, p.nid, lru_flags)
    if folio is None:
        vm.add("thp_fault_fallback", 1)
        # a caller the OOM killer took gets no order-0 page either: VM_FAULT_OOM then
        return FAULT_OOM if machine.oom_killed(owner) else FAULT_FALLBACK
    got.append(folio)
    if p.page_tables:  # __do_huge_pmd_anonymous_page(): pte_alloc_one() for the deposit
        table = yield from machine.alloc(owner, PGTABLE_GFP, 0, cpu, p.nid, LRU_NONE)
        if table is None:
            return FAULT_OOM
        got.append(table)
    vm.add("thp_fault_alloc", 1)
    return FAULT_OK


def do_anonymous_pages(machine: Machine, owner: str, p: AnonParams, nr_pages: int,
                       cpu: int, flags: Iterator[int],
                       got: list[Allocation]) -> Generator[Any, Any, int]:
    """``nr_pages`` write faults of one PMD range through ``do_anonymous_page()``.

    The first one allocates the range's PTE page (``pte_alloc()``). Returns FAULT_OK or
    FAULT_OOM; what was allocated is appended to ``got``.
    """
    if p.page_tables:
        table = yield from machine.alloc(owner, PGTABLE_GFP, 0, cpu, p.nid, LRU_NONE)
        if table is None:
            return FAULT_OOM
        got.append(table)
    alloc = machine.alloc
    for _ in range(nr_pages):
        page = yield from alloc(owner, ANON_PAGE_GFP, 0, cpu, p.nid, next(flags))
        if page is None:
            return FAULT_OOM
        got.append(page)
    return FAULT_OK


def fault_region(machine: Machine, owner: str, p: AnonParams, nr_pages: int, cpu: int,
                 flags: Iterator[int],
                 stats: Counter[str] | None = None) -> Generator[Any, Any, list[Allocation] | None]:
    """Write every page of a fresh ``nr_pages`` region: its blocks, or None (all freed).

    ``stats`` counts ``thp`` and ``thp_fallback`` faults.
    """
    thp = thp_vma_allowed(machine.mm.cfg.transparent_hugepage, p.madvise, p.nohugepage)
    got: list[Allocation] = []
    done = 0
    while done < nr_pages:
        span = min(HPAGE_PMD_NR, nr_pages - done)
        result = FAULT_FALLBACK
        if thp and span == HPAGE_PMD_NR:  # transhuge_vma_suitable()
            result = yield from do_huge_pmd_anonymous_page(machine, owner, p, cpu,
                                                           next(flags), got)
            if stats is not None and result != FAULT_OOM:
                stats["thp" if result == FAULT_OK else "thp_fallback"] += 1
        if result == FAULT_FALLBACK:
            result = yield from do_anonymous_pages(machine, owner, p, span, cpu, flags, got)
        if result == FAULT_OOM:
            unmap_region(machine, got)
            return None
        done += span
    return got


def unmap_region(machine: Machine, blocks: list[Allocation]) -> None:
    """``munmap()``/exit: ``zap_pte_range()`` frees the folios, ``free_pgtables()`` the tables."""
    for handle in blocks:
        machine.free(handle)


# -- the workload -------------------------------------------------------------------------
def _lru_flags(hot: float, rng: np.random.Generator) -> Iterator[int]:
    """Endless ``lru_flags`` of the folios: :data:`LRU_HOT` with probability ``hot``."""
    while True:
        if not hot:
            yield 0
            continue
        yield from (np.where(rng.random(4096) < hot, LRU_HOT, 0)).tolist()


def anon_workload(machine: Machine, spec: WorkloadConfig,
                  rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: regions arrive, are faulted in, and are unmapped after a life.

    A region's blocks are freed together at its expiry through
    :meth:`Machine.defer_free` (no SimPy event); with ``max_requests`` the process
    ends once the last region is unmapped. ``summary.json`` ``callers`` counts
    ``regions``, ``failed`` (a fault hit ``VM_FAULT_OOM``), ``pages`` (of the
    regions that were faulted in, page tables included), ``thp`` and ``thp_fallback``.
    """
    p: AnonParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, KIND_ANON, p.oom_score_adj)
    stats = caller_stats(machine, name, "anon")
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    arrivals = poisson_arrivals(p.rate_per_s, p.size_weights, cpus, rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    flags = _lru_flags(p.hot, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    issued = 0
    last_expiry = 0
    while p.max_requests is None or issued < p.max_requests:
        gap, nr_pages, cpu = next(arrivals)
        yield env.timeout(gap)
        region = yield from fault_region(machine, name, p, nr_pages, cpu, flags, stats)
        issued += 1
        stats["regions"] += 1
        if machine.oom_killed(name):
            return
        if region is None:
            stats["failed"] += 1
            continue
        stats["pages"] += sum(1 << h.order for h in region)
        life = next(lifetimes)
        if life != FOREVER:
            expiry = int(env.now) + life
            last_expiry = max(last_expiry, expiry)
            for handle in region:
                machine.defer_free(handle, expiry)
    yield from exit_after(machine, name, last_expiry)
