"""Tests for the reports package on a small synthetic run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pypdf import PdfReader

import reports.build
import reports.render
from reports import ReportInputError, build_report
from reports.__main__ import main
from reports.load import load_run
from simcore.formats import trace_schema as ts
from tests import reports_fixtures as fx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_PNGS = {f"{stem}.png" for stem in reports.build.FIGURE_STEMS}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return fx.write_run_dir(tmp_path / "run")


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


# -- the report files --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """One report, built by the command line over a stale staging directory."""
    run_dir = fx.write_run_dir(tmp_path_factory.mktemp("built") / "run")
    stale = run_dir / ts.REPORT_DIR / ".report-staging-old"
    stale.mkdir(parents=True)
    (stale / "report.pdf").write_bytes(b"half")
    (run_dir / ts.REPORT_DIR / "old_figure.png").write_bytes(b"from an older version")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([str(run_dir)]) == 0
    return run_dir, out.getvalue().split()


def test_main_writes_pdf_and_pngs_and_prints_them(built: tuple[Path, list[str]]) -> None:
    run_dir, printed = built
    out = run_dir / ts.REPORT_DIR
    assert printed[0] == str(out / "report.pdf")
    assert {Path(p).name for p in printed[1:]} == EXPECTED_PNGS
    # no temp or staging files left, and a figure this version does not draw is gone
    assert _files(out) == EXPECTED_PNGS | {"report.pdf"}
    for name in EXPECTED_PNGS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    reader = PdfReader(out / "report.pdf")
    assert len(reader.pages) == 1 + len(EXPECTED_PNGS)  # the cover + one per figure
    cover = reader.pages[0].extract_text()
    for text in ("synthetic-fragmentation", "seed 42", "What does a synthetic run look like?",
                 "3 of 3 requests failed", "no failure in 7 requests"):
        assert text in cover
    titles = [page.extract_text() for page in reader.pages[1:]]
    for page, words in zip(titles, ("Free blocks per order", "Free memory per zone",
                                    "Fragmentation over time", "Pageblocks at the end",
                                    "Polluted pageblocks", "Allocations (lines)",
                                    "Outcomes by caller", "Allocation latency",
                                    "Huge-page availability", "/proc/vmstat"), strict=True):
        assert words in page


def test_report_without_failures_says_so(run_dir: Path) -> None:
    from reports.cover import cover_lines

    rows = [r for r in fx.event_rows() if r["outcome"] != ts.OUTCOME_FAIL]
    fx.write_table(run_dir / ts.EVENTS_FILE, ts.EVENT_COLUMNS, rows)
    lines = cover_lines(load_run(run_dir))["Failures by caller"]
    assert "hugetlb  no failure in 0 requests" in lines  # a configured caller is listed
    assert "slab     no failure in 2 requests" in lines


# -- errors and atomicity ----------------------------------------------------------------


@pytest.mark.parametrize(
    "rel", [ts.EVENTS_FILE, ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE, ts.SPANS_FILE,
            ts.PAGEBLOCKS_FILE, ts.SUMMARY_FILE, ts.MANIFEST_FILE, ts.VMSTAT_FILE,
            "zoneinfo.txt"]
)
def test_missing_file_is_named(run_dir: Path, rel: str) -> None:
    (run_dir / rel).unlink()
    with pytest.raises(ReportInputError, match=rel.replace(".", r"\.")):
        build_report(run_dir)
    assert not (run_dir / ts.REPORT_DIR).exists()


def test_wrong_columns_are_named(run_dir: Path) -> None:
    table = pq.read_table(run_dir / ts.ZONESTAT_FILE).drop_columns(["wmark_low"])
    pq.write_table(table, run_dir / ts.ZONESTAT_FILE)
    with pytest.raises(ReportInputError, match=r"zonestat\.parquet.*wmark_low"):
        load_run(run_dir)


def test_wrong_column_type_is_named(run_dir: Path) -> None:
    table = pq.read_table(run_dir / ts.BUDDYINFO_FILE)
    as_text = pa.array([str(v) for v in table["nr_free"].to_pylist()])
    table = table.set_column(table.schema.get_field_index("nr_free"), "nr_free", as_text)
    pq.write_table(table, run_dir / ts.BUDDYINFO_FILE)
    with pytest.raises(ReportInputError, match=r"buddyinfo\.parquet.*nr_free"):
        load_run(run_dir)


def test_unreadable_parquet_and_json_are_named(run_dir: Path) -> None:
    (run_dir / ts.EVENTS_FILE).write_bytes(b"not parquet")
    with pytest.raises(ReportInputError, match=r"events\.parquet.*Parquet"):
        load_run(run_dir)
    fx.write_run_dir(run_dir)
    (run_dir / ts.SUMMARY_FILE).write_text(json.dumps({"wall_seconds": 1}))
    with pytest.raises(ReportInputError, match=r"summary\.json.*simulated_seconds"):
        load_run(run_dir)


def test_exception_while_drawing_leaves_no_report(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("figure exploded")

    monkeypatch.setattr(reports.build, "outcomes_figure", broken)
    with pytest.raises(RuntimeError, match="figure exploded"):
        build_report(run_dir)
    assert "report.pdf" not in _files(run_dir / ts.REPORT_DIR)


def test_exception_mid_pdf_keeps_old_report_and_no_temp(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run_dir / ts.REPORT_DIR
    out.mkdir()
    (out / "report.pdf").write_bytes(b"previous complete report")
    real_savefig = reports.render.PdfPages.savefig
    calls = {"n": 0}

    def fail_on_third_page(self: object, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_savefig(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reports.render.PdfPages, "savefig", fail_on_third_page)
    (out / "01_free_blocks.png").write_bytes(b"previous figure")
    with pytest.raises(KeyboardInterrupt):
        build_report(run_dir)
    assert calls["n"] == 3
    # the forked PNG renderer's work is staged and thrown away: nothing was replaced
    assert (out / "report.pdf").read_bytes() == b"previous complete report"
    assert (out / "01_free_blocks.png").read_bytes() == b"previous figure"
    assert _files(out) == {"report.pdf", "01_free_blocks.png"}


@pytest.mark.parametrize("jobs", [1])
def test_serial_and_forked_rendering_write_the_same_files(run_dir: Path, tmp_path: Path,
                                                          jobs: int) -> None:
    written = build_report(run_dir, tmp_path / f"jobs{jobs}", jobs=jobs)
    assert not (run_dir / ts.REPORT_DIR).exists()  # only where it was asked to write
    assert {p.name for p in written} == EXPECTED_PNGS | {"report.pdf"}
    assert _files(tmp_path / f"jobs{jobs}") == EXPECTED_PNGS | {"report.pdf"}
    for path in written[1:]:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_a_failed_renderer_child_is_replaced_by_this_process(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child's pages are rendered again here when it exits non-zero."""
    real = reports.render._render
    main_pid = __import__("os").getpid()

    def fail_in_the_child(stage: Path, share: list, part: int, title: str) -> None:
        if __import__("os").getpid() != main_pid:
            raise OSError("the child's disk is full")
        real(stage, share, part, title)

    monkeypatch.setattr(reports.render, "_render", fail_in_the_child)
    written = build_report(run_dir)
    assert {p.name for p in written} == EXPECTED_PNGS | {"report.pdf"}
    for path in written[1:]:
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert len(PdfReader(written[0]).pages) == 1 + len(EXPECTED_PNGS)


@pytest.mark.parametrize("nth_stream", [1, 2, 5])
def test_interrupt_inside_a_pdf_stream_propagates_as_itself(
    nth_stream: int, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal landing while matplotlib opens a content stream (seen in CI under SIGTERM).

    Finalizing the half-built PDF on the way out raised matplotlib's own AssertionError,
    which hid the interrupt and printed a traceback.
    """
    import matplotlib.backends.backend_pdf as backend_pdf

    real = backend_pdf.zlib.compressobj
    calls = {"n": 0}

    def interrupt_on_nth(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == nth_stream:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(backend_pdf.zlib, "compressobj", interrupt_on_nth)
    with pytest.raises(KeyboardInterrupt) as info:
        build_report(run_dir)
    assert info.value.__context__ is None
    assert calls["n"] == nth_stream
    out = run_dir / ts.REPORT_DIR
    assert not out.exists() or _files(out) == set()


# -- command line ------------------------------------------------------------------------


def test_main_exits_2_with_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / ts.BUDDYINFO_FILE).unlink()
    assert main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "trace/buddyinfo.parquet" in err and "Traceback" not in err


def test_an_empty_trace_that_the_summary_contradicts_is_refused(run_dir: Path) -> None:
    fx.write_table(run_dir / ts.EVENTS_FILE, ts.EVENT_COLUMNS, [])
    with pytest.raises(ReportInputError, match=r"events\.parquet: no mm_page_alloc rows.*14"):
        load_run(run_dir)


def test_pages_are_shared_longest_first_to_the_less_loaded_process() -> None:
    from reports.render import CHILD_START_WEIGHT, share_pages

    weights = [2.0, 1.0, 1.0, 0.5, 0.5]
    owners = share_pages(weights, 2)
    loads = [sum(w for w, o in zip(weights, owners, strict=True) if o == p) for p in (0, 1)]
    loads[1] += CHILD_START_WEIGHT
    assert abs(loads[0] - loads[1]) <= max(weights)  # no process gets a second big page first
    assert owners[0] == 0  # the largest goes to this process, which starts with no load
    assert share_pages(weights, 1) == [0] * len(weights)


def test_huge_pages_come_from_the_summary_when_events_were_not_traced(run_dir: Path) -> None:
    from reports.headline import huge_pages

    traced = huge_pages(load_run(run_dir))
    assert (traced.requested, traced.obtained) == (4, 1)  # thp's 1 ok, hugetlb's 3 failed
    (run_dir / ts.EVENTS_FILE).unlink()
    manifest = json.loads((run_dir / ts.MANIFEST_FILE).read_text())
    manifest["config"]["trace"] = {"events": False}
    (run_dir / ts.MANIFEST_FILE).write_text(json.dumps(manifest))
    untraced = huge_pages(load_run(run_dir))
    assert (untraced.requested, untraced.obtained) == (4, 1)


def test_a_hung_renderer_child_is_killed_and_its_pages_rendered_here(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child stuck where no signal handler runs (a lock inherited at fork) must not
    hang the report: after its time it is SIGKILLed and this process renders its pages."""
    import time

    real = reports.render._render
    main_pid = __import__("os").getpid()

    def hang_in_the_child(stage: Path, share: list, part: int, title: str) -> None:
        if __import__("os").getpid() != main_pid:
            time.sleep(3600)
        real(stage, share, part, title)

    monkeypatch.setattr(reports.render, "_render", hang_in_the_child)
    monkeypatch.setattr(reports.render, "CHILD_PATIENCE_S", 0.5)
    started = time.monotonic()
    written = build_report(run_dir, tmp_path / "out")
    assert time.monotonic() - started < 60
    assert {p.name for p in written} == EXPECTED_PNGS | {"report.pdf"}
    assert len(PdfReader(written[0]).pages) == 1 + len(EXPECTED_PNGS)
