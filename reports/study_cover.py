"""The study report's text pages: the cover, and the list of metrics not drawn.

The cover says what the sweep asks, how it ran, and the answers.

Text is wrapped here, at a width the page holds, and the page grows as tall as its text
needs, so nothing is cut off however long a sentence is. Each paragraph is one text
artist whose lines, joined by spaces, give the paragraph back.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.figure import Figure

from reports.style import new_figure

WIDTH = 10.0
MARGIN = 0.6  # inches, each side and at the top and bottom
MIN_HEIGHT = 6.0
CHAR_EM = 0.6  # a character's width, in ems (generous for DejaVu Sans)
LEADING = 1.3  # line height, in ems


@dataclass(frozen=True)
class Block:
    """A paragraph: its text, font size (pt), weight, colour and space before (in)."""

    text: str
    size: float = 10.0
    weight: str = "normal"
    color: str = "black"
    before: float = 0.08
    indent: float = 0.0


def wrap(text: str, size: float, width_in: float) -> list[str]:
    """``text`` in lines that fit ``width_in`` inches at ``size`` points."""
    chars = max(20, int(width_in * 72 / (size * CHAR_EM)))
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines += textwrap.wrap(paragraph, chars, break_long_words=True,
                               break_on_hyphens=False) or [""]
    return lines


def text_page(blocks: Sequence[Block]) -> Figure:
    """A page of paragraphs, top to bottom, as tall as they need."""
    laid = []
    height = 2 * MARGIN
    for block in blocks:
        lines = wrap(block.text, block.size, WIDTH - 2 * MARGIN - block.indent)
        step = len(lines) * block.size * LEADING / 72
        laid.append((block, lines, block.before + step))
        height += block.before + step
    height = max(MIN_HEIGHT, height)
    fig = new_figure((WIDTH, height), margins=False)
    y = height - MARGIN
    for block, lines, step in laid:
        y -= block.before
        fig.text((MARGIN + block.indent) / WIDTH, y / height, "\n".join(lines),
                 fontsize=block.size, weight=block.weight, color=block.color, va="top",
                 ha="left", linespacing=LEADING)
        y -= step - block.before
    return fig


def heading(text: str) -> Block:
    """A section heading."""
    return Block(text, 12.0, "bold", before=0.22)


def cover_blocks(kind: str, name: str, question: str, facts: Sequence[str],
                 answers: Sequence[tuple[str, str]], notes: Sequence[str]) -> list[Block]:
    """The cover's paragraphs.

    ``kind`` (study or sweep) and the name head it; then the question, the answers
    (title, sentence), the sweep's facts and closing notes.
    """
    blocks = [Block(f"allocsim {kind} report", 13.0, color="0.35", before=0.0),
              Block(name, 22.0, "bold", before=0.1),
              Block(question, 11.0, before=0.2)]
    if answers:
        blocks.append(heading("Answers (as study.md states them)"))
        for i, (title, sentence) in enumerate(answers, 1):  # study.md's Markdown marks off
            blocks.append(Block(f"{i}. {_plain(title)}", 10.5, "bold", before=0.12))
            blocks.append(Block(_plain(sentence), 10.0, indent=0.25, before=0.03))
    blocks.append(heading("The sweep"))
    blocks += [Block(f, 10.0, before=0.04) for f in facts]
    blocks += [Block(n, 9.5, color="0.25", before=0.12) for n in notes]
    return blocks


def unplotted_blocks(constant: Sequence[tuple[str, str]], same: Sequence[tuple[str, str]],
                     empty: Sequence[str]) -> list[Block]:
    """The last page: the metrics not drawn, with why.

    ``constant``: the same at every point (name, value); ``same``: the same as one drawn
    (name, that one's); ``empty``: never recorded.
    """
    blocks = [Block("Metrics not drawn", 16.0, "bold", before=0.0)]
    if constant:
        blocks.append(heading("The same at every point (mean and interval), with the "
                              "value"))
        blocks.append(Block("\n".join(f"{m} = {v}" for m, v in constant), 9.0))
    if same:
        blocks.append(heading("The same as a metric drawn, at every point"))
        blocks.append(Block("\n".join(f"{m}: as {o}" for m, o in same), 9.0))
    if empty:
        blocks.append(heading("Recorded by no completed run"))
        blocks.append(Block(", ".join(empty), 9.0))
    return blocks


def _plain(markdown: str) -> str:
    """A study.md sentence as plain text: code and bold marks removed."""
    return markdown.replace("`", "").replace("**", "")
