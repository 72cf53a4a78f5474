"""The ``pinned`` caller: long-lived unmovable pages, such as the buffers of idle pipes.

Mirrors fs/pipe.c of 6.1 as the oracle's fragmentation recipe uses it (4096 pipes, each
holding one page written into it and never read): ``pipe_write()`` takes a new page for
each buffer with ``alloc_page(GFP_HIGHUSER | __GFP_ACCOUNT)`` (order 0, not compound,
UNMOVABLE: the page is neither on an LRU list nor ``__PageMovable``, so compaction
cannot move it), on the writer's node; the pages stay until the pipe is closed
(``free_pipe_info()`` releases every buffer). A write that cannot get a page stops
there (``-ENOMEM`` or a short write): the pipe keeps the pages written before.

SIMPLIFICATIONS: nothing reads the pipes, so the one-page ``tmp_page`` cache is never
filled; no ``pipe-user-pages-soft`` limit; the pages are kernel memory the OOM killer
does not weigh (``oom_badness()`` does not count pipe buffers), so the owner is never
chosen as a victim.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcore.config.fields import (
    child,
    expect_duration_ns,
    expect_int,
    expect_mapping,
    expect_rate_per_s,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig, WorkloadConfig
from simcore.config.units import format_duration, format_rate
from simcore.mm.gfp import GFP, GFP_HIGHUSER, format_gfp
from simcore.sim.machine import Allocation, Machine
from workloads.schema import PINNED
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
    _gfp,
    _lifetime,
    _optional_int,
    check_cpus_and_node,
)

PINNED_KEYS = names(PINNED)
PINNED_REQUIRED = required(PINNED)
PIPE_BUF_GFP = int(GFP_HIGHUSER | GFP.ACCOUNT)
"""``pipe_write()``: ``alloc_page(GFP_HIGHUSER | __GFP_ACCOUNT)``."""
PIPE_MAX_PAGES = 256
"""``/proc/sys/fs/pipe-max-size`` (1 MiB) in pages: the most buffers one pipe can hold."""


@dataclass(frozen=True)
class PinnedParams:
    """Parsed parameters of one ``pinned`` workload.

    Attributes:
        rate_per_s: Poisson arrival rate of pipes.
        pages: Pages written into each pipe (one buffer each).
        lifetime: How long a pipe stays open (default ``forever``).
        gfp: The buffers' mask (default ``GFP_HIGHUSER|__GFP_ACCOUNT``).
        cpus, nid, start_ns: As for the synthetic workload.
        max_requests: Stop after this many pipes.
    """

    rate_per_s: float
    pages: int = 1
    lifetime: LifetimeSpec = LifetimeSpec("forever")
    gfp: int = PIPE_BUF_GFP
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0

    def expected_requests(self, duration_ns: int) -> float:
        """Mean page allocations of a run of ``duration_ns``."""
        pipes = self.rate_per_s * max(0, duration_ns - self.start_ns) / 1e9
        if self.max_requests is not None:
            pipes = min(pipes, self.max_requests)
        return pipes * self.pages


def parse_pinned_params(raw: Mapping[str, object], key_prefix: str,
                        source: str) -> Mapping[str, object]:
    """Parse a ``pinned`` workload's keys; ``rate`` is required.

    Raises:
        ConfigError: Naming e.g. ``workloads[2].pages``.
    """
    data = expect_mapping(raw, key_prefix, source, PINNED_KEYS, PINNED_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    return {"params": PinnedParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        pages=expect_int(data.get("pages", 1), key("pages"), source, 1, PIPE_MAX_PAGES),
        lifetime=_lifetime(data.get("lifetime", "forever"), key("lifetime"), source),
        gfp=_gfp(data.get("gfp", format_gfp(PIPE_BUF_GFP)), key("gfp"), source),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
    )}


def check_pinned_params(params: Mapping[str, object], machine: MachineConfig,
                        key_prefix: str, source: str) -> None:
    """Reject CPUs or a node the machine does not have."""
    p = params["params"]
    assert isinstance(p, PinnedParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)


def dump_pinned_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_pinned_params`, in human units."""
    p = params["params"]
    if not isinstance(p, PinnedParams):
        raise TypeError(f"expected PinnedParams under 'params', got {p!r}")
    return {
        "rate": format_rate(p.rate_per_s),
        "pages": p.pages,
        "lifetime": _dump_lifetime(p.lifetime),
        "gfp": format_gfp(p.gfp),
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
    }


# -- fs/pipe.c ----------------------------------------------------------------------------
def pipe_write(machine: Machine, owner: str, p: PinnedParams,
               cpu: int) -> Generator[Any, Any, list[Allocation]]:
    """``pipe_write()`` of ``p.pages`` full pages into an empty pipe: its buffers' pages.

    Stops at the first page it cannot get (fewer pages than asked for).
    """
    bufs: list[Allocation] = []
    for _ in range(p.pages):
        page = yield from machine.alloc(owner, p.gfp, 0, cpu, p.nid)
        if page is None:
            break
        bufs.append(page)
    return bufs


def pinned_workload(machine: Machine, spec: WorkloadConfig,
                    rng: np.random.Generator) -> Generator[Any, Any, None]:
    """SimPy process body: pipes are created and filled, and closed after their lifetime.

    The close frees every buffer page through :meth:`Machine.defer_free` (no SimPy
    event). ``summary.json`` ``callers`` counts ``pipes``, ``pages`` and
    ``short_writes`` (pipes that got fewer pages than ``pages``). With
    ``max_requests`` the process ends after the last pipe is closed.
    """
    p: PinnedParams = spec.params["params"]
    name = spec.name
    machine.register_owner(name, killable=False)
    stats = caller_stats(machine, name, "pinned")
    env = machine.env
    cpus = issuing_cpus(machine, p.cpus)
    arrivals = poisson_arrivals(p.rate_per_s, ((p.pages, 1.0),), cpus, rng)
    lifetimes = _lifetimes(p.lifetime, rng)
    if p.start_ns:
        yield env.timeout(p.start_ns)
    last_expiry = 0
    issued = 0
    while p.max_requests is None or issued < p.max_requests:
        gap, _, cpu = next(arrivals)
        yield env.timeout(gap)
        bufs = yield from pipe_write(machine, name, p, cpu)
        issued += 1
        stats["pipes"] += 1
        stats["pages"] += len(bufs)
        if len(bufs) < p.pages:
            stats["short_writes"] += 1
        life = next(lifetimes)
        if life == FOREVER:
            continue
        expiry = int(env.now) + life
        last_expiry = max(last_expiry, expiry)
        for page in bufs:  # free_pipe_info(): every buffer released at the close
            machine.defer_free(page, expiry)
    yield from exit_after(machine, name, last_expiry)
