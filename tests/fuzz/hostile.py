"""Strategies for structured-but-hostile input: real files, damaged the ways files get damaged.

:func:`mutated` takes the text of a real, valid file (a ``configs/*.yaml``, a copy of a
6.1 ``/proc`` file, an ftrace dump) and applies one to four mutations, each a class of bad
input named in the campaign's tally: lines deleted, duplicated, swapped or cut short, the
file truncated, fields swapped, a number replaced by a hostile one (huge, negative, NaN,
hex, non-ASCII digits, ...), junk or control characters inserted, a very long line, CRLF
line ends, indentation broken, and, at the byte level, bytes that are not UTF-8 or binary
junk. The YAML-specific constructs (alias bombs, deep nesting, object-building tags,
anchors, merge keys) are in :func:`yaml_constructs`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import strategies as st

HOSTILE_NUMBERS = (
    "-1", "0", "-0", "1e400", "-1e400", "nan", "NaN", ".nan", "inf", "-inf", ".inf", "1.5",
    "0.0000001", "9" * 25, "9" * 5000, "0x" + "f" * 40, "0x" + "f" * 20000, "0x", "0b101",
    "0o17", "1_000", "--1", "+1", "1e5", "4294967296", "2147483648", "-2147483649",
    "9223372036854775808", "-9223372036854775809", "18446744073709551616",
    "0" * 30 + "1", "\u0663", "\uff11\uff12", "\u00b2", "1\u00a0000", "", " ", "x",
    "1PiB", "1EiB", "16EiB", "-4KiB", "1.5pages", "1e99s", "-10ms",
)
"""Numbers a parser must survive: past every integer width, not finite, not ASCII, empty."""
CONTROL = ("\x00", "\x01", "\x07", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff",
           "\ud800", "\t", "\r", "\x0b", "\x0c")
"""Characters that are not printable, or are line ends some readers honour and others not."""
BAD_BYTES = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
             b"\x80", b"\xe2\x82", b"\x00\x00\x00")
"""Byte sequences that are not UTF-8 (a lone continuation, a surrogate, past U+10FFFF)."""
LONG_LINE_SIZES = (1_000, 70_000, 1_100_000)
"""Lengths of the very long lines inserted (the last one past every line limit)."""
_NUMBER = re.compile(r"-?(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?)")

Lines = list[str]


def _line(draw: st.DrawFn, lines: Lines) -> int:
    return draw(st.integers(0, max(len(lines) - 1, 0)))


def _delete(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    return lines[:i] + lines[i + 1:]


def _duplicate(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    return lines[:i + 1] + lines[i:] if lines else lines


def _swap_lines(draw: st.DrawFn, lines: Lines) -> Lines:
    i, j = _line(draw, lines), _line(draw, lines)
    out = list(lines)
    if out:
        out[i], out[j] = out[j], out[i]
    return out


def _cut_line(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    if not lines:
        return lines
    return lines[:i] + [lines[i][:draw(st.integers(0, len(lines[i])))]] + lines[i + 1:]


def _truncate_file(draw: st.DrawFn, lines: Lines) -> Lines:
    text = "\n".join(lines)
    return text[:draw(st.integers(0, len(text)))].split("\n")


def _swap_fields(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    if not lines:
        return lines
    fields = lines[i].split(" ")
    a, b = draw(st.integers(0, len(fields) - 1)), draw(st.integers(0, len(fields) - 1))
    fields[a], fields[b] = fields[b], fields[a]
    return lines[:i] + [" ".join(fields)] + lines[i + 1:]


def _hostile_number(draw: st.DrawFn, lines: Lines) -> Lines:
    """Replace one number of the file (any line's, any position) by a hostile one."""
    spots = [(i, m.span()) for i, line in enumerate(lines) for m in _NUMBER.finditer(line)]
    if not spots:
        return lines
    i, (a, b) = draw(st.sampled_from(spots))
    number = draw(st.sampled_from(HOSTILE_NUMBERS) | st.integers(-2**70, 2**70).map(str))
    return lines[:i] + [lines[i][:a] + number + lines[i][b:]] + lines[i + 1:]


def _junk_line(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    return lines[:i] + [draw(st.text(max_size=40))] + lines[i:]


def _control(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    if not lines:
        return [draw(st.sampled_from(CONTROL))]
    at = draw(st.integers(0, len(lines[i])))
    return lines[:i] + [lines[i][:at] + draw(st.sampled_from(CONTROL)) + lines[i][at:]] + \
        lines[i + 1:]


def _long_line(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    size = draw(st.sampled_from(LONG_LINE_SIZES))
    filler = draw(st.sampled_from(("x", "9", " ", "a: ", "[", "#")))
    prefix = lines[i] if lines else ""
    return lines[:i] + [prefix + filler * (size // len(filler))] + lines[i + 1:]


def _crlf(draw: st.DrawFn, lines: Lines) -> Lines:
    return [line + "\r" for line in lines]


def _indent(draw: st.DrawFn, lines: Lines) -> Lines:
    i = _line(draw, lines)
    if not lines:
        return lines
    how = draw(st.sampled_from(("strip", "tab", "one more", "one less")))
    line = lines[i]
    new = {"strip": line.lstrip(), "tab": "\t" + line.lstrip(), "one more": " " + line,
           "one less": line[1:] if line.startswith(" ") else line}[how]
    return lines[:i] + [new] + lines[i + 1:]


def _empty(draw: st.DrawFn, lines: Lines) -> Lines:
    return draw(st.sampled_from(([], [""], ["   "], ["#"])))


TEXT_MUTATIONS: dict[str, Callable[[st.DrawFn, Lines], Lines]] = {
    "delete line": _delete, "duplicate line": _duplicate, "swap lines": _swap_lines,
    "line cut short": _cut_line, "file truncated": _truncate_file,
    "fields swapped": _swap_fields, "hostile number": _hostile_number,
    "junk line": _junk_line, "control character": _control, "very long line": _long_line,
    "CRLF line ends": _crlf, "indentation": _indent, "empty file": _empty,
}


def _bad_bytes(draw: st.DrawFn, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.sampled_from(BAD_BYTES)) + data[at:]


def _binary_junk(draw: st.DrawFn, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]


BYTE_MUTATIONS: dict[str, Callable[[st.DrawFn, bytes], bytes]] = {
    "not UTF-8": _bad_bytes, "binary junk": _binary_junk,
}


@st.composite
def mutated(draw: st.DrawFn, texts: tuple[str, ...], parser: str,
            extra: dict[str, Callable[[st.DrawFn, Lines], Lines]] | None = None,
            ) -> tuple[bytes, tuple[str, ...]]:
    """One of ``texts`` with 1-4 mutations: ``(file bytes, names of the mutations)``."""
    text = draw(st.sampled_from(texts))
    lines = text.split("\n")
    table = {**TEXT_MUTATIONS, **(extra or {})}
    names = draw(st.lists(st.sampled_from(sorted([*table, *BYTE_MUTATIONS])),
                          min_size=1, max_size=4))
    for name in names:
        if name in table:
            lines = table[name](draw, lines)
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    for name in names:
        if name in BYTE_MUTATIONS:
            data = BYTE_MUTATIONS[name](draw, data)
    from tests.fuzz.fuzzing import note_class

    for name in dict.fromkeys(names):
        note_class(parser, name)
    return data, tuple(names)


def alias_bomb(depth: int, width: int) -> str:
    """A one-line "billion laughs": ``width ** depth`` values once its aliases are expanded."""
    parts = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, depth):
        parts.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "[" + ", ".join(parts) + "]"


YAML_TAGS = (
    "!!python/object/apply:os.system ['touch /tmp/allocsim-fuzz-pwned']",
    "!!python/object/new:os.system ['true']", "!!python/name:os.system",
    "!!python/module:os", "!!python/object:builtins.dict {}", "!custom 1", "!<tag:x,1:y> 1",
    "!!binary aGVsbG8=", "!!binary ====", "!!set {a, b}", "!!omap [a: 1]", "!!pairs [a: 1]",
    "!!timestamp 2001-13-45", "!!timestamp nope", "!!bool maybe", "!!int x", "!!float x",
    "!!str 12", "!!null 1", "!!map [1]", "!!seq {a: 1}",
)
"""Tags: the ones that would build Python objects (never allowed), custom ones, and the
standard ones given text they cannot build."""


@st.composite
def yaml_constructs(draw: st.DrawFn) -> tuple[str, str]:
    """A hostile YAML value on one line: ``(class name, the YAML text)``."""
    kind = draw(st.sampled_from(("alias bomb", "deep nesting", "tag", "recursive alias",
                                 "undefined alias", "anchor", "flow junk", "huge int")))
    if kind == "alias bomb":
        text = alias_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 12)))
    elif kind == "deep nesting":
        depth = draw(st.sampled_from((10, 63, 64, 65, 200, 5000)))
        open_, close = draw(st.sampled_from((("[", "]"), ("{a: ", "}"))))
        text = open_ * depth + "1" + close * depth
    elif kind == "tag":
        text = draw(st.sampled_from(YAML_TAGS))
    elif kind == "recursive alias":
        text = "&r [1, *r]"
    elif kind == "undefined alias":
        text = "*nowhere"
    elif kind == "anchor":
        text = "&x " + draw(st.sampled_from(("1", "[1, 2]", "{a: 1}", "4GiB")))
    elif kind == "flow junk":
        text = draw(st.sampled_from(("[", "{", "]", "}", "{a: [}", "- - -", "? ", ": :",
                                     "'unterminated", '"\\x', "|\n", ">-", "%YAML 1.1",
                                     "---", "...", "&", "*", "!", "@x", "`x")))
    else:
        text = draw(st.sampled_from(("9" * 4301, "0x" + "f" * 4301, "-" + "9" * 5000)))
    return kind, text


_VALUE_LINE = re.compile(r"^(\s*(?:-\s+)?[A-Za-z_][A-Za-z0-9_]*:)(\s*)(.*)$")


@st.composite
def yaml_construct_in(draw: st.DrawFn, text: str, parser: str) -> str:
    """``text`` (YAML) with one ``key: value`` line's value replaced by a hostile construct."""
    from tests.fuzz.fuzzing import note_class

    lines = text.split("\n")
    matches = [(i, _VALUE_LINE.match(line)) for i, line in enumerate(lines)]
    spots = [i for i, m in matches if m and m.group(3) and not m.group(3).startswith("#")]
    kind, value = draw(yaml_constructs())
    note_class(parser, kind)
    i = draw(st.sampled_from(spots))
    m = _VALUE_LINE.match(lines[i])
    assert m is not None
    lines[i] = f"{m.group(1)} {value}"
    return "\n".join(lines)
