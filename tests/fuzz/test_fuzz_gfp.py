"""Fuzz the GFP-string parser: kernel spellings, hex, junk, and everything in between.

``parse_gfp`` reads a workload's ``gfp:`` key and every ``gfp_flags=`` of an ftrace
import. Each string must give a mask that :func:`format_gfp` writes back to the same mask,
or one :class:`GfpParseError` (an AllocsimError) quoting the token it could not read.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from simcore.mm.gfp import _NAME_TO_VALUE, GFP, GfpParseError, format_gfp, parse_gfp
from tests.fuzz.fuzzing import fuzz_settings, note_class, outcome

NAMES = tuple(sorted(_NAME_TO_VALUE))
TOKENS = st.one_of(
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(str.lower),
    st.sampled_from(NAMES).map(lambda n: n[:-1] + "X"),
    st.integers(0, 2**33).map(hex),
    st.sampled_from(("none", "0x", "0xg", "-0x1", "0X1", "0x" + "f" * 5000, "", " ", "|",
                     "GFP_KERNEL ", "\tGFP_ATOMIC", "GFP_KERNEL\x00", "__GFP_", "GFP", "0")),
    st.text(max_size=12),
)


@st.composite
def gfp_strings(draw: st.DrawFn) -> str:
    """``|``-joined tokens, with stray spaces, empty tokens and odd separators."""
    tokens = draw(st.lists(TOKENS, min_size=1, max_size=6))
    sep = draw(st.sampled_from(("|", " | ", "||", ",", "|\n")))
    note_class("gfp", "joined by " + repr(sep))
    return sep.join(tokens)


def _check(text: str) -> None:
    result = outcome("gfp", text, lambda: parse_gfp(text))
    if isinstance(result, GfpParseError):
        assert result.token in text or len(result.token) > 100
    else:
        assert isinstance(result, GFP) and 0 <= result < 2**32
        assert parse_gfp(format_gfp(result)) == result  # the kernel's spelling round-trips


@fuzz_settings(150)
@given(gfp_strings())
@example("GFP_KERNEL|__GFP_COMP")
@example("0x" + "f" * 5000)
@example("GFP_KERNEL|" + "x" * 100_000)
def test_gfp_strings(text: str) -> None:
    _check(text)


@fuzz_settings(50)
@given(st.text(max_size=80))
def test_arbitrary_text(text: str) -> None:
    note_class("gfp", "arbitrary text")
    _check(text)


@fuzz_settings(50)
@given(st.integers(0, 2**32 - 1))
def test_every_mask_round_trips(mask: int) -> None:
    """The fuzzers do not pass by refusing everything: every 32-bit mask is read back."""
    note_class("gfp", "formatted mask")
    assert parse_gfp(format_gfp(mask)) == mask


@pytest.mark.parametrize("text", ["GFP_KERNEL|" + "x" * 100_000, "0x" + "f" * 100_000])
def test_a_huge_token_is_quoted_cut_short(text: str) -> None:
    with pytest.raises(GfpParseError) as info:
        parse_gfp(text)
    assert len(str(info.value)) < 1000
