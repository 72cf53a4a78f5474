"""Tests for simcore.mm.gfp: GFP bits, trace spelling, decoders and alloc-flag derivations.

Spec references are to /work/shared/spec/linux-page-alloc.md (§2, §3.1, §16).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.errors import AllocsimError
from simcore.mm import gfp as g
from simcore.mm.constants import MigrateType, WatermarkIndex, ZoneType
from simcore.mm.gfp import GFP, AllocFlags

DATA = Path(__file__).resolve().parents[1] / "data" / "gfp"


# --- §2.1 bit values -------------------------------------------------------------------

GFP_TYPES_H_BITS = {  # include/linux/gfp_types.h (6.1), KASAN_HW_TAGS and LOCKDEP off
    "DMA": 0x1, "HIGHMEM": 0x2, "DMA32": 0x4, "MOVABLE": 0x8, "RECLAIMABLE": 0x10,
    "HIGH": 0x20, "IO": 0x40, "FS": 0x80, "ZERO": 0x100, "ATOMIC": 0x200,
    "DIRECT_RECLAIM": 0x400, "KSWAPD_RECLAIM": 0x800, "WRITE": 0x1000, "NOWARN": 0x2000,
    "RETRY_MAYFAIL": 0x4000, "NOFAIL": 0x8000, "NORETRY": 0x10000, "MEMALLOC": 0x20000,
    "COMP": 0x40000, "NOMEMALLOC": 0x80000, "HARDWALL": 0x100000, "THISNODE": 0x200000,
    "ACCOUNT": 0x400000, "ZEROTAGS": 0x800000,
}


def test_gfp_bit_values_match_gfp_types_h() -> None:
    assert {m.name: m.value for m in GFP} == GFP_TYPES_H_BITS


def test_no_zero_valued_or_underscored_members() -> None:
    # SKIP_* and NOLOCKDEP are 0 in this config, so they must not be members.
    assert all(m.value != 0 and not (m.name or "_").startswith("_") for m in GFP)
    assert not hasattr(GFP, "SKIP_ZERO") and not hasattr(GFP, "NOLOCKDEP")


def test_alloc_flags_share_bits_with_gfp() -> None:
    # BUILD_BUG_ONs in gfp_to_alloc_flags(): the kernel copies these bits with one AND.
    assert int(GFP.HIGH) == int(AllocFlags.HIGH)
    assert int(GFP.KSWAPD_RECLAIM) == int(AllocFlags.KSWAPD)


# --- §2.2 composites ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GFP_ATOMIC", 0xA20), ("GFP_KERNEL", 0xCC0), ("GFP_KERNEL_ACCOUNT", 0x400CC0),
        ("GFP_NOWAIT", 0x800), ("GFP_NOIO", 0xC00), ("GFP_NOFS", 0xC40),
        ("GFP_USER", 0x100CC0), ("GFP_DMA", 0x1), ("GFP_DMA32", 0x4),
        ("GFP_HIGHUSER", 0x100CC2), ("GFP_HIGHUSER_MOVABLE", 0x100CCA),
        ("GFP_TRANSHUGE_LIGHT", 0x1C20CA), ("GFP_TRANSHUGE", 0x1C24CA),
        ("THREADINFO_GFP", 0x400DC0), ("GFP_RECLAIM", 0xC00),
        # mm/internal.h: RECLAIM|HIGH|IO|FS|NOWARN|RETRY_MAYFAIL|NOFAIL|NORETRY|MEMALLOC|
        # NOMEMALLOC|ATOMIC (NOLOCKDEP = 0).
        ("GFP_RECLAIM_MASK", 0xBEEE0),
    ],
)
def test_composite_hex_values(name: str, value: int) -> None:
    composite = getattr(g, name)
    assert isinstance(composite, GFP)
    assert int(composite) == value


def _eval_c_mask(expr: str) -> int:
    """Evaluate a print-fmt mask expression (casts, hex literals, |, &, ~) without eval()."""
    expr = re.sub(r"\(\s*(?:gfp_t|unsigned long)\)", "", expr)
    expr = re.sub(r"(0x[0-9a-fA-F]+|\d+)u\b", r"\1", expr)

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return ~walk(node.operand)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return walk(node.left) | walk(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
            return walk(node.left) & walk(node.right)
        raise AssertionError(f"unexpected syntax {ast.dump(node)}")

    return walk(ast.parse(expr.strip(), mode="eval")) & 0xFFFFFFFF


def _kernel_name_table() -> list[tuple[int, str]]:
    """The (mask, name) table from the real kernel's mm_page_alloc print fmt."""
    text = (DATA / "mm_page_alloc.format").read_text()
    body = text.split("__print_flags(REC->gfp_flags, \"|\",", 1)[1]
    entries = re.findall(r"\{\( unsigned long\)(.*?), \"(\w+)\"\}", body)
    return [(_eval_c_mask(expr), name) for expr, name in entries]


def test_name_table_matches_real_kernel_print_fmt() -> None:
    table = _kernel_name_table()
    assert len(table) == 36
    assert [(int(m), n) for m, n in g.GFPFLAG_NAMES] == table


# --- §2.2 printed names: format/parse ----------------------------------------------------

@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "none"),
        (0xCC0, "GFP_KERNEL"),
        (0xCC0 | 0x40000, "GFP_KERNEL|__GFP_COMP"),
        (0x100CC0, "GFP_USER"),  # GFP_USER before GFP_KERNEL: not GFP_KERNEL|__GFP_HARDWALL
        (0x400, "__GFP_DIRECT_RECLAIM"),
        (0xC00, "GFP_NOIO"),  # GFP_NOIO precedes __GFP_RECLAIM in the table
        (0x1, "GFP_DMA"),
        (0x2, "__GFP_HIGHMEM"),
        (0x1000CC0, "GFP_KERNEL|0x1000000"),
        (0x9000000, "0x9000000"),
        (0x1C24CA, "GFP_TRANSHUGE"),
        (0x1C20CA | 0x800, "GFP_TRANSHUGE_LIGHT|GFP_NOWAIT"),  # THP defer: composites first
        (0xA20 | 0x100, "GFP_ATOMIC|__GFP_ZERO"),
    ],
)
def test_format_gfp_known_values(value: int, text: str) -> None:
    assert g.format_gfp(value) == text
    assert g.parse_gfp(text) == value


def test_parse_gfp_accepts_alternate_spellings() -> None:
    assert g.parse_gfp("GFP_KERNEL | __GFP_COMP") == 0xCC0 | 0x40000
    assert g.parse_gfp("__GFP_DMA32|__GFP_DMA") == 0x5
    assert g.parse_gfp("0xcc0") == g.GFP_KERNEL
    assert g.parse_gfp("THREADINFO_GFP") == 0x400DC0
    assert isinstance(g.parse_gfp("none"), GFP)


@pytest.mark.parametrize("bad", ["GFP_KERNAL", "GFP_KERNEL|", "", "0xzz", "0x100000000", "kernel"])
def test_parse_gfp_rejects_bad_tokens(bad: str) -> None:
    with pytest.raises(g.GfpParseError):
        g.parse_gfp(bad)


def test_parse_gfp_error_names_token_and_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean '__GFP_NOWARN'") as info:
        g.parse_gfp("GFP_KERNEL|__GFP_NOWARM")
    assert isinstance(info.value, g.GfpParseError)
    assert isinstance(info.value, AllocsimError)  # the CLI prints these without a traceback
    assert info.value.token == "__GFP_NOWARM"
    assert "__GFP_NOWARM" in str(info.value)


@given(st.integers(min_value=0, max_value=(1 << 28) - 1))
def test_round_trip_random_masks(value: int) -> None:
    text = g.format_gfp(value)
    assert g.parse_gfp(text) == value
    assert g.format_gfp(g.parse_gfp(text)) == text


def _oracle_rows() -> list[tuple[str, int, int]]:
    rows = []
    for line in (DATA / "mm_page_alloc_gfp_flags.tsv").read_text().splitlines():
        if line.startswith("#") or line.startswith("gfp_flags\t"):
            continue
        text, migratetype, count = line.split("\t")
        rows.append((text, int(migratetype), int(count)))
    return rows


ORACLE_ROWS = _oracle_rows()


def test_oracle_sample_is_loaded() -> None:
    assert len(ORACLE_ROWS) == 54
    assert sum(count for _, _, count in ORACLE_ROWS) == 236_792


@pytest.mark.parametrize(("text", "migratetype", "count"), ORACLE_ROWS)
def test_real_kernel_gfp_strings(text: str, migratetype: int, count: int) -> None:
    value = g.parse_gfp(text)
    assert g.format_gfp(value) == text
    # mm_page_alloc's migratetype is gfp_migratetype() of the printed gfp (oracle README).
    assert g.gfp_migratetype(value) == migratetype
    # every real request has valid zone modifiers
    assert g.gfp_zone(value) in (ZoneType.DMA, ZoneType.DMA32, ZoneType.NORMAL, ZoneType.MOVABLE)


# --- §2.3 gfp_zone ------------------------------------------------------------------------

_DMA, _HM, _D32, _MV = 0x1, 0x2, 0x4, 0x8


@pytest.mark.parametrize(
    ("bits", "zone"),
    [
        (0, ZoneType.NORMAL), (_DMA, ZoneType.DMA), (_HM, ZoneType.NORMAL),
        (_D32, ZoneType.DMA32), (_MV, ZoneType.NORMAL), (_MV | _DMA, ZoneType.DMA),
        (_MV | _HM, ZoneType.MOVABLE), (_MV | _D32, ZoneType.DMA32),
    ],
)
def test_gfp_zone_valid_rows(bits: int, zone: ZoneType) -> None:
    assert g.gfp_zone(bits) is zone
    assert g.gfp_zone(bits | 0xCC0 | 0x40000) is zone  # non-zone bits are ignored


@pytest.mark.parametrize(
    "bits",
    [_DMA | _HM, _DMA | _D32, _HM | _D32, _DMA | _HM | _D32,
     _MV | _HM | _DMA, _MV | _D32 | _DMA, _MV | _D32 | _HM, _MV | _D32 | _DMA | _HM],
)
def test_gfp_zone_bad_combinations(bits: int) -> None:
    with pytest.raises(g.GfpError):
        g.gfp_zone(bits)


def test_gfp_zone_consequences() -> None:
    assert g.gfp_zone(g.GFP_KERNEL) is ZoneType.NORMAL
    assert g.gfp_zone(g.GFP_HIGHUSER_MOVABLE) is ZoneType.MOVABLE
    assert g.gfp_zone(g.GFP_HIGHUSER) is ZoneType.NORMAL
    assert g.gfp_zone(g.GFP_KERNEL | GFP.HIGHMEM) is ZoneType.NORMAL  # vmalloc
    assert g.gfp_zone(g.GFP_KERNEL | g.GFP_DMA32) is ZoneType.DMA32


# --- §2.4 gfp_migratetype, blocking, zonelist -------------------------------------------

def test_gfp_migratetype() -> None:
    assert g.gfp_migratetype(g.GFP_KERNEL) == MigrateType.UNMOVABLE
    assert g.gfp_migratetype(g.GFP_HIGHUSER_MOVABLE) == MigrateType.MOVABLE
    assert g.gfp_migratetype(g.GFP_KERNEL | GFP.RECLAIMABLE) == MigrateType.RECLAIMABLE
    assert g.gfp_migratetype(0x18 & 0x8) == 1 and type(g.gfp_migratetype(0x8)) is int
    assert g.gfp_migratetype(g.GFP_HIGHUSER_MOVABLE, group_by_mobility=False) == 0
    with pytest.raises(g.GfpError):
        g.gfp_migratetype(GFP.MOVABLE | GFP.RECLAIMABLE)


def test_gfpflags_allow_blocking() -> None:
    assert g.gfpflags_allow_blocking(g.GFP_KERNEL)
    assert g.gfpflags_allow_blocking(g.GFP_NOIO)
    assert not g.gfpflags_allow_blocking(g.GFP_ATOMIC)
    assert not g.gfpflags_allow_blocking(g.GFP_NOWAIT)
    assert not g.gfpflags_allow_blocking(g.GFP_TRANSHUGE_LIGHT)
    assert g.gfpflags_allow_blocking(0x400) is True


def test_gfp_thisnode() -> None:
    assert g.gfp_thisnode(g.GFP_HIGHUSER_MOVABLE | GFP.THISNODE)
    assert not g.gfp_thisnode(g.GFP_HIGHUSER_MOVABLE)


def test_current_gfp_context() -> None:
    assert g.current_gfp_context(g.GFP_KERNEL, memalloc_noio=True) == g.GFP_NOIO
    assert g.current_gfp_context(g.GFP_KERNEL, memalloc_nofs=True) == g.GFP_NOFS
    # NOIO takes precedence over NOFS
    assert g.current_gfp_context(g.GFP_KERNEL, memalloc_noio=True, memalloc_nofs=True) == 0xC00
    pinned = g.current_gfp_context(g.GFP_HIGHUSER_MOVABLE, memalloc_pin=True)
    assert pinned == g.GFP_HIGHUSER and g.gfp_zone(pinned) is ZoneType.NORMAL
    # bits with no member survive
    assert g.current_gfp_context(0x1000CC0, memalloc_nofs=True) == 0x1000C40
    assert g.current_gfp_context(g.GFP_KERNEL) == g.GFP_KERNEL


# --- §2.5 alloc flags -----------------------------------------------------------------------

def test_alloc_flag_values() -> None:
    assert {m.name: m.value for m in AllocFlags.__members__.values()} == {
        "WMARK_MIN": 0, "WMARK_LOW": 1, "WMARK_HIGH": 2, "WMARK_MASK": 3,
        "NO_WATERMARKS": 0x4, "OOM": 0x8, "HARDER": 0x10, "HIGH": 0x20, "CPUSET": 0x40,
        "CMA": 0x80, "NOFRAGMENT": 0x100, "KSWAPD": 0x800,
    }


def test_wmark_helpers() -> None:
    flags = AllocFlags.KSWAPD | AllocFlags.CPUSET
    assert g.alloc_wmark(flags) is WatermarkIndex.MIN
    low = g.with_wmark(flags, WatermarkIndex.LOW)
    assert g.alloc_wmark(low) is WatermarkIndex.LOW
    high = g.with_wmark(low, WatermarkIndex.HIGH)
    assert int(high) == 0x842 and g.alloc_wmark(high) is WatermarkIndex.HIGH
    assert int(g.with_wmark(high, WatermarkIndex.MIN)) == 0x840
    with pytest.raises(ValueError):
        g.with_wmark(flags, WatermarkIndex.PROMO)


def test_format_alloc_flags() -> None:
    assert g.format_alloc_flags(0x801) == "ALLOC_WMARK_LOW|ALLOC_KSWAPD"
    assert g.format_alloc_flags(0) == "ALLOC_WMARK_MIN"
    assert g.format_alloc_flags(0x4 | 0x80) == "ALLOC_WMARK_MIN|ALLOC_NO_WATERMARKS|ALLOC_CMA"
    assert g.format_alloc_flags(0x2 | 0x1000) == "ALLOC_WMARK_HIGH|0x1000"


@pytest.mark.parametrize("gfp", [g.GFP_KERNEL, g.GFP_ATOMIC, g.GFP_NOWAIT, GFP.HIGH | 0xCC0])
def test_fast_path_never_high_or_harder(gfp: int) -> None:
    # behaviour 26: the fast path tests LOW with no HIGH/HARDER reductions, even GFP_ATOMIC.
    flags = g.fast_path_alloc_flags(gfp)
    assert g.alloc_wmark(flags) is WatermarkIndex.LOW
    assert not flags & (AllocFlags.HIGH | AllocFlags.HARDER | AllocFlags.NOFRAGMENT)
    assert bool(flags & AllocFlags.KSWAPD) == bool(gfp & GFP.KSWAPD_RECLAIM)


def test_fast_path_cma_and_kswapd() -> None:
    assert g.fast_path_alloc_flags(g.GFP_HIGHUSER_MOVABLE, cma=True) == 0x881
    assert g.fast_path_alloc_flags(g.GFP_HIGHUSER_MOVABLE) == 0x801
    assert g.fast_path_alloc_flags(g.GFP_KERNEL, cma=True) == 0x801
    # behaviour 30: THP light requests carry no KSWAPD bit, so kswapd is not woken
    assert g.fast_path_alloc_flags(g.GFP_TRANSHUGE_LIGHT) == AllocFlags.WMARK_LOW


@pytest.mark.parametrize(
    ("gfp", "kwargs", "expected"),
    [
        (g.GFP_KERNEL, {}, "ALLOC_WMARK_MIN|ALLOC_CPUSET|ALLOC_KSWAPD"),
        (g.GFP_NOWAIT, {}, "ALLOC_WMARK_MIN|ALLOC_CPUSET|ALLOC_KSWAPD"),
        (g.GFP_NOIO, {}, "ALLOC_WMARK_MIN|ALLOC_CPUSET|ALLOC_KSWAPD"),
        # behaviour 27: GFP_ATOMIC gets HIGH + HARDER, and ignores cpusets
        (g.GFP_ATOMIC, {}, "ALLOC_WMARK_MIN|ALLOC_HARDER|ALLOC_HIGH|ALLOC_KSWAPD"),
        (g.GFP_ATOMIC | GFP.NOMEMALLOC, {}, "ALLOC_WMARK_MIN|ALLOC_HIGH|ALLOC_KSWAPD"),
        (g.GFP_KERNEL | GFP.HIGH, {}, "ALLOC_WMARK_MIN|ALLOC_HIGH|ALLOC_CPUSET|ALLOC_KSWAPD"),
        (g.GFP_KERNEL, {"rt_task": True},
         "ALLOC_WMARK_MIN|ALLOC_HARDER|ALLOC_CPUSET|ALLOC_KSWAPD"),
        (g.GFP_ATOMIC, {"rt_task": True}, "ALLOC_WMARK_MIN|ALLOC_HARDER|ALLOC_HIGH|ALLOC_KSWAPD"),
        (g.GFP_HIGHUSER_MOVABLE, {"cma": True},
         "ALLOC_WMARK_MIN|ALLOC_CPUSET|ALLOC_CMA|ALLOC_KSWAPD"),
        (g.GFP_TRANSHUGE, {}, "ALLOC_WMARK_MIN|ALLOC_CPUSET"),
    ],
)
def test_gfp_to_alloc_flags(gfp: int, kwargs: dict[str, bool], expected: str) -> None:
    flags = g.gfp_to_alloc_flags(gfp, **kwargs)
    assert isinstance(flags, AllocFlags)
    assert g.format_alloc_flags(flags) == expected
    assert not flags & AllocFlags.NOFRAGMENT


def test_nowait_and_atomic_cannot_block() -> None:
    # behaviour 51: these never enter reclaim/compaction (they may not block) and get no
    # reserve access beyond their slow-path watermark flags.
    for gfp in (g.GFP_NOWAIT, g.GFP_ATOMIC):
        assert not g.gfpflags_allow_blocking(gfp)
        assert g.gfp_pfmemalloc_flags(gfp) == 0


@pytest.mark.parametrize(
    ("gfp", "kwargs", "expected"),
    [
        (g.GFP_KERNEL, {}, 0),
        (g.GFP_KERNEL | GFP.MEMALLOC, {}, AllocFlags.NO_WATERMARKS),
        (g.GFP_KERNEL | GFP.MEMALLOC | GFP.NOMEMALLOC, {}, 0),
        (g.GFP_KERNEL, {"pf_memalloc": True}, AllocFlags.NO_WATERMARKS),
        (g.GFP_KERNEL | GFP.NOMEMALLOC, {"pf_memalloc": True}, 0),
        (g.GFP_KERNEL, {"oom_victim": True}, AllocFlags.OOM),
        (g.GFP_KERNEL, {"pf_memalloc": True, "oom_victim": True}, AllocFlags.NO_WATERMARKS),
        (g.GFP_ATOMIC, {"pf_memalloc": True, "in_interrupt": True}, 0),
        (g.GFP_ATOMIC, {"oom_victim": True, "in_interrupt": True}, 0),
        (g.GFP_ATOMIC, {"pf_memalloc": True, "in_serving_softirq": True},
         AllocFlags.NO_WATERMARKS),
        (g.GFP_ATOMIC, {"oom_victim": True, "in_serving_softirq": True}, 0),
        (g.GFP_ATOMIC | GFP.MEMALLOC, {"in_interrupt": True}, AllocFlags.NO_WATERMARKS),
    ],
)
def test_gfp_pfmemalloc_flags(gfp: int, kwargs: dict[str, bool], expected: int) -> None:
    assert g.gfp_pfmemalloc_flags(gfp, **kwargs) == expected


def test_reserve_alloc_flags_replace_slow_path_flags() -> None:
    slow = g.gfp_to_alloc_flags(g.GFP_HIGHUSER_MOVABLE, cma=True)
    oom = g.reserve_alloc_flags(g.GFP_HIGHUSER_MOVABLE, AllocFlags.OOM, slow, cma=True)
    assert g.format_alloc_flags(oom) == "ALLOC_WMARK_MIN|ALLOC_OOM|ALLOC_CMA|ALLOC_KSWAPD"
    light = g.gfp_to_alloc_flags(g.GFP_TRANSHUGE)
    nowm = g.reserve_alloc_flags(g.GFP_TRANSHUGE, AllocFlags.NO_WATERMARKS, light)
    assert nowm == AllocFlags.NO_WATERMARKS  # CPUSET dropped, no KSWAPD to carry over


@pytest.mark.parametrize("gfp", [g.GFP_HIGHUSER_MOVABLE, int(g.GFP_HIGHUSER_MOVABLE)])
def test_hot_path_decoders_return_plain_values(gfp: int) -> None:
    # Hot path: results are plain ints/bools or existing enum members, never new IntFlags.
    assert type(g.gfp_migratetype(gfp)) is int
    assert type(g.gfpflags_allow_blocking(gfp)) is bool
    assert type(g.gfp_thisnode(gfp)) is bool
    assert g.gfp_zone(gfp) is ZoneType.MOVABLE
