"""Exception types raised by allocsim for bad user input.

Every error a user can cause (a config file, a trace file, a ``/proc`` snapshot) is one
exception whose ``str()`` is a single line naming where the problem is, what was expected
and what was found, so that the command line can print it without a traceback.
"""

from __future__ import annotations

import reprlib

MAX_GOT_CHARS = 200
"""Longest ``got ...`` part of a message: a hostile value (a megabyte string, a list an
alias bomb expanded) is shown cut short, never printed whole."""


class _ShortRepr(reprlib.Repr):
    """``reprlib``'s bounded repr that also survives ints Python will not print in full."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # str() refuses more than 4300 digits; nobody reads 78
            return f"<an integer of {len(format(abs(x), 'x'))} hex digits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()
_SHORT.maxstring = _SHORT.maxother = MAX_GOT_CHARS
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = _SHORT.maxfrozenset = 12
_SHORT.maxlevel = 4


def clip(text: str, limit: int = MAX_GOT_CHARS) -> str:
    """``text`` cut to ``limit`` characters (a key path or problem quoting hostile input)."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def shown(place: str) -> str:
    """A file name or ``--set`` argument as a message shows it: one printable line."""
    return clip(place if place.isprintable() else repr(place)[1:-1], 5 * MAX_GOT_CHARS)


def short_repr(value: object) -> str:
    """``repr(value)``, cut to :data:`MAX_GOT_CHARS` characters (12 entries, 4 levels deep)."""
    text = _SHORT.repr(value)
    return text if len(text) <= MAX_GOT_CHARS else text[:MAX_GOT_CHARS - 3] + "..."


class AllocsimError(Exception):
    """Base class of every error allocsim raises on purpose."""


class _InputError(AllocsimError):
    """An error at a place in some input: ``<where>: expected <expected>, got <got!r>``."""

    expected: str
    got: object

    @property
    def where(self) -> str:
        """The place, e.g. ``file.yaml: machine.nodes[1].memory`` or ``trace.txt:7``."""
        raise NotImplementedError

    def __str__(self) -> str:
        return f"{self.where}: expected {self.expected}, got {short_repr(self.got)}"


class ConfigError(_InputError):
    """A config file (or mapping) that does not match the schema.

    ``str()`` is one line: ``<source>:<line>: <key>: expected <expected>, got <got!r>``
    (``<source>: <key>: ...`` when the line is not known, e.g. for a ``--set`` value), or
    ``<where>: <problem> (expected <expected>)`` when ``problem`` says what is wrong
    (``unknown key; did you mean 'rate'?``).

    Attributes:
        source: Path of the YAML file (or ``"<memory>"``, or ``--set KEY=VALUE``).
        key: Dotted key path, e.g. ``machine.nodes[1].memory`` or ``workloads[0].order``;
            ``"<yaml>"`` for a YAML syntax error, ``"<file>"`` for an unreadable file,
            ``"<top>"`` for the document itself.
        expected: What the key should have held, in words.
        got: The offending value as read.
        line: 1-based line in ``source`` when known, else None.
        problem: What is wrong, when "got <value>" would not say it (None: the value).
    """

    def __init__(
        self, source: str, key: str, expected: str, got: object, line: int | None = None,
        problem: str | None = None,
    ) -> None:
        super().__init__(source, key, expected, got, line, problem)
        self.source, self.key, self.line = source, key, line
        self.expected, self.got, self.problem = expected, got, problem

    @property
    def where(self) -> str:
        """``<source>:<line>: <key>``, or ``<source>: <key>`` without a line."""
        place = shown(self.source) if self.line is None else f"{shown(self.source)}:{self.line}"
        return f"{place}: {clip(shown(self.key))}"

    def __str__(self) -> str:
        if self.problem is not None:
            return f"{self.where}: {clip(self.problem, 2 * MAX_GOT_CHARS)} (expected " \
                f"{clip(self.expected, 4 * MAX_GOT_CHARS)})"
        return f"{self.where}: expected {clip(self.expected, 4 * MAX_GOT_CHARS)}, got " \
            f"{short_repr(self.got)}"

    def moved(self, source: str, key: str, line: int | None) -> ConfigError:
        """The same error at another place (the origin of a value set elsewhere)."""
        return ConfigError(source, key, self.expected, self.got, line, self.problem)


class TraceError(_InputError):
    """A trace file (e.g. an ftrace text dump being replayed) with a malformed line.

    Attributes:
        source: Path of the trace file.
        line: 1-based line number; 0 for the file as a whole (it is missing, or not a
            trace at all).
        expected: What the line should have held, in words.
        got: The offending text.
    """

    def __init__(self, source: str, line: int, expected: str, got: object) -> None:
        super().__init__(source, line, expected, got)
        self.source, self.line = source, line
        self.expected, self.got = expected, got

    @property
    def where(self) -> str:
        """``<source>:<line>``, or ``<source>`` for the file as a whole (line 0)."""
        return f"{shown(self.source)}:{self.line}" if self.line > 0 else shown(self.source)


class ProcError(AllocsimError):
    """A ``/proc`` snapshot (``zoneinfo``, ``buddyinfo``, ...) that cannot be parsed.

    Attributes:
        path: Path of the snapshot file.
        line: 1-based line number.
        expected: What the line should have held, in words.
    """

    def __init__(self, path: str, line: int, expected: str) -> None:
        super().__init__(path, line, expected)
        self.path = path
        self.line = line
        self.expected = expected

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: expected {self.expected}"


def interruption_in(exc: BaseException) -> KeyboardInterrupt | None:
    """Return the ``KeyboardInterrupt`` behind ``exc``, if the user stopped the work.

    A signal can land inside a library's cleanup code (matplotlib closing a PDF,
    pyarrow closing a writer), which then raises its own error while the interrupt is
    being handled. The interrupt is still the reason the work stopped, so this walks the
    ``__context__``/``__cause__`` chain to find it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
