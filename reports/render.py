"""Render a report's pages to one PDF and a PNG per figure, on two CPUs, all or none.

A page is a drawn :class:`~matplotlib.figure.Figure` or a function that draws it. With
``jobs`` 2 (and ``os.fork``, and two CPUs) the pages are shared between this process and
a forked child: each draws and renders its own pages, the PNGs and its part of the PDF;
the two PDF parts are then put together in page order with pypdf. A page is a few
hundred thousand matplotlib calls, so this is what keeps a report within its time budget
(``python -m benchmarks``, figure 6). If the child fails, this process renders its pages.

Everything is written into a hidden staging directory inside the output directory first,
and renamed into place only once every file is complete, so a crash or Ctrl-C leaves the
previous report as it was (at worst with a stale staging directory, which the next build
removes).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from pypdf import PdfReader, PdfWriter

from simcore.atomic import atomic_path, atomic_write_bytes
from simcore.parent_death import exit_with_parent

PDF_NAME = "report.pdf"
PNG_DPI = 120
PNG_OPTIONS = {"compress_level": 3}
"""zlib level 3: a few percent larger than the default 6, in half the encoding time."""
STAGING_PREFIX = ".report-staging-"
PART = "part-{}.pdf"
KILL_GRACE_S = 2.0
"""How long a child told to stop (SIGTERM) has before it is killed (SIGKILL)."""
CHILD_PATIENCE_S = 20.0
"""The least time the child has, after this process rendered its own share, to finish."""
CHILD_START_WEIGHT = 0.3
"""The forked child's extra cost, in units of a page: it starts cold (its first touch of
each shared page of memory copies it) and was measured about this much slower, more than
the PDF merge this process does at the end."""

Page = tuple[str, Figure | Callable[[], Figure]]
"""A page: its PNG file stem ("" for none, e.g. a cover) and its figure or its drawer."""


def _figure(page: Figure | Callable[[], Figure]) -> Figure:
    return page if isinstance(page, Figure) else page()


def write_png(path: Path, fig: Figure) -> Path:
    """Write ``fig`` as a PNG at ``path``, atomically; return ``path``."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=PNG_DPI, pil_kwargs=PNG_OPTIONS)
    return path


def pdf_bytes(figures: Sequence[Figure | Callable[[], Figure]], title: str) -> bytes:
    """The pages as one PDF document (each drawn when its turn comes)."""
    # CreationDate None keeps the PDF byte-identical for the same run.
    metadata = {"Title": title, "Creator": "allocsim reports", "CreationDate": None}
    # The PDF is assembled in memory, and PdfPages is closed only after every page is in.
    # Its context manager would finalize a half-built document on the way out of an
    # exception (Ctrl-C, SIGTERM) and raise a second error that hides the first.
    buffer = io.BytesIO()
    pdf = PdfPages(buffer, metadata=metadata)
    for page in figures:
        pdf.savefig(_figure(page))
    pdf.close()
    return buffer.getvalue()


def write_pdf(path: Path, figures: Sequence[Figure], title: str) -> Path:
    """Write ``figures`` as the pages of one PDF at ``path``, atomically; return ``path``."""
    atomic_write_bytes(path, pdf_bytes(figures, title))
    return path


def _render(stage: Path, share: list[tuple[int, str, Figure | Callable[[], Figure]]],
            part: int, title: str) -> None:
    """Draw and render one process's pages: their PNGs and a PDF of them, in order."""
    drawn: list[Figure] = []

    def pages() -> list[Figure]:
        for _, stem, page in share:
            fig = _figure(page)
            if stem:
                fig.savefig(stage / f"{stem}.png", format="png", dpi=PNG_DPI,
                            pil_kwargs=PNG_OPTIONS)
            drawn.append(fig)
        return drawn

    (stage / PART.format(part)).write_bytes(pdf_bytes(pages(), title))


def _fork(stage: Path, share: list[tuple[int, str, Figure | Callable[[], Figure]]],
          title: str) -> int:
    """Render ``share`` as part 1 in a forked child; its pid (0: not forked, or nothing)."""
    if not share or not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
        return 0
    # Ctrl-C and SIGTERM wait until each side is ready for them: a signal landing in the
    # child before its try block would run the parent's handler there and send the
    # child up the parent's call stack.
    blocked = {signal.SIGINT, signal.SIGTERM}
    parent = os.getpid()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        pid = os.fork()
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        raise
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return pid
    try:  # pragma: no cover - runs in the child, which always os._exit()s
        exit_with_parent(parent)  # a parent killed outright (SIGKILL) cannot stop it
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
        _render(stage, share, 1, title)
        os._exit(0)
    finally:  # pragma: no cover - any error or signal: the parent renders these pages
        os._exit(1)


def _reap(pid: int, kill: bool, patience: float = KILL_GRACE_S) -> bool:
    """Wait for the child; True if it rendered its pages.

    With ``kill``, SIGTERM first. A child that has not exited after ``patience`` seconds
    is killed outright (SIGKILL): a child forked while another thread held a lock can
    hang where no signal handler runs, and the report must not hang with it.
    """
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + patience
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.01)


def _merge(stage: Path, owners: list[int], title: str) -> bytes:
    """The PDF parts' pages in page order: ``owners[i]`` is the part page ``i`` is in."""
    readers = {part: PdfReader(stage / PART.format(part)) for part in set(owners)}
    taken = dict.fromkeys(readers, 0)
    writer = PdfWriter()
    for part in owners:
        writer.add_page(readers[part].pages[taken[part]])
        taken[part] += 1
    writer.add_metadata({"/Title": title, "/Creator": "allocsim reports"})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def share_pages(weights: Sequence[float], jobs: int) -> list[int]:
    """Which process renders each page: 0 (this one) or 1 (the child).

    Longest page first, each to the process with less work so far (the child starts
    with :data:`CHILD_START_WEIGHT`), so both finish at about the same time.
    """
    owners = [0] * len(weights)
    if jobs < 2:
        return owners
    load = [0.0, CHILD_START_WEIGHT]
    for i in sorted(range(len(weights)), key=lambda i: -weights[i]):
        owner = 0 if load[0] <= load[1] else 1
        owners[i] = owner
        load[owner] += weights[i]
    return owners


def write_report(out: Path, pages: Sequence[Page], title: str, jobs: int = 2,
                 pdf_name: str = PDF_NAME, weights: Sequence[float] | None = None
                 ) -> list[Path]:
    """Write the pages as ``pdf_name`` and one PNG per page with a stem, all or none.

    Args:
        out: The output directory (created if missing).
        pages: The pages in order (see :data:`Page`).
        title: The PDF's title.
        jobs: 2 shares the pages with a forked child process; 1 renders them all here.
        pdf_name: The PDF's file name.
        weights: Each page's relative cost to draw and render (default: all equal), for
            sharing the pages between the two processes.

    Returns:
        The PDF's path, then the PNGs' in page order.
    """
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    numbered = [(i, stem, page) for i, (stem, page) in enumerate(pages)]
    owners = share_pages(weights or [1.0] * len(pages), jobs)
    theirs = [p for p, owner in zip(numbered, owners, strict=True) if owner == 1]
    pid = _fork(stage, theirs, title)
    mine = [p for p, owner in zip(numbered, owners, strict=True) if owner == 0 or not pid]
    try:
        if pid:
            started = time.monotonic()
            _render(stage, mine, 0, title)
            # the child's share weighs about as much as ours: give it that long three times
            # over (and at least CHILD_PATIENCE_S more) before rendering its pages here
            patience = max(CHILD_PATIENCE_S, 3 * (time.monotonic() - started))
            child_ok, pid = _reap(pid, kill=False, patience=patience), 0
            if not child_ok:
                _render(stage, theirs, 1, title)
            document = _merge(stage, owners, title)
        else:
            _render(stage, mine, 0, title)
            document = (stage / PART.format(0)).read_bytes()
        (stage / pdf_name).write_bytes(document)
        written = [out / pdf_name, *(out / f"{stem}.png" for stem, _ in pages if stem)]
        for path in written:
            os.replace(stage / path.name, path)
        return written
    finally:
        if pid:
            _reap(pid, kill=True)
        shutil.rmtree(stage, ignore_errors=True)
