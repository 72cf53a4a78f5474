"""Parameters of the ``nofree`` workload: permanent ``kmem_malloc(M_NEVERFREED)`` calls.

A what-if on the Linux model (see :mod:`workloads.nofree`): the YAML keys, parsed into
:class:`NofreeParams`, their dump, and the checks against the machine.

Example::

    - name: boot-tables
      type: nofree
      rate: 500/s
      size: {4KiB: 0.9, 16KiB: 0.1}    # pages per call
      mode: nofree                     # or scattered (plain unmovable order-0 pages)
      partial_failure: free_to_nofree  # or leak, batch
      # optional: gfp (GFP_KERNEL), import_order (9), import_gfp, cpus, nid,
      # max_requests, start
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from simcore.config.fields import (
    child,
    expect_duration_ns,
    expect_int,
    expect_mapping,
    expect_rate_per_s,
    expect_str,
)
from simcore.config.schema import names, required
from simcore.config.types import MachineConfig
from simcore.config.units import format_duration, format_rate, format_size
from simcore.errors import ConfigError
from simcore.mm.gfp import GFP
from workloads.schema import NOFREE
from workloads.synthetic_params import _cpus, _gfp, _optional_int, check_cpus_and_node
from workloads.vmalloc import _size_weights

NOFREE_KEYS = names(NOFREE)
NOFREE_REQUIRED = required(NOFREE)
MODES = ("nofree", "scattered")
"""``nofree``: clustered in imported chunks (FreeBSD); ``scattered``: plain order-0 pages."""
POLICIES = ("leak", "free_to_nofree", "batch")
"""What a non-blocking call that fails part-way does with the pages it obtained."""
VM_NOFREE_IMPORT_ORDER = 9
"""amd64 (one reservation level): ``VM_LEVEL_0_ORDER``, a 2 MiB chunk, one pageblock."""
NOT_KERNEL = int(GFP.MOVABLE | GFP.RECLAIMABLE)
"""NOFREE pages are wired kernel memory: unmovable, never reclaimed."""
GFP_COMP = int(GFP.COMP)


@dataclass(frozen=True)
class NofreeParams:
    """Parsed parameters of one ``nofree`` workload.

    Attributes:
        rate_per_s: Poisson arrival rate of ``kmem_malloc(M_NEVERFREED)`` calls.
        size_weights: ``(pages, probability)`` pairs: pages per call.
        gfp: The caller's mask (default ``GFP_KERNEL``). Blocking (``__GFP_DIRECT_RECLAIM``)
            plays ``M_WAITOK``; a non-blocking mask (``GFP_NOWAIT``, ``GFP_ATOMIC``)
            plays ``M_NOWAIT``.
        mode: ``nofree`` (clustered in imported chunks) or ``scattered`` (the baseline).
        import_order: Order of a NOFREE chunk (``VM_NOFREE_IMPORT_ORDER``).
        import_gfp: Mask of a chunk import; None derives it from ``gfp``
            (:func:`workloads.nofree.nofree_import_gfp`).
        partial_failure: ``leak``, ``free_to_nofree`` or ``batch`` (:data:`POLICIES`).
        cpus, nid, max_requests, start_ns: As for the synthetic workload (``nid`` None:
            the issuing CPU's node; ``max_requests`` counts calls).
    """

    rate_per_s: float
    size_weights: tuple[tuple[int, float], ...]
    gfp: int
    mode: str = "nofree"
    import_order: int = VM_NOFREE_IMPORT_ORDER
    import_gfp: int | None = None
    partial_failure: str = "free_to_nofree"
    cpus: tuple[int, ...] | None = None
    nid: int | None = None
    max_requests: int | None = None
    start_ns: int = 0


def _kernel_gfp(value: object, key: str, source: str, chunk: bool = False) -> int:
    """A gfp mask for wired kernel pages: no ``__GFP_MOVABLE``/``__GFP_RECLAIMABLE``.

    A chunk's mask (``chunk``) must not have ``__GFP_COMP`` either: it is ``split_page()``'d.
    """
    gfp = _gfp(value, key, source)
    if gfp & NOT_KERNEL:
        raise ConfigError(source, key, "a kernel mask without __GFP_MOVABLE or "
                          "__GFP_RECLAIMABLE (NOFREE pages are wired, unmovable memory)",
                          value)
    if chunk and gfp & GFP_COMP:
        raise ConfigError(source, key, "a mask without __GFP_COMP (the chunk is "
                          "split_page()'d, which refuses a compound page)", value)
    return gfp


def parse_nofree_params(raw: Mapping[str, object], key_prefix: str,
                        source: str) -> Mapping[str, object]:
    """Parse a ``nofree`` workload's own keys; ``rate`` and ``size`` are required.

    Raises:
        ConfigError: Naming e.g. ``workloads[0].partial_failure``.
    """
    data = expect_mapping(raw, key_prefix, source, NOFREE_KEYS, NOFREE_REQUIRED)

    def key(name: str) -> str:
        return child(key_prefix, name)

    import_gfp = data.get("import_gfp")
    return {"params": NofreeParams(
        rate_per_s=expect_rate_per_s(data["rate"], key("rate"), source),
        size_weights=_size_weights(data["size"], key("size"), source),
        gfp=_kernel_gfp(data.get("gfp", "GFP_KERNEL"), key("gfp"), source),
        mode=expect_str(data.get("mode", "nofree"), key("mode"), source, MODES),
        import_order=expect_int(data.get("import_order", VM_NOFREE_IMPORT_ORDER),
                                key("import_order"), source, 0),
        import_gfp=None if import_gfp is None else _kernel_gfp(import_gfp, key("import_gfp"),
                                                               source, chunk=True),
        partial_failure=expect_str(data.get("partial_failure", "free_to_nofree"),
                                   key("partial_failure"), source, POLICIES),
        cpus=_cpus(data.get("cpus"), key("cpus"), source),
        nid=_optional_int(data.get("nid"), key("nid"), source, 0),
        max_requests=_optional_int(data.get("max_requests"), key("max_requests"), source, 1),
        start_ns=expect_duration_ns(data.get("start", "0ns"), key("start"), source),
    )}


def check_nofree_params(params: Mapping[str, object], machine: MachineConfig,
                        key_prefix: str, source: str) -> None:
    """Reject what the machine cannot run: unknown CPUs or node, a chunk too large.

    A chunk above ``machine.max_order`` could never be imported, and a call larger than
    the machine's memory never backed.
    """
    p = params["params"]
    assert isinstance(p, NofreeParams)
    check_cpus_and_node(p.cpus, p.nid, machine, key_prefix, source)
    if p.import_order > machine.max_order:
        raise ConfigError(source, child(key_prefix, "import_order"),
                          f"an order in 0..{machine.max_order} (machine.max_order)",
                          p.import_order)
    total = sum(node.memory_pages for node in machine.nodes)
    too_big = [pages for pages, _ in p.size_weights if pages > total]
    if too_big:
        raise ConfigError(source, child(key_prefix, "size"),
                          f"calls no larger than the machine's memory ({total} pages)",
                          f"{max(too_big)} pages")


def dump_nofree_params(params: Mapping[str, object]) -> dict[str, object]:
    """Invert :func:`parse_nofree_params`, in human units."""
    from simcore.mm.gfp import format_gfp

    p = params["params"]
    if not isinstance(p, NofreeParams):
        raise TypeError(f"expected NofreeParams under 'params', got {p!r}")
    sizes = {format_size(pages * 4096): w for pages, w in p.size_weights}
    return {
        "rate": format_rate(p.rate_per_s),
        "size": next(iter(sizes)) if len(sizes) == 1 else sizes,
        "gfp": format_gfp(p.gfp),
        "mode": p.mode,
        "import_order": p.import_order,
        "import_gfp": None if p.import_gfp is None else format_gfp(p.import_gfp),
        "partial_failure": p.partial_failure,
        "cpus": None if p.cpus is None else list(p.cpus),
        "nid": p.nid,
        "max_requests": p.max_requests,
        "start": format_duration(p.start_ns),
    }
