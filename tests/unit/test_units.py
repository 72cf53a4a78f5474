"""Human-unit parsing and formatting: sizes, durations, rates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.config.units import (
    UnitError,
    format_duration,
    format_rate,
    format_size,
    parse_duration_ns,
    parse_rate_per_s,
    parse_size_bytes,
    parse_size_pages,
)
from simcore.errors import ConfigError, ProcError, TraceError

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64MiB", 64 * MiB),
        ("4GiB", 4 * GiB),
        ("1TiB", TiB),
        ("4096", 4096),
        (4096, 4096),
        (0, 0),
        ("4k", 4 * KiB),
        ("4K", 4 * KiB),
        ("2M", 2 * MiB),
        ("3G", 3 * GiB),
        ("1T", TiB),
        ("1kB", 1000),
        ("1MB", 10**6),
        ("2GB", 2 * 10**9),
        ("512B", 512),
        ("1.5GiB", 3 * GiB // 2),
        (" 8 MiB ", 8 * MiB),
    ],
)
def test_parse_size_bytes(text: str | int, expected: int) -> None:
    assert parse_size_bytes(text) == expected


@pytest.mark.parametrize(
    "bad", ["-1", -4096, "-4k", "0.5", "1.5k3", "4X", "4kib", "MiB", "", True, 1.5, None, [1]]
)
def test_parse_size_bytes_rejects(bad: object) -> None:
    with pytest.raises(UnitError) as info:
        parse_size_bytes(bad)  # type: ignore[arg-type]
    assert "size" in info.value.expected
    assert isinstance(info.value, ValueError)


def test_fractional_bytes_message_says_whole_bytes() -> None:
    with pytest.raises(UnitError, match="whole B"):
        parse_size_bytes("0.3k")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("2MiB", 512), ("512pages", 512), ("1 page", 1), ("0", 0), (8192, 2), ("4k", 1)],
)
def test_parse_size_pages(text: str | int, expected: int) -> None:
    assert parse_size_pages(text) == expected


def test_parse_size_pages_other_page_size() -> None:
    assert parse_size_pages("64KiB", page_size=16 * KiB) == 4


@pytest.mark.parametrize("bad", ["4097", "1k", "-3pages", "1.5pages"])
def test_parse_size_pages_rejects(bad: str) -> None:
    with pytest.raises(UnitError):
        parse_size_pages(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10ms", 10_000_000),
        ("2.5s", 2_500_000_000),
        ("100us", 100_000),
        ("100µs", 100_000),
        ("50ns", 50),
        ("1min", 60 * 10**9),
        ("2h", 7200 * 10**9),
        ("0ns", 0),
        ("1.5us", 1500),
    ],
)
def test_parse_duration_ns(text: str, expected: int) -> None:
    assert parse_duration_ns(text) == expected


@pytest.mark.parametrize("bad", ["10", 10, "1.5ns", "-1ms", "10 fortnights", "ms", 1.0, True])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration_ns(bad)  # type: ignore[arg-type]
    assert "duration" in info.value.expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200/s", 200.0),
        ("5/ms", 5000.0),
        ("1/us", 1e6),
        ("60/min", 1.0),
        ("1000", 1000.0),
        (1000, 1000.0),
        (2.5, 2.5),
        ("0.5 / s", 0.5),
        ("1e3/s", 1000.0),
    ],
)
def test_parse_rate_per_s(text: str | float, expected: float) -> None:
    assert parse_rate_per_s(text) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("bad", ["-1/s", "1/fortnight", "fast", float("inf"), float("nan"), True])
def test_parse_rate_rejects(bad: object) -> None:
    with pytest.raises(UnitError):
        parse_rate_per_s(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("size", "text"),
    [(4 * GiB, "4GiB"), (64 * MiB, "64MiB"), (TiB, "1TiB"), (1536 * KiB, "1536KiB"),
     (4097, "4097B"), (0, "0B"), (2 * TiB + GiB, "2049GiB")],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [(10_000_000, "10ms"), (90 * 10**9, "90s"), (60 * 10**9, "1min"), (3600 * 10**9, "1h"),
     (1500, "1500ns"), (0, "0ns"), (100_000, "100us")],
)
def test_format_duration(ns: int, text: str) -> None:
    assert format_duration(ns) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_size(-1)
    with pytest.raises(ValueError):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=1 << 60))
def test_size_round_trip(size: int) -> None:
    assert parse_size_bytes(format_size(size)) == size


@given(st.integers(min_value=0, max_value=1 << 62))
def test_duration_round_trip(ns: int) -> None:
    assert parse_duration_ns(format_duration(ns)) == ns


@given(st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False))
def test_rate_round_trip(rate: float) -> None:
    assert parse_rate_per_s(format_rate(rate)) == rate


def test_config_error_is_one_line() -> None:
    err = ConfigError("x.yaml", "machine.nodes[1].memory", "a size", "4 gigs")
    assert str(err) == "x.yaml: machine.nodes[1].memory: expected a size, got '4 gigs'"
    assert (err.source, err.key, err.expected, err.got) == (
        "x.yaml", "machine.nodes[1].memory", "a size", "4 gigs")


def test_trace_and_proc_errors_name_the_line() -> None:
    assert str(TraceError("t.txt", 7, "a tracepoint", "junk")) == (
        "t.txt:7: expected a tracepoint, got 'junk'")
    assert str(ProcError("/proc/zoneinfo", 3, "'pages free'")) == (
        "/proc/zoneinfo:3: expected 'pages free'")
