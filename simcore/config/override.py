"""Key paths into an experiment document, and values set at them.

A key path names one value of an experiment file as its error messages do:
``machine.nodes[0].memory``, ``workloads[1].rate``, ``sysctl.min_free_kbytes``. The
command line's ``--set PATH=VALUE`` and a sweep's ``grid:``/``points:`` set values at such
paths in the document as loaded from YAML, before it is validated, so a value set there is
checked exactly as if it had been written in the file.

A ``--set`` value is parsed as one YAML scalar (``4GiB``, ``200/s``, ``true``, ``12``,
``null``), never evaluated; a sweep's values are YAML already.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

from simcore.config.yamlio import load_yaml_text
from simcore.errors import ConfigError

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)((?:\[[0-9]{1,9}\])*)")
_INDEX = re.compile(r"\[([0-9]+)\]")
SCALAR_FORMAT = ("one YAML scalar (a number, a size like 4GiB, a rate like 200/s, true/false "
                 "or null)")
SCALAR_TYPES = (str, int, float, bool, type(None))

Step = str | int
"""A mapping key, or a list index."""


def parse_key_path(path: str, source: str = "--set") -> tuple[Step, ...]:
    """``"workloads[0].rate"`` -> ``("workloads", 0, "rate")``.

    Raises:
        ConfigError: Not a key path (``name[index].name...``).
    """
    steps: list[Step] = []
    for part in path.split("."):
        match = _PART.fullmatch(part)
        if match is None:
            raise ConfigError(source, path or "<key>", "a key path like "
                              "'machine.nodes[0].memory' or 'workloads[1].rate'", path)
        steps.append(match.group(1))
        steps.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return tuple(steps)


def format_key_path(steps: Iterable[Step]) -> str:
    """The inverse of :func:`parse_key_path`."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def scalar_text(value: object) -> str:
    """A scalar as YAML spells it (``null``, ``true``; otherwise ``str()``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_set_arg(text: str) -> tuple[str, object]:
    """``"workloads[0].rate=200/s"`` -> ``("workloads[0].rate", "200/s")``.

    The value is one YAML scalar (a string, number, boolean or null).

    Raises:
        ConfigError: No ``=``, a bad key path, or a value that is not one YAML scalar;
            the message names the whole ``--set`` argument.
    """
    source = f"--set {text if len(text) <= 120 else text[:117] + '...'}"
    path, sep, raw = text.partition("=")
    if not sep:
        raise ConfigError(source, "<argument>", "KEY.PATH=VALUE, e.g. "
                          "workloads[0].rate=200/s", text)
    path = path.strip()
    parse_key_path(path, source)
    try:
        value = load_yaml_text(raw, source) if raw.strip() else ""
    except ConfigError:  # bad YAML, a tag PyYAML cannot build, ...
        raise ConfigError(source, path, SCALAR_FORMAT, raw) from None
    if isinstance(value, (list, dict)):
        raise ConfigError(source, path, "one YAML scalar, not a list or a mapping", raw)
    if not isinstance(value, SCALAR_TYPES):  # !!binary, !!timestamp, !!set ...
        raise ConfigError(source, path, f"{SCALAR_FORMAT}, without a !!tag", raw)
    return path, value


def set_value(doc: object, path: str, value: object, source: str) -> object:
    """A deep copy of ``doc`` with ``value`` at ``path``.

    Missing mapping keys on the way are created (``sysctl.min_free_kbytes`` in a file
    without ``sysctl:``); a list index must exist.

    Raises:
        ConfigError: The path runs through a value that is not a mapping or list, or
            past the end of a list; ``source`` is named (the file, or ``--set ...``).
    """
    steps = parse_key_path(path, source)
    out = copy.deepcopy(doc) if doc is not None else {}
    node: Any = out
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        here = format_key_path(steps[: i + 1])
        if isinstance(step, int):
            if not isinstance(node, list):
                raise ConfigError(source, here, f"a list at {format_key_path(steps[:i])}",
                                  type(node).__name__)
            if step >= len(node):
                raise ConfigError(source, here, f"an index below {len(node)} (the list "
                                  f"{format_key_path(steps[:i])} has {len(node)} entries)",
                                  step)
        elif not isinstance(node, dict):
            where = format_key_path(steps[:i]) or "the document"
            raise ConfigError(source, here, f"a mapping at {where}", type(node).__name__)
        if last:
            node[step] = value
        else:
            if isinstance(step, str) and step not in node:
                node[step] = [] if isinstance(steps[i + 1], int) else {}
            node = node[step]
    return out


def apply_overrides(doc: object, overrides: Mapping[str, object] | Iterable[tuple[str, object]],
                    source: str) -> object:
    """``doc`` with each ``(path, value)`` set in turn (see :func:`set_value`)."""
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for path, value in items:
        doc = set_value(doc, path, value, source)
    return doc
