"""SLUB sizing, gfp masks and slab bookkeeping (workloads/slub.py, mm/slub.c of 6.1.20)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT
from simcore.sim.machine import Allocation
from workloads.slub import (
    FULL,
    ON_CPU,
    ON_PARTIAL,
    SLOT_FREE,
    KmemCache,
    cache_size,
    calc_slab_order,
    calculate_min_partial,
    calculate_order,
    first_attempt_gfp,
    get_order,
    new_slab_flags,
    order_objects,
)

KERNEL, ATOMIC = int(GFP_KERNEL), int(GFP_ATOMIC)


# -- calculate_order() ----------------------------------------------------------------------
# Each row worked by hand from 6.1's calculate_order()/calc_slab_order(): min_objects =
# 4 * (fls(nr_cpus) + 1), capped by order_objects(3, size); for fraction 16, 8, 4 the
# first order from get_order(min_objects * size) whose leftover is <= slab/fraction.
@pytest.mark.parametrize("size,nr_cpus,order,objects", [
    # 2 CPUs: min_objects 12. 12*8 = 96 B -> order 0; 4096 % 8 = 0.
    (8, 2, 0, 512),
    # 12*192 = 2304 -> order 0; 4096 % 192 = 64 <= 256 (dentry).
    (192, 2, 0, 21),
    # 12*704 = 8448 -> order 2; 16384 % 704 = 192 <= 1024 (files_cache).
    (704, 2, 2, 23),
    # 12*1024 -> order 2, no leftover (kmalloc-1k).
    (1024, 2, 2, 16),
    # min(12, 32768/2304 = 14) = 12; 27648 -> order 3; 32768 % 2304 = 512 <= 2048 (TCP).
    (2304, 2, 3, 14),
    # min(12, 10) = 10; 30000 -> order 3; leftover 2768 > 2048 (1/16): order 4 > 3;
    # fraction 8: 2768 <= 4096 -> order 3.
    (3000, 2, 3, 10),
    # min(12, 5) = 5; 31040 -> order 3; 32768 % 6208 = 1728 <= 2048 (task_struct).
    (6208, 2, 3, 5),
    # min(12, 2) = 2; order 3 leaves 8768 > 8192 (1/4) for every fraction; min_objects 1
    # ends the loop; one object: get_order(12000) = 2, 4384 <= 16384 -> order 2.
    (12000, 2, 2, 1),
    # One object does not fit order 3: calc_slab_order(size, 1, MAX_ORDER, 1) -> 4.
    (40000, 2, 4, 1),
    # 64 CPUs: fls(64) = 7 -> 32 objects; 6144 -> order 1; 8192 % 192 = 128 <= 512.
    (192, 64, 1, 42),
    # 1 CPU: fls(1) = 1 -> 8 objects; 8192 -> order 1, no leftover.
    (1024, 1, 1, 8),
    # 8 CPUs: fls(8) = 4 -> 20 objects; 20480 -> order 3, no leftover.
    (1024, 8, 3, 32),
    # 64 CPUs, 4096 B: min(32, 8) = 8 -> order 3.
    (4096, 64, 3, 8),
])
def test_calculate_order_by_hand(size: int, nr_cpus: int, order: int, objects: int) -> None:
    assert calculate_order(size, nr_cpus) == order
    assert order_objects(order, size) == objects


def test_slub_max_order_zero_keeps_small_objects_at_order_0_and_big_ones_at_their_own() -> None:
    """slub_max_order=0: min_objects is capped to order_objects(0, size); 6208 B gets 0
    objects there, so the loops are skipped and one object needs order 1."""
    assert calculate_order(192, 2, max_order=0) == 0
    assert calculate_order(6208, 2, max_order=0) == 1
    assert calculate_order(2304, 2, max_order=0) == 0  # one object in a page (1 of 1)


def test_an_object_no_order_holds_is_refused() -> None:
    """4 MiB needs order 10 (the largest, with MAX_ORDER 11); with max order 9 it is
    -ENOSYS (the model's -1)."""
    assert calculate_order(4 << 20, 2, page_max_order=10) == 10
    assert calculate_order(4 << 20, 2, page_max_order=9) == -1


def test_helpers() -> None:
    assert [get_order(s) for s in (1, 4096, 4097, 8192, 32768, 32769)] == [0, 0, 1, 1, 3, 4]
    assert calc_slab_order(192, 12, 3, 16) == 0
    assert cache_size(1) == 8 and cache_size(190) == 192 and cache_size(100, 64) == 128
    # ilog2(size) / 2 within [5, 10]
    assert [calculate_min_partial(s) for s in (8, 192, 4096, 8192, 1 << 22)] == [5, 5, 6, 6, 10]


# -- gfp masks ------------------------------------------------------------------------------
def test_first_attempt_of_a_blocking_caller_has_noretry_nowarn_and_no_reclaim() -> None:
    flags = new_slab_flags(KERNEL, int(GFP.COMP))
    first = first_attempt_gfp(flags, 3, 1)
    assert first == (KERNEL & ~int(GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM)) | int(
        GFP.COMP | GFP.NOWARN | GFP.NORETRY | GFP.NOMEMALLOC)
    assert not first & int(GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM)


def test_first_attempt_keeps_reclaim_when_oo_is_min_or_the_caller_cannot_block() -> None:
    same = first_attempt_gfp(KERNEL, 0, 0)  # e.g. 192 B: oo and min are both order 0
    assert same == KERNEL | int(GFP.NOWARN | GFP.NORETRY)
    atomic = first_attempt_gfp(ATOMIC | int(GFP.COMP), 3, 0)  # no direct reclaim: unchanged
    assert atomic == ATOMIC | int(GFP.COMP | GFP.NOWARN | GFP.NORETRY)
    nofail = first_attempt_gfp(KERNEL | int(GFP.NOFAIL), 0, 0)
    assert not nofail & int(GFP.NOFAIL)


def test_new_slab_keeps_reclaim_and_constraint_bits_only() -> None:
    """__GFP_ZERO, __GFP_ACCOUNT, __GFP_MOVABLE and a caller's __GFP_RECLAIMABLE are
    dropped (GFP_RECLAIM_MASK | GFP_CONSTRAINT_MASK); the cache's allocflags are added."""
    caller = KERNEL | int(GFP.ZERO | GFP.ACCOUNT | GFP.MOVABLE | GFP.RECLAIMABLE
                          | GFP.THISNODE)
    assert new_slab_flags(caller, 0) == KERNEL | int(GFP.THISNODE)
    assert new_slab_flags(int(GFP_NOWAIT), int(GFP.RECLAIMABLE)) == int(
        GFP_NOWAIT | GFP.RECLAIMABLE)


def test_allocflags_are_comp_above_order_0_and_reclaimable_with_slab_reclaim_account() -> None:
    small = KmemCache("c", 192, 2, [[0]], True, Counter())
    big = KmemCache("c", 6208, 2, [[0]], False, Counter())
    assert small.allocflags == int(GFP.RECLAIMABLE) and small.oo == small.min == (0, 21)
    assert big.allocflags == int(GFP.COMP) and big.oo == (3, 5) and big.min == (1, 1)


# -- slab bookkeeping -----------------------------------------------------------------------
def _page(pfn: int, order: int) -> Allocation:
    return Allocation(pfn, order, "c", 0, 0)


def _fill(cache: KmemCache, cpu: int = 0) -> tuple[int, Allocation | None]:
    """One object on ``cpu``, installing a fresh page when the cache asks for one."""
    sid = cache.take_object(cpu, None, 0)
    page = None
    if sid < 0:
        order, objects = cache.oo
        page = _page(1000 * (len(cache.page) + 1), order)
        sid = cache.install(page, objects, cpu, 0)
    return sid, page


def test_a_slab_is_discarded_only_when_its_last_object_is_freed() -> None:
    """1024 B: 16 objects per order-2 slab, min_partial 5. Six full slabs each lose one
    object (six partial slabs); the first is then emptied: its page is discarded with
    the 16th free and not before."""
    cache = KmemCache("c", 1024, 2, [[0]], False, Counter())
    rows = [_fill(cache)[0] for _ in range(7 * 16)]
    first = rows[0]
    for k in range(6):
        cache.free_object(rows[16 * k])
    assert len(cache.partial[0]) == 6 and cache.state[first] == ON_PARTIAL
    for _ in range(14):
        cache.free_object(first)
        assert cache.pop_discarded() == []
    page = cache.page[first]
    cache.free_object(first)
    assert cache.pop_discarded() == [page]
    assert cache.state[first] == SLOT_FREE and cache.stats["free_slab"] == 1


def test_an_empty_slab_stays_while_its_node_has_fewer_than_min_partial_partials() -> None:
    """__slab_free(): !inuse && nr_partial >= min_partial discards; otherwise the empty
    slab stays on the partial list until kmem_cache_shrink()."""
    cache = KmemCache("c", 1024, 2, [[0]], False, Counter())
    rows = [_fill(cache)[0] for _ in range(17)]  # one full slab, one CPU slab
    for sid in rows[:16]:
        cache.free_object(sid)
    assert cache.pop_discarded() == [] and cache.state[rows[0]] == ON_PARTIAL
    cache.free_object(rows[16])  # the CPU slab is frozen: it stays, empty
    assert cache.state[rows[16]] == ON_CPU
    cache.shrink()
    assert len(cache.pop_discarded()) == 2 and cache.live_slabs() == 0


def test_a_cpu_takes_a_partial_slab_before_asking_for_a_new_one() -> None:
    cache = KmemCache("c", 1024, 2, [[0]], False, Counter())
    rows = [_fill(cache)[0] for _ in range(17)]  # slab A full, slab B is CPU 0's
    a, b = rows[0], rows[16]
    assert a != b and cache.state[a] == FULL and cache.cpu_slab[0] == b
    cache.free_object(rows[3])  # A gets a free object: to the partial list tail
    assert cache.state[a] == ON_PARTIAL
    rows += [_fill(cache)[0] for _ in range(15)]  # B fills up
    sid, page = _fill(cache)
    assert page is None and sid == a  # get_partial_node(), not new_slab()
    assert cache.cpu_slab[0] == a and cache.state[b] == FULL
    assert cache.stats["alloc_from_partial"] == 1 and cache.stats["alloc_slab"] == 2


def test_a_node_mismatch_puts_the_cpu_slab_at_the_partial_head_and_a_free_at_the_tail(
) -> None:
    """kmem_cache_alloc_node() for another node deactivates the CPU slab
    (DEACTIVATE_TO_HEAD); a full slab that gets a free object goes to the tail."""
    cache = KmemCache("c", 1024, 2, [[0, 1], [1, 0]], False, Counter())
    rows = [_fill(cache)[0] for _ in range(17)]  # A full (node 0), B CPU 0's (node 0)
    a, b = rows[0], rows[16]
    cache.free_object(a)  # A: partial tail
    assert cache.take_object(0, 1, 0) == -1  # node 1 wanted: B deactivated, no partial
    assert list(cache.partial[0]) == [b, a]
    assert cache.stats["alloc_node_mismatch"] == 1
    assert cache.get_partial_node(0) == b


class SlabCacheMachine(RuleBasedStateMachine):
    """Random allocations, frees and shrinks of one cache on two nodes and three CPUs."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = KmemCache("c", 704, 3, [[0, 1], [1, 0]], False, Counter())
        self.cache.min_partial = 1  # as echo 1 > /sys/kernel/slab/c/min_partial: discards
        self.live: list[int] = []  # the row of each live object
        self.pages: dict[int, Allocation] = {}
        self.freed: list[Allocation] = []
        self.next_pfn = 0

    @rule(cpu=st.integers(0, 2), nid=st.sampled_from([None, 0, 1]))
    def alloc(self, cpu: int, nid: int | None) -> None:
        cache = self.cache
        sid = cache.take_object(cpu, nid, cpu // 2)
        if sid < 0:
            order, objects = cache.oo
            page = _page(self.next_pfn, order)
            self.next_pfn += 1 << order
            sid = cache.install(page, objects, cpu, cpu % 2 if nid is None else nid)
        self.live.append(sid)
        self._collect()

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.live) - 1))
        self.cache.free_object(self.live.pop(i))
        self._collect()

    @rule()
    def shrink(self) -> None:
        self.cache.shrink()
        self._collect()

    def _collect(self) -> None:
        for page in self.cache.pop_discarded():
            assert page.pfn not in self.pages, "a page discarded twice"
            self.pages[page.pfn] = page
            self.freed.append(page)

    @invariant()
    def rows_are_consistent(self) -> None:
        cache = self.cache
        held = Counter(self.live)
        for sid, state in enumerate(cache.state):
            if state == SLOT_FREE:
                assert held[sid] == 0 and cache.page[sid] is None
                continue
            assert cache.inuse[sid] == held[sid] <= cache.objects[sid]
            page = cache.page[sid]
            assert page is not None and page.pfn not in self.pages  # live: never discarded
            if state == ON_PARTIAL:
                assert sid in cache.partial[cache.nid[sid]] and held[sid] < cache.objects[sid]
            elif state == ON_CPU:
                assert sid in cache.cpu_slab
            else:
                assert state == FULL and held[sid] == cache.objects[sid]
                assert sid not in cache.cpu_slab and sid not in cache.partial[cache.nid[sid]]
        empty_partials = [s for p in cache.partial for s in p if not cache.inuse[s]]
        assert all(cache.state[s] == ON_PARTIAL for s in empty_partials)

    def teardown(self) -> None:
        while self.live:
            self.cache.free_object(self.live.pop())
        self.cache.shrink()
        self._collect()
        assert self.cache.live_slabs() == 0  # every page came back


TestSlabCache = SlabCacheMachine.TestCase
