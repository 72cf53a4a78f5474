"""Readers for single config values: type and range checks that name the key path.

Each ``expect_*`` function takes the raw value loaded from YAML, its dotted key path and
the source file, and returns the converted value or raises one
:class:`~simcore.errors.ConfigError`. :mod:`simcore.config.parse` builds the experiment schema
from them, and workload parameter parsers (``workloads/``) use them for their own keys, so
every error in a config file reads the same way.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from simcore.config.units import (
    UnitError,
    parse_duration_ns,
    parse_rate_per_s,
    parse_size_pages,
)
from simcore.errors import ConfigError

T = TypeVar("T")

FieldReader = Callable[[object, str, str], Any]
"""``reader(value, key, source)`` -> converted value; raises ConfigError."""


class _Missing:
    """Stands in for a required key that is absent, so errors print ``got <missing>``."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()
TOP_KEY = "<top>"
"""Key path used for the document itself."""


def child(key: str, name: str | int) -> str:
    """Key path of a child: ``child("machine.nodes", 1) == "machine.nodes[1]"``.

    ``child("workloads[0]", "rate") == "workloads[0].rate"``; ``child("", "seed") == "seed"``.
    """
    if isinstance(name, int):
        return f"{key}[{name}]"
    return f"{key}.{name}" if key else name


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" in {lo}..{hi}"
    if lo is not None:
        return f" >= {lo}"
    return "" if hi is None else f" <= {hi}"


def unknown_key_error(source: str, key: str, name: object,
                      allowed: Collection[str]) -> ConfigError:
    """An unknown key ``name`` at ``key``: the nearest allowed key suggested, all listed.

    ``workloads[0].rat: unknown key; did you mean 'rate'? (expected one of the keys ...)``.
    """
    names = [str(a) for a in allowed]
    near = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
    problem = "unknown key" + (f"; did you mean {near[0]!r}?" if near else "")
    return ConfigError(source, key, f"one of the keys {', '.join(names)}", name,
                       problem=problem)


def expect_mapping(
    value: object,
    key: str,
    source: str,
    allowed: Collection[str] | None,
    required: Collection[str] = (),
) -> Mapping[str, object]:
    """A mapping with only ``allowed`` keys (None: any keys) and every ``required`` one.

    Unknown keys are reported at their own key path, with the nearest allowed key
    suggested and all of them listed (:func:`unknown_key_error`).
    """
    if not isinstance(value, Mapping):
        keys = f" with keys {', '.join(allowed)}" if allowed else ""
        raise ConfigError(source, key or TOP_KEY, f"a mapping{keys}", value)
    if allowed is not None:
        for name in value:
            if name not in allowed:
                raise unknown_key_error(source, child(key, str(name)), name, allowed)
    for name in required:
        if name not in value:
            raise ConfigError(source, child(key, name), "a value (this key is required)",
                              MISSING)
    return value


def read_fields(
    value: object,
    key: str,
    source: str,
    fields: Mapping[str, tuple[str, FieldReader]],
    required: Collection[str] = (),
) -> dict[str, Any]:
    """Read a mapping section into dataclass keyword arguments.

    Args:
        value: The raw section.
        key: Its key path.
        source: File path for errors.
        fields: YAML key -> (dataclass field name, reader). These are the allowed keys.
        required: YAML keys that must be present.

    Returns:
        Field name -> converted value, for the keys present only, so that absent keys
        take the dataclass defaults (defined once, in ``simcore.config.types``).
    """
    data = expect_mapping(value, key, source, fields.keys(), required)
    return {fields[name][0]: fields[name][1](raw, child(key, name), source)
            for name, raw in data.items()}


def expect_int(
    value: object,
    key: str,
    source: str,
    lo: int | None = None,
    hi: int | None = None,
    expected: str | None = None,
) -> int:
    """An int in ``lo..hi`` (inclusive; None = unbounded). ``True`` is not an int here."""
    text = expected or f"an integer{_range_text(lo, hi)}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(source, key, text, value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(source, key, f"an integer{_range_text(lo, hi)}", value)
    return value


def expect_number(value: object, key: str, source: str, above: float | None = None) -> float:
    """A finite int or float, strictly greater than ``above`` if given."""
    text = "a number" + ("" if above is None else f" > {above}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(source, key, text, value)
    number = float(value)
    if not math.isfinite(number) or (above is not None and number <= above):
        raise ConfigError(source, key, text, value)
    return number


def expect_str(
    value: object,
    key: str,
    source: str,
    choices: Collection[str] | None = None,
    pattern: re.Pattern[str] | None = None,
    expected: str | None = None,
) -> str:
    """A string, optionally one of ``choices`` or matching ``pattern``."""
    text = expected or ("one of " + "|".join(choices) if choices else "a string")
    if not isinstance(value, str):
        raise ConfigError(source, key, text, value)
    if (choices is not None and value not in choices) or (
        pattern is not None and not pattern.match(value)
    ):
        raise ConfigError(source, key, text, value)
    return value


def expect_bool(value: object, key: str, source: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ConfigError(source, key, "true or false", value)
    return value


def expect_list(
    value: object, key: str, source: str, min_len: int = 0, max_len: int | None = None
) -> list[object]:
    """A list with ``min_len..max_len`` entries."""
    if not isinstance(value, list) or len(value) < min_len or (
        max_len is not None and len(value) > max_len
    ):
        if max_len == min_len:
            text = f"a list of {min_len} entries"
        elif max_len is not None:
            text = f"a list of {min_len}..{max_len} entries"
        else:
            text = f"a list of at least {min_len} entries" if min_len else "a list"
        raise ConfigError(source, key, text, value)
    return value


def expect_unit(parse: Callable[[Any], T], value: object, key: str, source: str) -> T:
    """Run a :mod:`simcore.config.units` parser, turning its UnitError into a ConfigError."""
    try:
        return parse(value)
    except UnitError as exc:
        raise ConfigError(source, key, exc.expected, value) from exc


def expect_size_pages(value: object, key: str, source: str, min_pages: int = 0) -> int:
    """A size (``64MiB``, ``512pages``, a byte count) as a whole number of pages."""
    pages = expect_unit(parse_size_pages, value, key, source)
    if pages < min_pages:
        text = "a size > 0" if min_pages == 1 else f"a size of at least {min_pages} pages"
        raise ConfigError(source, key, text, value)
    return pages


def expect_duration_ns(value: object, key: str, source: str, min_ns: int = 0) -> int:
    """A duration (``10ms``) in nanoseconds, at least ``min_ns``."""
    duration = expect_unit(parse_duration_ns, value, key, source)
    if duration < min_ns:
        raise ConfigError(source, key, "a duration > 0" if min_ns == 1
                          else f"a duration >= {min_ns}ns", value)
    return duration


def expect_rate_per_s(value: object, key: str, source: str) -> float:
    """An event rate (``200/s``) in events per second, > 0."""
    rate = expect_unit(parse_rate_per_s, value, key, source)
    if rate <= 0:
        raise ConfigError(source, key, "a rate > 0", value)
    return rate
