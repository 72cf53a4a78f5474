"""The report's overlay of a run on a real host's buddyinfo.periodic."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from allocsim.cli import main
from reports.build import build_report
from reports.load import ReportInputError
from reports.overlay import free_page_series, overlay_pages, read_buddyinfo_periodic
from tests import reports_fixtures as fx

PERIODIC = Path(__file__).parent.parent / "data" / "oracle" / "hugetlb-fresh" / "buddyinfo.periodic"


def test_the_oracle_periodic_file_reads_as_two_samples_per_zone() -> None:
    frame = read_buddyinfo_periodic(PERIODIC)
    assert sorted(frame["time_s"].unique()) == [4.73, 5.73]
    series = free_page_series(frame, 9)
    dma32 = series[(0, "DMA32")]
    # t=4.73: 2 1 1 1 1 2 1 1 2 1 106 -> 2+2+4+8+16+64+64+128+512+512+106*1024
    assert dma32.loc[4.73, "total"] == 2 + 2 + 4 + 8 + 16 + 64 + 64 + 128 + 512 + 512 + 106 * 1024
    assert dma32.loc[4.73, "huge"] == 512 + 106 * 1024
    assert dma32.loc[5.73, "huge"] == 512 + 4 * 1024  # the pool took the rest


@pytest.mark.parametrize(("text", "line", "word"), [
    ("Node 0, zone DMA 1 2 3\n", 1, "t=SECONDS"),
    ("t=1.0\nNode 0, zone DMA 1 x 3\n", 2, "/proc/buddyinfo row"),
    ("t=1.0\n\x00\x01garbage\n", 2, "/proc/buddyinfo row"),
    ("", None, "found none"),
])
def test_bad_periodic_files_name_file_and_line(tmp_path: Path, text: str, line: int | None,
                                               word: str) -> None:
    path = tmp_path / "buddyinfo.periodic"
    path.write_text(text)
    with pytest.raises(ReportInputError) as info:
        read_buddyinfo_periodic(path)
    where = f"{path}:{line}:" if line else f"{path}:"
    assert str(info.value).startswith(where) and word in str(info.value)


def test_overlay_pages_put_model_and_host_on_one_axis() -> None:
    sim = pd.DataFrame({"time_ns": [4_730_000_000] * 2, "nid": [0, 0],
                        "zone": ["DMA32", "DMA32"], "migratetype": ["Movable", "Unmovable"],
                        "order": [10, 10], "nr_free": [100, 6]})
    pages = overlay_pages(sim, PERIODIC, 9)
    assert [stem for stem, _ in pages] == ["overlay_node0_DMA", "overlay_node0_DMA32",
                                          "overlay_node0_Normal"]
    ax = pages[1][1].axes[0]
    model_total = next(line for line in ax.get_lines()
                       if line.get_label() == "model run: all free pages")
    assert list(model_total.get_ydata()) == [106 * 1024]
    assert "no such zone" in pages[0][1].axes[0].get_title()


def test_report_overlay_writes_one_png_per_host_zone(tmp_path: Path) -> None:
    run_dir = fx.write_run_dir(tmp_path / "run")
    written = build_report(run_dir, overlay=PERIODIC)
    names = {p.name for p in written}
    assert {"overlay_node0_DMA32.png", "overlay_node0_Normal.png"} <= names
    bad = tmp_path / "bad.periodic"
    bad.write_text("nonsense\n")
    assert main(["report", str(run_dir), "--overlay", str(bad)]) == 2


def test_rebuilding_without_overlay_drops_the_old_overlay_pages(tmp_path: Path) -> None:
    """A report rebuilt without --overlay keeps no overlay PNG of an earlier build."""
    fresh = Path(__file__).parent.parent / "data" / "oracle" / "hugetlb-fresh"
    run = tmp_path / "r"
    assert main(["replay", str(fresh / "trace.txt.xz"), "--machine", str(fresh / "start"),
                 "-o", str(run), "--no-report", "-q"]) == 0
    assert main(["report", str(run), "--overlay", str(fresh / "buddyinfo.periodic")]) == 0
    assert list((run / "report").glob("overlay_*.png"))
    assert main(["report", str(run)]) == 0
    assert not list((run / "report").glob("overlay_*.png"))
