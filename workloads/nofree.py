"""The ``nofree`` caller, a what-if: Linux never-freed kernel pages clustered as FreeBSD does.

What if never-freed kernel allocations were clustered as FreeBSD clusters them? This
is not Linux behaviour. FreeBSD (spec §11.4-11.6, behaviours 74-76) backs
``kmem_malloc(M_NEVERFREED)`` with NOFREE pages (``VM_ALLOC_NOFREE``):
``vm_page_alloc_nofree_domain()`` imports a ``2^VM_NOFREE_IMPORT_ORDER``-page chunk
(order 9 on amd64: one 2 MiB pageblock) from the buddy allocator into a per-domain
queue (``vmd_nofreeq``) and hands it out one page at a time, so permanent allocations
fill whole pageblocks instead of polluting many. Linux has no such allocator; this
module grafts FreeBSD's onto the Linux 6.1 model:

- ``vm_page_alloc_nofree_domain()``: when the node's queue is empty, one UNMOVABLE
  order-``import_order`` allocation through :meth:`Machine.alloc`, ``split_page()``'d and
  queued; pages leave the head of the queue in ascending pfn order (behaviour 74); the
  chunk is never given back to the buddy allocator. A failed import falls back to an
  ordinary order-0 page (``vm_page_alloc_domain_iter()``), still NOFREE;
- ``vm_page_free_nofree()``: a freed NOFREE page goes to the head of its node's queue,
  the next one handed out (behaviour 75, D49480), never to the buddy allocator;
- ``kmem_back_domain()``: a call of k pages is a page-by-page loop. With a blocking mask
  (``M_WAITOK``) page i is retried until it succeeds (behaviour 76), after
  ``memalloc_retry_wait()``; with a non-blocking mask (``M_NOWAIT``) a failure part-way
  applies the ``partial_failure`` policy, counted and traced as a
  ``kmem_back_partial_failure`` span: ``leak`` strands the pages (before D49480: the
  undo was illegal), ``free_to_nofree`` frees them to the queue head in ascending order
  (``kmem_unback()``, D49480), ``batch`` takes the pages in one D47050-style batch that
  may come up short and rolls a short batch back to the queue (all or nothing: every page
  it took, ordinary fallback pages included, goes to the queue in the order it came out);
- ``mode: scattered`` is the baseline: the same calls backed by plain order-0 UNMOVABLE
  pages (``alloc_pages_node(nid, gfp, 0)``), no queue; pages a policy gives back go to
  the buddy allocator (``__free_pages()``).

What a blocking mask means here: Linux's ``GFP_KERNEL`` order-0 allocation never fails
(``__alloc_pages_slowpath()`` reclaims, retries and OOM-kills; with nobody left to kill
the model panics), so with ``GFP_KERNEL`` the ``M_WAITOK`` retry loop never runs and no
call fails; it runs only for a blocking mask that may fail (``__GFP_NORETRY``,
``__GFP_RETRY_MAYFAIL``). Partial failures therefore need a non-blocking mask.

SIMPLIFICATIONS (what-if choices, not kernel behaviour): the import mask (see
:func:`nofree_import_gfp`) is the caller's mask plus ``__GFP_NORETRY | __GFP_NOWARN |
__GFP_NOMEMALLOC``, as Linux's page-fragment cache imports its high-order blocks
(``__page_frag_cache_refill()``), plus ``__GFP_THISNODE`` (FreeBSD's queue and its import
are per domain), without ``__GFP_NOFAIL``/``__GFP_RETRY_MAYFAIL``/``__GFP_COMP``. FreeBSD's
import only takes a free block and never reclaims or compacts; a Linux import with a
blocking mask may compact and reclaim once. No ``vm_domain_allocate()`` free-count
reservation (Linux watermarks stand in), no per-domain KVA arena, no domain iteration: a
call uses ``nid`` or its CPU's node (its ordinary pages may still come from another node
through the Linux zonelist; a page given back joins the queue of its own node). The
queue is machine-wide per node, shared by every ``nofree`` workload, and its pages stay
charged to the caller that imported them.
The NOFREE owner is kernel memory: the OOM killer never picks it.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Generator
from typing import Any

import numpy as np

from simcore.config.types import WorkloadConfig
from simcore.formats import trace_schema as ts
from simcore.mm.gfp import GFP, gfpflags_allow_blocking
from simcore.sim.machine import Allocation, Machine
from workloads.nofree_params import NofreeParams
from workloads.stats import caller_stats
from workloads.synthetic import issuing_cpus, poisson_arrivals

NOFREEQ_KEY = "vmd_nofreeq"
"""Where the per-node NOFREE queues live in :attr:`Machine.extras`: nid -> deque."""
IMPORT_ADD = int(GFP.NORETRY | GFP.NOWARN | GFP.NOMEMALLOC | GFP.THISNODE)
IMPORT_DROP = int(GFP.NOFAIL | GFP.RETRY_MAYFAIL | GFP.COMP)
GFP_NORETRY = int(GFP.NORETRY)

Pages = list[Allocation]


def nofree_import_gfp(gfp: int) -> int:
    """The mask of a chunk import for a caller's ``gfp`` (a what-if choice).

    ``__page_frag_cache_refill()`` adds ``__GFP_NORETRY | __GFP_NOWARN |
    __GFP_NOMEMALLOC`` to its caller's mask for its opportunistic high-order block and
    falls back to order 0, as FreeBSD's import does: a failed import costs little and
    stays quiet. ``__GFP_THISNODE`` keeps the chunk on the queue's node.
    """
    # SIMPLIFICATION: what-if: FreeBSD's import never reclaims or compacts; a Linux
    # import with a blocking mask may direct-compact and reclaim once (NORETRY).
    return (gfp | IMPORT_ADD) & ~IMPORT_DROP


def nofreeq(machine: Machine, nid: int) -> deque[Allocation]:
    """``VM_DOMAIN(nid)->vmd_nofreeq``: the node's queued NOFREE pages, head first."""
    # SIMPLIFICATION: one queue per node for the whole machine (as vmd_nofreeq), but its
    # pages stay charged to the caller that imported them, whoever takes them
    queues: dict[int, deque[Allocation]] = machine.extras.setdefault(NOFREEQ_KEY, {})
    queue = queues.get(nid)
    if queue is None:
        queue = queues[nid] = deque()
    return queue


def nofreeq_size(machine: Machine) -> int:
    """``nofreeq_size``: pages in every node's NOFREE queue."""
    return sum(len(q) for q in machine.extras.get(NOFREEQ_KEY, {}).values())


def memalloc_retry_wait_ns(machine: Machine, gfp: int) -> int:
    """``memalloc_retry_wait()``: how long a Linux retry loop sleeps after a failure.

    One jiffy after a blocking attempt ("probably waited already"), ``HZ/50`` otherwise
    or with ``__GFP_NORETRY``.
    """
    cost = machine.mm.reclaim.cost
    if gfpflags_allow_blocking(gfp) and not gfp & GFP_NORETRY:
        return cost.jiffy_ns
    return max(1, cost.hz // 50) * cost.jiffy_ns


# -- sys/vm/vm_page.c ---------------------------------------------------------------------
def vm_page_alloc_nofree_domain(
    machine: Machine, owner: str, p: NofreeParams, nid: int, cpu: int, stats: Counter[str],
) -> Generator[Any, Any, Allocation | None]:
    """``vm_page_alloc_nofree_domain()``: the head page of node ``nid``'s queue.

    An empty queue first imports one chunk: an order-``import_order`` block from the
    buddy allocator, ``split_page()``'d into pages of refcount 1 that go to the queue
    head in ascending pfn order. None when the import fails.
    """
    queue = nofreeq(machine, nid)
    if not queue:
        gfp = p.import_gfp if p.import_gfp is not None else nofree_import_gfp(p.gfp)
        chunk = yield from machine.alloc(owner, gfp, p.import_order, cpu, nid)
        if chunk is None:
            stats["import_failed"] += 1
            return None
        stats["chunks_imported"] += 1
        # TAILQ_INSERT_HEAD: another caller may have imported while this one stalled
        queue.extendleft(reversed(machine.split(chunk)))
    return queue.popleft()


def vm_page_free_nofree(machine: Machine, page: Allocation) -> None:
    """``vm_page_free_nofree()``: the page goes to the head of its node's queue."""
    nofreeq(machine, machine.mm.page_zone(page.pfn).nid).appendleft(page)


def vm_page_alloc_domain_iter(
    machine: Machine, owner: str, p: NofreeParams, nid: int, cpu: int, stats: Counter[str],
) -> Generator[Any, Any, Allocation | None]:
    """``vm_page_alloc_domain_iter()`` for one kernel page: NOFREE first, then ordinary.

    In ``scattered`` mode only the ordinary page: ``alloc_pages_node(nid, gfp, 0)``.
    """
    nofree = p.mode == "nofree"
    if nofree:
        page = yield from vm_page_alloc_nofree_domain(machine, owner, p, nid, cpu, stats)
        if page is not None:
            return page
    page = yield from machine.alloc(owner, p.gfp, 0, cpu, nid)
    if page is not None and nofree:
        stats["import_fallbacks"] += 1
    return page


def vm_page_alloc_pages(
    machine: Machine, owner: str, p: NofreeParams, nr_pages: int, nid: int, cpu: int,
    stats: Counter[str],
) -> Generator[Any, Any, Pages]:
    """A D47050-style batch (``vm_page_alloc_pages()``): up to ``nr_pages`` pages.

    NOFREE pages first (importing chunks), then ordinary pages from Linux's batch
    allocator (``alloc_pages_bulk_array_node()``, the analogue of
    ``vm_phys_alloc_npages()``) while it makes progress. May return fewer pages.
    """
    got: Pages = []
    if p.mode == "nofree":
        while len(got) < nr_pages:
            page = yield from vm_page_alloc_nofree_domain(machine, owner, p, nid, cpu, stats)
            if page is None:
                break
            got.append(page)
    while len(got) < nr_pages:
        more = yield from machine.alloc_bulk(owner, p.gfp, nr_pages - len(got), cpu, nid)
        if not more:
            break
        got.extend(more)
        if p.mode == "nofree":
            stats["import_fallbacks"] += len(more)
    return got


# -- sys/vm/vm_kern.c ---------------------------------------------------------------------
def kmem_back_domain(
    machine: Machine, owner: str, p: NofreeParams, nr_pages: int, nid: int, cpu: int,
    stats: Counter[str],
) -> Generator[Any, Any, Pages | None]:
    """``kmem_back_domain()``: back ``nr_pages`` pages one at a time, or None on failure.

    ``M_WAITOK`` (a blocking mask) retries the page that failed until it succeeds;
    ``M_NOWAIT`` applies the ``partial_failure`` policy to the pages obtained.
    The ``batch`` policy takes them with :func:`vm_page_alloc_pages` instead.
    """
    blocking = gfpflags_allow_blocking(p.gfp)
    pages: Pages = []
    while len(pages) < nr_pages:
        if p.partial_failure == "batch":
            got = yield from vm_page_alloc_pages(machine, owner, p, nr_pages - len(pages),
                                                 nid, cpu, stats)
            pages.extend(got)
            if len(pages) == nr_pages:
                break
        else:
            page = yield from vm_page_alloc_domain_iter(machine, owner, p, nid, cpu, stats)
            if page is not None:
                pages.append(page)
                continue
        if not blocking or machine.oom_killed(owner):
            kmem_unback(machine, owner, p, pages, nr_pages, stats)
            return None
        stats["waitok_retries"] += 1  # VM_ALLOC_WAITFAIL: goto retry (same page index)
        yield machine.env.timeout(memalloc_retry_wait_ns(machine, p.gfp))
    return pages


def kmem_unback(machine: Machine, owner: str, p: NofreeParams, pages: Pages,
                nr_pages: int, stats: Counter[str]) -> None:
    """Undo a call that failed after ``len(pages)`` of ``nr_pages`` pages, per policy.

    ``leak``: the pages stay allocated and unused (stranded). ``free_to_nofree``:
    ``kmem_unback()`` frees them in ascending order, each to its queue head (so the last
    one is handed out next). ``batch``: the batch goes back to the queue heads as it
    came out (the NOFREE pages as they were; ordinary pages the batch took join their
    node's queue too, as freed NOFREE pages do). In ``scattered`` mode pages given back go to the
    buddy allocator.
    """
    if not pages:
        return
    stats["partial_failures"] += 1
    policy = p.partial_failure
    if policy == "leak":
        stats["pages_stranded"] += len(pages)
    elif p.mode == "scattered":
        for page in pages:
            machine.free(page)
        stats["pages_rolled_back" if policy == "batch" else "pages_freed"] += len(pages)
    elif policy == "free_to_nofree":
        for page in pages:
            vm_page_free_nofree(machine, page)
        stats["pages_returned"] += len(pages)
    else:
        for page in reversed(pages):
            vm_page_free_nofree(machine, page)
        stats["pages_rolled_back"] += len(pages)
    now = machine.trace_now()
    nid = machine.mm.page_zone(pages[0].pfn).nid
    machine.spans.add(ts.SPAN_NOFREE_PARTIAL, nid, owner, now, now, len(pages),
                      f"policy={policy} mode={p.mode} got={len(pages)} wanted={nr_pages}")


# -- the workload -------------------------------------------------------------------------
def nofree_workload(machine: Machine, spec: WorkloadConfig,
                    rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: ``kmem_malloc(M_NEVERFREED)`` calls, never freed.

    Each call backs its drawn size on ``nid`` (or the issuing CPU's node).
    ``summary.json`` ``callers`` has the counts: ``calls``, ``failed``, ``pages``,
    ``chunks_imported``, ``import_failed``, ``import_fallbacks``, ``partial_failures``,
    ``pages_stranded``/``pages_returned``/``pages_rolled_back``/``pages_freed``,
    ``waitok_retries`` and ``nofreeq_size`` (every node's queue, after the last call; not
    in ``scattered`` mode).
    """
    p: NofreeParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, killable=False)
    stats = caller_stats(machine, name, "nofree")
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    calls = poisson_arrivals(p.rate_per_s, p.size_weights, cpus, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    issued = 0
    while p.max_requests is None or issued < p.max_requests:
        gap, nr_pages, cpu = next(calls)
        yield env.timeout(gap)
        # SIMPLIFICATION: no DOMAINSET_RR iteration over domains: one node per call
        nid = machine.cpu_node(cpu) if p.nid is None else p.nid
        pages = yield from kmem_back_domain(machine, name, p, nr_pages, nid, cpu, stats)
        issued += 1
        stats["calls"] += 1
        if pages is None:
            stats["failed"] += 1
        else:
            stats["pages"] += len(pages)
        if p.mode == "nofree":  # the scattered baseline has no queue
            stats["nofreeq_size"] = nofreeq_size(machine)
