"""The end-of-run pageblock map: ``trace/pageblocks.parquet``.

One row per pageblock of every zone, zones in ``mm.zones`` order and pageblocks in pfn
order (a pageblock two zones share has a row in each), schema
:data:`simcore.formats.trace_schema.PAGEBLOCKS_COLUMNS`: the pageblock's migratetype
(``get_pageblock_migratetype()``), its census class and whether it is mixed
(:mod:`simcore.sim.pollution`), and the caller charged with polluting it. It is what
``/proc/pagetypeinfo`` sums up, pageblock by pageblock, plus the simulator-only charge.

The columns are built from the census's numpy arrays (strings as dictionary codes, no
Python object per pageblock) and written at once, atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simcore.formats import trace_schema as ts
from simcore.mm.constants import MIGRATETYPE_NAMES
from simcore.sim.pollution import ZoneCensus
from simcore.sim.recorder import write_parquet


def pageblock_columns(machine: Any, census: list[ZoneCensus],
                      mixed: np.ndarray) -> dict[str, np.ndarray]:
    """The map's columns: numbers as numpy arrays, strings as indices into their names.

    ``census`` and ``mixed`` are :func:`simcore.sim.pollution.rescan_census` of now
    (after it, a block that is not mixed has no charge). The string columns' names are
    in :func:`string_names`.
    """
    pb = machine.mm.pageblock_order
    block_mt = np.frombuffer(machine.mm.pageblock_mt, dtype=np.uint8) & 0x7
    zone_names = [zc.zone.name for zc in census]
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in ts.PAGEBLOCKS_COLUMNS}
    for zc in census:
        n = len(zc.census)
        blocks = np.arange(zc.first, zc.first + n, dtype=np.int64)
        parts["nid"].append(np.full(n, zc.zone.nid, dtype=np.int16))
        parts["zone"].append(np.full(n, zone_names.index(zc.zone.name), dtype=np.int64))
        parts["pfn"].append(blocks << pb)
        parts["migratetype"].append(block_mt[blocks].astype(np.int64))
        parts["census"].append(zc.census.astype(np.int64))
        parts["mixed"].append(mixed[blocks].astype(np.int16))
        # -1 (no charge) -> "" at index 0; a block that is not mixed has no charge
        parts["caller"].append(machine.pb_polluter[blocks].astype(np.int64) + 1)
    return {name: np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
            for name, arrays in parts.items()}


def string_names(machine: Any, census: list[ZoneCensus]) -> dict[str, list[str]]:
    """Per string column of :func:`pageblock_columns`: the names its indices refer to."""
    return {"zone": [zc.zone.name for zc in census],
            "migratetype": list(MIGRATETYPE_NAMES),
            "census": list(ts.CENSUS_CLASSES),
            "caller": ["", *(owner.name for owner in machine._owner_list)]}


def write_pageblock_map(machine: Any, scan: tuple[list[ZoneCensus], np.ndarray],
                        path: Path) -> int:
    """Write ``trace/pageblocks.parquet`` to ``path`` atomically; returns its rows.

    ``scan`` is :func:`simcore.sim.pollution.rescan_census` of now. String columns are
    dictionary-encoded, each dictionary holding the values that occur, in order of first
    occurrence (as the other trace files).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    census, mixed = scan
    columns = pageblock_columns(machine, census, mixed)
    names = string_names(machine, census)
    arrays = []
    for name, typ in ts.PAGEBLOCKS_COLUMNS:
        values = columns[name]
        if typ == "string":
            strings = pc.take(pa.array(names[name], pa.string()), pa.array(values))
            arrays.append(strings.dictionary_encode())
        else:
            arrays.append(pa.array(values, type=pa.from_numpy_dtype(typ)))
    return write_parquet(path, arrays, ts.PAGEBLOCKS_COLUMNS)
