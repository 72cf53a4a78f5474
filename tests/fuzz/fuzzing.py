"""What every fuzz test shares: its settings, the outcome check, the watchdog and the tally.

Every parser a user's file reaches must end one of two ways: a valid object, or one
:class:`~simcore.errors.AllocsimError` whose message is one line naming the file, the line
or key, and what was expected. :func:`outcome` runs a parser under a watchdog (a time
limit far above any honest input's, and a ceiling on new peak memory) and checks the
error when there is one; anything else (another exception type, a hang, runaway memory)
fails the example.

Settings: each test has a default number of examples small enough for the regular suite,
derandomized so the suite is repeatable. ``ALLOCSIM_FUZZ_EXAMPLES=N`` gives every test N
examples, random ones, for a long campaign (``python tests/fuzz/campaign.py``).
With the campaign's plugin (:mod:`tests.fuzz.tally_plugin`), ``ALLOCSIM_FUZZ_STATS=FILE``
makes the session write the tally (cases per parser, by outcome and by class of hostile
input) to FILE as JSON.
"""

from __future__ import annotations

import os
import resource
import signal
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, settings
from hypothesis.control import currently_in_test_context

from simcore.config.units import format_size_approx
from simcore.errors import AllocsimError, ConfigError, TraceError, shown
from simcore.formats.proctables import ProcParseError

T = TypeVar("T")

EXAMPLES = int(os.environ.get("ALLOCSIM_FUZZ_EXAMPLES", "0") or 0)
"""Examples per test in a campaign; 0: each test's own small default."""
CAMPAIGN = EXAMPLES > 0
TIME_LIMIT_S = 20.0
"""One parse may take this long before it counts as a hang (honest inputs: milliseconds)."""
MEMORY_LIMIT = 768 << 20
"""New peak memory one parse may add before it counts as runaway (honest inputs: ~1 MiB)."""
MAX_MESSAGE = 2000
"""Longest acceptable error message (values in it are quoted cut short)."""

TALLY: Counter[str] = Counter()
"""``parser|outcome`` and ``parser|class:NAME`` -> cases, for the campaign report."""


def fuzz_settings(default_examples: int) -> settings:
    """Settings of one fuzz test: its default examples, or the campaign's."""
    return settings(
        max_examples=EXAMPLES or default_examples, deadline=None, derandomize=not CAMPAIGN,
        database=None, suppress_health_check=list(HealthCheck), print_blob=CAMPAIGN)


def _event(text: str) -> None:
    """hypothesis's ``event()`` (its statistics), when inside a hypothesis test."""
    if currently_in_test_context():
        event(text)


def note_class(parser: str, name: str) -> None:
    """Count one class of hostile input (a mutation, a construct) fed to ``parser``."""
    TALLY[f"{parser}|class:{name}"] += 1
    _event(f"class: {name}")


class Hang(Exception):
    """The watchdog's alarm: the parser ran past :data:`TIME_LIMIT_S`."""


def _alarm(signum: int, frame: object) -> None:
    raise Hang(f"no result after {TIME_LIMIT_S} s")


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@contextmanager
def watchdog() -> Iterator[None]:
    """Fail a parse that hangs, or that raises this process's peak memory by a lot."""
    before = _peak_rss()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    grown = _peak_rss() - before
    assert grown < MEMORY_LIMIT, f"runaway memory: peak RSS grew {format_size_approx(grown)}"


def check_error(exc: BaseException, source: str, also: tuple[str, ...] = ()) -> None:
    """``exc`` is one clear error: an AllocsimError, one line, naming ``source`` and a place.

    ``source`` is the file (or ``--set`` argument) the input came from; a ConfigError
    names a key path (``<yaml>`` with a line for a syntax error), a TraceError or
    ProcParseError a line (or the whole file). ``also``: other sources the input came
    from (the file a ``--set`` value was set in).
    """
    text = str(exc)
    assert "\n" not in text and "\r" not in text, f"not one line: {text!r}"
    assert len(text) <= MAX_MESSAGE, f"a {len(text)}-character message"
    assert "Traceback" not in text
    places = (source, *also)
    if isinstance(exc, ConfigError | TraceError | ProcParseError):
        assert "expected " in text, text
    if isinstance(exc, ConfigError):
        assert exc.source.startswith((*places, "--set ")), (exc.source, places)
        assert text.startswith(shown(exc.source)), text
        assert exc.key, text
        if exc.key == "<yaml>":
            assert exc.line is not None and f"{shown(exc.source)}:{exc.line}: " in text, text
    elif isinstance(exc, TraceError):
        assert exc.source in places and text.startswith(shown(exc.source)), (text, places)
    elif isinstance(exc, ProcParseError):
        assert exc.path.startswith(places), (exc.path, places)
        assert text.startswith(shown(exc.path)), text
    elif isinstance(exc, AllocsimError):  # a GfpParseError: no file, but the token it read
        assert source in text or getattr(exc, "token", None) is not None, text
    else:  # the reports' own error (ReportInputError): the file first, then what is wrong
        assert text.startswith(shown(source)) and "expected " in text, text


def outcome(parser: str, source: str, run: Callable[[], T], also: tuple[str, ...] = (),
            errors: tuple[type[Exception], ...] = (AllocsimError,)) -> T | Exception:
    """Run ``run`` under the watchdog: its value, or its checked error (tallied either way)."""
    try:
        with watchdog():
            value = run()
    except errors as exc:
        check_error(exc, source, also)
        TALLY[f"{parser}|error:{type(exc).__name__}"] += 1
        TALLY[f"{parser}|cases"] += 1
        _event(f"outcome: {type(exc).__name__}")
        return exc
    TALLY[f"{parser}|valid"] += 1
    TALLY[f"{parser}|cases"] += 1
    _event("outcome: valid")
    return value


def tally_table(tally: dict[str, int] | Counter[str]) -> str:
    """The tally as a table: cases per parser, valid and errors, then the input classes."""
    parsers = sorted({key.split("|")[0] for key in tally})
    rows = [f"{'parser':<10} {'cases':>9} {'valid':>9} {'errors':>9}  classes of input"]
    for p in parsers:
        cases = tally.get(f"{p}|cases", 0)
        valid = tally.get(f"{p}|valid", 0)
        classes = sorted((k.split("class:")[1], n) for k, n in tally.items()
                         if k.startswith(f"{p}|class:"))
        rows.append(f"{p:<10} {cases:>9,} {valid:>9,} {cases - valid:>9,}  "
                    + ", ".join(f"{name} {n:,}" for name, n in classes))
    return "\n".join(rows)


def as_text(data: Any) -> str:
    """Bytes a strategy made, as the text a parser taking ``str`` would get (lossy)."""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
