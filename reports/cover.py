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
    worst_stalls,
)
from reports.load import RunData
from reports.style import new_figure

WRAP = 120


def _block(fig: Figure, y: float, title: str, lines: list[str], size: float = 9.0) -> float:
    """A titled block of text lines from height ``y`` down; returns the next free height."""
    fig.text(0.04, y, title, fontsize=11, weight="bold", va="top")
    body = "\n".join(textwrap.fill(line, WRAP, subsequent_indent="    ") for line in lines)
    fig.text(0.06, y - 0.03, body, fontsize=size, va="top", family="monospace",
             linespacing=1.35)
    rows = body.count("\n") + 1
    return y - 0.045 - rows * size * 1.35 / 72 / fig.get_figheight()


def cover_lines(data: RunData) -> dict[str, list[str]]:
    """The cover's text, block by block (what tests read back)."""
    callers = caller_lines(data)
    width = max((len(c.name) for c in callers), default=0)
    return {
        "Failures by caller": [f"{c.name:<{width}}  {caller_text(c)}" for c in callers]
        or ["no callers"],
        "Huge pages": huge_text(huge_pages(data)),
        "Worst stalls": stall_text(worst_stalls(data)),
        "Time below the watermarks (free pages < wmark + boost)": watermark_text(data),
        "Machine": machine_text(data).splitlines(),
        "Callers (name, type, gfp_mask)": [f"{c.name:<{width}}  {c.kind or '-'}  {c.gfp or '-'}"
                                           for c in callers],
        "Key sysctls (vm.*)": textwrap.wrap(sysctl_text(data), WRAP) or ["defaults"],
    }


def cover_page(data: RunData) -> Figure:
    """Page 1: what was asked, on what machine, and the answers."""
    fig = new_figure(margins=False)
    fig.text(0.04, 0.965, f"allocsim report: {data.manifest['name']}", fontsize=18,
             weight="bold", va="top")
    fig.text(0.04, 0.925, run_facts(data), fontsize=8.5, color="0.3", va="top")
    question = textwrap.fill(manifest_question(data.manifest).replace("\n", " "), 105)
    fig.text(0.04, 0.895, question, fontsize=10.5, va="top", style="italic", linespacing=1.3)
    y = 0.895 - 0.05 - question.count("\n") * 0.026
    for title, lines in cover_lines(data).items():
        y = _block(fig, y, title, lines, size=8.5 if len(lines) > 6 else 9.0)
    return fig
