"""Stateful property test: callers' misuse mixed with normal use, through a Machine.

A hypothesis ``RuleBasedStateMachine`` allocates and frees through
:class:`simcore.sim.machine.Machine`, and misuses its handles in every way of issue 13.4:
double frees (of pages free on either list, or handed to another owner since), use
after free, ``put_page()`` on compound and non-compound tails and on a non-compound
first page, and frees of frozen pages (the freezer unfreezes and puts them later). After
every step the run must go on and :func:`simcore.mm.invariants.check_invariants` must
hold with the live handles plus the pages the freezer still holds: every page is free,
allocated or counted as leaked. Teardown frees everything and drains.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.mm.gfp import GFP, GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.pages import ORDER_MASK, PG_HEAD
from simcore.mm.tracepoints import Tracer
from simcore.sim.machine import Allocation, Machine

GFPS = (int(GFP_KERNEL | GFP.NORETRY), int(GFP_KERNEL | GFP.NORETRY | GFP.COMP))


class Reasons(Tracer):
    """Keeps the misuse reasons (exercising every warning's text)."""

    enabled = True

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def bad_page(self, zone: object, pfn: int, order: int, reason: str) -> None:  # noqa: D102
        self.reasons.append(reason)

    def sim_warning(self, zone: object, pfn: int, order: int,  # noqa: D102
                    reason: str) -> None:
        self.reasons.append(reason)


class MisuseMachine(RuleBasedStateMachine):
    """``live``/``dead`` handles; ``held``: pfn -> order of frozen pages the freezer holds."""

    def __init__(self) -> None:
        super().__init__()
        cfg = MachineConfig(nodes=(NodeConfig(memory_pages=32 << 8, cpus=2),))
        self.tracer = Reasons()
        self.m = Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=1,
                         tracer=self.tracer)
        self.live: list[Allocation] = []
        self.dead: list[Allocation] = []
        self.held: dict[int, int] = {}

    def _retire(self, handle: Allocation) -> None:
        if handle in self.live and not handle.alive:
            self.live.remove(handle)
            self.dead.append(handle)

    # -- normal use ---------------------------------------------------------------------
    @rule(gfp=st.sampled_from(GFPS), order=st.integers(0, 4), cpu=st.integers(0, 1))
    def alloc(self, gfp: int, order: int, cpu: int) -> None:
        handle = self.m.alloc_now("caller", gfp, order, cpu)
        if handle is not None:
            self.live.append(handle)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.live))
        self.m.free(handle)
        self._retire(handle)

    @rule()
    def drain(self) -> None:
        self.m.mm.drain_all_pages()

    # -- misuse -------------------------------------------------------------------------
    @precondition(lambda self: self.dead)
    @rule(data=st.data(), cpu=st.integers(0, 1))
    def double_free(self, data: st.DataObject, cpu: int) -> None:
        self.m.free(data.draw(st.sampled_from(self.dead)), cpu)

    @precondition(lambda self: self.dead)
    @rule(data=st.data())
    def use_after_free(self, data: st.DataObject) -> None:
        self.m.touch(data.draw(st.sampled_from(self.dead)))

    @precondition(lambda self: self.live or self.dead)
    @rule(data=st.data())
    def put_page(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.live + self.dead))
        self.m.put_page(handle, data.draw(st.integers(0, (1 << handle.order) - 1)))
        self._retire(handle)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free_frozen(self, data: st.DataObject) -> None:
        handle = data.draw(st.sampled_from(self.live))
        pages = self.m.mm.pages
        if not self.m.mm.page_ref_freeze(handle.pfn, 1):
            return
        self.m.free(handle)
        self._retire(handle)
        compound = pages.flags[handle.pfn] & PG_HEAD
        self.held[handle.pfn] = pages.info[handle.pfn] & ORDER_MASK if compound else 0

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def unfreeze_and_put(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(self.held)))
        del self.held[pfn]
        self.m.mm.page_ref_unfreeze(pfn, 1)
        self.m.mm.put_page(pfn, 0)

    # -- the run goes on ------------------------------------------------------------------
    @invariant()
    def consistent(self) -> None:
        allocated = {h.pfn: h.order for h in self.live}
        check_invariants(self.m.mm, {**allocated, **self.held}, frozen=set(self.held))
        assert all(h.alive for h in self.live)
        assert set(self.m.owner_of.values()) == set(self.live)

    def teardown(self) -> None:
        for pfn in list(self.held):
            self.m.mm.page_ref_unfreeze(pfn, 1)
            self.m.mm.put_page(pfn, 0)
        for handle in self.live:
            self.m.free(handle)
        self.m.mm.drain_all_pages()
        check_invariants(self.m.mm, {})
        assert all(r for r in self.tracer.reasons)


TestMisuse = MisuseMachine.TestCase
