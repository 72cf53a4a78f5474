"""Build a run's report: a cover and ten figures, as one PDF and a PNG per figure.

:func:`page_builders` lists the pages as functions that draw them, so the renderer
(:mod:`reports.render`) can share them between two processes; every file is written
whole or not at all, and a previous complete report stays in place until a new one is.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from reports.aggregate import ZoneKey, zone_free_pages
from reports.cover import cover_page
from reports.fig_blocks import free_blocks_figure, huge_figure, huge_free_blocks
from reports.fig_callers import (
    latency_figure,
    latency_table,
    outcomes_figure,
    outcomes_table,
    rates_figure,
)
from reports.fig_frag import fragmentation_figure, pageblock_map_figure, pollution_figure
from reports.fig_memory import free_memory_figure
from reports.fig_vmstat import vmstat_figure
from reports.load import RunData, load_run
from reports.overlay import overlay_pages
from reports.render import PDF_NAME, Page, write_report
from reports.series import (
    BlockMatrix,
    block_matrices,
    fragmentation_over_time,
    pollution_over_time,
    rate_bins,
    rates_over_time,
    zonestat_by_node,
)
from reports.style import fix_positions, time_unit
from simcore.formats import trace_schema as ts

__all__ = ["FIGURE_STEMS", "PDF_NAME", "build_report", "draw_figures", "page_builders"]

PAGE_WEIGHTS = {"": 0.9, "01_free_blocks": 2.0, "02_free_memory": 1.1, "03_fragmentation": 1.3,
                "04_pageblock_map": 0.6, "05_polluted_pageblocks": 0.4, "06_rates": 1.6,
                "07_outcomes": 0.8, "08_latency": 0.7, "09_huge_pages": 0.6,
                "10_vmstat": 0.5}
"""Each page's relative cost to draw and render (measured on the quickstart), so the two
rendering processes get equal shares; an overlay page counts as 0.6."""
FIGURE_STEMS = ("01_free_blocks", "02_free_memory", "03_fragmentation", "04_pageblock_map",
                "05_polluted_pageblocks", "06_rates", "07_outcomes", "08_latency",
                "09_huge_pages", "10_vmstat")
"""The PNG file stem of each figure, in page order (page 1, the cover, has no PNG)."""


class _Tables:
    """The aggregates several figures share, each computed on first use.

    A report's pages are drawn in two processes (:mod:`reports.render`); each computes
    only what its own pages need.
    """

    def __init__(self, data: RunData) -> None:
        self.data = data
        self.end = data.duration_s
        self.unit = time_unit(self.end)

    @cached_property
    def matrices(self) -> dict[ZoneKey, BlockMatrix]:
        return block_matrices(self.data.buddyinfo)

    @cached_property
    def collapsed(self) -> set[ZoneKey]:
        return {key for key, m in self.matrices.items() if m.untouched}

    @cached_property
    def edges(self) -> np.ndarray:
        return rate_bins(self.end, self.data.zonestat["time_ns"].unique() / 1e9)

    def fragmentation(self) -> Figure:
        present = {(int(r.nid), str(r.zone)): int(r.present) for r in self.data.zones.itertuples()}
        # the node score sums every zone (fragmentation_score_node()); only the per-zone
        # panels leave out the zones whose free lists never changed
        per_zone, score = fragmentation_over_time(self.matrices, present)
        per_zone = {k: v for k, v in per_zone.items() if k not in self.collapsed}
        proactiveness = int(self.data.manifest.get("config", {}).get("sysctl", {})
                            .get("compaction_proactiveness", 20))
        return fragmentation_figure(per_zone, score, proactiveness, self.end, self.unit)

    def huge_pages(self) -> Figure:
        d = self.data
        return huge_figure(huge_free_blocks(self.matrices, d.pageblock_order),
                           zonestat_by_node(d.zonestat, "pageblocks_movable_only"), d.spans,
                           d.pageblock_order, self.end, self.unit)


def _finished(draw: Callable[[], Figure]) -> Callable[[], Figure]:
    """``draw`` with the report's fixed title and label positions applied."""
    def page() -> Figure:
        fig = draw()
        fix_positions(fig)
        return fig
    return page


def page_builders(data: RunData) -> list[Page]:
    """The report's pages in order, each as (PNG stem, function that draws it)."""
    t = _Tables(data)
    d, end, unit = data, t.end, t.unit
    events = d.alloc_events
    drawers: list[Callable[[], Figure]] = [
        lambda: free_blocks_figure(t.matrices, end, unit),
        lambda: free_memory_figure(zone_free_pages(d.zonestat), d.zones, d.spans, end, unit,
                                   t.collapsed),
        t.fragmentation,
        lambda: pageblock_map_figure(d.pageblocks),
        lambda: pollution_figure(pollution_over_time(d.spans),
                                 zonestat_by_node(d.zonestat, "pageblocks_mixed"), end, unit),
        lambda: rates_figure(rates_over_time(events, t.edges), t.edges, unit),
        lambda: outcomes_figure(outcomes_table(events)),
        lambda: latency_figure(events, latency_table(events)),
        t.huge_pages,
        lambda: vmstat_figure(d.vmstat),
    ]
    return [("", lambda: cover_page(data)),
            *((stem, _finished(draw)) for stem, draw in zip(FIGURE_STEMS, drawers,
                                                             strict=True))]


def draw_figures(data: RunData) -> list[tuple[str, Figure]]:
    """Draw the report's pages in order, each with its PNG file stem (the cover's is "")."""
    return [(stem, build() if callable(build) else build)
            for stem, build in page_builders(data)]


def build_report(run_dir: Path, out_dir: Path | None = None,
                 overlay: Path | None = None, jobs: int = 2) -> list[Path]:
    """Build the report of one run directory.

    Args:
        run_dir: A run directory laid out as :mod:`simcore.formats.trace_schema` describes.
        out_dir: Where to write; default ``<run_dir>/report/`` (created if missing).
        overlay: A real host's ``buddyinfo.periodic`` to draw against the run's free
            pages (:mod:`reports.overlay`), one extra page per zone.
        jobs: 2 shares the pages with a forked child process (where ``os.fork`` exists
            and there are two CPUs, see :mod:`reports.render`); 1 renders them all here.

    Returns:
        The paths written: ``report.pdf`` first, then one PNG per figure in page order.

    Raises:
        reports.load.ReportInputError: If an input file is missing, unreadable or
            does not follow the trace schema. Nothing is written in that case.
    """
    data = load_run(Path(run_dir))
    out = Path(out_dir) if out_dir is not None else data.run_dir / ts.REPORT_DIR
    pages = page_builders(data)
    if overlay is not None:
        pb_order = data.pageblock_order
        replay = data.summary.get("replay") or {}
        start_ns = replay.get("trace_start_ns", 0)
        what = (f"replay (placement {replay['placement']})" if "placement" in replay
                else "model run")
        pages += overlay_pages(data.buddyinfo, Path(overlay), pb_order, start_ns / 1e9, what)
    out.mkdir(parents=True, exist_ok=True)
    stems = {stem for stem, _ in pages if stem}
    for old in out.glob("*.png"):  # a previous build's figure that this build does not draw
        if old.stem not in stems:
            old.unlink()
    weights = [PAGE_WEIGHTS.get(stem, 0.6) for stem, _ in pages]
    return write_report(out, pages, f"allocsim report: {data.manifest['name']}", jobs,
                        weights=weights)
