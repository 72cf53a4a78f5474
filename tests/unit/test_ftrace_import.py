"""Importing ftrace text of the kmem: page events (simcore.formats.ftrace)."""

from __future__ import annotations

import lzma
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from allocsim.cli import main
from simcore.errors import TraceError
from simcore.formats.ftrace import COLUMNS, import_trace, parse_line

DATA = Path(__file__).resolve().parents[1] / "data" / "oracle" / "hugetlb-fresh"
POOL_GFP = 0x346CCA  # GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_RETRY_MAYFAIL|NOWARN|THISNODE

ALLOC = ("          init-1       [000] .....     4.728423: mm_page_alloc: "
         "page=(____ptrval____) pfn=0x111000 order=9 migratetype=1 gfp_flags="
         "GFP_HIGHUSER_MOVABLE|__GFP_NOWARN|__GFP_RETRY_MAYFAIL|__GFP_COMP|__GFP_THISNODE\n")


def test_the_oracle_hugetlb_trace_imports_with_the_pool_mask(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    report = import_trace(DATA / "trace.txt.xz", out)
    rows = pq.read_table(out).to_pylist()
    assert [f.name for f in pq.read_schema(out)] == [n for n, _ in COLUMNS]
    assert report.events["mm_page_alloc"] == sum(r["event"] == "mm_page_alloc" for r in rows)
    assert report.skipped["mm_page_free_batched"] == 25  # counted from mm_page_free only
    huge = [r for r in rows if r["event"] == "mm_page_alloc" and r["order"] == 9]
    assert {r["gfp"] for r in huge} == {POOL_GFP}
    meta = dict(line.split("=", 1) for line in (DATA / "meta.txt").read_text().splitlines()
                if "=" in line)
    obtained = int(meta["hugepages_obtained"])
    assert sum(r["pfn"] != 0 for r in huge) == obtained == 361  # and one failure, pfn 0
    assert rows == sorted(rows, key=lambda r: r["line"])


def test_fields_of_each_event_and_both_page_spellings() -> None:
    row = parse_line(ALLOC, "t", 7)
    assert isinstance(row, dict)
    assert (row["line"], row["time_ns"], row["cpu"], row["comm"], row["pid"]) == \
        (7, 4_728_423_000, 0, "init", 1)
    assert (row["pfn"], row["order"], row["migratetype"], row["gfp"]) == \
        (0x111000, 9, 1, POOL_GFP)
    old = parse_line("bash-4242  [001]  123.456789: mm_page_free: "
                     "page=ffffea0004d2c000 pfn=1264384 order=2\n", "t", 1)  # 4.x: no flags
    assert isinstance(old, dict) and (old["pfn"], old["order"], old["cpu"]) == (1264384, 2, 1)
    frag = parse_line("kworker/0:1-12 [000] d..3. 1.000000001: mm_page_alloc_extfrag: "
                      "page=(____ptrval____) pfn=0x1200 alloc_order=0 fallback_order=9 "
                      "pageblock_order=9 alloc_migratetype=0 fallback_migratetype=1 "
                      "fragmenting=0 change_ownership=1\n", "t", 1)
    assert isinstance(frag, dict) and frag["comm"] == "kworker/0:1"
    assert (frag["order"], frag["fallback_order"], frag["fallback_migratetype"],
            frag["change_ownership"], frag["time_ns"]) == (0, 9, 1, 1, 1_000_000_001)
    assert parse_line("  cc1-9 [001] ..... 2.5: mm_compaction_begin: zone=x\n", "t", 1) \
        == "mm_compaction_begin"
    assert parse_line("# tracer: nop\n", "t", 1) == "comment"


@pytest.mark.parametrize(("line", "expected"), [
    (ALLOC.replace("order=9 migratetype=1 gfp_flags", "order="), "mm_page_alloc with"),
    (ALLOC.replace("pfn=0x111000", "pfn=0xzz"), "an integer pfn="),
    (ALLOC.replace("__GFP_THISNODE", "__GFP_THISNOD"), "gfp_flags the model knows"),
    ("init-1 [000] .....  4.72", "an ftrace line"),
    # a page event 6.1 does not have: its pages would vanish from the replay unnoticed
    (ALLOC.replace("mm_page_alloc:", "mm_page_alloc_bulk:"), "a kmem: page event of 6.1"),
    # truncated mid-line, as a trace cut off by a full disk
    (ALLOC[:60], "an ftrace line"),
])
def test_a_malformed_line_names_file_and_line_and_writes_nothing(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "t.txt"
    path.write_text("# tracer: nop\n" + ALLOC + line + "\n")
    out = tmp_path / "t.parquet"
    with pytest.raises(TraceError) as info:
        import_trace(path, out)
    assert info.value.line == 3 and expected in info.value.expected
    assert not out.exists() and not list(tmp_path.glob("*.parquet*"))


def test_binary_garbage_and_a_corrupt_archive_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "g.txt"
    garbage.write_bytes(bytes(range(128, 256)) * 4)
    corrupt = tmp_path / "c.txt.xz"
    corrupt.write_bytes(lzma.compress(ALLOC.encode())[:-20])
    for path in (garbage, corrupt):
        assert main(["trace", "import", str(path), "-o", str(tmp_path / "o.parquet")]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()


def test_the_command_prints_what_it_kept_and_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.txt.xz"
    path.write_bytes(lzma.compress(("# c\n" + ALLOC + ALLOC.replace(
        "mm_page_alloc:", "mm_page_free_batched:")).encode()))
    assert main(["trace", "import", str(path), "-o", str(tmp_path / "o.parquet")]) == 0
    out = capsys.readouterr().out
    assert "imported 1 page events (1 mm_page_alloc)" in out
    assert "1 mm_page_free_batched" in out and "1 comment" in out


def test_other_subsystems_events_are_skipped_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.txt"
    path.write_text(ALLOC + ALLOC.replace("mm_page_alloc:", "mm_compaction_begin:")
                    + ALLOC.replace("mm_page_alloc:", "sched_switch:"))
    assert main(["trace", "import", str(path), "-o", str(tmp_path / "o.parquet")]) == 0
    out = capsys.readouterr().out
    assert "1 mm_compaction_begin" in out and "1 sched_switch" in out


def test_an_unwritable_output_is_named_not_its_temporary_file(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """The error names the -o path the user gave (here /proc, where no file can be made)."""
    trace = Path(__file__).parent.parent / "data" / "oracle" / "hugetlb-fresh" / "trace.txt.xz"
    assert main(["trace", "import", str(trace), "-o", "/proc/allocsim-test.parquet"]) == 2
    err = capsys.readouterr().err
    assert "cannot write /proc/allocsim-test.parquet" in err and ".tmp-" not in err
