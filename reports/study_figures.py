"""The study report's plots: a metric against the swept parameters, and a study's answers.

Each :class:`reports.sweep_tables.Line` is drawn as its mean (a line with markers) and
its 95 % interval (a band of the same colour; error bars where the line has one point).
Lines differ in colour, line style and marker, so they read in greyscale too. Margins
are fixed in inches (no constrained layout: it costs more than the drawing), with the
legend in a column right of the axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import offset_copy

from reports.metric_axes import MetricAxis, metric_axis
from reports.style import fix_positions, new_figure, series_style
from reports.sweep_tables import Line, Param, number_text, wide_range

WIDTH = 10.0
LEFT, RIGHT, TOP, BOTTOM = 0.95, 3.1, 0.75, 0.7  # inches around the axes
PANEL, GAP = 2.9, 0.85  # a panel's height, and the space between two (x label, title)
BAND_ALPHA = 0.2
CI_LABEL = "95 % CI of the mean"
LIMIT_STYLE: dict[str, Any] = {"color": "black", "linestyle": (0, (6, 3)), "linewidth": 1.3}


def panel_figure(panels: int, title: str) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` stacked axes with fixed margins and a legend column."""
    height = TOP + BOTTOM + panels * PANEL + (panels - 1) * GAP
    fig = new_figure((WIDTH, height), margins=False)
    # fig.text, not suptitle or Axes.set_title: those place themselves at each draw by
    # measuring the axes' tick labels, a quarter of the drawing time of these figures.
    fig.text(LEFT / WIDTH, 1 - 0.2 / height, title, ha="left", va="top", fontsize=13)
    axes = []
    for i in range(panels):
        bottom = BOTTOM + (panels - 1 - i) * (PANEL + GAP)
        axes.append(fig.add_axes((LEFT / WIDTH, bottom / height,
                                  (WIDTH - LEFT - RIGHT) / WIDTH, PANEL / height)))
    return fig, axes


def panel_title(ax: Axes, text: str) -> None:
    """A panel's title, left-aligned just above its axes (see :func:`panel_figure`)."""
    ax.text(0.0, 1.0 + 0.06 / PANEL, text, transform=ax.transAxes, ha="left",
            va="bottom", fontsize=10)


def pin_labels(fig: Figure) -> None:
    """Pin titles and axis labels at fixed offsets, as :func:`reports.style.fix_positions`.

    The y label sits further out, clear of tick labels as wide as ``1000000``.
    """
    fix_positions(fig)
    for ax in fig.axes:
        ax.yaxis.set_label_coords(0.0, 0.5, transform=offset_copy(
            ax.transAxes, fig=fig, x=-(LEFT - 0.25), y=0.0, units="inches"))


def series_label(others: Sequence[Param], values: Sequence[str]) -> str:
    """A line's legend entry: the other parameters' values, in their units."""
    return ", ".join(p.value_text(v) for p, v in zip(others, values, strict=True)) or "mean"


def draw_lines(ax: Axes, lines: Sequence[Line], others: Sequence[Param],
               axis: MetricAxis) -> None:
    """Each line's mean and its 95 % interval, in ``axis``' unit."""
    for i, line in enumerate(lines):
        look: dict[str, Any] = series_style(i)
        mean, low, high = (v * axis.factor for v in (line.mean, line.ci_low, line.ci_high))
        ax.plot(line.x, mean, label=series_label(others, line.others), markersize=6,
                **look)
        if len(line.x) > 1:
            ax.fill_between(line.x, low, high, color=look["color"], alpha=BAND_ALPHA,
                            linewidth=0)
        elif np.isfinite(low).all():
            ax.errorbar(line.x, mean, yerr=[mean - low, high - mean], fmt="none",
                        ecolor=look["color"], capsize=4)


def x_axis(ax: Axes, param: Param) -> None:
    """The parameter's axis: a tick at each swept value, labelled in its unit."""
    ticks = [param.position(v) for v in param.values]
    if param.numeric and ticks[0] > 0 and ticks[-1] / ticks[0] >= 4:
        ax.set_xscale("log", base=2 if param.kind == "size" else 10)
    ax.set_xticks(ticks, labels=[number_text(t) if param.numeric else v
                                 for t, v in zip(ticks, param.values, strict=True)])
    ax.minorticks_off()
    if not param.numeric:
        ax.set_xlim(-0.5, len(ticks) - 0.5)
    elif len(ticks) == 1:
        half = abs(ticks[0]) / 2 or 1.0
        ax.set_xlim(ticks[0] - half, ticks[0] + half)
    ax.set_xlabel(param.label)


def y_axis(ax: Axes, lines: Sequence[Line], axis: MetricAxis) -> str:
    """Log the y axis of a count spanning decades; the label suffix that says so."""
    means = np.concatenate([line.mean for line in lines]) * axis.factor
    if axis.count and wide_range(means):
        positive = means[np.isfinite(means) & (means > 0)]
        ax.set_yscale("symlog", linthresh=float(positive.min()))
        return " (log scale)"
    return ""


def legend(ax: Axes, others: Sequence[Param], extra: Sequence[Artist] = ()) -> None:
    """The lines' legend right of the axes, with the CI band's entry."""
    pairs = [(h, t) for h, t in zip(*ax.get_legend_handles_labels(), strict=True)
             if not any(h is e for e in extra)]
    handles = [*(h for h, _ in pairs), Patch(color="0.5", alpha=BAND_ALPHA * 2), *extra]
    labels = [*(t for _, t in pairs), CI_LABEL, *(str(h.get_label()) for h in extra)]
    title = "\n".join(p.name for p in others) or None
    ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0),
              fontsize=9, title_fontsize=9, frameon=False)


def metric_panel(ax: Axes, metric: str, lines: Sequence[Line], param: Param,
                 others: Sequence[Param]) -> MetricAxis:
    """One panel: ``metric`` against ``param``; its axis (unit and factor)."""
    largest = max((float(np.nanmax(np.abs(line.mean))) for line in lines), default=0.0)
    axis = metric_axis(metric, largest if np.isfinite(largest) else 0.0)
    draw_lines(ax, lines, others, axis)
    x_axis(ax, param)
    ax.set_ylabel(axis.label + y_axis(ax, lines, axis), fontsize=9)
    ax.grid(True, alpha=0.3)
    return axis


def metric_figure(metric: str, panels: Sequence[tuple[Param, Sequence[Param],
                                                      Sequence[Line]]]) -> Figure:
    """``metric`` against each swept parameter: one panel per parameter."""
    fig, axes = panel_figure(len(panels), f"{metric}: mean over replicates, per point")
    for ax, (param, others, lines) in zip(axes, panels, strict=True):
        metric_panel(ax, metric, lines, param, others)
        panel_title(ax, f"against {param.name}")
        legend(ax, others)
    pin_labels(fig)
    return fig


def mark_answers(ax: Axes, marks: Sequence[tuple[float, float]], what: str) -> list[Artist]:
    """Ring each answer point ``(x, y)``; the legend handle (none without answers)."""
    if not marks:
        return []
    xs, ys = zip(*marks, strict=True)
    handle = ax.scatter(xs, ys, s=260, facecolors="none", edgecolors="black",
                        linewidths=1.8, zorder=5, label=what)
    return [handle]


def answer_panel(ax: Axes, metric: str, lines: Sequence[Line], param: Param,
                 others: Sequence[Param], limit: tuple[float, bool] | None,
                 marks: Sequence[tuple[float, float]]) -> None:
    """One panel of a study's answer: the lines, the limit and the answer points.

    ``limit`` is the threshold's limit and whether the CI must stay below it.
    """
    axis = metric_panel(ax, metric, lines, param, others)
    extra: list[Artist] = []
    if limit is not None:
        side = "below" if limit[1] else "above"
        extra.append(ax.axhline(limit[0] * axis.factor, **LIMIT_STYLE,
                                label=f"limit: {axis.value_text(limit[0])} "
                                      f"(CI must stay {side})"))
    scaled = [(x, y * axis.factor) for x, y in marks]
    extra += mark_answers(ax, scaled, "smallest value that qualifies")
    legend(ax, others, extra)
