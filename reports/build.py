"""Build a run's report: one PDF with every figure, plus one PNG per figure.

All figures are drawn before anything is written, and every file is written through
:func:`simcore.atomic.atomic_path`, so a crash mid-report never leaves a file named
``report.pdf`` (or any PNG) that is incomplete; a previous complete report stays in place.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from reports.aggregate import (
    allocations_by_order,
    failures_by_order,
    free_blocks_by_order,
    summary_rows,
    zone_free_pages,
)
from reports.compaction import compaction_figure
from reports.figures import (
    allocations_figure,
    failures_figure,
    free_blocks_figure,
    free_pages_figure,
    title_page,
)
from reports.load import RunData, load_run
from reports.overlay import overlay_pages
from reports.pressure import pressure_figure
from simcore.atomic import atomic_path, atomic_write_bytes
from simcore.formats import trace_schema as ts

PDF_NAME = "report.pdf"
PNG_DPI = 120


def draw_figures(data: RunData) -> list[tuple[str, Figure]]:
    """Draw the report's figures in page order, each with its PNG file stem.

    The title page comes first and has no PNG (its stem is ``""``).
    """
    pages: list[tuple[str, Figure]] = [
        ("", title_page(str(data.manifest["name"]), summary_rows(data.manifest, data.summary)))
    ]
    for (nid, zone), table in free_blocks_by_order(data.buddyinfo).items():
        pages.append((f"free_blocks_node{nid}_{zone}", free_blocks_figure((nid, zone), table)))
    events = data.alloc_events
    pages.append(("allocations_by_order", allocations_figure(allocations_by_order(events))))
    pages.append(("failures_by_order", failures_figure(failures_by_order(events))))
    pages.append(("free_pages", free_pages_figure(zone_free_pages(data.zonestat))))
    nodes = sorted(int(n) for n in data.zonestat["nid"].unique())
    pages.append(("memory_pressure", pressure_figure(data.spans, data.summary, nodes)))
    machine = data.manifest.get("config", {}).get("machine", {})
    pb_order = int(machine.get("pageblock_order", 9))
    pages.append(("compaction", compaction_figure(free_blocks_by_order(data.buddyinfo),
                                                  data.spans, data.summary, pb_order)))
    return pages


def write_png(path: Path, fig: Figure) -> Path:
    """Write ``fig`` as a PNG at ``path``, atomically; return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI)
    return path


def write_pdf(path: Path, figures: list[Figure], title: str) -> Path:
    """Write ``figures`` as the pages of one PDF at ``path``, atomically; return ``path``."""
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
    atomic_write_bytes(path, buffer.getvalue())
    return path


def build_report(run_dir: Path, out_dir: Path | None = None,
                 overlay: Path | None = None) -> list[Path]:
    """Build the report of one run directory.

    Args:
        run_dir: A run directory laid out as :mod:`simcore.formats.trace_schema` describes.
        out_dir: Where to write; default ``<run_dir>/report/`` (created if missing).
        overlay: A real host's ``buddyinfo.periodic`` to draw against the run's free
            pages (:mod:`reports.overlay`), one extra page per zone.

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
        pb_order = int(data.manifest.get("config", {}).get("machine", {})
                       .get("pageblock_order", 9))
        replay = data.summary.get("replay") or {}
        start_ns = replay.get("trace_start_ns", 0)
        what = (f"replay (placement {replay['placement']})" if "placement" in replay
                else "model run")
        pages += overlay_pages(data.buddyinfo, Path(overlay), pb_order, start_ns / 1e9, what)
    out.mkdir(parents=True, exist_ok=True)
    stems = {stem for stem, _ in pages if stem}
    for old in out.glob("overlay_*.png"):  # a previous build's overlay, not asked for now
        if old.stem not in stems:
            old.unlink()
    title = f"allocsim report: {data.manifest['name']}"
    written = [write_pdf(out / PDF_NAME, [fig for _, fig in pages], title)]
    written += [write_png(out / f"{stem}.png", fig) for stem, fig in pages if stem]
    return written
