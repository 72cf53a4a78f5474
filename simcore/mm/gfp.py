"""GFP flags, their decoding, and the allocation flags derived from them.

Models the 6.1 ``gfp_t`` bits (``include/linux/gfp_types.h``), their decoding helpers
(``include/linux/gfp.h``: ``gfp_zone``, ``gfp_migratetype``, ``gfpflags_allow_blocking``,
``gfp_zonelist``), the trace spelling (``__def_gfpflag_names`` in
``include/trace/events/mmflags.h``, printed by ``trace_print_flags_seq()``), the ``ALLOC_*``
flags of ``mm/internal.h`` and their derivation in ``mm/page_alloc.c``
(``gfp_to_alloc_flags``, ``__gfp_pfmemalloc_flags``, ``gfp_to_alloc_flags_cma``) and the
scoped context of ``include/linux/sched/mm.h`` (``current_gfp_context``).

The configuration modelled is x86_64 with ``CONFIG_ZONE_DMA``, ``CONFIG_ZONE_DMA32``,
``CONFIG_NUMA`` and ``CONFIG_MMU``, and without ``CONFIG_HIGHMEM``, ``CONFIG_KASAN_HW_TAGS`` or
``CONFIG_LOCKDEP``. Under it ``__GFP_SKIP_ZERO``, ``__GFP_SKIP_KASAN_UNPOISON``,
``__GFP_SKIP_KASAN_POISON`` and ``__GFP_NOLOCKDEP`` are all 0, so :class:`GFP` has no member
for them (a zero-valued flag member would be meaningless). Their bits (0x1000000..0x8000000)
still parse and format as hex leftovers, exactly as the kernel's tracer prints unknown bits.

The decoders used on the allocator hot path (:func:`gfp_zone`, :func:`gfp_migratetype`,
:func:`gfpflags_allow_blocking`, :func:`gfp_thisnode`) take plain ints and use only int
operations and tuple lookups.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from types import MappingProxyType

from simcore.errors import AllocsimError, short_repr
from simcore.mm import constants as c
from simcore.mm.constants import MigrateType, WatermarkIndex, ZoneType


class GfpError(AllocsimError, ValueError):
    """A gfp mask that the kernel would reject (``VM_BUG_ON``/``VM_WARN_ON``)."""


class GfpParseError(GfpError):
    """A gfp string that cannot be parsed; ``token`` is the offending part."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


class GFP(enum.IntFlag):
    """The ``__GFP_*`` bits of Linux 6.1 (``include/linux/gfp_types.h``), x86_64 values.

    Names drop the leading ``__GFP_``: ``GFP.DIRECT_RECLAIM`` is ``__GFP_DIRECT_RECLAIM``.
    """

    DMA = 0x1
    HIGHMEM = 0x2
    DMA32 = 0x4
    MOVABLE = 0x8
    RECLAIMABLE = 0x10
    HIGH = 0x20
    IO = 0x40
    FS = 0x80
    ZERO = 0x100
    ATOMIC = 0x200  # removed in 6.3; GFP_ATOMIC's "may dip deeper" marker in 6.1
    DIRECT_RECLAIM = 0x400
    KSWAPD_RECLAIM = 0x800
    WRITE = 0x1000
    NOWARN = 0x2000
    RETRY_MAYFAIL = 0x4000
    NOFAIL = 0x8000
    NORETRY = 0x10000
    MEMALLOC = 0x20000
    COMP = 0x40000
    NOMEMALLOC = 0x80000
    HARDWALL = 0x100000
    THISNODE = 0x200000
    ACCOUNT = 0x400000
    ZEROTAGS = 0x800000


# Composite masks (include/linux/gfp_types.h, include/linux/thread_info.h, mm/internal.h).
GFP_RECLAIM: GFP = GFP.DIRECT_RECLAIM | GFP.KSWAPD_RECLAIM
"""``__GFP_RECLAIM`` (0xc00)."""
GFP_ATOMIC: GFP = GFP.HIGH | GFP.ATOMIC | GFP.KSWAPD_RECLAIM
GFP_KERNEL: GFP = GFP_RECLAIM | GFP.IO | GFP.FS
GFP_KERNEL_ACCOUNT: GFP = GFP_KERNEL | GFP.ACCOUNT
GFP_NOWAIT: GFP = GFP.KSWAPD_RECLAIM
GFP_NOIO: GFP = GFP_RECLAIM
GFP_NOFS: GFP = GFP_RECLAIM | GFP.IO
GFP_USER: GFP = GFP_RECLAIM | GFP.IO | GFP.FS | GFP.HARDWALL
GFP_DMA: GFP = GFP.DMA
GFP_DMA32: GFP = GFP.DMA32
GFP_HIGHUSER: GFP = GFP_USER | GFP.HIGHMEM
# The two __GFP_SKIP_KASAN_* bits of GFP_HIGHUSER_MOVABLE are 0 without KASAN_HW_TAGS.
GFP_HIGHUSER_MOVABLE: GFP = GFP_HIGHUSER | GFP.MOVABLE
GFP_TRANSHUGE_LIGHT: GFP = (
    GFP_HIGHUSER_MOVABLE | GFP.COMP | GFP.NOMEMALLOC | GFP.NOWARN
) & ~GFP_RECLAIM
GFP_TRANSHUGE: GFP = GFP_TRANSHUGE_LIGHT | GFP.DIRECT_RECLAIM
THREADINFO_GFP: GFP = GFP_KERNEL_ACCOUNT | GFP.ZERO
GFP_RECLAIM_MASK: GFP = (
    GFP_RECLAIM | GFP.HIGH | GFP.IO | GFP.FS | GFP.NOWARN | GFP.RETRY_MAYFAIL | GFP.NOFAIL
    | GFP.NORETRY | GFP.MEMALLOC | GFP.NOMEMALLOC | GFP.ATOMIC
)
"""Flags that influence reclaim behaviour (``mm/internal.h``; ``__GFP_NOLOCKDEP`` is 0)."""
GFP_ZONEMASK: GFP = GFP.DMA | GFP.HIGHMEM | GFP.DMA32 | GFP.MOVABLE

_COMPOSITE_BY_NAME: Mapping[str, GFP] = MappingProxyType({
    "GFP_TRANSHUGE": GFP_TRANSHUGE, "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE, "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_USER": GFP_USER, "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT, "GFP_KERNEL": GFP_KERNEL,
    "GFP_NOFS": GFP_NOFS, "GFP_ATOMIC": GFP_ATOMIC, "GFP_NOIO": GFP_NOIO,
    "GFP_NOWAIT": GFP_NOWAIT, "GFP_DMA": GFP_DMA, "GFP_DMA32": GFP_DMA32,
    "__GFP_RECLAIM": GFP_RECLAIM, "THREADINFO_GFP": THREADINFO_GFP,
})
GFPFLAG_NAMES: tuple[tuple[GFP, str], ...] = tuple(
    (_COMPOSITE_BY_NAME.get(name) or GFP[name.removeprefix("__GFP_")], name)
    for name in (
        "GFP_TRANSHUGE", "GFP_TRANSHUGE_LIGHT", "GFP_HIGHUSER_MOVABLE", "GFP_HIGHUSER",
        "GFP_USER", "GFP_KERNEL_ACCOUNT", "GFP_KERNEL", "GFP_NOFS", "GFP_ATOMIC", "GFP_NOIO",
        "GFP_NOWAIT", "GFP_DMA", "__GFP_HIGHMEM", "GFP_DMA32", "__GFP_HIGH", "__GFP_ATOMIC",
        "__GFP_IO", "__GFP_FS", "__GFP_NOWARN", "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL",
        "__GFP_NORETRY", "__GFP_COMP", "__GFP_ZERO", "__GFP_NOMEMALLOC", "__GFP_MEMALLOC",
        "__GFP_HARDWALL", "__GFP_THISNODE", "__GFP_RECLAIMABLE", "__GFP_MOVABLE",
        "__GFP_ACCOUNT", "__GFP_WRITE", "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM",
        "__GFP_KSWAPD_RECLAIM", "__GFP_ZEROTAGS",
    )
)
"""``__def_gfpflag_names`` (``include/trace/events/mmflags.h``): the order ftrace and
``%pGg`` try names in. Composites come first so the greedy match picks the largest."""

# Plain-int copy of the table for format_gfp(), and every spelling parse_gfp() accepts:
# the table's names plus "__GFP_<member>" for every bit (e.g. "__GFP_DMA").
_FORMAT_TABLE: tuple[tuple[int, str], ...] = tuple((int(m), n) for m, n in GFPFLAG_NAMES)
_NAME_TO_VALUE: Mapping[str, int] = MappingProxyType({
    **{f"__GFP_{m.name}": int(m) for m in GFP},
    **{n: int(m) for n, m in _COMPOSITE_BY_NAME.items()},
})
_GFP_T_LIMIT = 1 << 32  # gfp_t is an unsigned int


def format_gfp(gfp: int) -> str:
    """Format a gfp mask exactly as ftrace prints ``gfp_flags=``.

    Mirrors ``show_gfp_flags()`` / ``trace_print_flags_seq()``: walk
    :data:`GFPFLAG_NAMES` in order, emit each name whose bits are all still set and clear
    them, then print leftover bits in hex. 0 is ``"none"``.

    Args:
        gfp: The gfp mask (``GFP`` or plain int).

    Returns:
        The ``|``-joined kernel spelling, e.g. ``"GFP_KERNEL|__GFP_COMP"``.
    """
    rest = int(gfp)
    if rest == 0:
        return "none"
    parts: list[str] = []
    for mask, name in _FORMAT_TABLE:
        if rest & mask == mask:
            parts.append(name)
            rest &= ~mask
            if rest == 0:
                break
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


def parse_gfp(text: str) -> GFP:
    """Parse a gfp string in the kernel's spelling, as printed by ftrace.

    Accepts ``|``-joined names (``"GFP_KERNEL|__GFP_COMP"``, whitespace around tokens is
    ignored), hex tokens (``"0x1000000"``, also whole masks like ``"0xcc0"``) and ``"none"``.

    Args:
        text: The gfp string.

    Returns:
        The mask as :class:`GFP`.

    Raises:
        GfpParseError: A token is not a known name or valid hex; the message names the token
            and suggests close valid names.
    """
    if text.strip() == "none":
        return GFP(0)
    value = 0
    for raw in text.split("|"):
        value |= _parse_gfp_token(raw.strip(), text)
    return GFP(value)


def _parse_gfp_token(token: str, text: str) -> int:
    """Return the bits of one ``|``-separated token of ``text``."""
    known = _NAME_TO_VALUE.get(token)
    if known is not None:
        return known
    if token[:2].lower() == "0x":
        try:
            bits = int(token, 16)
        except ValueError:
            bits = -1
        if 0 <= bits < _GFP_T_LIMIT:
            return bits
        raise GfpParseError(f"bad hex gfp token {short_repr(token)} in {short_repr(text)}", token)
    close = difflib.get_close_matches(token[:100], list(_NAME_TO_VALUE), n=3)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise GfpParseError(f"unknown gfp flag {short_repr(token)} in {short_repr(text)}{hint}",
                        token)


# gfp_zone(): GFP_ZONE_TABLE and GFP_ZONE_BAD (include/linux/gfp.h), indexed by the four
# zone bits DMA|HIGHMEM|DMA32|MOVABLE. On x86_64 OPT_ZONE_HIGHMEM is ZONE_NORMAL; None marks
# the GFP_ZONE_BAD combinations (two of DMA/HIGHMEM/DMA32, with or without MOVABLE).
_N, _D, _D32, _MV = ZoneType.NORMAL, ZoneType.DMA, ZoneType.DMA32, ZoneType.MOVABLE
_GFP_ZONE_TABLE: tuple[ZoneType | None, ...] = (
    _N, _D, _N, None, _D32, None, None, None,  # 0x0-0x7: without MOVABLE
    _N, _D, _MV, None, _D32, None, None, None,  # 0x8-0xf: MOVABLE + (none, DMA, HIGHMEM, ...)
)
_MOVABLE_MASK = int(GFP.MOVABLE | GFP.RECLAIMABLE)
_MOVABLE_SHIFT = 3
# Hot-path bit tests are bound int.__and__ methods: `gfp & mask` on a GFP argument would
# build a new IntFlag (~1 us); `mask.__and__(gfp)` always yields a plain int (~35 ns).
_zone_bits = int(GFP_ZONEMASK).__and__
_mobility_bits = _MOVABLE_MASK.__and__
_direct_reclaim_bit = int(GFP.DIRECT_RECLAIM).__and__
_thisnode_bit = int(GFP.THISNODE).__and__


def gfp_zone(gfp: int) -> ZoneType:
    """Return the highest zone the mask may use; mirrors ``gfp_zone()`` in gfp.h.

    Args:
        gfp: The gfp mask.

    Returns:
        ``ac->highest_zoneidx`` for an allocation with this mask.

    Raises:
        GfpError: The zone bits are a ``GFP_ZONE_BAD`` combination (the kernel's
            ``VM_BUG_ON``).
    """
    zone = _GFP_ZONE_TABLE[_zone_bits(gfp)]
    if zone is None:
        raise GfpError(f"invalid zone modifiers in gfp {format_gfp(_zone_bits(gfp))}")
    return zone


def gfp_migratetype(gfp: int, group_by_mobility: bool = True) -> int:
    """Return the requested migratetype; mirrors ``gfp_migratetype()`` in gfp.h.

    Args:
        gfp: The gfp mask.
        group_by_mobility: False when ``page_group_by_mobility_disabled`` (tiny memory):
            everything is then ``MIGRATE_UNMOVABLE``.

    Returns:
        A :class:`MigrateType` value: UNMOVABLE, MOVABLE or RECLAIMABLE.

    Raises:
        GfpError: Both ``__GFP_MOVABLE`` and ``__GFP_RECLAIMABLE`` are set.
    """
    bits = _mobility_bits(gfp)
    if bits == _MOVABLE_MASK:
        # SIMPLIFICATION: the kernel only VM_WARN_ONs and returns 3, which aliases
        # MIGRATE_HIGHATOMIC; no legitimate caller does this, so we refuse it.
        raise GfpError("gfp has both __GFP_MOVABLE and __GFP_RECLAIMABLE")
    if not group_by_mobility:
        return MigrateType.UNMOVABLE.value
    return bits >> _MOVABLE_SHIFT


def gfpflags_allow_blocking(gfp: int) -> bool:
    """Return whether the caller may sleep (``__GFP_DIRECT_RECLAIM``); mirrors gfp.h."""
    return _direct_reclaim_bit(gfp) != 0


def gfp_thisnode(gfp: int) -> bool:
    """Return True if the NOFALLBACK zonelist is used; mirrors ``gfp_zonelist()`` (NUMA)."""
    return _thisnode_bit(gfp) != 0


def current_gfp_context(
    gfp: int, *, memalloc_noio: bool = False, memalloc_nofs: bool = False,
    memalloc_pin: bool = False,
) -> GFP:
    """Apply the task's scoped constraints; mirrors ``current_gfp_context()`` (sched/mm.h).

    Args:
        gfp: The caller's gfp mask.
        memalloc_noio: ``PF_MEMALLOC_NOIO`` is set: clear ``__GFP_IO`` and ``__GFP_FS``.
        memalloc_nofs: ``PF_MEMALLOC_NOFS`` is set: clear ``__GFP_FS``.
        memalloc_pin: ``PF_MEMALLOC_PIN`` is set: clear ``__GFP_MOVABLE``.

    Returns:
        The effective mask.
    """
    # Plain-int masks: inverting an IntFlag would also drop bits that have no member.
    value = int(gfp)
    if memalloc_noio:
        value &= ~int(GFP.IO | GFP.FS)
    elif memalloc_nofs:
        value &= ~int(GFP.FS)
    if memalloc_pin:
        value &= ~int(GFP.MOVABLE)
    return GFP(value)


class AllocFlags(enum.IntFlag):
    """The ``ALLOC_*`` flags of ``mm/internal.h`` (6.1, MMU, ZONE_DMA32).

    Values come from the plain-int ``ALLOC_*`` constants in :mod:`simcore.mm.constants`, which
    hot-path code uses directly.

    The low two bits are not flags but a watermark index (``ALLOC_WMARK_MASK``); read and
    set them with :func:`alloc_wmark` and :func:`with_wmark`.
    """

    WMARK_MIN = c.ALLOC_WMARK_MIN
    WMARK_LOW = c.ALLOC_WMARK_LOW
    WMARK_HIGH = c.ALLOC_WMARK_HIGH
    WMARK_MASK = c.ALLOC_WMARK_MASK
    NO_WATERMARKS = c.ALLOC_NO_WATERMARKS
    OOM = c.ALLOC_OOM
    HARDER = c.ALLOC_HARDER
    HIGH = c.ALLOC_HIGH
    CPUSET = c.ALLOC_CPUSET
    CMA = c.ALLOC_CMA
    NOFRAGMENT = c.ALLOC_NOFRAGMENT
    KSWAPD = c.ALLOC_KSWAPD


_WMARK_MASK = int(AllocFlags.WMARK_MASK)
_WMARK_BY_INDEX: tuple[WatermarkIndex, ...] = (
    WatermarkIndex.MIN, WatermarkIndex.LOW, WatermarkIndex.HIGH, WatermarkIndex.PROMO,
)
# ALLOC_HIGH and ALLOC_KSWAPD are bit-identical to __GFP_HIGH and __GFP_KSWAPD_RECLAIM, the
# kernel copies them with one AND (BUILD_BUG_ON in gfp_to_alloc_flags(); checked in tests).


def alloc_wmark(flags: int) -> WatermarkIndex:
    """Return the watermark the flags test (``alloc_flags & ALLOC_WMARK_MASK``)."""
    return _WMARK_BY_INDEX[flags & _WMARK_MASK]


def with_wmark(flags: int, idx: WatermarkIndex) -> AllocFlags:
    """Return ``flags`` with its watermark index replaced by ``idx`` (MIN, LOW or HIGH).

    Raises:
        ValueError: ``idx`` is not MIN, LOW or HIGH (no ``ALLOC_WMARK_*`` exists for it).
    """
    if idx not in (WatermarkIndex.MIN, WatermarkIndex.LOW, WatermarkIndex.HIGH):
        raise ValueError(f"no ALLOC_WMARK_* for watermark {idx!r}")
    return AllocFlags((int(flags) & ~_WMARK_MASK) | int(idx))


def format_alloc_flags(flags: int) -> str:
    """Format alloc flags as ``"ALLOC_WMARK_LOW|ALLOC_KSWAPD"``.

    The watermark index comes first (``ALLOC_WMARK_MIN`` for 0), then the set bits in
    ascending order, then unknown bits in hex.
    """
    idx = int(flags) & _WMARK_MASK
    parts = [f"ALLOC_WMARK_{WatermarkIndex(idx).name}" if idx < 3 else f"{idx:#x}"]
    rest = int(flags) & ~_WMARK_MASK
    for member in AllocFlags:
        if member.value > _WMARK_MASK and rest & member.value:
            parts.append(f"ALLOC_{member.name}")
            rest &= ~member.value
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


def _alloc_flags_cma(gfp: int, flags: int, cma: bool) -> int:
    """Add ``ALLOC_CMA`` for movable requests; mirrors ``gfp_to_alloc_flags_cma()``."""
    if cma and gfp_migratetype(gfp) == MigrateType.MOVABLE:
        flags |= AllocFlags.CMA
    return flags


def fast_path_alloc_flags(gfp: int, *, cma: bool = False) -> AllocFlags:
    """Return the gfp-derived alloc flags of the first attempt in ``__alloc_pages()``.

    ``ALLOC_WMARK_LOW``, plus ``ALLOC_CMA`` (``prepare_alloc_pages()``) and the
    ``__GFP_KSWAPD_RECLAIM`` bit as ``ALLOC_KSWAPD`` (``alloc_flags_nofragment()``). Never
    ``ALLOC_HIGH``/``ALLOC_HARDER``, whatever the gfp (behaviour 26). ``ALLOC_NOFRAGMENT``
    depends on the preferred zone and is added by the allocator, not here.

    Args:
        gfp: The effective gfp mask (after :func:`current_gfp_context`).
        cma: The kernel has ``CONFIG_CMA``.
    """
    # SIMPLIFICATION: cpusets are not modelled, so prepare_alloc_pages() never adds
    # ALLOC_CPUSET here.
    flags = int(AllocFlags.WMARK_LOW) | (int(gfp) & AllocFlags.KSWAPD)
    return AllocFlags(_alloc_flags_cma(gfp, flags, cma))


def gfp_to_alloc_flags(gfp: int, *, rt_task: bool = False, cma: bool = False) -> AllocFlags:
    """Return the slow-path alloc flags; mirrors ``gfp_to_alloc_flags()`` in page_alloc.c.

    ``ALLOC_WMARK_MIN | ALLOC_CPUSET`` plus the HIGH and KSWAPD_RECLAIM bits of gfp;
    ``__GFP_ATOMIC`` adds ``ALLOC_HARDER`` (unless ``__GFP_NOMEMALLOC``) and drops
    ``ALLOC_CPUSET``; otherwise a real-time task gets ``ALLOC_HARDER``. Then ``ALLOC_CMA``.

    Args:
        gfp: The effective gfp mask.
        rt_task: The caller is a real-time task in task context (``rt_task(current) &&
            in_task()``).
        cma: The kernel has ``CONFIG_CMA``.
    """
    flags = int(AllocFlags.WMARK_MIN | AllocFlags.CPUSET)
    flags |= int(gfp) & int(AllocFlags.HIGH | AllocFlags.KSWAPD)
    if gfp & GFP.ATOMIC:
        if not gfp & GFP.NOMEMALLOC:
            flags |= AllocFlags.HARDER
        flags &= ~int(AllocFlags.CPUSET)
    elif rt_task:
        flags |= AllocFlags.HARDER
    return AllocFlags(_alloc_flags_cma(gfp, flags, cma))


def gfp_pfmemalloc_flags(
    gfp: int, *, pf_memalloc: bool = False, oom_victim: bool = False,
    in_interrupt: bool = False, in_serving_softirq: bool = False,
) -> AllocFlags:
    """Return the reserve access of a request; mirrors ``__gfp_pfmemalloc_flags()``.

    Args:
        gfp: The gfp mask.
        pf_memalloc: The task has ``PF_MEMALLOC`` (kswapd, direct reclaimers).
        oom_victim: The task is an OOM victim (``tsk_is_oom_victim``).
        in_interrupt: Called from hard or soft interrupt context.
        in_serving_softirq: Called while serving a softirq (implies ``in_interrupt``).

    Returns:
        ``ALLOC_NO_WATERMARKS``, ``ALLOC_OOM`` or 0 (no reserve access).
    """
    if gfp & GFP.NOMEMALLOC:
        return AllocFlags(0)
    if gfp & GFP.MEMALLOC or (in_serving_softirq and pf_memalloc):
        return AllocFlags.NO_WATERMARKS
    if not (in_interrupt or in_serving_softirq):
        if pf_memalloc:
            return AllocFlags.NO_WATERMARKS
        if oom_victim:
            return AllocFlags.OOM
    return AllocFlags(0)


def reserve_alloc_flags(
    gfp: int, reserve_flags: int, alloc_flags: int, *, cma: bool = False
) -> AllocFlags:
    """Return the retry-loop flags when reserves are granted (``__alloc_pages_slowpath``).

    The flags are replaced by ``reserve_flags | ALLOC_CMA (movable) | (old & ALLOC_KSWAPD)``:
    the watermark index becomes MIN and ``ALLOC_CPUSET`` is dropped.

    Args:
        gfp: The gfp mask.
        reserve_flags: Non-zero result of :func:`gfp_pfmemalloc_flags`.
        alloc_flags: The current slow-path flags.
        cma: The kernel has ``CONFIG_CMA``.
    """
    flags = _alloc_flags_cma(gfp, int(reserve_flags), cma) | (int(alloc_flags) & AllocFlags.KSWAPD)
    return AllocFlags(flags)
