"""How every figure of the reports looks: canvas, units, colours, line styles.

Figures are built without ``pyplot`` (no global figure state), each on its own Agg canvas,
with fixed margins: matplotlib's constrained layout measures every text twice per save and
cost about 40 % of a report's time. Units follow the issue's reading rules: time in s, min
or h chosen from the run's length; sizes in binary units (KiB .. TiB); every series is
told apart by line style or marker as well as colour, so a greyscale print reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PAGE_SIZE = 4096
"""Bytes per page: the model's PAGE_SIZE (x86_64, 4 KiB)."""

FIGSIZE = (11.0, 7.0)
"""Landscape, close to A4 / US letter; every page of report.pdf has this size."""

MARGINS = {"left": 0.08, "right": 0.97, "bottom": 0.12, "top": 0.90}

# Colours: matplotlib's tab10 (distinct hues) paired with line styles and markers that
# repeat on different cycles, so no two of the first 28 series share all three.
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
          "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

# Migratetypes in /proc/pagetypeinfo order, each with a colour of its own lightness.
MIGRATETYPE_COLORS = {"Unmovable": "#8c1c13", "Movable": "#a6cee3", "Reclaimable": "#ff7f00",
                      "HighAtomic": "#1a1a1a", "CMA": "#1f78b4", "Isolate": "#e0e0e0"}
"""Each migratetype's colour, of its own lightness too (greyscale: Movable lightest, then
Reclaimable, CMA, Unmovable, HighAtomic darkest)."""


def new_figure(figsize: tuple[float, float] = FIGSIZE, margins: bool = True) -> Figure:
    """A figure on its own Agg canvas, with the report's fixed margins."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    if margins:
        fig.subplots_adjust(**MARGINS)
    return fig


def order_style(order: int) -> dict[str, object]:
    """The style of an allocation order, the same in every panel.

    Never red: red marks failures.
    """
    colors = [c for c in COLORS if c != "tab:red"]
    return {"color": colors[order % len(colors)],
            "linestyle": LINESTYLES[order % len(LINESTYLES)],
            "marker": MARKERS[order % len(MARKERS)]}


def series_style(i: int) -> dict[str, object]:
    """Colour, line style and marker of the ``i``-th series of a figure."""
    return {"color": COLORS[i % len(COLORS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)]}


def no_data(ax: Axes, text: str) -> None:
    """Say on the axes that there is nothing to plot, rather than leave them blank."""
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=12, transform=ax.transAxes,
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


_T = TypeVar("_T", float, np.ndarray)


@dataclass(frozen=True)
class TimeUnit:
    """The unit a run's time axis is drawn in: seconds, minutes or hours."""

    name: str
    seconds: float

    @property
    def label(self) -> str:
        """The axis label, e.g. ``simulated time (min)``."""
        return f"simulated time ({self.name})"

    def scale(self, seconds: _T) -> _T:
        """Seconds (a number or an array) expressed in this unit."""
        return seconds / self.seconds  # type: ignore[return-value]


def time_unit(duration_s: float) -> TimeUnit:
    """Seconds up to 2 min, minutes up to 2 h, hours beyond."""
    if duration_s <= 120:
        return TimeUnit("s", 1.0)
    if duration_s <= 7200:
        return TimeUnit("min", 60.0)
    return TimeUnit("h", 3600.0)


_BINARY = ("B", "KiB", "MiB", "GiB", "TiB")


def size_unit(max_bytes: float) -> tuple[str, float]:
    """The binary unit (name, bytes) in which ``max_bytes`` reads as 1 .. 1023."""
    power = 0
    while power < len(_BINARY) - 1 and max_bytes >= 1024 ** (power + 1):
        power += 1
    return _BINARY[power], float(1024 ** power)


def format_bytes(n: float) -> str:
    """``n`` bytes in a binary unit, e.g. ``1.5 GiB``; whole numbers lose the decimals."""
    name, unit = size_unit(abs(n))
    value = n / unit
    return f"{value:.0f} {name}" if float(value).is_integer() else f"{value:.1f} {name}"


def format_pages(pages: float) -> str:
    """Pages as a size, e.g. ``512 pages (2 MiB)``."""
    return f"{pages:,.0f} pages ({format_bytes(pages * PAGE_SIZE)})"


def format_ns(ns: float) -> str:
    """A duration given in ns, in the unit that reads best (ns, µs, ms, s, min, h)."""
    if ns == 0:
        return "0 s"
    for unit, name in ((3600e9, "h"), (60e9, "min"), (1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if abs(ns) >= unit:
            return f"{ns / unit:.4g} {name}"
    return f"{ns:.0f} ns"


def format_seconds(seconds: float) -> str:
    """A time given in seconds, in the unit that reads best."""
    return format_ns(seconds * 1e9)


def sampling_note(times_s: Sequence[float] | np.ndarray) -> str:
    """How often a series was sampled, for the figure's caption."""
    if len(times_s) < 2:
        return f"{len(times_s)} snapshot"
    step = float(np.median(np.diff(np.asarray(times_s, dtype=float))))
    return f"sampled every {format_seconds(step)} ({len(times_s)} snapshots), drawn as steps"


def caption(fig: Figure, text: str) -> None:
    """A one-line note at the bottom left of the page (sampling, model simplifications)."""
    import textwrap

    width = int(fig.get_figwidth() * 17)  # characters of 8 pt text across the page
    fig.text(0.01, 0.005, textwrap.fill(text, width), fontsize=8, color="0.3", ha="left",
             va="bottom")


def fix_positions(fig: Figure) -> None:
    """Pin every title and axis label at a fixed offset from its axes.

    Matplotlib otherwise measures every tick label of the axes (and of the axes sharing
    them) at each save to place titles and labels clear of them: more than half of a
    figure's drawing time. Fixed offsets suit the report's fixed fonts and margins.
    """
    from matplotlib.transforms import offset_copy

    for ax in fig.axes:
        if getattr(ax, "_colorbar", None) is not None:  # a colorbar keeps its own layout
            continue
        if ax.get_xlabel():
            ax.xaxis.set_label_coords(0.5, 0.0, transform=offset_copy(
                ax.transAxes, fig=fig, x=0.0, y=-0.36, units="inches"))
        if ax.get_ylabel():
            ax.yaxis.set_label_coords(0.0, 0.5, transform=offset_copy(
                ax.transAxes, fig=fig, x=-0.55, y=0.0, units="inches"))
        for name in ("title", "_left_title", "_right_title"):
            title = getattr(ax, name)
            title.set_y(1.0)
            title.set_transform(offset_copy(ax.transAxes, fig=fig, x=0.0, y=0.06,
                                            units="inches"))
        setattr(ax, "_autotitlepos", False)  # noqa: B010 - matplotlib's private switch


def plain_log_ticks(axis: Axis) -> None:
    """Label a log or symlog axis 1, 10, 100, 1,000 in plain text, not ``10^n`` mathtext.

    Mathtext labels cost a parser and glyph layout each; plain numbers read as well.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    def label(value: float, _pos: int) -> str:
        if value <= 0:
            return "0"
        if value < 1:
            return f"{value:g}"
        return f"{value:,.0f}"

    axis.set_major_formatter(FuncFormatter(label))
    axis.set_minor_formatter(NullFormatter())


def steps(ax: Axes, values: np.ndarray, edges: np.ndarray,
          baseline: np.ndarray | float | None = 0.0, fill: bool = False,
          **kw: Any) -> Artist:
    """``ax.stairs()`` drawn as a steps-post line, or a step fill between two levels.

    ``stairs()`` updates the data limits by walking its path segment by segment in
    Python: for a run with a thousand snapshots that was a third of a report's drawing
    time. A line and ``fill_between()`` do the same vectorised. The values, edges and
    baseline drawn are kept on the artist as ``step_data``, as ``stairs()`` keeps them.
    """
    values = np.asarray(values, dtype=float)
    edges = np.asarray(edges, dtype=float)
    last = values[-1:] if len(values) else values
    if fill:
        base = np.broadcast_to(np.asarray(0.0 if baseline is None else baseline, dtype=float),
                               values.shape)
        art: Artist = ax.fill_between(edges, np.append(base, base[-1:]),
                                      np.append(values, last), step="post", **kw)
    else:
        base = np.zeros_like(values)
        (art,) = ax.plot(edges, np.append(values, last), drawstyle="steps-post", **kw)
    art.step_data = (values, edges, base)  # type: ignore[attr-defined]
    return art


def bottom_legend(fig: Figure, axes: Iterable[Axes], ncols: int, inches: float) -> None:
    """One legend for all ``axes`` (each label once), centred ``inches`` above the bottom."""
    handles: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncols=ncols,
               fontsize=8, bbox_to_anchor=(0.5, inches / fig.get_figheight()))
