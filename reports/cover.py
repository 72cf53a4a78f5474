"""The report's cover: the question, the machine and callers, and the headline answers."""

from __future__ import annotations

import textwrap

from matplotlib.figure import Figure

from reports.headline import (
    caller_lines,
    caller_text,
    huge_pages,
    huge_text,
    machine_text,
    manifest_question,
    run_facts,
    stall_text,
    sysctl_text,
    watermark_text,
    work_text,
    worst_stalls,
)
from reports.load import RunData
from reports.style import new_figure

WRAP = 68
"""Characters per line in a column of the cover."""
COLUMNS = ((0.03, ("Failures by caller", "Huge pages", "Worst stalls",
                   "Time with NR_FREE_PAGES below a watermark (+ boost)")),
           (0.52, ("Reclaim and compaction", "Machine", "Callers (name, type, gfp_mask)",
                   "Key sysctls (vm.*)")))
"""The cover's two columns: where each starts and its blocks (answers left, setup right)."""


def _column(fig: Figure, x: float, top: float, blocks: list[tuple[str, list[str]]]) -> None:
    """Titled blocks of monospace lines, shrunk to fit between ``top`` and the bottom."""
    bodies = ["\n".join(textwrap.fill(line, WRAP, subsequent_indent="    ") for line in lines)
              for _, lines in blocks]
    rows = sum(body.count("\n") + 1 for body in bodies)
    room = (top - 0.03) * fig.get_figheight() * 72  # points
    size = min(9.0, room / (rows * 1.35 + len(blocks) * 2.6 * 1.35))
    y = top
    for (title, _), body in zip(blocks, bodies, strict=True):
        fig.text(x, y, title, fontsize=size * 1.2, weight="bold", va="top")
        y -= size * 1.6 * 1.2 / 72 / fig.get_figheight()
        fig.text(x + 0.015, y, body, fontsize=size, va="top", family="monospace",
                 linespacing=1.35, gid=f"cover {title}")
        y -= (body.count("\n") + 1) * size * 1.35 / 72 / fig.get_figheight()
        y -= size * 1.0 / 72 / fig.get_figheight()


def cover_lines(data: RunData) -> dict[str, list[str]]:
    """The cover's text, block by block (what tests read back)."""
    callers = caller_lines(data)
    width = max((len(c.name) for c in callers), default=0)
    return {
        "Failures by caller": [f"{c.name:<{width}}  {caller_text(c)}" for c in callers]
        or ["no callers"],
        "Huge pages": huge_text(huge_pages(data)),
        "Worst stalls": stall_text(worst_stalls(data)),
        "Time with NR_FREE_PAGES below a watermark (+ boost)": watermark_text(data),
        "Reclaim and compaction": work_text(data),
        "Machine": machine_text(data).splitlines(),
        "Callers (name, type, gfp_mask)": [f"{c.name:<{width}}  {c.kind or '-'}  {c.gfp or '-'}"
                                           for c in callers],
        "Key sysctls (vm.*)": [line for item in sysctl_text(data).split("   ")
                               for line in textwrap.wrap(item, WRAP)] or ["defaults"],
    }


def cover_page(data: RunData) -> Figure:
    """Page 1: what was asked, on what machine, and the answers (left) and setup (right)."""
    fig = new_figure(margins=False)
    fig.text(0.03, 0.965, f"allocsim report: {data.manifest['name']}", fontsize=18,
             weight="bold", va="top")
    fig.text(0.03, 0.925, run_facts(data), fontsize=8.5, color="0.3", va="top")
    question = textwrap.fill(manifest_question(data.manifest).replace("\n", " "), 125)
    fig.text(0.03, 0.895, question, fontsize=10, va="top", style="italic", linespacing=1.3,
             gid="cover question")
    top = 0.895 - 0.045 - question.count("\n") * 0.025
    lines = cover_lines(data)
    for x, titles in COLUMNS:
        _column(fig, x, top, [(t, lines[t]) for t in titles])
    return fig
