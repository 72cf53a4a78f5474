"""The OOM killer: ``out_of_memory()`` with a simplified ``oom_badness()``.

Mirrors mm/oom_kill.c (6.1). The model's processes are the callers (workload
instances): each owner reports its footprint, and the one with the highest badness is
killed; its memory is freed at once.

SIMPLIFICATIONS (also in the README):

- ``oom_badness()`` is the owner's allocated pages plus its pages in swap, plus
  ``oom_score_adj × totalpages / 1000`` (``totalpages``: managed pages plus swap, as
  ``totalram_pages() + total_swap_pages``); page tables are not modelled, so an owner
  holding nothing scores only its adjustment (it can still be chosen, and frees
  nothing). An owner with ``oom_score_adj`` -1000 is never chosen. Equal scores pick
  the owner created last, as the kernel's process walk keeps the later of two equal
  tasks.
- The kill frees everything at once (the oom_reaper's work, priced ``oom_kill_ns``); there
  is no window in which the victim still holds memory, so ``out_of_memory()`` never waits
  for an earlier victim.
- No cpuset or mempolicy constraint (``constrained_alloc()`` is CONSTRAINT_NONE), no
  ``panic_on_oom`` and no ``oom_kill_allocating_task``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from simcore.mm.gfp import GFP

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
GFP_FS = int(GFP.FS)


class KernelPanic(Exception):
    """The kernel would have panicked: the run ends with status ``panic``."""

    def __init__(self, reason: str, time_ns: int = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.time_ns = time_ns


@dataclass(frozen=True)
class OomCandidate:
    """One owner as ``select_bad_process()`` sees it.

    Attributes:
        name: The owner (caller) name.
        rss_pages: Pages it holds (``get_mm_rss()``).
        swap_pages: Its pages in swap (``MM_SWAPENTS``).
        oom_score_adj: -1000..1000.
        killable: False for kernel-owned memory (``oom_unkillable_task()``).
    """

    name: str
    rss_pages: int
    swap_pages: int
    oom_score_adj: int = 0
    killable: bool = True


def oom_badness(c: OomCandidate, totalpages: int) -> int | None:
    """``oom_badness()``: None for an owner that is never chosen."""
    if not c.killable or c.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    return c.rss_pages + c.swap_pages + c.oom_score_adj * (totalpages // 1000)


def select_bad_process(candidates: Sequence[OomCandidate], totalpages: int) -> str | None:
    """``select_bad_process()``: the owner with the highest badness (later wins ties)."""
    chosen, chosen_points = None, None
    for c in candidates:
        points = oom_badness(c, totalpages)
        if points is None or chosen_points is not None and points < chosen_points:
            continue
        chosen, chosen_points = c.name, points
    return chosen


def out_of_memory(
    gfp: int, order: int, totalpages: int, candidates: Sequence[OomCandidate],
    kill: Callable[[str], int],
) -> tuple[bool, str | None, int]:
    """``out_of_memory()``: kill the worst owner. Returns ``(progress, victim, pages)``.

    A request without ``__GFP_FS`` kills nothing and reports progress ("the OOM killer
    does not compensate for IO-less reclaim"), so the caller retries.

    Raises:
        KernelPanic: No owner can be killed ("Out of memory and no killable
            processes..." then ``panic("System is deadlocked on memory")``).
    """
    if gfp and not gfp & GFP_FS:
        return True, None, 0
    victim = select_bad_process(candidates, totalpages)
    if victim is None:
        raise KernelPanic("Out of memory and no killable processes...: "
                          "System is deadlocked on memory")
    return True, victim, kill(victim)
