"""ftrace text of the ``kmem:`` page events: import into a Parquet table, and export.

Reads the text ``trace`` / ``trace_pipe`` print (``TASK-PID [CPU] FLAGS TIMESTAMP: event:
fields``), plain or compressed (``.gz``, ``.xz``), one line at a time: a large trace is
never held in memory; rows go to Parquet in batches (:data:`BATCH_ROWS`), written to a
temporary file that is renamed only when the import is complete.

The six page events of ``include/trace/events/kmem.h`` (6.1), read as the oracle's
README explains:

- ``mm_page_alloc``: ``pfn`` is the block's first page (0 and a NULL page on failure),
  ``migratetype`` the requested one (``gfp_migratetype()``), ``gfp_flags`` printed after
  ``gfp_allowed_mask`` (``none`` early in boot); parsed with the model's own GFP parser;
- ``mm_page_free``: every free; ``mm_page_free_batched`` fires *again* for pages freed in
  batches, so it is counted and skipped (frees come from ``mm_page_free`` only);
- ``mm_page_alloc_zone_locked``: one block taken from a buddy list (``percpu_refill``
  only says the order is pcp-eligible);
- ``mm_page_pcpu_drain``: one page returned from a pcp list;
- ``mm_page_alloc_extfrag``: a fallback steal.

Both spellings of the page fields are accepted: ``page=(____ptrval____) pfn=0x1234``
(5.x/6.x) and ``page=ffffea0001234000 pfn=4660`` (4.x, decimal pfn). Lines of other
events (``mm_compaction_*``, ``mm_vmscan_*``, ``sched_*``, ...) and comments are skipped
and counted by event name. A line that is not ftrace text, a page event with a field
missing or malformed, or an ``mm_page*`` event 6.1 does not have (a renamed or unknown
page event: its pages would be lost silently) is an error naming the file and line.

:func:`export_trace` writes a run's ``trace/events.parquet`` in the same text, as 6.1's
``TP_printk()`` formats print these events, so the model's trace can go through the
tools (and the importer) made for real ones. The simulator-only events
(``mm_page_alloc_fail``, ``bad_page``, ``alloc_order_warn``, ``sim_warning``) have no
kernel line and are left out; the task is the caller (pid 0), the timestamp has
nanoseconds (9 decimals), and a failed ``mm_page_alloc`` prints ``pfn=0x0``, as the
kernel's does.
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from simcore.atomic import atomic_path
from simcore.errors import TraceError
from simcore.mm.gfp import format_gfp, gfp_migratetype, gfp_zone, parse_gfp

PAGE_EVENTS = ("mm_page_alloc", "mm_page_free", "mm_page_alloc_zone_locked",
               "mm_page_pcpu_drain", "mm_page_alloc_extfrag")
"""The page events imported (``mm_page_free_batched`` is recognised and skipped)."""
SKIPPED_PAGE_EVENT = "mm_page_free_batched"
BATCH_ROWS = 65536
"""Rows per Parquet row group."""

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>[0-9]{1,10})\s+(?:\(\s*[-0-9]+\)\s+)?\[(?P<cpu>[0-9]{1,10})\]"
    r"\s+(?:[^\s:]+\s+)?(?P<ts>[0-9]{1,12}\.[0-9]{1,12}):\s+(?P<event>[A-Za-z_][\w]*):\s?"
    r"(?P<body>.*)$")
MAX_LINE_CHARS = 1 << 16
"""Longest line read (ftrace's own lines are a few hundred characters; a file with no
newline in gigabytes is not read into memory whole)."""
BOUNDS: dict[str, tuple[int, int, str]] = {
    "pid": (0, 4 << 20, "PID_MAX_LIMIT"),
    "cpu": (0, 8191, "x86_64's largest NR_CPUS"),
    "pfn": (0, (1 << 40) - 1, "52-bit physical addresses"),
    "order": (0, 63, "an unsigned int below 64"),
    "alloc_order": (0, 63, "an unsigned int below 64"),
    "fallback_order": (0, 63, "an unsigned int below 64"),
    "migratetype": (0, 5, "MIGRATE_TYPES"),
    "alloc_migratetype": (0, 5, "MIGRATE_TYPES"),
    "fallback_migratetype": (0, 5, "MIGRATE_TYPES"),
    "percpu_refill": (0, 1, "a flag"),
    "change_ownership": (0, 1, "a flag"),
}
"""The range of each number a page event prints, so every row fits its column."""
_FIELD = re.compile(r"(\w+)=(\S+)")
_FIELDS: dict[str, tuple[str, ...]] = {
    "mm_page_alloc": ("pfn", "order", "migratetype", "gfp_flags"),
    "mm_page_free": ("pfn", "order"),
    "mm_page_alloc_zone_locked": ("pfn", "order", "migratetype", "percpu_refill"),
    "mm_page_pcpu_drain": ("pfn", "order", "migratetype"),
    "mm_page_alloc_extfrag": ("pfn", "alloc_order", "fallback_order", "alloc_migratetype",
                              "fallback_migratetype", "change_ownership"),
}
COLUMNS: tuple[tuple[str, str], ...] = (
    ("line", "int64"), ("time_ns", "int64"), ("cpu", "int16"), ("comm", "string"),
    ("pid", "int32"), ("event", "string"), ("pfn", "int64"), ("order", "int16"),
    ("migratetype", "int16"), ("gfp", "int64"), ("gfp_flags", "string"),
    ("percpu_refill", "int16"), ("fallback_order", "int16"),
    ("fallback_migratetype", "int16"), ("change_ownership", "int16"),
)
"""The imported table: one row per page event; -1 (or "") where a field does not apply.
``gfp`` is the model's mask (``simcore.mm.gfp.GFP`` bits) of ``gfp_flags``."""


@dataclass
class ImportReport:
    """What an import read, kept and skipped (and why)."""

    lines: int = 0
    events: Counter[str] = field(default_factory=Counter)
    """Imported rows per page event."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Skipped lines by reason (``comment``, ``blank``, ``mm_page_free_batched``, or the
    name of another event)."""

    def summary(self) -> str:
        """One paragraph for the command line."""
        kept = ", ".join(f"{n:,} {e}" for e, n in sorted(self.events.items())) or "none"
        skipped = ", ".join(f"{n:,} {why}" for why, n in self.skipped.most_common())
        return (f"{self.lines:,} lines; imported {sum(self.events.values()):,} page events "
                f"({kept}); skipped {sum(self.skipped.values()):,} lines"
                + (f" ({skipped})" if skipped else ""))


def open_text(path: Path) -> IO[str]:
    """Open a trace as text, decompressing ``.gz`` and ``.xz`` on the fly."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="strict")
    if path.suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8", errors="strict")
    return path.open(encoding="utf-8", errors="strict")


def _int(value: str, name: str, where: tuple[str, int], text: str) -> int:
    """``name=value`` as an int in its :data:`BOUNDS` (decimal, or hex with ``0x``)."""
    lo, hi, why = BOUNDS.get(name, (0, 2**63 - 1, "int64"))
    hexa = value[:2].lower() == "0x"
    digits = value[2:] if hexa else value.removeprefix("-")
    if not digits.isascii() or not digits.isalnum():
        raise TraceError(where[0], where[1], f"an integer {name}=", text)
    try:
        number = int(value, 16) if hexa else int(value) if len(digits) <= 20 else hi + 1
    except ValueError:
        raise TraceError(where[0], where[1], f"an integer {name}=", text) from None
    if not lo <= number <= hi:
        raise TraceError(where[0], where[1], f"{name}= in {lo}..{hi} ({why})", text)
    return number


def parse_line(text: str, source: str, lineno: int) -> dict[str, Any] | str:
    """One ftrace line: a row (a dict of :data:`COLUMNS`), or why it is skipped.

    Raises:
        TraceError: The line is not ftrace text, or a page event is malformed.
    """
    stripped = text.strip()
    if not stripped:
        return "blank"
    if stripped.startswith("#"):
        return "comment"
    m = _LINE.match(text)
    if m is None:
        raise TraceError(source, lineno, "an ftrace line 'TASK-PID [CPU] ... TIMESTAMP: "
                         "event: fields'", text.rstrip("\n")[:200])
    event = m["event"]
    if event not in _FIELDS:
        if event.startswith("mm_page") and event != SKIPPED_PAGE_EVENT:
            raise TraceError(source, lineno, "a kmem: page event of 6.1 ("
                             + ", ".join((*PAGE_EVENTS, SKIPPED_PAGE_EVENT)) + ")", event)
        return event  # another event (or mm_page_free_batched): skipped, counted
    fields = dict(_FIELD.findall(m["body"]))
    missing = [f for f in _FIELDS[event] if f not in fields]
    if missing:
        raise TraceError(source, lineno, f"{event} with {', '.join(_FIELDS[event])}",
                         text.rstrip("\n")[:200])
    where = (source, lineno)

    def num(name: str) -> int:
        return _int(fields[name], name, where, text.rstrip("\n")[:200])

    sec, frac = m["ts"].split(".")
    line = text.rstrip("\n")[:200]
    time_ns = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
    if time_ns >= 2**63:
        raise TraceError(source, lineno, "a timestamp below 9223372036 s (int64 "
                         "nanoseconds)", line)
    row: dict[str, Any] = {
        "line": lineno, "time_ns": time_ns,
        "cpu": _int(m["cpu"], "cpu", where, line), "comm": m["comm"].strip(),
        "pid": _int(m["pid"], "pid", where, line),
        "event": event, "pfn": num("pfn"), "order": -1, "migratetype": -1, "gfp": -1,
        "gfp_flags": "", "percpu_refill": -1, "fallback_order": -1,
        "fallback_migratetype": -1, "change_ownership": -1,
    }
    if event == "mm_page_alloc_extfrag":
        row.update(order=num("alloc_order"), migratetype=num("alloc_migratetype"),
                   fallback_order=num("fallback_order"),
                   fallback_migratetype=num("fallback_migratetype"),
                   change_ownership=num("change_ownership"))
        return row
    row["order"] = num("order")
    if "migratetype" in _FIELDS[event]:
        row["migratetype"] = num("migratetype")
    if event == "mm_page_alloc_zone_locked":
        row["percpu_refill"] = num("percpu_refill")
    if event == "mm_page_alloc":
        row["gfp_flags"] = fields["gfp_flags"]
        try:
            row["gfp"] = gfp = int(parse_gfp(fields["gfp_flags"]))
            gfp_zone(gfp)  # GfpError for masks the kernel would BUG on: never traced
            gfp_migratetype(gfp)
        except ValueError as exc:
            raise TraceError(source, lineno, f"gfp_flags the model knows ({exc})",
                             fields["gfp_flags"]) from None
    return row


def iter_rows(path: Path, report: ImportReport) -> Iterator[dict[str, Any]]:
    """Every page-event row of a trace file, counting what is skipped in ``report``.

    Raises:
        TraceError: A malformed line, or a file that is not text.
    """
    source = str(path)
    lineno = 0
    try:
        with open_text(path) as f:
            for lineno, text in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS + 1), ""), 1):
                report.lines = lineno
                if len(text) > MAX_LINE_CHARS:
                    raise TraceError(source, lineno, f"a line of at most {MAX_LINE_CHARS:,} "
                                     "characters (ftrace text)", text[:60] + "...")
                if not text.endswith("\n") and text.strip():
                    raise TraceError(source, lineno, "a last line that ends in a newline, "
                                     "as ftrace writes it (the file is cut mid-line?)",
                                     text[-60:])
                row = parse_line(text, source, lineno)
                if isinstance(row, str):
                    report.skipped[row] += 1
                    continue
                report.events[row["event"]] += 1
                yield row
    except EOFError:
        raise TraceError(source, lineno + 1, "a complete compressed stream",
                         "it ends early (a truncated file?)") from None
    except (lzma.LZMAError, gzip.BadGzipFile, zlib.error) as exc:
        kind = "xz" if path.suffix == ".xz" else "gzip"
        raise TraceError(source, lineno + 1, f"{kind}-compressed ftrace text (the name ends "
                         f"in {path.suffix})", f"data that is not {kind} "
                         f"({type(exc).__name__})") from None
    except UnicodeDecodeError as exc:
        raise TraceError(source, lineno + 1, "UTF-8 ftrace text",
                         f"undecodable data ({type(exc).__name__})") from None


def import_trace(path: Path, out: Path) -> ImportReport:
    """Import the page events of ``path`` into the Parquet file ``out`` (atomically).

    Raises:
        TraceError: A malformed line; nothing is written then.
        OSError: ``path`` cannot be read or ``out`` written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.string() if typ == "string" else pa.from_numpy_dtype(typ))
                        for name, typ in COLUMNS])
    report = ImportReport()
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        try:
            writer = pq.ParquetWriter(tmp, schema)
        except OSError as exc:  # name the user's path, not the temporary file's
            raise OSError(exc.errno, f"cannot write {out} "
                                     f"({os.strerror(exc.errno) if exc.errno else exc})") from None
        try:
            batch: list[dict[str, Any]] = []
            for row in iter_rows(path, report):
                batch.append(row)
                if len(batch) >= BATCH_ROWS:
                    writer.write_table(pa.Table.from_pylist(batch, schema))
                    batch = []
            if batch or not sum(report.events.values()):
                writer.write_table(pa.Table.from_pylist(batch, schema))
        finally:
            writer.close()
    return report


_HEADER = ("# tracer: nop\n#\n# exported by allocsim from a simulated run (kmem: page events)\n"
           "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION\n"
           "#              | |         |   |||||     |         |\n")


def format_event(row: dict[str, Any]) -> str | None:
    """One events.parquet row as its kernel ftrace line (None for a simulator event)."""
    event = row["event"]
    if event not in _FIELDS:
        return None
    pfn = max(row["pfn"], 0)
    page = "page=(____ptrval____)" if row["pfn"] >= 0 else "page=0000000000000000"
    if event == "mm_page_alloc_extfrag":
        body = (f"{page} pfn=0x{pfn:x} alloc_order={row['order']} "
                f"fallback_order={row['fallback_order']} pageblock_order=9 "
                f"alloc_migratetype={row['migratetype']} "
                f"fallback_migratetype={row['fallback_migratetype']} "
                f"fragmenting={int(row['fallback_order'] < 9)} "
                f"change_ownership={row['change_ownership']}")
    else:
        body = f"{page} pfn=0x{pfn:x} order={row['order']}"
        if event != "mm_page_free":
            body += f" migratetype={row['migratetype']}"
        if event == "mm_page_alloc":
            body += f" gfp_flags={format_gfp(row['gfp']) if row['gfp'] else 'none'}"
        elif event == "mm_page_alloc_zone_locked":
            body += f" percpu_refill={row['percpu_refill']}"
    sec, ns = divmod(row["time_ns"], 1_000_000_000)
    task = f"{row['caller'] or '<idle>'}-0"
    return f"{task:>22} [{max(row['cpu'], 0):03d}] ..... {sec:5d}.{ns:09d}: {event}: {body}\n"


def export_trace(events: Path, out: Path) -> int:
    """Write ``events`` (a run's ``trace/events.parquet``) as ftrace text to ``out``.

    Streams record batches; the file appears (atomically) only when complete. Returns
    the number of lines written. ``pageblock_order`` in ``mm_page_alloc_extfrag`` is 9.
    """
    import pyarrow.parquet as pq

    written = 0
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(_HEADER)
        for batch in pq.ParquetFile(events).iter_batches(batch_size=BATCH_ROWS):
            for row in batch.to_pylist():
                line = format_event(row)
                if line is not None:
                    f.write(line)
                    written += 1
    return written
