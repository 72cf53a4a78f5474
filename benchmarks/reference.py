"""The reference rate R and the interleaving of R with the figure it is compared with.

R is the event rate of a raw SimPy loop: 16 processes, each yielding ``env.timeout(1)``
in a loop, so every event is a plain timeout with no model code behind it. It stands for
"how fast is this interpreter on this machine right now". This machine is noisy (two
cores shared with other jobs), so R is measured right next to each figure, alternating
R, figure, R, figure, ..., R, and each side is summarized by its median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import simpy

PROCESSES = 16
"""Processes in the reference loop."""


def simpy_events_per_s(steps: int) -> float:
    """R: timeouts per wall second of 16 SimPy processes that each yield ``steps`` of them.

    The count is the ``PROCESSES * steps`` timeouts; the 16 process start and end events
    are left out (they are noise next to the timeouts).
    """
    env = simpy.Environment()

    def proc(env: simpy.Environment) -> Generator[simpy.Event, Any, None]:
        for _ in range(steps):
            yield env.timeout(1)

    for _ in range(PROCESSES):
        env.process(proc(env))
    t0 = time.perf_counter()
    env.run()
    return PROCESSES * steps / (time.perf_counter() - t0)


@dataclass(frozen=True)
class Paired:
    """A figure measured in rounds, with R measured before, between and after them."""

    figure: float
    """Median of the figure's samples."""
    r: float
    """Median of the R samples taken around them."""
    figure_samples: tuple[float, ...]
    r_samples: tuple[float, ...]

    @property
    def ratio(self) -> float:
        """Figure over R."""
        return self.figure / self.r


def interleave(figure: Callable[[], float], r: Callable[[], float], rounds: int) -> Paired:
    """Alternate ``r()``, ``figure()``, ``r()``, ... for ``rounds`` figures; take medians."""
    r_samples = [r()]
    samples = []
    for _ in range(rounds):
        samples.append(figure())
        r_samples.append(r())
    return Paired(statistics.median(samples), statistics.median(r_samples),
                  tuple(samples), tuple(r_samples))
