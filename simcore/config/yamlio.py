"""Reading an experiment's YAML safely, and where each key path is written in it.

:func:`read_yaml` is ``yaml.safe_load`` that refuses duplicate keys (PyYAML silently keeps
the last) and turns syntax errors into one :class:`~simcore.errors.ConfigError` naming the
line. :func:`read_yaml_lines` also returns, for every key path of the document
(``workloads[2].rate``, spelled as :func:`simcore.config.fields.child` spells it), the
1-based line it is written on, so that a validation error found later in the loaded data
can name its line (:func:`with_line`): ``configs/x.yaml:14: workloads[2].rate: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from simcore.config.fields import child
from simcore.errors import ConfigError

KeyLines = Mapping[str, int]
"""Key path -> 1-based line of its key (a list entry: of the entry)."""
_LAST_STEP = re.compile(r"(\[\d+\]|\.[^.\[\]]*|^[^.\[\]]+)$")


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last)."""


def _construct_strict_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: list[object] = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
        seen.append(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _construct_strict_mapping)


def _compose(text: str, source: str) -> tuple[object, yaml.Node | None]:
    """The document as loaded, and its node tree (None for an empty file)."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(source, "<yaml>", f"valid YAML{where}", exc.problem, line) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(source, "<yaml>", "valid YAML", str(exc)) from exc
    finally:
        loader.dispose()


def _node_lines(node: yaml.Node, key: str, out: dict[str, int]) -> None:
    """Record the line of every key path below ``node`` (the first spelling wins)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            sub = child(key, str(name))
            out.setdefault(sub, key_node.start_mark.line + 1)
            _node_lines(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = child(key, i)
            out.setdefault(sub, item.start_mark.line + 1)
            _node_lines(item, sub, out)


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "<file>", "a readable UTF-8 YAML file", str(exc)) from exc


def read_yaml(path: Path) -> object:
    """A YAML file as loaded, safely and with duplicate keys refused.

    Raises:
        ConfigError: If the file is unreadable or is not valid YAML (naming the line).
    """
    return _compose(_read_text(path), str(path))[0]


def read_yaml_lines(path: Path) -> tuple[object, dict[str, int]]:
    """A YAML file as :func:`read_yaml` loads it, and the line of each key path in it.

    Raises:
        ConfigError: As :func:`read_yaml`.
    """
    doc, node = _compose(_read_text(path), str(path))
    lines: dict[str, int] = {}
    if node is not None:
        _node_lines(node, "", lines)
    return doc, lines


def load_yaml_text(text: str, source: str) -> object:
    """YAML text loaded as :func:`read_yaml` loads a file (``source`` names it in errors)."""
    return _compose(text, source)[0]


def line_of(lines: KeyLines, key: str) -> int | None:
    """The line of ``key``, or of its nearest ancestor written in the file (None: none).

    A key the file lacks (a required key left out) is reported at its parent's line.
    """
    while key:
        if key in lines:
            return lines[key]
        key = _LAST_STEP.sub("", key)
    return None


def with_line(exc: ConfigError, lines: KeyLines) -> ConfigError:
    """``exc`` with the line of its key filled in (unchanged if it has one, or none is known)."""
    if exc.line is not None:
        return exc
    line = line_of(lines, exc.key)
    return exc if line is None else exc.moved(exc.source, exc.key, line)


def opening_comment(text: str) -> str:
    """The comment block a config file opens with: the experiment's question.

    Comment lines (``#``) from the top of the file up to the first line that is neither a
    comment nor blank, with the ``#`` and one following space removed; a blank line ends a
    paragraph. Returns ``""`` if the file does not open with a comment.
    """
    lines: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped:
            if lines and lines[-1]:
                lines.append("")
            continue
        if not stripped.startswith("#"):
            break
        body = stripped[1:]
        lines.append(body[1:] if body.startswith(" ") else body)
    return "\n".join(lines).strip()
