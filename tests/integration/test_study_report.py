"""The study report of a real small sweep and study: the numbers drawn are the sweep's,
the pages and files are those expected, the cover states study.md's answers, and bad
input is one error naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from pypdf import PdfReader

from allocsim.cli import main
from allocsim.sweep.studyrun import PER_NODE_FILE
from reports.study import PDF_NAME, build_study_report, draw_study
from reports.sweep_load import PER_NODE_CSV, load_sweep

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO / "tests" / "data" / "sweep" / "small.yaml"
STUDY_SMALL = REPO / "tests" / "data" / "sweep" / "study_small.yaml"
MEMORY, RATE = "machine.nodes[0].memory", "workloads[0].rate"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """small.yaml swept (4 points x 3 replicates); the sweep builds its report."""
    out = tmp_path_factory.mktemp("small")
    assert main(["sweep", str(SMALL), "-o", str(out), "--jobs", "2", "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """study_small.yaml run as a study, without its report (drawn, not saved, below)."""
    out = tmp_path_factory.mktemp("study")
    assert main(["sweep", str(STUDY_SMALL), "-o", str(out), "--jobs", "2", "-q",
                 "--no-report"]) == 0
    return out


def _varying(summary: pd.DataFrame) -> list[str]:
    """Metrics whose mean or interval differs between points, less those whose every
    point is as an earlier one's (computed afresh)."""
    valued = summary[summary.n > 0]
    stats = valued.melt(id_vars=["metric"], value_vars=["mean", "ci_low", "ci_high"])
    spread = stats.dropna().groupby("metric")["value"].nunique()
    varying = sorted(spread[spread > 1].index)
    columns = ["point", "n", "mean", "ci_low", "ci_high"]
    tables = {m: valued[valued.metric == m].sort_values("point")[columns].to_csv(index=False)
              for m in varying}
    return [m for i, m in enumerate(varying)
            if tables[m] not in (tables[o] for o in varying[:i])]


def _pages(out: Path) -> dict[str, Figure]:
    return {stem or f"text{i}": fig for i, (stem, fig) in enumerate(draw_study(load_sweep(out)))}


def _lines(ax: object) -> list[Line2D]:
    return [line for line in ax.get_lines()  # type: ignore[attr-defined]
            if not str(line.get_label()).startswith("_")]


def test_the_sweep_writes_the_pdf_and_a_png_per_metric_that_varies(small: Path) -> None:
    summary = pd.read_csv(small / "summary.csv")
    varying = _varying(summary)
    report = small / "report"
    pngs = sorted(p.stem for p in report.glob("*.png"))
    assert pngs == sorted(f"metric_{m.replace('[', '_').replace(']', '_')}" for m in varying)
    pages = len(PdfReader(report / PDF_NAME).pages)
    constant_or_empty = summary.metric.nunique() > len(varying)
    assert pages == 1 + len(varying) + constant_or_empty  # cover, metrics, the list
    assert "free_pageblocks" in varying and "requests" in varying
    assert "requests.churn" not in varying  # the one caller's: as "requests"


def test_each_line_is_the_mean_of_the_replicates_and_its_band_the_ci(small: Path) -> None:
    values = pd.read_parquet(small / "sweep.parquet")
    values = values[values.metric == "free_pageblocks"]
    means = values.groupby([MEMORY, RATE])["value"].mean()
    summary = pd.read_csv(small / "summary.csv")
    ci = summary[summary.metric == "free_pageblocks"].set_index([MEMORY, RATE])
    memory_ax, rate_ax = _pages(small)["metric_free_pageblocks"].axes
    assert memory_ax.get_xlabel() == f"{MEMORY} (MiB)"
    assert rate_ax.get_xlabel() == f"{RATE} (/s)"
    cases = [(memory_ax, ["48MiB", "64MiB"], [48.0, 64.0], ["1000/s", "3000/s"], False),
             (rate_ax, ["1000/s", "3000/s"], [1000.0, 3000.0], ["48MiB", "64MiB"], True)]
    labels = {"1000/s": "1,000/s", "3000/s": "3,000/s", "48MiB": "48 MiB", "64MiB": "64 MiB"}
    for ax, xs, positions, series, by_rate in cases:
        lines, bands = _lines(ax), [c for c in ax.collections if isinstance(c, PolyCollection)]
        assert [line.get_label() for line in lines] == [labels[s] for s in series]
        assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == len(lines)
        for line, band, other in zip(lines, bands, series, strict=True):
            cells = [(other, x) if by_rate else (x, other) for x in xs]
            np.testing.assert_allclose(line.get_xdata(), positions)
            np.testing.assert_allclose(line.get_ydata(), [means[c] for c in cells])
            vertices = band.get_paths()[0].vertices
            for position, cell in zip(positions, cells, strict=True):
                at = vertices[np.isclose(vertices[:, 0], position), 1]
                np.testing.assert_allclose([at.min(), at.max()],
                                           [ci.loc[cell, "ci_low"], ci.loc[cell, "ci_high"]],
                                           rtol=1e-9)


def test_every_axis_is_labelled_and_nothing_is_cut_off(small: Path) -> None:
    pages = _pages(small)
    for name in ("text0", "metric_free_pageblocks", "metric_requests", f"text{len(pages) - 1}"):
        fig = pages[name]
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        fig.draw(renderer)
        box = fig.bbox
        for text in fig.findobj(Text):
            if not text.get_visible() or not text.get_text():
                continue
            extent = text.get_window_extent(renderer)
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, text.get_text()
            assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, text.get_text()
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel().endswith(")")
            assert ax.get_legend() is not None


def test_a_count_spanning_decades_gets_a_log_axis(small: Path) -> None:
    pages = _pages(small)
    for stem, fig in pages.items():
        for ax in fig.axes:
            ys = np.concatenate([line.get_ydata() for line in _lines(ax)] or [np.array([])])
            positive = ys[ys > 0]
            wide = positive.size and positive.max() / positive.min() >= 100
            if stem.startswith("metric_requests"):
                assert (ax.get_yscale() == "symlog") == bool(wide), stem


def test_the_cover_states_the_sweep_and_study_md_answers(study: Path) -> None:
    study_md = (study / "study.md").read_text(encoding="utf-8")
    answers = json.loads((study / "study.json").read_text(encoding="utf-8"))["answers"]
    cover = _pages(study)["text0"]
    paragraphs = [" ".join(t.get_text().split("\n")) for t in cover.texts]
    assert len(answers) == 3
    for answer in answers:
        assert f"\n\n{answer['sentence']}\n\n" in study_md  # the very sentence of study.md
        # the same sentence, without study.md's Markdown marks
        plain = answer["sentence"].replace("`", "").replace("**", "")
        assert plain in paragraphs and "`" not in plain
        assert any(p.endswith(answer["title"].replace("`", "")) for p in paragraphs)
    assert "study-small" in paragraphs
    assert any("how many huge pages does a write at 200 ms get" in p for p in paragraphs)
    assert f"Swept: {MEMORY} = 64MiB" in paragraphs
    assert f"Swept: {RATE} = 1000/s, 3000/s" in paragraphs
    assert "2 points × 2 replicates = 4 runs: 4 complete, 0 failed (status ok)" in paragraphs
    assert "Executor: 2 local processes" in paragraphs


def test_a_threshold_figure_draws_the_limit_and_the_answer(study: Path) -> None:
    answer = json.loads((study / "study.json").read_text(encoding="utf-8"))["answers"][1]
    assert answer["kind"] == "threshold" and answer["limit"] == 0.01
    (ax,) = _pages(study)["answer_2_failure_rate.churn"].axes
    assert ax.get_xlabel() == f"{MEMORY} (MiB)"  # the question's key, though not varied
    limit = [line for line in _lines(ax) if str(line.get_label()).startswith("limit")]
    assert [tuple(line.get_ydata()) for line in limit] == [(1.0, 1.0)]  # 1 % in percent
    summary = pd.read_csv(study / "summary.csv")
    rates = summary[summary.metric == "failure_rate.churn"].set_index(RATE)["mean"]
    means = {line.get_label(): line.get_ydata()[0] for line in _lines(ax)
             if line not in limit}
    assert means == pytest.approx({"1,000/s": 100 * rates["1000/s"],
                                   "3,000/s": 100 * rates["3000/s"]})
    rings = [c for c in ax.collections if c.get_label() == "smallest value that qualifies"]
    answered = [g for g in answer["groups"] if g["whole"] is not None]
    assert len(rings) == 1 and len(rings[0].get_offsets()) == len(answered)
    assert np.allclose(rings[0].get_offsets()[:, 0], 64.0)


def test_allocsim_report_rebuilds_a_sweep_report(small: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "sweep"
    copy.mkdir()
    shutil.copy(small / "sweep.json", copy / "sweep.json")
    summary = pd.read_csv(small / "summary.csv")  # two metrics: a report of three pages
    summary[summary.metric.isin(["free_pageblocks", "oom_kill"])].to_csv(
        copy / "summary.csv", index=False)
    (copy / "report").mkdir()
    (copy / "report" / "metric_gone.png").write_bytes(b"")  # an earlier build's metric
    assert main(["report", str(copy)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(copy / "report" / PDF_NAME),
                       str(copy / "report" / "metric_free_pageblocks.png")]
    assert sorted(p.name for p in (copy / "report").iterdir()) == \
        ["metric_free_pageblocks.png", PDF_NAME]
    assert len(PdfReader(copy / "report" / PDF_NAME).pages) == 3  # cover, metric, list
    assert PER_NODE_CSV == PER_NODE_FILE


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("summary.csv", None, "summary.csv: missing (expected the per-point table"),
    ("summary.csv", 'point,metric\n1,"x\n', "summary.csv: not readable as CSV"),
    ("summary.csv", "point,metric,n\n0,requests,3\n", "summary.csv: missing columns ["),
    ("sweep.json", "{", "sweep.json: not readable as JSON"),
    ("sweep.json", '{"keys": []}', "sweep.json: missing keys ['points', 'replicates']"),
    ("sweep.json", '{"keys": 3, "points": [], "replicates": 1}',
     "sweep.json: keys: expected a list of key paths"),
    ("study.json", '{"name": "x", "answers": [{"kind": "threshold"}]}',
     "study.json: answers[0]: missing keys ['metric'"),
])
def test_bad_input_is_one_line_naming_the_file(
        small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str,
        text: str | None, expected: str) -> None:
    for kept in ("sweep.json", "summary.csv"):
        shutil.copy(small / kept, tmp_path / kept)
    if text is None:
        (tmp_path / name).unlink()
    else:
        (tmp_path / name).write_text(text, encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"allocsim: error: {expected}") and err.count("\n") == 1
    assert "Traceback" not in err and not (tmp_path / "report").exists()


def test_a_non_number_in_summary_csv_is_named_by_its_line(small: Path, tmp_path: Path) -> None:
    for kept in ("sweep.json", "summary.csv"):
        shutil.copy(small / kept, tmp_path / kept)
    frame = pd.read_csv(tmp_path / "summary.csv")
    frame["mean"] = frame["mean"].astype(object)
    frame.loc[3, "mean"] = "lots"
    frame.to_csv(tmp_path / "summary.csv", index=False)
    from reports.load import ReportInputError

    with pytest.raises(ReportInputError, match=r"summary.csv: line 5: column mean: "
                                               r"expected a number, got 'lots'"):
        build_study_report(tmp_path)
