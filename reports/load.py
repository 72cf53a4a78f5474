"""Read a run directory into pandas DataFrames for the report.

The layout and the Parquet schemas come from :mod:`simcore.formats.trace_schema`; this module
checks that each file is present, readable and has the schema's columns with compatible
types, and raises :class:`ReportInputError` naming the file and what was expected if not.
Only the event columns the report needs are read, and only ``mm_page_alloc`` rows, so a
long trace does not have to fit in memory as a whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simcore.formats import trace_schema as ts

# The event columns the report aggregates; the rest of EVENTS_FILE is not read.
REPORT_EVENT_COLUMNS = ("time_ns", "event", "caller", "nid", "zone", "order", "gfp", "outcome",
                        "path", "stage", "latency_ns")
ZONEINFO_FILE = "zoneinfo.txt"
"""The end-of-run ``/proc/zoneinfo``: zone sizes and ``lowmem_reserve`` (``protection:``)."""

SUMMARY_KEYS = (
    "simulated_seconds",
    "wall_seconds",
    "alloc_requests",
    "pages_allocated",
    "pages_freed",
    "failures",
    "events_traced",
)
MANIFEST_KEYS = ("name", "seed", "status")


class ReportInputError(Exception):
    """A run directory file is missing, unreadable or does not match the trace schema."""


@dataclass(frozen=True)
class RunData:
    """Everything the report reads from one run directory.

    Attributes:
        run_dir: The run directory.
        manifest: Parsed ``manifest.json`` (name, seed, status, config, ...).
        summary: Parsed ``summary.json`` (totals and failure counts).
        alloc_events: ``mm_page_alloc`` rows of EVENTS_FILE, REPORT_EVENT_COLUMNS only.
        buddyinfo: BUDDYINFO_FILE, all columns (free blocks per migratetype and order).
        zonestat: ZONESTAT_FILE, all columns (free pages and watermarks per zone).
        spans: SPANS_FILE, all columns (kswapd, direct reclaim, OOM kills, actions).
        pageblocks: PAGEBLOCKS_FILE: the pageblock map at the end of the run.
        zones: One row per populated zone of the end-of-run zoneinfo: ``nid``, ``zone``,
            ``present``, ``managed``, ``spanned``, ``start_pfn`` and ``protection`` (the
            zone's ``lowmem_reserve[]``, a tuple indexed by the requested zone).
    """

    run_dir: Path
    manifest: dict[str, Any]
    summary: dict[str, Any]
    alloc_events: pd.DataFrame
    buddyinfo: pd.DataFrame
    zonestat: pd.DataFrame
    spans: pd.DataFrame
    pageblocks: pd.DataFrame
    zones: pd.DataFrame
    vmstat: dict[str, int]

    @property
    def duration_s(self) -> float:
        """Simulated seconds of the run."""
        return float(self.summary["simulated_seconds"])

    @property
    def pageblock_order(self) -> int:
        """The machine's pageblock order (9 on x86_64)."""
        machine = self.manifest.get("config", {}).get("machine", {})
        return int(machine.get("pageblock_order", 9))


def _type_matches(actual: pa.DataType, expected: str) -> bool:
    """Whether an Arrow column type is acceptable for a schema type name."""
    if pa.types.is_dictionary(actual):
        actual = actual.value_type
    if expected == "string":
        return bool(pa.types.is_string(actual) or pa.types.is_large_string(actual))
    return bool(pa.types.is_integer(actual))


def check_parquet_schema(path: Path, rel: str, columns: tuple[tuple[str, str], ...]) -> None:
    """Raise ReportInputError unless ``path`` is a Parquet file with ``columns``.

    Args:
        path: The file on disk.
        rel: Its name relative to the run directory, used in messages.
        columns: ``(name, arrow type name)`` pairs from :mod:`simcore.formats.trace_schema`.
    """
    if not path.is_file():
        raise ReportInputError(f"{rel}: missing (expected a Parquet file at {path})")
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise ReportInputError(f"{rel}: not a readable Parquet file ({exc})") from exc
    missing = [name for name, _ in columns if name not in schema.names]
    if missing:
        raise ReportInputError(
            f"{rel}: missing columns {missing}; expected {[n for n, _ in columns]}"
        )
    wrong = [
        f"{name} is {schema.field(name).type}, expected {kind}"
        for name, kind in columns
        if not _type_matches(schema.field(name).type, kind)
    ]
    if wrong:
        raise ReportInputError(f"{rel}: wrong column types: {'; '.join(wrong)}")


def read_parquet(
    run_dir: Path,
    rel: str,
    columns: tuple[tuple[str, str], ...],
    *,
    read_columns: tuple[str, ...] | None = None,
    event: str | None = None,
) -> pd.DataFrame:
    """Check and read one Parquet file of a run directory.

    Args:
        run_dir: The run directory.
        rel: The file, relative to ``run_dir`` (a ``trace_schema`` ``*_FILE`` constant).
        columns: The schema it must follow.
        read_columns: Only these columns are read (default: all of ``columns``).
        event: If given, only rows whose ``event`` column equals it are read.

    Returns:
        The rows; dictionary-encoded string columns arrive as ``category`` dtype.

    Raises:
        ReportInputError: If the file is missing, unreadable or off-schema.
    """
    path = run_dir / rel
    check_parquet_schema(path, rel, columns)
    names = list(read_columns or (name for name, _ in columns))
    filters = [("event", "=", event)] if event is not None else None
    try:
        # no Arrow worker threads: the report forks (reports.render), and a thread holding
        # a lock at that moment would leave the child waiting on it for ever
        table = pq.read_table(path, columns=names, filters=filters, use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise ReportInputError(f"{rel}: cannot read rows ({exc})") from exc
    return table.to_pandas(use_threads=False)


def read_json(run_dir: Path, rel: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Read a JSON object from the run directory and check it has ``keys``.

    Raises:
        ReportInputError: If the file is missing, not JSON, not an object or lacks a key.
    """
    path = run_dir / rel
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportInputError(f"{rel}: missing (expected a JSON file at {path})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"{rel}: not readable as JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ReportInputError(f"{rel}: expected a JSON object, got {type(data).__name__}")
    missing = [key for key in keys if key not in data]
    if missing:
        raise ReportInputError(f"{rel}: missing keys {missing}; expected {list(keys)}")
    return data


def check_finished(run_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse a run that did not finish, saying how it ended rather than what is missing.

    Raises:
        ReportInputError: If the manifest's status is not ``ok`` or ``panic`` (the
            modelled kernel panicked: the results up to that moment are complete).
    """
    status = manifest["status"]
    if status in ("ok", "panic"):
        return
    stage = manifest.get("stage")
    how = f"{status} while {stage}" if stage else str(status)
    simulated = manifest.get("simulated_ns")
    when = f" at {simulated / 1e9:.3f} s simulated" if isinstance(simulated, int) else ""
    error = manifest.get("error")
    why = f" ({error})" if error else ""
    raise ReportInputError(
        f"{run_dir}: the run {how}{when}{why}; it has no complete results to report")


def _alloc_events(run_dir: Path, manifest: dict[str, Any]) -> pd.DataFrame:
    """The ``mm_page_alloc`` rows; none (an empty frame) for a run with trace.events off."""
    config = manifest.get("config")
    trace = config.get("trace", {}) if isinstance(config, dict) else {}
    if trace.get("events") is False and not (run_dir / ts.EVENTS_FILE).exists():
        return pd.DataFrame({name: pd.Series(dtype="object" if kind == "string" else "int64")
                             for name, kind in ts.EVENT_COLUMNS if name in REPORT_EVENT_COLUMNS})
    return read_parquet(run_dir, ts.EVENTS_FILE, ts.EVENT_COLUMNS,
                        read_columns=REPORT_EVENT_COLUMNS, event=ts.MM_PAGE_ALLOC)


def read_zones(run_dir: Path) -> pd.DataFrame:
    """The populated zones of the run's end-of-run ``zoneinfo.txt``, as RunData.zones.

    Raises:
        ReportInputError: If the file is missing or is not a zoneinfo.
    """
    from simcore.errors import AllocsimError
    from simcore.formats.zoneinfo import parse_zoneinfo

    path = run_dir / ZONEINFO_FILE
    try:
        zones = parse_zoneinfo(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError as exc:
        raise ReportInputError(f"{ZONEINFO_FILE}: missing (expected /proc/zoneinfo text "
                               f"at {path})") from exc
    except (OSError, UnicodeDecodeError, AllocsimError) as exc:
        raise ReportInputError(f"{ZONEINFO_FILE}: not a readable zoneinfo ({exc})") from exc
    rows = [{"nid": z.nid, "zone": z.name, "present": z.present, "managed": z.managed,
             "spanned": z.spanned, "start_pfn": z.start_pfn, "protection": tuple(z.protection)}
            for z in zones if z.present]
    return pd.DataFrame(rows, columns=["nid", "zone", "present", "managed", "spanned",
                                       "start_pfn", "protection"])


def read_vmstat(run_dir: Path) -> dict[str, int]:
    """The run's ``vmstat.txt`` (``name value`` lines), in file order.

    Raises:
        ReportInputError: If the file is missing or a line is not ``name value``.
    """
    path = run_dir / ts.VMSTAT_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ReportInputError(f"{ts.VMSTAT_FILE}: missing (expected /proc/vmstat text at "
                               f"{path})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{ts.VMSTAT_FILE}: not readable ({exc})") from exc
    out: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ReportInputError(f"{ts.VMSTAT_FILE}:{number}: expected 'name value', "
                                   f"got {line[:60]!r}")
        out[parts[0]] = int(parts[1])
    return out


def load_run(run_dir: Path) -> RunData:
    """Read and check everything the report needs from ``run_dir``.

    Raises:
        ReportInputError: If ``run_dir`` is not a directory or any input is bad.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: not a run directory")
    manifest = read_json(run_dir, ts.MANIFEST_FILE, MANIFEST_KEYS)
    check_finished(run_dir, manifest)
    summary = read_json(run_dir, ts.SUMMARY_FILE, SUMMARY_KEYS)
    events = _alloc_events(run_dir, manifest)
    traced = (run_dir / ts.EVENTS_FILE).exists()
    if traced and events.empty and int(summary["alloc_requests"]):
        raise ReportInputError(
            f"{ts.EVENTS_FILE}: no mm_page_alloc rows, but {ts.SUMMARY_FILE} counts "
            f"{int(summary['alloc_requests']):,} allocation requests: the trace is not this "
            "run's")
    return RunData(
        run_dir=run_dir,
        manifest=manifest,
        summary=summary,
        alloc_events=events,
        buddyinfo=read_parquet(run_dir, ts.BUDDYINFO_FILE, ts.BUDDYINFO_COLUMNS),
        zonestat=read_parquet(run_dir, ts.ZONESTAT_FILE, ts.ZONESTAT_COLUMNS),
        spans=read_parquet(run_dir, ts.SPANS_FILE, ts.SPAN_COLUMNS),
        pageblocks=read_parquet(run_dir, ts.PAGEBLOCKS_FILE, ts.PAGEBLOCKS_COLUMNS),
        zones=read_zones(run_dir),
        vmstat=read_vmstat(run_dir),
    )
