"""Tests for the reports package on a small synthetic run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pypdf import PdfReader

import reports.build
from reports import ReportInputError, build_report
from reports.__main__ import main
from reports.aggregate import (
    allocations_by_order,
    failures_by_order,
    free_blocks_by_order,
    zone_free_pages,
)
from reports.load import load_run
from simcore.formats import trace_schema as ts
from tests import reports_fixtures as fx

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_PNGS = {
    "free_blocks_node0_DMA.png",
    "free_blocks_node0_Normal.png",
    "allocations_by_order.png",
    "failures_by_order.png",
    "free_pages.png",
    "memory_pressure.png",
    "compaction.png",
}


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return fx.write_run_dir(tmp_path / "run")


def _as_nested(table: pd.DataFrame) -> dict[int, dict[str, int]]:
    rows = table.to_dict(orient="index")
    return {int(o): {str(c): int(v) for c, v in row.items()} for o, row in rows.items()}


def _files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.exists() else set()


# -- aggregation -------------------------------------------------------------------------


def test_allocations_by_order_matches_trace(run_dir: Path) -> None:
    table = allocations_by_order(load_run(run_dir).alloc_events)
    assert list(table.columns) == ["pcp", "buddy", "fallback"]
    assert _as_nested(table) == fx.EXPECTED_ALLOCATIONS


def test_failures_by_order_matches_trace(run_dir: Path) -> None:
    table = failures_by_order(load_run(run_dir).alloc_events)
    assert _as_nested(table) == fx.EXPECTED_FAILURES


def test_aggregates_ignore_other_events() -> None:
    # Frees and extfrag rows carry outcome "ok" too; only mm_page_alloc may be counted.
    events = pd.DataFrame(fx.event_rows())
    assert int(allocations_by_order(events).to_numpy().sum()) == 10
    assert int(failures_by_order(events).to_numpy().sum()) == 4


def test_no_failures_gives_empty_table(run_dir: Path) -> None:
    events = load_run(run_dir).alloc_events
    ok_only = events[events["outcome"] == ts.OUTCOME_OK]
    assert failures_by_order(ok_only).empty


def test_free_blocks_sum_over_migratetypes(run_dir: Path) -> None:
    tables = free_blocks_by_order(load_run(run_dir).buddyinfo)
    assert list(tables) == [(0, "DMA"), (0, "Normal")]
    normal = tables[(0, "Normal")]
    assert list(normal.index) == [0.0, 0.5, 1.0]
    assert list(normal.columns) == list(range(fx.MAX_ORDER + 1))
    for i, time_s in enumerate(normal.index):
        for order in (0, 3, 10):
            expected = sum(fx.nr_free(i, "Normal", mt, order) for mt in fx.MIGRATETYPES)
            assert normal.loc[time_s, order] == expected
    assert int(tables[(0, "DMA")][fx.MAX_ORDER].sum()) == 0


def test_zone_free_pages_and_watermarks(run_dir: Path) -> None:
    tables = zone_free_pages(load_run(run_dir).zonestat)
    dma = tables[(0, "DMA")]
    assert list(dma["nr_free_pages"]) == [3976 // 2, 3976 // 3, 3976 // 4]
    assert list(dma.iloc[0][["wmark_min", "wmark_low", "wmark_high"]]) == [39, 49, 60]


# -- the report files --------------------------------------------------------------------


def test_build_report_writes_pdf_and_pngs(run_dir: Path) -> None:
    written = build_report(run_dir)
    out = run_dir / ts.REPORT_DIR
    assert written[0] == out / "report.pdf"
    assert {p.name for p in written[1:]} == EXPECTED_PNGS
    assert _files(out) == EXPECTED_PNGS | {"report.pdf"}  # no temp files left behind
    for name in EXPECTED_PNGS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    reader = PdfReader(out / "report.pdf")
    assert len(reader.pages) == 1 + len(EXPECTED_PNGS)  # title page + one per figure
    title = reader.pages[0].extract_text()
    for text in ("synthetic-fragmentation", "42", "1.000 s", "ok", "535"):
        assert text in title


def test_build_report_to_custom_out_dir(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "nested"
    written = build_report(run_dir, out)
    assert all(p.parent == out for p in written)
    assert not (run_dir / ts.REPORT_DIR).exists()


def test_report_without_failures_still_has_failures_page(run_dir: Path) -> None:
    rows = [r for r in fx.event_rows() if r["outcome"] != ts.OUTCOME_FAIL]
    fx.write_table(run_dir / ts.EVENTS_FILE, ts.EVENT_COLUMNS, rows)
    build_report(run_dir)
    reader = PdfReader(run_dir / ts.REPORT_DIR / "report.pdf")
    texts = [page.extract_text() for page in reader.pages]
    assert len(texts) == 8  # title, 2 free-block pages, 4 figures, compaction
    assert any("no allocation failures" in t for t in texts)


# -- errors and atomicity ----------------------------------------------------------------


@pytest.mark.parametrize(
    "rel", [ts.EVENTS_FILE, ts.BUDDYINFO_FILE, ts.ZONESTAT_FILE, ts.SPANS_FILE,
            ts.SUMMARY_FILE, ts.MANIFEST_FILE]
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

    monkeypatch.setattr(reports.build, "failures_figure", broken)
    with pytest.raises(RuntimeError, match="figure exploded"):
        build_report(run_dir)
    assert "report.pdf" not in _files(run_dir / ts.REPORT_DIR)


def test_exception_mid_pdf_keeps_old_report_and_no_temp(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = run_dir / ts.REPORT_DIR
    out.mkdir()
    (out / "report.pdf").write_bytes(b"previous complete report")
    real_savefig = reports.build.PdfPages.savefig
    calls = {"n": 0}

    def fail_on_third_page(self: object, *args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_savefig(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(reports.build.PdfPages, "savefig", fail_on_third_page)
    with pytest.raises(KeyboardInterrupt):
        build_report(run_dir)
    assert calls["n"] == 3
    assert (out / "report.pdf").read_bytes() == b"previous complete report"
    assert _files(out) == {"report.pdf"}



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


def test_main_builds_report(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(run_dir)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(run_dir / ts.REPORT_DIR / "report.pdf")
    assert len(printed) == 1 + len(EXPECTED_PNGS)


def test_main_exits_2_with_one_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / ts.BUDDYINFO_FILE).unlink()
    assert main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "trace/buddyinfo.parquet" in err and "Traceback" not in err


def test_pressure_page_draws_kswapd_runs_stalls_and_latency(run_dir: Path) -> None:
    from matplotlib.collections import PathCollection, PolyCollection

    from reports.load import load_run
    from reports.pressure import pressure_figure

    data = load_run(run_dir)
    fig = pressure_figure(data.spans, data.summary, [0])
    kswapd_ax, stall_ax, latency_ax = fig.axes[:3]
    (bars,) = [c for c in kswapd_ax.collections if isinstance(c, PolyCollection)]
    (path,) = bars.get_paths()
    xs = sorted({round(float(x), 6) for x, _ in path.vertices})
    assert xs == [0.1, 0.102]  # the one 2 ms kswapd run at 100 ms
    assert "700 pages" in kswapd_ax.get_yticklabels()[0].get_text()
    (points,) = [c for c in stall_ax.collections if isinstance(c, PathCollection)]
    assert sorted(map(tuple, points.get_offsets().round(6).tolist())) == [
        (0.2, 43.6), (0.8, 90.0)]  # start (s), stall (us)
    assert any("OOM kill: hugetlb" in t.get_text() for t in stall_ax.texts)
    assert "PSI some: 0.01 %" in stall_ax.get_title(loc="left")
    heights = sorted(round(p.get_height(), 3) for p in latency_ax.patches)
    assert heights == sorted([0.1, 0.4, 0.4, 43.6, 90.0, 90.0])  # p50/p99/p999 in us
    labels = [t.get_text() for t in latency_ax.get_xticklabels()]
    assert labels == ["fast\n10 requests", "slow:reclaim\n2 requests"]
