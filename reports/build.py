"""Build a run's report: one PDF with every figure, plus one PNG per figure.

All figures are drawn before anything is written, and every file is written through
:func:`simcore.atomic.atomic_path`, so a crash mid-report never leaves a file named
``report.pdf`` (or any PNG) that is incomplete; a previous complete report stays in place.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from reports.aggregate import zone_free_pages
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
from reports.series import (
    block_matrices,
    fragmentation_over_time,
    pollution_over_time,
    rate_bins,
    rates_over_time,
    zonestat_by_node,
)
from reports.style import fix_positions, time_unit
from simcore.atomic import atomic_path, atomic_write_bytes
from simcore.formats import trace_schema as ts

PDF_NAME = "report.pdf"
PNG_DPI = 120
PNG_OPTIONS = {"compress_level": 3}
"""zlib level 3: a few percent larger than the default 6, in half the encoding time."""
STAGING_PREFIX = ".report-staging-"
CHILD_SPARES = 2
"""PNGs this process renders after the PDF while the child renders the others: a PNG
costs about 1.7 times a PDF page, so this balances the two processes."""


FIGURE_STEMS = ("01_free_blocks", "02_free_memory", "03_fragmentation", "04_pageblock_map",
                "05_polluted_pageblocks", "06_rates", "07_outcomes", "08_latency",
                "09_huge_pages", "10_vmstat")
"""The PNG file stem of each figure, in page order (page 1, the cover, has no PNG)."""


def draw_figures(data: RunData) -> list[tuple[str, Figure]]:
    """Draw the report's pages in order, each with its PNG file stem (the cover's is "")."""
    end = data.duration_s
    unit = time_unit(end)
    matrices = block_matrices(data.buddyinfo)
    collapsed = {key for key, m in matrices.items() if m.untouched}
    present = {(int(r.nid), str(r.zone)): int(r.present) for r in data.zones.itertuples()}
    per_zone, score = fragmentation_over_time(
        {k: m for k, m in matrices.items() if k not in collapsed}, present)
    proactiveness = int(data.manifest.get("config", {}).get("sysctl", {})
                        .get("compaction_proactiveness", 20))
    events = data.alloc_events
    edges = rate_bins(end, data.zonestat["time_ns"].unique() / 1e9)
    outcomes = outcomes_table(events)
    figures = [
        free_blocks_figure(matrices, end, unit),
        free_memory_figure(zone_free_pages(data.zonestat), data.zones, data.spans, end, unit,
                           collapsed),
        fragmentation_figure(per_zone, score, proactiveness, end, unit),
        pageblock_map_figure(data.pageblocks),
        pollution_figure(pollution_over_time(data.spans),
                         zonestat_by_node(data.zonestat, "pageblocks_mixed"), end, unit),
        rates_figure(rates_over_time(events, edges), edges, unit),
        outcomes_figure(outcomes),
        latency_figure(events, latency_table(events)),
        huge_figure(huge_free_blocks(matrices, data.pageblock_order),
                    zonestat_by_node(data.zonestat, "pageblocks_movable_only"), data.spans,
                    data.pageblock_order, end, unit),
        vmstat_figure(data.vmstat),
    ]
    for fig in figures:
        fix_positions(fig)
    return [("", cover_page(data)), *zip(FIGURE_STEMS, figures, strict=True)]


def write_png(path: Path, fig: Figure) -> Path:
    """Write ``fig`` as a PNG at ``path``, atomically; return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI, pil_kwargs=PNG_OPTIONS)
    return path


def pdf_bytes(figures: list[Figure], title: str) -> bytes:
    """``figures`` as the pages of one PDF document."""
    # CreationDate None keeps the PDF byte-identical for the same run.
    metadata = {"Title": title, "Creator": "allocsim reports", "CreationDate": None}
    # The PDF is assembled in memory, and PdfPages is closed only after every page is in.
    # Its context manager would finalize a half-built document on the way out of an
    # exception (Ctrl-C, SIGTERM) and raise a second error that hides the first.
    buffer = io.BytesIO()
    pdf = PdfPages(buffer, metadata=metadata)
    for fig in figures:
        pdf.savefig(fig)
    pdf.close()
    return buffer.getvalue()


def write_pdf(path: Path, figures: list[Figure], title: str) -> Path:
    """Write ``figures`` as the pages of one PDF at ``path``, atomically; return ``path``."""
    atomic_write_bytes(path, pdf_bytes(figures, title))
    return path


def _stage_pngs(stage: Path, pngs: list[tuple[str, Figure]]) -> None:
    """Render PNGs into the staging directory (plain writes: it is not the output)."""
    for stem, fig in pngs:
        fig.savefig(stage / f"{stem}.png", format="png", dpi=PNG_DPI, pil_kwargs=PNG_OPTIONS)


def _fork_renderer(stage: Path, pngs: list[tuple[str, Figure]]) -> int:
    """Render ``pngs`` in a forked child process; returns its pid (0: not forked).

    The child shares the drawn figures copy-on-write, so nothing is pickled. It exits 0
    when every PNG is staged, 1 on any error or signal (SIGTERM, Ctrl-C).
    """
    if not pngs or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
        return 0
    pid = os.fork()
    if pid:
        return pid
    code = 1  # pragma: no cover - runs in the child, which os._exit()s
    try:  # pragma: no cover
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        _stage_pngs(stage, pngs)
        code = 0
    except BaseException:  # noqa: BLE001 - the parent renders the PNGs itself  # pragma: no cover
        pass
    finally:  # pragma: no cover
        os._exit(code)


def _reap(pid: int, kill: bool) -> bool:
    """Wait for the renderer child (after SIGTERM if ``kill``); True if it succeeded."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def write_report(out: Path, pages: list[tuple[str, Figure]], title: str,
                 jobs: int = 2, pdf_name: str = PDF_NAME) -> list[Path]:
    """Write ``report.pdf`` and one PNG per page with a stem, all or none.

    Everything is rendered into a hidden staging directory inside ``out`` first; with
    ``jobs`` 2 a forked child renders most PNGs while this process renders the PDF and
    the rest. Only when every file is complete are they renamed into place, so a crash
    or Ctrl-C leaves the previous report as it was (and at worst a stale staging
    directory, removed by the next build).
    """
    for stale in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    pngs = [(stem, fig) for stem, fig in pages if stem]
    split = max(0, len(pngs) - CHILD_SPARES) if jobs > 1 else 0
    pid = _fork_renderer(stage, pngs[:split])
    mine = pngs[split:] if pid else pngs
    try:
        (stage / pdf_name).write_bytes(pdf_bytes([fig for _, fig in pages], title))
        _stage_pngs(stage, mine)
        if pid:
            child_ok, pid = _reap(pid, kill=False), 0
            if not child_ok:
                _stage_pngs(stage, pngs[:split])
        written = [out / pdf_name, *(out / f"{stem}.png" for stem, _ in pngs)]
        for path in written:
            os.replace(stage / path.name, path)
        return written
    finally:
        if pid:
            _reap(pid, kill=True)
        shutil.rmtree(stage, ignore_errors=True)


def build_report(run_dir: Path, out_dir: Path | None = None,
                 overlay: Path | None = None, jobs: int = 2) -> list[Path]:
    """Build the report of one run directory.

    Args:
        run_dir: A run directory laid out as :mod:`simcore.formats.trace_schema` describes.
        out_dir: Where to write; default ``<run_dir>/report/`` (created if missing).
        overlay: A real host's ``buddyinfo.periodic`` to draw against the run's free
            pages (:mod:`reports.overlay`), one extra page per zone.
        jobs: 2 renders the PNGs in a forked child while this process renders the PDF
            (where ``os.fork`` exists and there are two CPUs); 1 renders everything here.

    Returns:
        The paths written: ``report.pdf`` first, then one PNG per figure in page order.

    Raises:
        reports.load.ReportInputError: If an input file is missing, unreadable or
            does not follow the trace schema. Nothing is written in that case.
    """
    data = load_run(Path(run_dir))
    out = Path(out_dir) if out_dir is not None else data.run_dir / ts.REPORT_DIR
    pages = draw_figures(data)
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
    return write_report(out, pages, f"allocsim report: {data.manifest['name']}", jobs)
