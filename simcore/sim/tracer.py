"""Tracing: one interface named after the kernel's ``kmem:`` tracepoints.

Mirrors the tracepoints of include/trace/events/kmem.h (6.1): ``mm_page_alloc``,
``mm_page_free``, ``mm_page_alloc_zone_locked``, ``mm_page_pcpu_drain`` and
``mm_page_alloc_extfrag``, plus three simulator events: ``mm_page_alloc_fail`` (the
kernel's warn_alloc), ``bad_page`` and ``alloc_order_warn`` (the ``WARN_ON_ONCE_GFP``
of an order >= MAX_ORDER), and the simulator-only ``sim_warning`` (a caller's misuse the
kernel does not report: :mod:`simcore.mm.page_misuse`). Method arguments are the
tracepoints' fields; time, caller and CPU come from the tracer's context, which the
allocator sets.

Migratetypes are passed in the model's internal numbering (``MigrateType``); the
recording tracer writes them in the kernel's numbering for the machine's config, with
one table lookup per written column (not per event), so the hot path never translates.

:class:`NullTracer` costs one attribute test on the hot path (``tracer.enabled``).
:class:`RecordingTracer` writes each event into preallocated typed columns (one numpy
array per column, ``flush_rows`` rows long, written by index through one view per
column: a memoryview as Python, a typed C view when compiled, where the recorder is an
extension type whose tracepoints the allocator calls at C level), and writes a full
chunk to Parquet as one row group; the temporary file is renamed into place atomically
by :meth:`RecordingTracer.close`. Time comes from ``clock`` (the run binds
:meth:`Machine.trace_now`), caller and CPU from :meth:`set_context`, which the machine
calls before each allocator operation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from simcore.formats import trace_schema as ts
from simcore.mm.constants import kernel_migratetype_numbers
from simcore.mm.tracepoints import Tracer

if TYPE_CHECKING:
    from simcore.mm.zone import Zone

_COLUMN_ORDER = (
    "time_ns", "event", "caller", "cpu", "nid", "zone", "order", "gfp", "migratetype",
    "pfn", "outcome", "path", "fallback_order", "fallback_migratetype",
    "change_ownership", "percpu_refill", "reason", "stage", "latency_ns",
)
"""The columns :meth:`RecordingTracer._new_chunk` binds its ``c_*`` views to, in order."""
assert _COLUMN_ORDER == tuple(n for n, _ in ts.EVENT_COLUMNS), "trace schema changed"
_ROW_STRINGS = ("event", "zone", "outcome", "path", "reason")
"""The string columns of an event, in the order :meth:`RecordingTracer._intern_row` takes."""
_DTYPES = {"int64": np.int64, "int16": np.int16, "string": np.int32}
"""Column dtype in the buffer; string columns hold int32 dictionary codes."""
CPU_COLUMN_MAX = (1 << 15) - 1
"""The largest CPU number the int16 ``cpu`` column holds (the config allows 8192 CPUs;
-1 is "no CPU")."""
_EXTRA_COLUMNS = ("fallback_order", "fallback_migratetype", "change_ownership", "percpu_refill",
                  "latency_ns")
"""Integer columns only some event types have; a new chunk holds -1 ("not applicable")."""


class RecordingTracer(Tracer):
    """Columnar recorder written to Parquet in row groups of ``flush_rows`` rows.

    String columns are dictionary-encoded as they are written: each distinct value gets
    the next code the first time it is seen, and every row group carries the whole
    dictionary seen so far.
    """

    enabled = True

    def __init__(
        self, path: Path, clock: Callable[[], int], flush_rows: int = 1_000_000
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        """Simulated time (ns) stamped on each event; the run binds the machine's."""
        self.flush_rows = flush_rows
        self.events_traced = 0
        self._strings: dict[str, dict[str, int]] = {
            n: {} for n, t in ts.EVENT_COLUMNS if t == "string"
        }
        self._caller_codes = self._strings["caller"]
        self._event_codes = self._strings["event"]
        self._zone_codes = self._strings["zone"]
        self._outcome_codes = self._strings["outcome"]
        self._path_codes = self._strings["path"]
        self._reason_codes = self._strings["reason"]
        self._stage_codes = self._strings["stage"]
        self._no_stage = _intern(self._stage_codes, "")
        self._caller = _intern(self._caller_codes, "")  # kernel-internal until set_context()
        self._cpu = -1
        self._writer: Any = None
        self._tmp: Path | None = None
        self._mt_lut: Any = None
        self.set_migratetype_numbers(kernel_migratetype_numbers(False))
        self._new_chunk()

    def _new_chunk(self) -> None:
        """Allocate the next ``flush_rows`` rows of every column and bind views on them."""
        self._arrays = [
            np.full(self.flush_rows, -1, _DTYPES[t]) if n in _EXTRA_COLUMNS
            else np.empty(self.flush_rows, _DTYPES[t])
            for n, t in ts.EVENT_COLUMNS
        ]
        # One typed view per column (typed memoryviews in the compiled build).
        (self.c_time, self.c_event, self.c_caller, self.c_cpu, self.c_nid, self.c_zone,
         self.c_order, self.c_gfp, self.c_mt, self.c_pfn, self.c_outcome, self.c_path,
         self.c_fb_order, self.c_fb_mt, self.c_change, self.c_refill,
         self.c_reason, self.c_stage, self.c_latency) = (a.data for a in self._arrays)
        self._arrays[len(self._arrays) - 2][:] = self._no_stage  # "" until an mm_page_alloc
        self._n = 0

    def set_context(self, caller: str, cpu: int) -> None:  # noqa: D102
        if not -1 <= cpu <= CPU_COLUMN_MAX:  # the compiled build would wrap it silently
            raise ValueError(f"{caller}: CPU {cpu} does not fit the trace's int16 cpu column")
        self._caller = _intern(self._caller_codes, caller)
        self._cpu = cpu

    def set_migratetype_numbers(self, numbers: tuple[int, ...]) -> None:  # noqa: D102
        # Index 0 holds -1 ("not applicable"), so the lookup is lut[value + 1].
        self._mt_lut = np.array((-1, *numbers), dtype=np.int16)

    def _row(
        self,
        event: str,
        zone: Zone | None,
        nid: int,
        pfn: int,
        order: int,
        gfp: int,
        mt: int,
        outcome: str,
        path: str,
        reason: str,
    ) -> int:
        """Write one event's common columns; returns its row (the caller may add more).

        The row's ``fallback_*``, ``change_ownership`` and ``percpu_refill`` columns hold
        -1 (not applicable) until written; the chunk is flushed by :meth:`_done`.
        """
        i = self._n
        zone_name = ""
        if zone is not None:
            nid, zone_name = zone.nid, zone.name
        self.c_time[i] = self.clock()
        self.c_caller[i] = self._caller
        self.c_cpu[i] = self._cpu
        self.c_nid[i] = nid
        self.c_order[i] = order
        self.c_gfp[i] = gfp
        self.c_mt[i] = mt
        self.c_pfn[i] = pfn
        try:  # the strings' dictionary codes; a string seen for the first time is interned
            self.c_event[i] = self._event_codes[event]
            self.c_zone[i] = self._zone_codes[zone_name]
            self.c_outcome[i] = self._outcome_codes[outcome]
            self.c_path[i] = self._path_codes[path]
            self.c_reason[i] = self._reason_codes[reason]
        except KeyError:
            self._intern_row(i, event, zone_name, outcome, path, reason)
        return i

    def _done(self) -> None:
        """Count the row just written; flush the chunk once it is full."""
        self.events_traced += 1
        self._n += 1
        if self._n >= self.flush_rows:
            self.flush()

    def _intern_row(self, i: int, *strings: str) -> None:
        """Write row ``i``'s string columns, giving new strings their codes."""
        event, zone, outcome, path, reason = (
            _intern(self._strings[name], value)
            for name, value in zip(_ROW_STRINGS, strings, strict=True)
        )
        self.c_event[i] = event
        self.c_zone[i] = zone
        self.c_outcome[i] = outcome
        self.c_path[i] = path
        self.c_reason[i] = reason

    def mm_page_alloc(  # noqa: D102
        self, zone: Zone | None, pfn: int, order: int, gfp: int, mt: int, path: str, nid: int,
        stage: str, latency_ns: int,
    ) -> None:
        outcome = ts.OUTCOME_OK if pfn >= 0 else ts.OUTCOME_FAIL
        i = self._row(ts.MM_PAGE_ALLOC, zone, nid, pfn, order, gfp, mt, outcome, path, "")
        code = self._stage_codes.get(stage)
        if code is None:
            code = _intern(self._stage_codes, stage)
        self.c_stage[i] = code
        self.c_latency[i] = latency_ns
        self._done()

    def mm_page_free(self, zone: Zone, pfn: int, order: int) -> None:  # noqa: D102
        self._row(ts.MM_PAGE_FREE, zone, zone.nid, pfn, order, 0, -1, ts.OUTCOME_OK,
                  ts.PATH_NONE, "")
        self._done()

    def mm_page_alloc_zone_locked(  # noqa: D102
        self, zone: Zone, pfn: int, order: int, mt: int, percpu_refill: bool
    ) -> None:
        i = self._row(ts.MM_PAGE_ALLOC_ZONE_LOCKED, zone, zone.nid, pfn, order, 0, mt,
                      ts.OUTCOME_OK, ts.PATH_NONE, "")
        self.c_refill[i] = 1 if percpu_refill else 0
        self._done()

    def mm_page_pcpu_drain(self, zone: Zone, pfn: int, order: int, mt: int) -> None:  # noqa: D102
        self._row(ts.MM_PAGE_PCPU_DRAIN, zone, zone.nid, pfn, order, 0, mt, ts.OUTCOME_OK,
                  ts.PATH_NONE, "")
        self._done()

    def mm_page_alloc_extfrag(  # noqa: D102
        self,
        zone: Zone,
        pfn: int,
        alloc_order: int,
        fallback_order: int,
        alloc_mt: int,
        fallback_mt: int,
        change_ownership: bool,
    ) -> None:
        i = self._row(ts.MM_PAGE_ALLOC_EXTFRAG, zone, zone.nid, pfn, alloc_order, 0, alloc_mt,
                      ts.OUTCOME_OK, ts.PATH_NONE, "")
        self.c_fb_order[i] = fallback_order
        self.c_fb_mt[i] = fallback_mt
        self.c_change[i] = 1 if change_ownership else 0
        self._done()

    def mm_page_alloc_fail(  # noqa: D102
        self, nid: int, order: int, gfp: int, mt: int, reason: str
    ) -> None:
        self._row(ts.MM_PAGE_ALLOC_FAIL, None, nid, -1, order, gfp, mt, ts.OUTCOME_FAIL,
                  ts.PATH_FAILURE, reason)
        self._done()

    def bad_page(self, zone: Zone | None, pfn: int, order: int, reason: str) -> None:  # noqa: D102
        nid = zone.nid if zone is not None else -1
        self._row(ts.BAD_PAGE, zone, nid, pfn, order, 0, -1, ts.OUTCOME_FAIL, ts.PATH_NONE,
                  reason)
        self._done()

    def alloc_order_warn(  # noqa: D102
        self, nid: int, order: int, gfp: int, reason: str
    ) -> None:
        self._row(ts.ALLOC_ORDER_WARN, None, nid, -1, order, gfp, -1, ts.OUTCOME_FAIL,
                  ts.PATH_FAILURE, reason)
        self._done()

    def sim_warning(  # noqa: D102
        self, zone: Zone | None, pfn: int, order: int, reason: str
    ) -> None:
        nid = zone.nid if zone is not None else -1
        self._row(ts.SIM_WARNING, zone, nid, pfn, order, 0, -1, ts.OUTCOME_FAIL, ts.PATH_NONE,
                  reason)
        self._done()

    # -- output -------------------------------------------------------------------------
    def _table(self) -> Any:
        import pyarrow as pa

        arrays = []
        rows = self._n
        for (name, typ), column in zip(ts.EVENT_COLUMNS, self._arrays, strict=True):
            values = column[:rows]
            if typ == "string":
                names = pa.array(list(self._strings[name]), pa.string())
                codes = pa.array(values, type=pa.int32())
                arrays.append(pa.DictionaryArray.from_arrays(codes, names))
            else:
                if name in ts.MIGRATETYPE_COLUMNS:
                    values = self._mt_lut[values + 1]
                arrays.append(pa.array(values))
        return pa.Table.from_arrays(arrays, names=[n for n, _ in ts.EVENT_COLUMNS])

    def flush(self) -> None:
        """Write the buffered rows as one Parquet row group and start a new chunk."""
        self._write_rows()
        # A fresh chunk, not the old one overwritten: Arrow may share the arrays' memory.
        self._new_chunk()

    def _write_rows(self) -> None:
        import pyarrow.parquet as pq

        table = self._table()
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        if table.num_rows:
            self._writer.write_table(table)

    def close(self) -> None:
        """Write the last rows and rename the file into place."""
        self._write_rows()
        self._writer.close()
        assert self._tmp is not None
        os.replace(self._tmp, self.path)
        self._writer = None

    def abort(self) -> None:
        """Discard the partial output (after a crash or interrupt)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()


def _intern(codes: dict[str, int], value: str) -> int:
    """The dictionary code of ``value``, giving it the next code if it is new."""
    code = codes.get(value)
    if code is None:
        code = codes[value] = len(codes)
    return code
