"""What the recording tracer writes equals what it was called with, for every event type.

Each tracer method takes a tracepoint's fields (simcore/sim/tracer.py); the Parquet file has
one row per call with the columns of simcore/formats/trace_schema.py. The expected row is built
here from the call's arguments alone, by the schema's documented rules:

* ``time_ns`` is the clock at the call; ``caller`` and ``cpu`` the last set_context();
* ``nid`` and ``zone`` come from the zone argument when there is one, else from the
  ``nid`` argument (-1 for a zone-less bad_page) and "";
* migratetype columns use the kernel's numbering for the config: without CONFIG_CMA
  internal (UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC, CMA, ISOLATE) are written as
  (0, 1, 2, 3, -1, 4), with it unchanged; -1 stays -1;
* every column an event does not have is -1 (integers), "" (reason) or "none" (path).

Two sources of calls: a fixed list of direct calls (both CMA configs, one and several
row groups), and a real allocator session on a 64 MiB machine that emits all eight
event types, recorded by a tracer that also logs its calls.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq
import pytest

from simcore.formats import trace_schema as ts
from simcore.mm.constants import MigrateType
from simcore.mm.gfp import GFP, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, GFP_TRANSHUGE
from simcore.sim.tracer import RecordingTracer

if TYPE_CHECKING:
    from conftest import Lab

    from simcore.mm.zone import Zone

KERNEL_NUMBERS = {False: (0, 1, 2, 3, -1, 4), True: (0, 1, 2, 3, 4, 5)}
NO_EXTRA = (-1, -1, -1, -1)
Call = tuple[str, tuple[Any, ...], int, str, int]
"""(tracepoint, args, clock at the call, caller, cpu)."""


def _kmt(mt: int, cma: bool) -> int:
    return -1 if mt < 0 else KERNEL_NUMBERS[cma][mt]


def _zone_cols(zone: Zone | None, nid: int) -> tuple[int, str]:
    return (zone.nid, zone.name) if zone is not None else (nid, "")


def expected_row(call: Call, cma: bool) -> dict[str, Any]:
    """The row the schema promises for one tracer call."""
    event, args, time_ns, caller, cpu = call
    # (zone, nid, order, gfp, mt, pfn, outcome, path, extra, reason) per event type
    stage, latency = "", -1  # mm_page_alloc's simulator fields; not applicable elsewhere
    if event == ts.MM_PAGE_ALLOC:
        zone, pfn, order, gfp, mt, path, nid, stage, latency = args
        ok = ts.OUTCOME_OK if pfn >= 0 else ts.OUTCOME_FAIL
        fields = (zone, nid, order, gfp, mt, pfn, ok, path, NO_EXTRA, "")
    elif event == ts.MM_PAGE_FREE:
        zone, pfn, order = args
        fields = (zone, -1, order, 0, -1, pfn, ts.OUTCOME_OK, ts.PATH_NONE, NO_EXTRA, "")
    elif event == ts.MM_PAGE_ALLOC_ZONE_LOCKED:
        zone, pfn, order, mt, refill = args
        fields = (zone, -1, order, 0, mt, pfn, ts.OUTCOME_OK, ts.PATH_NONE,
                  (-1, -1, -1, int(refill)), "")
    elif event == ts.MM_PAGE_PCPU_DRAIN:
        zone, pfn, order, mt = args
        fields = (zone, -1, order, 0, mt, pfn, ts.OUTCOME_OK, ts.PATH_NONE, NO_EXTRA, "")
    elif event == ts.MM_PAGE_ALLOC_EXTFRAG:
        zone, pfn, order, fallback_order, mt, fallback_mt, claimed = args
        extra = (fallback_order, _kmt(fallback_mt, cma), int(claimed), -1)
        fields = (zone, -1, order, 0, mt, pfn, ts.OUTCOME_OK, ts.PATH_NONE, extra, "")
    elif event == ts.MM_PAGE_ALLOC_FAIL:
        nid, order, gfp, mt, reason = args
        fields = (None, nid, order, gfp, mt, -1, ts.OUTCOME_FAIL, ts.PATH_FAILURE,
                  NO_EXTRA, reason)
    elif event in (ts.BAD_PAGE, ts.SIM_WARNING):
        zone, pfn, order, reason = args
        fields = (zone, -1, order, 0, -1, pfn, ts.OUTCOME_FAIL, ts.PATH_NONE, NO_EXTRA,
                  reason)
    elif event == ts.ALLOC_ORDER_WARN:
        nid, order, gfp, reason = args
        fields = (None, nid, order, gfp, -1, -1, ts.OUTCOME_FAIL, ts.PATH_FAILURE,
                  NO_EXTRA, reason)
    else:
        raise AssertionError(f"no expectation for {event}")
    zone, nid, order, gfp, mt, pfn, outcome, path, extra, reason = fields
    nid, zone_name = _zone_cols(zone, nid)
    return {
        "time_ns": time_ns, "event": event, "caller": caller, "cpu": cpu, "nid": nid,
        "zone": zone_name, "order": order, "gfp": gfp, "migratetype": _kmt(mt, cma),
        "pfn": pfn, "outcome": outcome, "path": path, "fallback_order": extra[0],
        "fallback_migratetype": extra[1], "change_ownership": extra[2],
        "percpu_refill": extra[3], "reason": reason, "stage": stage, "latency_ns": latency,
    }


class LoggingTracer(RecordingTracer):
    """A recording tracer that also keeps every call (with its clock and context)."""

    def __init__(self, path: Path, flush_rows: int = 1_000_000) -> None:
        self.now = 0
        super().__init__(path, clock=lambda: self.now, flush_rows=flush_rows)
        self.log: list[Call] = []
        self.context = ("", -1)

    def set_context(self, caller: str, cpu: int) -> None:  # noqa: D102
        self.context = (caller, cpu)
        super().set_context(caller, cpu)


def _logged(name: str) -> Callable[..., None]:
    def method(self: LoggingTracer, *args: Any) -> None:
        self.now += 1000 + len(self.log)  # a distinct time for every row
        self.log.append((name, args, self.now, *self.context))
        getattr(RecordingTracer, name)(self, *args)
    return method


for _name in ts.EVENT_NAMES:
    setattr(LoggingTracer, _name, _logged(_name))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    table = pq.read_table(path)
    assert [f.name for f in table.schema] == [n for n, _ in ts.EVENT_COLUMNS]
    return table.to_pylist()


def _direct_calls(zone: Zone) -> list[tuple[str, int, tuple[Any, ...]]]:
    """(caller, cpu, call) for every tracepoint, with internal migratetypes 0..5."""
    u, m, r = int(MigrateType.UNMOVABLE), int(MigrateType.MOVABLE), int(MigrateType.RECLAIMABLE)
    h, c, iso = int(MigrateType.HIGHATOMIC), int(MigrateType.CMA), int(MigrateType.ISOLATE)
    kernel = int(GFP_KERNEL)
    return [
        ("slab", 0, ("mm_page_alloc", zone, 4100, 0, kernel, u, ts.PATH_PCP, 0,
                     ts.STAGE_FAST, 100)),
        ("slab", 0, ("mm_page_alloc", None, -1, 3, int(GFP_ATOMIC), h, ts.PATH_FAILURE, 1,
                     ts.STAGE_FAIL, 0)),
        ("slab", 0, ("mm_page_alloc", zone, 4104, 2, kernel, u, ts.PATH_BUDDY, 0,
                     ts.STAGE_SLOW_RECLAIM, 123_456)),
        ("", -1, ("mm_page_free", zone, 8192, 9)),
        ("thp", 3, ("mm_page_alloc_zone_locked", zone, 8704, 9, m, True)),
        ("thp", 3, ("mm_page_alloc_zone_locked", zone, 9216, 2, r, False)),
        ("thp", 3, ("mm_page_pcpu_drain", zone, 4101, 0, iso)),
        ("thp", 3, ("mm_page_pcpu_drain", zone, 4102, 1, c)),
        ("user", 1, ("mm_page_alloc_extfrag", zone, 12288, 0, 10, u, m, True)),
        ("user", 1, ("mm_page_alloc_extfrag", zone, 12800, 1, 3, m, r, False)),
        ("user", 1, ("mm_page_alloc_extfrag", zone, 13312, 2, 4, c, iso, False)),
        ("user", 1, ("mm_page_alloc_fail", 1, 3, int(GFP_ATOMIC), h, "no zone; x")),
        ("user", 1, ("bad_page", zone, 4103, 0, "nonzero _refcount")),
        ("user", 1, ("bad_page", None, 1 << 40, 2, "pfn out of range")),
        ("user", 1, ("alloc_order_warn", 0, 11, int(GFP_KERNEL | GFP.NOWARN), "order:11")),
        ("user", 1, ("sim_warning", zone, 4108, 0, "3 pages leaked")),
    ]


@pytest.mark.parametrize("cma", [False, True])
@pytest.mark.parametrize("flush_rows", [1_000_000, 2])
def test_direct_calls_round_trip(lab: Lab, tmp_path: Path, cma: bool, flush_rows: int) -> None:
    zone = lab.machine(cma=cma).zones[1]
    path = tmp_path / "events.parquet"
    tracer = LoggingTracer(path, flush_rows)
    tracer.set_migratetype_numbers(KERNEL_NUMBERS[cma])
    calls = _direct_calls(zone)
    for caller, cpu, (name, *args) in calls:
        tracer.set_context(caller, cpu)
        getattr(tracer, name)(*args)
    tracer.close()
    assert {name for _, _, (name, *_) in calls} == set(ts.EVENT_NAMES)
    assert _read_rows(path) == [expected_row(call, cma) for call in tracer.log]
    if flush_rows == 2:
        assert pq.ParquetFile(path).num_row_groups == 8  # 16 rows


def test_allocator_session_round_trip(lab: Lab, tmp_path: Path) -> None:
    # A real session: every event type is emitted by the model itself.
    path = tmp_path / "events.parquet"
    tracer = LoggingTracer(path)
    mm = lab.machine(tracer=tracer)
    kernel = int(GFP_KERNEL)
    tracer.set_context("alpha", 0)
    pfn = mm.alloc_pages(kernel, 0, 0, 0)  # refill: steals from MOVABLE (extfrag)
    thp = mm.alloc_pages(int(GFP_TRANSHUGE), 9, 0, 0)
    assert mm.free_pages(pfn, 0, 0)
    tracer.set_context("beta", 1)
    mm.drain_all_pages()  # pcpu_drain
    assert mm.free_pages(pfn, 0, 1)  # double free: a sim_warning (the count goes to -1)
    assert not mm.free_pages(mm.pages.nr_pages + 8, 0, 1)  # a sim_warning without a zone
    split = mm.alloc_pages(kernel, 2, 0, 1)
    assert mm.split_page(split, 2)
    assert not mm.free_pages(split, 2, 1)  # freed whole: bad_page "nonzero _refcount" x3
    assert mm.alloc_pages(kernel, 11, 0, 1) == -1  # alloc_order_warn
    block = mm.alloc_pages(kernel, 1, 0, 1)
    assert mm.free_pages(block, 0, 1)  # too small an order: sim_warning
    for zone in mm.zones:
        zone.watermark = [1 << 30] * 4
    assert mm.alloc_pages(int(GFP_NOWAIT), 0, 0, 1) == -1  # _fail, then mm_page_alloc
    assert mm.free_pages(thp, 9, 1)
    tracer.close()
    assert {name for name, *_ in tracer.log} == set(ts.EVENT_NAMES)
    assert _read_rows(path) == [expected_row(call, False) for call in tracer.log]


def test_a_cpu_beyond_the_int16_column_is_refused(tmp_path: Path) -> None:
    """The compiled tracer writes C int16s: a CPU that does not fit must raise, not wrap."""
    tracer = RecordingTracer(tmp_path / "events.parquet", clock=lambda: 0)
    tracer.set_context("w", (1 << 15) - 1)
    with pytest.raises(ValueError, match="CPU 32768 does not fit"):
        tracer.set_context("w", 1 << 15)
    with pytest.raises(ValueError, match="CPU -2 does not fit"):
        tracer.set_context("w", -2)
