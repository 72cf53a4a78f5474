"""Tracing: one interface named after the kernel's ``kmem:`` tracepoints.

Mirrors the tracepoints of include/trace/events/kmem.h (6.1): ``mm_page_alloc``,
``mm_page_free``, ``mm_page_alloc_zone_locked``, ``mm_page_pcpu_drain`` and
``mm_page_alloc_extfrag``, plus three simulator events: ``mm_page_alloc_fail`` (the
kernel's warn_alloc), ``bad_page`` and ``alloc_order_warn`` (the ``WARN_ON_ONCE_GFP``
of an order >= MAX_ORDER). Method arguments are the tracepoints' fields; time, caller
and CPU come from the tracer's context, which the allocator sets.

Migratetypes are passed in the model's internal numbering (``MigrateType``); the
recording tracer writes them in the kernel's numbering for the machine's config, with
one table lookup per written column (not per event), so the hot path never translates.

:class:`NullTracer` costs one attribute test on the hot path (``tracer.enabled``).
:class:`RecordingTracer` appends to compact columnar buffers (``array.array``, not a
Python object per row) and writes them to Parquet in row groups, atomically.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simcore.formats import trace_schema as ts
from simcore.mm.constants import kernel_migratetype_numbers
from simcore.mm.tracepoints import Tracer

if TYPE_CHECKING:
    from simcore.mm.zone import Zone


_INT_COLS = [(name, typ) for name, typ in ts.EVENT_COLUMNS if typ != "string"]
_TYPECODE = {"int64": "q", "int16": "h"}


class RecordingTracer(Tracer):
    """Columnar recorder written to Parquet in row groups of ``flush_rows`` rows."""

    enabled = True

    def __init__(
        self, path: Path, clock: Callable[[], int], flush_rows: int = 1_000_000
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.flush_rows = flush_rows
        self.events_traced = 0
        self._strings: dict[str, dict[str, int]] = {
            n: {} for n, t in ts.EVENT_COLUMNS if t == "string"
        }
        self._caller = self._code("caller", "")  # kernel-internal until set_context()
        self._cpu = -1
        self._writer: Any = None
        self._tmp: Path | None = None
        self._mt_lut: Any = None
        self.set_migratetype_numbers(kernel_migratetype_numbers(False))
        self._reset()

    def _reset(self) -> None:
        self._cols: dict[str, array[int]] = {
            n: array(_TYPECODE[t]) for n, t in ts.EVENT_COLUMNS if t != "string"
        }
        for name in self._strings:
            self._cols[name] = array("i")

    def _code(self, column: str, value: str) -> int:
        table = self._strings[column]
        code = table.get(value)
        if code is None:
            code = table[value] = len(table)
        return code

    def set_context(self, caller: str, cpu: int) -> None:  # noqa: D102
        self._caller = self._code("caller", caller)
        self._cpu = cpu

    def set_migratetype_numbers(self, numbers: tuple[int, ...]) -> None:  # noqa: D102
        import numpy as np

        # Index 0 holds -1 ("not applicable"), so the lookup is lut[value + 1].
        self._mt_lut = np.array((-1, *numbers), dtype=np.int16)

    def _row(
        self,
        event: str,
        zone: Zone | None,
        nid: int,
        pfn: int,
        order: int,
        gfp: int = 0,
        mt: int = -1,
        outcome: str = ts.OUTCOME_OK,
        path: str = ts.PATH_NONE,
        extra: tuple[int, int, int, int] = (-1, -1, -1, -1),
        reason: str = "",
    ) -> None:
        c = self._cols
        c["time_ns"].append(self.clock())
        c["event"].append(self._code("event", event))
        c["caller"].append(self._caller)
        c["cpu"].append(self._cpu)
        c["nid"].append(zone.nid if zone is not None else nid)
        c["zone"].append(self._code("zone", zone.name if zone is not None else ""))
        c["order"].append(order)
        c["gfp"].append(gfp)
        c["migratetype"].append(mt)
        c["pfn"].append(pfn)
        c["outcome"].append(self._code("outcome", outcome))
        c["path"].append(self._code("path", path))
        c["fallback_order"].append(extra[0])
        c["fallback_migratetype"].append(extra[1])
        c["change_ownership"].append(extra[2])
        c["percpu_refill"].append(extra[3])
        c["reason"].append(self._code("reason", reason))
        self.events_traced += 1
        if len(c["time_ns"]) >= self.flush_rows:
            self.flush()

    def mm_page_alloc(  # noqa: D102
        self, zone: Zone | None, pfn: int, order: int, gfp: int, mt: int, path: str, nid: int
    ) -> None:
        outcome = ts.OUTCOME_OK if pfn >= 0 else ts.OUTCOME_FAIL
        self._row(ts.MM_PAGE_ALLOC, zone, nid, pfn, order, gfp, mt, outcome, path)

    def mm_page_free(self, zone: Zone, pfn: int, order: int) -> None:  # noqa: D102
        self._row(ts.MM_PAGE_FREE, zone, zone.nid, pfn, order)

    def mm_page_alloc_zone_locked(  # noqa: D102
        self, zone: Zone, pfn: int, order: int, mt: int, percpu_refill: bool
    ) -> None:
        extra = (-1, -1, -1, int(percpu_refill))
        self._row(ts.MM_PAGE_ALLOC_ZONE_LOCKED, zone, zone.nid, pfn, order, 0, mt, extra=extra)

    def mm_page_pcpu_drain(self, zone: Zone, pfn: int, order: int, mt: int) -> None:  # noqa: D102
        self._row(ts.MM_PAGE_PCPU_DRAIN, zone, zone.nid, pfn, order, 0, mt)

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
        extra = (fallback_order, fallback_mt, int(change_ownership), -1)
        self._row(
            ts.MM_PAGE_ALLOC_EXTFRAG, zone, zone.nid, pfn, alloc_order, 0, alloc_mt, extra=extra
        )

    def mm_page_alloc_fail(  # noqa: D102
        self, nid: int, order: int, gfp: int, mt: int, reason: str
    ) -> None:
        self._row(
            ts.MM_PAGE_ALLOC_FAIL, None, nid, -1, order, gfp, mt, ts.OUTCOME_FAIL,
            ts.PATH_FAILURE, reason=reason,
        )

    def bad_page(self, zone: Zone | None, pfn: int, order: int, reason: str) -> None:  # noqa: D102
        nid = zone.nid if zone is not None else -1
        self._row(ts.BAD_PAGE, zone, nid, pfn, order, outcome=ts.OUTCOME_FAIL, reason=reason)

    def alloc_order_warn(  # noqa: D102
        self, nid: int, order: int, gfp: int, reason: str
    ) -> None:
        self._row(ts.ALLOC_ORDER_WARN, None, nid, -1, order, gfp, -1, ts.OUTCOME_FAIL,
                  ts.PATH_FAILURE, reason=reason)

    # -- output -------------------------------------------------------------------------
    def _table(self) -> Any:
        import numpy as np
        import pyarrow as pa

        arrays = []
        for name, typ in ts.EVENT_COLUMNS:
            col = self._cols[name]
            if typ == "string":
                names = list(self._strings[name])
                codes = pa.array(np.frombuffer(col, dtype=np.int32), type=pa.int32())
                arrays.append(pa.DictionaryArray.from_arrays(codes, pa.array(names, pa.string())))
            else:
                values = np.frombuffer(col, dtype=np.dtype(typ))
                if name in ts.MIGRATETYPE_COLUMNS:
                    values = self._mt_lut[values + 1]
                arrays.append(pa.array(values))
        return pa.Table.from_arrays(arrays, names=[n for n, _ in ts.EVENT_COLUMNS])

    def flush(self) -> None:
        """Write the buffered rows as one Parquet row group to the temp file."""
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
        self._reset()

    def close(self) -> None:
        """Write the last rows and rename the file into place."""
        self.flush()
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
