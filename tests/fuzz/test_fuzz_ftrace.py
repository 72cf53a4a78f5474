"""Fuzz the ftrace importer with damaged slices of the oracle's real 6.1 traces.

``allocsim trace import`` (and ``allocsim replay`` of ftrace text) reads plain, ``.gz``
and ``.xz`` text one line at a time (:func:`import_trace`). A slice of a real trace,
damaged the ways :mod:`tests.fuzz.hostile` damages files (a number turned huge, negative
or NaN, fields swapped, a line cut short, a megabyte line, bytes that are not UTF-8, ...)
and then possibly compressed, with the compressed stream itself cut or corrupted, must
give a Parquet table or one :class:`TraceError` naming the file and the line.
"""

from __future__ import annotations

import functools
import gzip
import lzma
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.errors import TraceError
from simcore.formats.ftrace import COLUMNS, ImportReport, import_trace, parse_line
from tests.fuzz.fuzzing import fuzz_settings, note_class, outcome
from tests.fuzz.hostile import mutated

ORACLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "oracle"
WORK = Path(tempfile.mkdtemp(prefix="allocsim-fuzz-ftrace-"))
SLICE = 40


def _slices() -> tuple[str, ...]:
    """Slices of real traces: the header, and runs of every page event and other events."""
    out = []
    for name in ("hugetlb-fresh/trace.txt.xz", "hugetlb-fresh/slowpath-trace.txt.xz",
                 "hugetlb-fragmented-nocompact/trace.txt.xz"):
        lines = lzma.open(ORACLE / name, "rt").read().split("\n")[:4000]
        out.append("\n".join(lines[:SLICE]) + "\n")
        for event in ("mm_page_alloc:", "mm_page_alloc_zone_locked", "mm_page_pcpu_drain",
                      "mm_page_alloc_extfrag", "mm_page_free_batched", "mm_compaction"):
            at = next((i for i, line in enumerate(lines) if event in line), None)
            if at is not None:
                out.append("\n".join(lines[at:at + SLICE]) + "\n")
    return tuple(out)


TEXTS = _slices()


def _import(path: Path) -> ImportReport:
    out = WORK / "trace.parquet"
    report = import_trace(path, out)
    table = pq.read_table(out)
    assert table.column_names == [name for name, _ in COLUMNS]
    assert table.num_rows == sum(report.events.values())
    return report


def _write(content: bytes, suffix: str) -> Path:
    path = WORK / f"trace{suffix}"
    if suffix == ".gz":
        content = gzip.compress(content)
    elif suffix == ".xz":
        content = lzma.compress(content)
    path.write_bytes(content)
    return path


def test_every_slice_imports() -> None:
    assert len(TEXTS) >= 10
    for text in TEXTS:
        path = _write(text.encode(), ".txt")
        report = outcome("ftrace-base", str(path), functools.partial(_import, path))
        assert isinstance(report, ImportReport) and report.lines >= SLICE


@fuzz_settings(120)
@given(mutated(TEXTS, "ftrace"), st.sampled_from((".txt", ".txt", ".gz", ".xz")))
def test_damaged_traces(case: tuple[bytes, tuple[str, ...]], suffix: str) -> None:
    note_class("ftrace", f"stored as {suffix}")
    path = _write(case[0], suffix)
    outcome("ftrace", str(path), lambda: _import(path))


@fuzz_settings(40)
@given(st.sampled_from(TEXTS), st.sampled_from((".gz", ".xz")), st.data())
def test_damaged_compressed_streams(text: str, suffix: str, data: st.DataObject) -> None:
    path = _write(text.encode(), suffix)
    raw = path.read_bytes()
    how = data.draw(st.sampled_from(("cut", "flipped byte", "junk appended", "junk first")))
    note_class("ftrace", f"compressed stream {how}")
    at = data.draw(st.integers(0, len(raw) - 1))
    raw = {"cut": raw[:at], "flipped byte": raw[:at] + bytes([raw[at] ^ 0x55]) + raw[at + 1:],
           "junk appended": raw + b"\x00junk", "junk first": b"junk" + raw}[how]
    path.write_bytes(raw)
    outcome("ftrace", str(path), lambda: _import(path))


@fuzz_settings(60)
@given(st.text(max_size=120))
def test_arbitrary_lines(text: str) -> None:
    note_class("ftrace", "arbitrary line")
    outcome("ftrace", "t.txt", lambda: parse_line(text, "t.txt", 7))


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("pfn=0x10981f", "pfn=0x" + "f" * 30, "pfn= in 0.."),
    ("order=0", "order=99999", "order= in 0..63"),
    ("order=0", "order=-1", "order= in 0..63"),
    ("sampler-114 ", "sampler-" + "9" * 5000 + " ", "an ftrace line"),
    ("[001]", "[70000]", "cpu= in 0..8191"),
    ("4.721508:", "99999999999.1:", "int64 nanoseconds"),
])
def test_numbers_outside_their_columns_are_one_error_at_their_line(old: str, new: str,
                                                                   expected: str) -> None:
    text = TEXTS[0]
    line = text[:text.index(old)].count("\n") + 1
    path = _write(text.replace(old, new, 1).encode(), ".txt")
    result = outcome("ftrace", str(path), lambda: _import(path))
    assert isinstance(result, TraceError) and result.line == line and expected in str(result)


def test_a_line_of_a_megabyte_is_refused_without_reading_it_whole() -> None:
    path = _write(TEXTS[0].encode() + b"x" * (8 << 20), ".txt")
    result = outcome("ftrace", str(path), lambda: _import(path))
    assert isinstance(result, TraceError) and "at most 65,536 characters" in str(result)


def test_a_corrupt_gzip_stream_is_one_error() -> None:
    """A flipped byte in a deflate block raised zlib.error, which nothing caught."""
    path = _write(TEXTS[0].encode(), ".gz")
    raw = path.read_bytes()
    path.write_bytes(raw[:10] + bytes([raw[10] ^ 0x55]) + raw[11:])
    result = outcome("ftrace", str(path), lambda: _import(path))
    assert isinstance(result, TraceError) and "gzip-compressed ftrace text" in str(result)
