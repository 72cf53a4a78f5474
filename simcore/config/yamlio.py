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
_LAST_STEP = re.compile(r"(\[[^\[\]]*\]|\.[^.\[\]]*|^[^.\[\]]+)$")
MAX_YAML_BYTES = 1 << 20
"""Largest YAML file read: an experiment or sweep file is a few KiB of text a person wrote."""
MAX_DEPTH = 64
"""Deepest nesting of lists and mappings (the schema needs 6 levels)."""
MAX_VALUES = 50_000
"""Most values (scalars, lists and mappings) in a document, counting each value an alias
repeats as often as it is repeated: no "billion laughs" alias bomb gets expanded."""
MAX_INT_DIGITS = 4300
"""Longest integer (Python's own limit on converting decimal text, sys.int_info)."""


def _yaml_error(problem: str, mark: Any) -> yaml.MarkedYAMLError:
    return yaml.composer.ComposerError(None, None, problem, mark)


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last).

    It also bounds the document: :data:`MAX_DEPTH` levels of nesting, :data:`MAX_VALUES`
    values with aliases expanded, no alias inside its own anchor's node, and integers of
    at most :data:`MAX_INT_DIGITS` digits, so a hostile file is refused at its line
    instead of exhausting the stack, the memory or the time.
    """

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.depth = 0
        self.values = 0
        self.expanded: dict[int, int] = {}
        """id of a composed node -> values in it, aliases expanded."""

    def count(self, values: int, mark: Any) -> None:
        self.values += values
        if self.values > MAX_VALUES:
            raise _yaml_error(f"a document of at most {MAX_VALUES:,} values with its aliases "
                              "expanded (an alias bomb?)", mark)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self.expanded.get(id(node))
            if size is None:
                raise _yaml_error(f"no alias *{event.anchor} inside the value its anchor "
                                  "names (a recursive alias)", event.start_mark)
            self.count(size, event.start_mark)
            return node
        if self.depth >= MAX_DEPTH:
            raise _yaml_error(f"at most {MAX_DEPTH} levels of nested lists and mappings",
                              event.start_mark)
        before = self.values
        self.count(1, event.start_mark)
        self.depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        self.expanded[id(node)] = self.values - before
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's, with a value it cannot build (``2001-13-45``) a YAML error at its line."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, TypeError, AttributeError, KeyError, IndexError) as exc:
            # A tag PyYAML builds from text (!!timestamp, !!bool) raises these for bad text.
            raise yaml.constructor.ConstructorError(
                None, None, f"a valid {node.tag.rpartition(':')[2]} ({exc})",
                node.start_mark) from None


def _construct_strict_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable: construct_mapping names it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark)
    return loader.construct_mapping(node, deep=True)


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An int, refused past :data:`MAX_INT_DIGITS` digits (hex ones included)."""
    digits = len(str(node.value).lstrip("+-").replace("_", ""))
    if digits > MAX_INT_DIGITS:
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of at most {MAX_INT_DIGITS} digits, not {digits}",
            node.start_mark)
    value: int = loader.construct_yaml_int(node)
    return value


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _construct_strict_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _compose(text: str, source: str) -> tuple[object, yaml.Node | None]:
    """The document as loaded, and its node tree (None for an empty file)."""
    try:
        loader = _StrictLoader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, ...)
        raise _reader_error(exc, text, source) from None
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(source, "<yaml>", f"valid YAML{where}", exc.problem, line) from None
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, text, source) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, "<yaml>", "valid YAML", str(exc)) from None
    finally:
        loader.dispose()


def _reader_error(exc: yaml.reader.ReaderError, text: str, source: str) -> ConfigError:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    return ConfigError(source, "<yaml>", f"valid YAML (column {column}: printable "
                       "characters only)", f"the character {chr(exc.character)!r}"
                       if isinstance(exc.character, int) else exc.character, line)


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
    """The file's text: UTF-8, at most :data:`MAX_YAML_BYTES` (the line of a bad byte named)."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), "<file>", "a readable UTF-8 YAML file",
                          exc.strerror or str(exc)) from None
    if len(data) > MAX_YAML_BYTES:
        raise ConfigError(str(path), "<file>", f"a YAML file of at most "
                          f"{MAX_YAML_BYTES >> 20} MiB", "a larger file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), "<file>", "a UTF-8 YAML file (text)",
                          f"the byte(s) {data[exc.start:exc.start + 4]!r}", line) from None


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
        parent = _LAST_STEP.sub("", key)
        if parent == key:  # not a key path (a sweep's 'nodes[-1]'): no line, and no loop
            return None
        key = parent
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
