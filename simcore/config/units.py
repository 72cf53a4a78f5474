"""Human units in config files: sizes, durations and rates.

Config files say ``64MiB``, ``10ms`` and ``200/s``; inside the model sizes are bytes or
pages and time is integer nanoseconds. These pure functions convert once, at the edge
(:mod:`simcore.config.parse`), and back again for the effective config a run writes
(``format_size(parse_size_bytes(s))`` and ``format_duration`` round-trip exactly).

Every parser raises :class:`UnitError` (a :class:`ValueError`) saying which format was
expected; :mod:`simcore.config.parse` turns it into a :class:`~simcore.errors.ConfigError` that
also names the key.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from simcore.mm.constants import PAGE_SIZE

SIZE_UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    "k": 1 << 10,
    "K": 1 << 10,
    "KiB": 1 << 10,
    "M": 1 << 20,
    "MiB": 1 << 20,
    "G": 1 << 30,
    "GiB": 1 << 30,
    "T": 1 << 40,
    "TiB": 1 << 40,
    "P": 1 << 50,
    "PiB": 1 << 50,
    "E": 1 << 60,
    "EiB": 1 << 60,
    "kB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "PB": 10**15,
    "EB": 10**18,
}
"""Size suffixes: K/M/G/T/P/E and KiB/MiB/GiB/TiB/PiB/EiB are binary; kB/MB/GB/TB/PB/EB
are decimal."""
MAX_SIZE_BYTES = 1 << 64
"""Sizes are below 16 EiB, the 64-bit physical address space (``phys_addr_t``); anything
that large is then refused by the host-memory check, with its estimate."""
MAX_DURATION_NS = 2**63 - 1
"""Times are int64 nanoseconds (about 292 years), as the trace stores them."""
_MAX_DIGITS = 40
"""Most digits in a number read (a size or duration below its limit needs fewer)."""

DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 10**3,
    "µs": 10**3,
    "ms": 10**6,
    "s": 10**9,
    "min": 60 * 10**9,
    "h": 3600 * 10**9,
}
"""Duration suffixes and their length in nanoseconds."""

_NUMBER = r"([+-]?[0-9]+(?:\.[0-9]*)?)"
_SIZE_RE = re.compile(rf"^{_NUMBER}\s*([A-Za-z]*)$")
_PAGES_RE = re.compile(r"^([+-]?[0-9]+)\s*pages?$")
_DURATION_RE = re.compile(rf"^{_NUMBER}\s*([a-zµ]+)$")
_RATE_RE = re.compile(r"^([+-]?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*(?:/\s*([a-zµ]+))?$")

SIZE_FORMAT = "a size like '64MiB', '4GiB', '4k', '1GB' or a byte count"
DURATION_FORMAT = "a duration with a unit, like '10ms', '2.5s', '100us', '50ns' or '1min'"
RATE_FORMAT = "a rate like '200/s', '5/ms' or a number of events per second"
# Largest first, ending with the unit worth 1, so the biggest exact unit is picked.
_FORMAT_SIZE_UNITS = (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30),
                      ("MiB", 1 << 20), ("KiB", 1 << 10), ("B", 1))
_FORMAT_DURATION_UNITS = (("h", 3600 * 10**9), ("min", 60 * 10**9), ("s", 10**9),
                          ("ms", 10**6), ("us", 10**3), ("ns", 1))


class UnitError(ValueError):
    """A value that is not in the expected unit format.

    Attributes:
        expected: The format that was expected, in words.
        got: The offending value.
    """

    def __init__(self, expected: str, got: object) -> None:
        super().__init__(f"expected {expected}, got {got!r}")
        self.expected = expected
        self.got = got


def _check_type(value: object, expected: str) -> str | int:
    """Return ``value`` if it is a str or a (non-bool) int, else raise UnitError."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise UnitError(expected, value)
    return value


def _scaled(number: str, unit: str, units: dict[str, int], expected: str, text: str) -> int:
    """Multiply a decimal ``number`` by ``units[unit]``, insisting on a whole, >= 0 result.

    ``Fraction`` keeps ``"2.5s"`` exact where a float would round.
    """
    if unit not in units:
        raise UnitError(f"{expected} (known units: {', '.join(u for u in units if u)})", text)
    limit = _limit_text(units)
    if sum(ch.isdigit() for ch in number) > _MAX_DIGITS:
        raise UnitError(f"{expected}, a number of at most {_MAX_DIGITS} digits", text)
    exact = Fraction(number) * units[unit]
    if exact < 0:
        raise UnitError(f"{expected}, >= 0", text)
    if exact.denominator != 1:
        raise UnitError(f"{expected}, in whole {_smallest_unit(units)}", text)
    return _bounded(int(exact), units, f"{expected}, {limit}", text)


def _limit_text(units: dict[str, int]) -> str:
    return "below 16 EiB" if units is SIZE_UNITS else "at most 292 years (int64 nanoseconds)"


def _bounded(value: int, units: dict[str, int], expected: str, got: object) -> int:
    """``value`` if it is below the limit of its kind (:data:`MAX_SIZE_BYTES` ...)."""
    if value >= MAX_SIZE_BYTES if units is SIZE_UNITS else value > MAX_DURATION_NS:
        raise UnitError(expected, got)
    return value


def _smallest_unit(units: dict[str, int]) -> str:
    """Name the unit worth 1 in ``units`` (``B`` or ``ns``), for error messages."""
    return next(name for name, scale in units.items() if scale == 1 and name)


def parse_size_bytes(value: str | int) -> int:
    """Parse a size such as ``"64MiB"``, ``"4k"``, ``"1GB"`` or ``4096`` into bytes.

    Args:
        value: A string with an optional unit suffix (see :data:`SIZE_UNITS`), or an int
            meaning bytes (YAML hands over bare numbers as ints).

    Returns:
        The size in bytes, >= 0.

    Raises:
        UnitError: On a bad type, unknown unit, negative size or fractional byte count.
    """
    value = _check_type(value, SIZE_FORMAT)
    if isinstance(value, int):
        if value < 0:
            raise UnitError(f"{SIZE_FORMAT}, >= 0", value)
        return _bounded(value, SIZE_UNITS, f"{SIZE_FORMAT}, below 16 EiB", value)
    match = _SIZE_RE.match(value.strip())
    if match is None:
        raise UnitError(SIZE_FORMAT, value)
    return _scaled(match[1], match[2], SIZE_UNITS, SIZE_FORMAT, value)


def parse_size_pages(value: str | int, page_size: int = PAGE_SIZE) -> int:
    """Parse a size that must be a whole number of pages; also accepts ``"512pages"``.

    Args:
        value: A size as for :func:`parse_size_bytes`, or a page count with a
            ``pages`` suffix.
        page_size: Bytes per page.

    Returns:
        The size in pages, >= 0.

    Raises:
        UnitError: If the size is malformed or not a multiple of ``page_size``.
    """
    if isinstance(value, str):
        match = _PAGES_RE.match(value.strip())
        if match is not None:
            if len(match[1]) > _MAX_DIGITS:
                raise UnitError(f"a page count of at most {_MAX_DIGITS} digits", value)
            pages = int(match[1])
            if pages < 0:
                raise UnitError("a page count >= 0", value)
            return _bounded(pages * page_size, SIZE_UNITS, "a page count below 16 EiB",
                            value) // page_size
    size = parse_size_bytes(value)
    if size % page_size:
        raise UnitError(f"a whole number of {page_size}-byte pages", value)
    return size // page_size


def parse_duration_ns(value: str) -> int:
    """Parse a duration such as ``"10ms"``, ``"2.5s"`` or ``"1min"`` into nanoseconds.

    A bare number is rejected: ``10`` could mean seconds or nanoseconds.

    Raises:
        UnitError: On a bad type, missing or unknown unit, negative duration or a
            fractional number of nanoseconds.
    """
    if not isinstance(value, str):
        raise UnitError(DURATION_FORMAT, value)
    match = _DURATION_RE.match(value.strip())
    if match is None:
        raise UnitError(DURATION_FORMAT, value)
    return _scaled(match[1], match[2], DURATION_UNITS, DURATION_FORMAT, value)


def parse_rate_per_s(value: str | int | float) -> float:
    """Parse an event rate such as ``"200/s"``, ``"5/ms"`` or ``1000`` into events per second.

    A bare number means events per second.

    Raises:
        UnitError: On a bad type, unknown unit, or a negative or non-finite rate.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise UnitError(RATE_FORMAT, value)
    if isinstance(value, str):
        match = _RATE_RE.match(value.strip())
        if match is None:
            raise UnitError(RATE_FORMAT, value)
        unit = match[2] or "s"
        if unit not in DURATION_UNITS:
            raise UnitError(f"{RATE_FORMAT} (known units: {', '.join(DURATION_UNITS)})", value)
        rate = float(match[1]) * (10**9 / DURATION_UNITS[unit])
    elif isinstance(value, int) and abs(value) > 2**1000:  # float() would overflow
        raise UnitError(f"{RATE_FORMAT}, finite and >= 0", value)
    else:
        rate = float(value)
    if not math.isfinite(rate) or rate < 0:
        raise UnitError(f"{RATE_FORMAT}, finite and >= 0", value)
    return rate


def _format_exact(value: int, units: tuple[tuple[str, int], ...], what: str) -> str:
    """Write ``value`` in the first (largest) unit of ``units`` that divides it exactly."""
    if value < 0:
        raise ValueError(f"expected a {what} >= 0, got {value!r}")
    for unit, scale in units:
        if value and value % scale == 0:
            return f"{value // scale}{unit}"
    return f"{value}{units[-1][0]}"


def format_size(size_bytes: int) -> str:
    """Format bytes with the largest binary unit that divides them exactly (``"4GiB"``).

    Sizes that are not a multiple of 1 KiB are written as ``"<n>B"``.
    """
    return _format_exact(size_bytes, _FORMAT_SIZE_UNITS, "size")


def format_size_approx(size_bytes: int) -> str:
    """Format bytes for people, to one decimal in the largest unit that fits (``"3.9 GiB"``)."""
    for unit, factor in _FORMAT_SIZE_UNITS:
        if size_bytes >= factor:
            return f"{size_bytes / factor:.1f} {unit}" if factor > 1 else f"{size_bytes} B"
    return f"{size_bytes} B"


def format_duration(duration_ns: int) -> str:
    """Format nanoseconds with the largest unit that divides them exactly (``"10ms"``)."""
    return _format_exact(duration_ns, _FORMAT_DURATION_UNITS, "duration")


def format_rate(rate_per_s: float) -> str:
    """Format events per second as ``"<rate>/s"``; :func:`parse_rate_per_s` inverts it."""
    if rate_per_s.is_integer() and abs(rate_per_s) < 2**53:
        return f"{int(rate_per_s)}/s"
    return f"{rate_per_s!r}/s"
