"""Periodic snapshots of allocator state, written as Parquet.

Every ``snapshot_interval_ns`` of simulated time a SimPy process records, per zone,
the ``/proc/pagetypeinfo`` free-block levels (blocks per order and migratetype) and
the ``/proc/zoneinfo`` headline numbers (free pages, pcp pages, watermarks, boost) and
the zone's pageblock census (:func:`simcore.sim.pollution.zone_census`: pageblocks
holding only movable allocations, holding an unmovable one, and mixed).
Rows go into columnar ``array.array`` buffers; nothing per row is a Python object.
A snapshot costs O(zones x (orders x migratetypes + CPUs)), plus one vectorised numpy
pass over the page flags for the census, whatever the number of events so far. It
changes no state: the census reads pages, and no charge of a polluted block is cleared.

Before each snapshot the recorder calls its ``catch_up`` hook (the machine's
:meth:`~simcore.sim.machine.Machine.apply_pending_frees`), so a deferred free due at
or before the snapshot's time is in it.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from simcore.atomic import atomic_path
from simcore.formats import trace_schema as ts
from simcore.mm.constants import MIGRATETYPE_NAMES
from simcore.mm.page_alloc import PageAllocator
from simcore.sim.pollution import census_counts, machine_census, mixed_pageblocks

_TYPECODE = {"int64": "q", "int16": "h"}


class _Columns:
    def __init__(self, schema: tuple[tuple[str, str], ...]) -> None:
        self.schema = schema
        self.cols: dict[str, Any] = {
            n: (array(_TYPECODE[t]) if t != "string" else []) for n, t in schema
        }

    def write(self, path: Path) -> None:
        import pyarrow as pa

        arrays = []
        for name, typ in self.schema:
            col = self.cols[name]
            if typ == "string":
                arrays.append(pa.array(col, pa.string()).dictionary_encode())
            else:
                arrays.append(pa.array(col, type=pa.from_numpy_dtype(typ)))
        write_parquet(path, arrays, self.schema)


def write_parquet(path: Path, arrays: list[Any], schema: tuple[tuple[str, str], ...]) -> int:
    """Write Arrow ``arrays`` as the columns of ``schema`` to ``path``, atomically.

    Returns the number of rows written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays(arrays, names=[n for n, _ in schema])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return int(table.num_rows)


class SnapshotRecorder:
    """Collects buddyinfo/pagetypeinfo levels and zone state over time."""

    def __init__(self, mm: PageAllocator, catch_up: Callable[[], None] | None = None) -> None:
        self.mm = mm
        self.catch_up = catch_up
        """Called before each snapshot to bring the allocator up to the current time."""
        self.buddy = _Columns(ts.BUDDYINFO_COLUMNS)
        self.zonestat = _Columns(ts.ZONESTAT_COLUMNS)
        self.snapshots = 0

    def take(self, now_ns: int) -> None:
        """Record one snapshot of every zone at ``now_ns`` (the current time)."""
        if self.catch_up is not None:
            self.catch_up()
        b = self.buddy.cols
        z = self.zonestat.cols
        census = machine_census(self.mm)
        mixed = mixed_pageblocks(self.mm, census)
        for zone, zc in zip(self.mm.zones, census, strict=True):
            for mt in self.mm.migratetypes:  # no CMA rows without CONFIG_CMA
                for order in range(zone.max_order + 1):
                    b["time_ns"].append(now_ns)
                    b["nid"].append(zone.nid)
                    b["zone"].append(zone.name)
                    b["migratetype"].append(MIGRATETYPE_NAMES[mt])
                    b["order"].append(order)
                    b["nr_free"].append(zone.free_area.count_of(order, mt))
            for name, value in (
                ("time_ns", now_ns), ("nid", zone.nid), ("zone", zone.name),
                ("managed_pages", zone.managed_pages), ("nr_free_pages", zone.nr_free_pages),
                ("pcp_pages", zone.pcp_pages), ("wmark_min", zone.wmark_pages(0)),
                ("wmark_low", zone.wmark_pages(1)), ("wmark_high", zone.wmark_pages(2)),
                ("watermark_boost", zone.watermark_boost),
                ("nr_reserved_highatomic", zone.nr_reserved_highatomic),
            ):
                z[name].append(value)
            counts = census_counts(zc, mixed)
            z["pageblocks_movable_only"].append(counts[ts.CENSUS_MOVABLE_ONLY])
            z["pageblocks_unmovable"].append(counts[ts.CENSUS_UNMOVABLE])
            z["pageblocks_mixed"].append(counts["mixed"])
        self.snapshots += 1

    def process(self, env: Any, interval_ns: int) -> Generator[Any, Any, None]:
        """SimPy process: a snapshot now and every ``interval_ns`` after."""
        while True:
            self.take(int(env.now))
            yield env.timeout(interval_ns)

    def write(self, run_dir: Path) -> None:
        """Write both Parquet files into ``run_dir`` atomically."""
        self.buddy.write(run_dir / ts.BUDDYINFO_FILE)
        self.zonestat.write(run_dir / ts.ZONESTAT_FILE)
