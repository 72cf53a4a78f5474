"""An imported trace as the replay reads it, and the host's compaction runs.

:func:`open_trace_table` and :func:`read_batches` read the Parquet table of
:func:`simcore.formats.ftrace.import_trace` (the ``mm_page_alloc`` and ``mm_page_free``
rows, in trace order, a batch at a time); :func:`compaction_runs` reads each task's
``mm_compaction_begin`` .. ``mm_compaction_end`` runs from ftrace text with the
``compaction:`` events (frees inside one are migrations, see :mod:`simcore.sim.replay`).
"""

from __future__ import annotations

import gzip
import lzma
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from simcore.errors import TraceError

COLUMNS = ("line", "time_ns", "cpu", "comm", "pid", "event", "pfn", "order", "gfp")
"""The columns of an imported trace the replay reads."""
ALLOC, FREE = "mm_page_alloc", "mm_page_free"


def open_trace_table(path: Path) -> Any:
    """An imported trace as a ``pyarrow.parquet.ParquetFile``, its columns checked.

    Raises:
        TraceError: ``path`` is not an imported trace (a Parquet file with :data:`COLUMNS`).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise TraceError(str(path), 0, "an imported trace (allocsim trace import TRACE -o "
                         "trace.parquet)", f"unreadable Parquet ({exc})") from None
    missing = [c for c in COLUMNS if c not in pf.schema_arrow.names]
    if missing:
        raise TraceError(str(path), 0, "an imported trace with columns " + ", ".join(COLUMNS),
                         "no column " + ", ".join(missing))
    return pf


def time_bounds(path: Path) -> tuple[int, int]:
    """The first and last event times (ns) of an imported trace; ``(0, 0)`` if empty.

    Raises:
        TraceError: ``path`` is not an imported trace.
    """
    import pyarrow.compute as pc

    times = open_trace_table(path).read(columns=["time_ns"]).column("time_ns")
    if len(times) == 0:
        return 0, 0
    bounds = pc.min_max(times)
    return int(bounds["min"].as_py()), int(bounds["max"].as_py())


def read_batches(path: Path, batch_rows: int = 65536) -> Iterator[dict[str, list[Any]]]:
    """The replayed events of an imported trace, a batch of columns at a time.

    Raises:
        TraceError: ``path`` is not an imported trace.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    pf = open_trace_table(path)
    for batch in pf.iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
        keep = pc.is_in(batch.column("event"), pa.array([ALLOC, FREE]))
        yield batch.filter(keep).to_pydict()


_RUN_LINE = re.compile(r"-(\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(?:\S+\s+)?(\d+)\.(\d+):"
                       r"\s+mm_compaction_(begin|end):")


def compaction_runs(path: Path) -> dict[int, list[tuple[int, int]]]:
    """Each task's compaction runs (``mm_compaction_begin`` to ``_end``) in an ftrace.

    ``path`` is ftrace text with the ``compaction:`` events (the oracle's
    ``slowpath-trace.txt.xz``); other lines are ignored. Returns pid -> sorted
    ``(begin_ns, end_ns)``.
    """
    from simcore.formats.ftrace import open_text

    runs: dict[int, list[tuple[int, int]]] = {}
    begun: dict[int, int] = {}
    try:
        with open_text(path) as f:
            for text in f:
                m = _RUN_LINE.search(text)
                if m is None:
                    continue
                pid, t = int(m[1]), int(m[2]) * 1_000_000_000 + int(m[3].ljust(9, "0")[:9])
                if m[4] == "begin":
                    begun[pid] = t
                elif pid in begun:
                    runs.setdefault(pid, []).append((begun.pop(pid), t))
    except (UnicodeDecodeError, EOFError, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise TraceError(str(path), 0, "UTF-8 ftrace text", type(exc).__name__) from None
    return {pid: sorted(spans) for pid, spans in runs.items()}
