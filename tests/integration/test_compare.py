"""``allocsim compare``: variants, replicates, intervals, the overlaid series and the table.

Three short runs of a small config: two seeds of the baseline (replicates of one variant)
and one run with a different watermark_scale_factor (the variant). Every number checked is
recomputed here from the runs' files with plain Python and scipy.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from scipy import stats

from allocsim.cli import main
from allocsim.run import simulate
from reports.compare import difference_interval, group_variants, load_variants, mean_band
from reports.compare_figures import series_pages, table_lines
from reports.compare_report import build_compare_report
from reports.load import ReportInputError, load_run
from simcore.config.override import parse_set_arg
from simcore.formats import trace_schema as ts
from workloads.registry import load_experiment

STORY = Path(__file__).parent.parent / "data" / "reports" / "story.yaml"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("compare")
    config = out / "short.yaml"  # the story without its late hugetlb writes, 400 ms long
    config.write_text(STORY.read_text().split("actions:")[0]
                      .replace("duration: 1200ms", "duration: 400ms"))
    dirs = []
    for seed, wsf in ((3, None), (4, None), (3, 200)):
        overrides = [f"seed={seed}"]
        if wsf:
            overrides.append(f"sysctl.watermark_scale_factor={wsf}")
        cfg = load_experiment(config, [parse_set_arg(o) for o in overrides])
        result = simulate(cfg, out / f"s{seed}-{wsf}", report=False)
        assert result.status == "ok"
        dirs.append(Path(result.run_dir))
    return dirs


def test_runs_that_differ_only_in_seed_are_one_variant(runs: list[Path]) -> None:
    variants = group_variants([load_run(d) for d in runs])
    assert [len(v.runs) for v in variants] == [2, 1]
    # min_free_kbytes comes along: on a box this small, khugepaged's 5 % cap on it
    # (set_recommended_min_free_kbytes()) counts pages above the high watermarks
    assert variants[0].label.endswith("sysctl.watermark_scale_factor=10")
    assert variants[1].label.endswith("sysctl.watermark_scale_factor=200")
    assert "seed" not in variants[0].label


def test_difference_interval_is_welchs() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.normal(10, 2, 6), rng.normal(12, 3, 5)
    diff, low, high = difference_interval(a, b)
    res = stats.ttest_ind(b, a, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert diff == pytest.approx(b.mean() - a.mean())
    assert (low, high) == pytest.approx((ci.low, ci.high))
    assert math.isnan(difference_interval(a, b[:1])[1])  # one run: no interval


def test_mean_band_is_a_t_interval_on_common_sample_times() -> None:
    import pandas as pd

    s1 = pd.Series([1.0, 3.0, 5.0], index=[0.0, 1.0, 2.0])
    s2 = pd.Series([3.0, 5.0], index=[0.0, 1.5])  # held from 1.5 s on
    band = mean_band([s1, s2])
    assert band.index.tolist() == [0.0, 1.0, 1.5, 2.0]
    pairs = [(1, 3), (3, 3), (3, 5), (5, 5)]
    for row, (x, y) in zip(band.itertuples(), pairs, strict=True):
        half = stats.t.ppf(0.975, 1) * np.std([x, y], ddof=1) / math.sqrt(2)
        assert row.mean == pytest.approx((x + y) / 2)
        # two replicates: t(0.975, 1) = 12.7, so the band reaches below 0 and is clipped
        assert (row.low, row.high) == pytest.approx((max((x + y) / 2 - half, 0.0),
                                                     (x + y) / 2 + half))
    assert band["low"].min() >= 0 and band.loc[0.0, "low"] == 0  # clipped, not -10.7
    assert (mean_band([s1, s2], high=4.0)["high"] <= 4.0).all()


def _zonestat_total(run: Path, column: str) -> dict[int, int]:
    t = pq.read_table(run / ts.ZONESTAT_FILE).to_pydict()
    out: dict[int, int] = {}
    for time, value in zip(t["time_ns"], t[column], strict=True):
        out[time] = out.get(time, 0) + value
    return out


def test_overlaid_free_memory_is_the_replicates_mean(runs: list[Path]) -> None:
    variants = load_variants(runs)
    pages = dict(series_pages(variants))
    fig = pages["01_memory"]
    drawn = {a.get_gid(): a for ax in fig.axes for a in ax.get_children() if a.get_gid()}
    line = drawn["free memory (NR_FREE_PAGES, all zones) 0"]
    unit = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[line.axes.get_ylabel()]
    shown = np.asarray(line.get_ydata(), dtype=float)[:-1] * unit / 4096
    a, b = (_zonestat_total(r, "nr_free_pages") for r in runs[:2])
    assert sorted(a) == sorted(b)  # same config: the same snapshot times
    expect = [(a[t] + b[t]) / 2 for t in sorted(a)]
    assert np.allclose(shown, expect)
    assert "free memory (NR_FREE_PAGES, all zones) band 0" in drawn  # two replicates
    assert "free memory (NR_FREE_PAGES, all zones) band 1" not in drawn  # one run


def _metric(run: Path, name: str) -> float:
    summary = json.loads((run / ts.SUMMARY_FILE).read_text())
    return float(summary[name])


def test_report_files_table_and_csv(runs: list[Path], tmp_path: Path) -> None:
    from pypdf import PdfReader

    written = build_compare_report(runs, tmp_path / "cmp")
    assert written[0].name == "compare.pdf" and written[-1].name == "compare.csv"
    reader = PdfReader(written[0])
    pngs = [p for p in written if p.suffix == ".png"]
    assert len(reader.pages) == 1 + len(pngs)
    cover = reader.pages[0].extract_text()
    assert "(baseline)" in cover and "watermark_scale_factor=200" in cover
    with (tmp_path / "cmp" / "compare.csv").open() as handle:
        rows = {(r["metric"], int(r["variant"])): r for r in csv.DictReader(handle)}
    requests = [_metric(r, "alloc_requests") for r in runs]
    base = rows[("requests", 1)]
    assert float(base["mean"]) == pytest.approx(np.mean(requests[:2]))
    assert int(base["n"]) == 2
    half = stats.t.ppf(0.975, 1) * np.std(requests[:2], ddof=1) / math.sqrt(2)
    assert float(base["ci_low"]) == pytest.approx(np.mean(requests[:2]) - half)
    variant = rows[("requests", 2)]
    assert float(variant["diff"]) == pytest.approx(requests[2] - np.mean(requests[:2]))
    assert variant["diff_ci_low"] == ""  # one run on that side: no interval
    text = "\n".join(table_lines(load_variants(runs), _rows(runs)))
    assert "requests\n  1. n=2" in text


def _rows(runs: list[Path]) -> Any:
    from reports.compare import metric_table

    return metric_table(load_variants(runs))


def test_cli_compare_and_its_errors(runs: list[Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(runs[0]), str(runs[2]), "-o", str(tmp_path / "c")]) == 0
    assert "compare report:" in capsys.readouterr().out
    assert main(["compare", str(runs[0]), "-o", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "at least two runs" in err and "Traceback" not in err
    assert not (tmp_path / "d").exists()
    missing = tmp_path / "nope"
    assert main(["compare", str(runs[0]), str(missing), "-o", str(tmp_path / "e")]) == 2
    assert f"{missing}: no such directory" in capsys.readouterr().err
    assert main(["compare", str(runs[0]), str(runs[0]), "-o", str(tmp_path / "f")]) == 2
    assert "given twice" in capsys.readouterr().err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["compare", str(runs[0]), str(runs[2]), "-o", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert "exists and is not a directory" in err and "Traceback" not in err
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(runs[2], broken)
    (broken / ts.EVENTS_FILE).write_bytes(b"not parquet")
    assert main(["compare", str(runs[0]), str(broken), "-o", str(tmp_path / "g")]) == 2
    assert f"{broken}/trace/events.parquet" in capsys.readouterr().err  # which run


def test_a_sweep_directory_gives_its_points_as_variants(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    (sweep / "runs").mkdir(parents=True)
    (sweep / "sweep.json").write_text("{}")
    (sweep / "runs.csv").write_text("point,replicate,run_dir,status\n0,0,runs/a,ok\n")
    with pytest.raises(ReportInputError, match="at least two runs"):
        load_variants([sweep])
    (sweep / "runs.csv").write_text("point;broken\n")
    with pytest.raises(ReportInputError, match=r"runs\.csv.*columns"):
        load_variants([sweep])
