"""The numbers the study report plots, from a sweep's ``summary.csv``.

Swept keys that move together (``machine.nodes[0].memory`` and ``machine.nodes[1].memory``
set alike at every point) are one parameter (:class:`Param`), drawn on one axis. A
parameter's values are sizes, durations, rates or numbers (a numeric axis, in the unit
that suits its largest value: GiB, s, /s) or anything else (one tick per value, in the
order the sweep lists them). A metric's :class:`Line` is its mean and 95 % interval
against one parameter, at fixed values of the others. Nothing here draws.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from allocsim.sweep.study import magnitude, value_kind
from reports.style import size_unit
from reports.style import time_unit as style_time_unit

SHORT_TIMES = (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))
_INDEX = re.compile(r"\[(\d+)\]")


def time_unit(largest_s: float) -> tuple[str, float]:
    """The time unit (name, seconds) for values up to ``largest_s``.

    s, min or h as the run report's (:func:`reports.style.time_unit`); ms, µs or ns
    below a second.
    """
    if largest_s >= 1.0:
        unit = style_time_unit(largest_s)
        return unit.name, unit.seconds
    return next(((u, f) for u, f in SHORT_TIMES if largest_s >= f), SHORT_TIMES[-1])


def number_text(value: float) -> str:
    """A value for a tick or a legend: ``48,000`` for a whole number, else 4 digits."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class Param:
    """One swept parameter: a key, or keys set alike at every point.

    ``kind`` is ``size``, ``duration``, ``rate``, ``number`` or ``category``; a numeric
    value is ``magnitude(text) / scale`` in ``unit``; ``values`` are the texts in order.
    """

    keys: tuple[str, ...]
    kind: str
    unit: str
    scale: float
    values: tuple[str, ...]
    key_values: tuple[tuple[str, ...], ...] = ()
    """Each key's text at the points of ``values`` (keys set alike may be spelt apart)."""

    def describe(self) -> str:
        """``name = v1, v2`` (each key's values if they are spelt differently)."""
        if len(set(self.key_values)) <= 1:
            return f"{self.name} = {', '.join(self.values)}"
        return "; ".join(f"{k} = {', '.join(v)}"
                         for k, v in zip(self.keys, self.key_values, strict=True))

    @property
    def name(self) -> str:
        """The key path(s): ``machine.nodes[0,1].memory`` for keys differing by one index."""
        return key_label(self.keys)

    @property
    def label(self) -> str:
        """The axis label, with the unit."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    @property
    def numeric(self) -> bool:
        """Whether the axis is numeric (else one tick per value)."""
        return self.kind != "category"

    def position(self, text: str) -> float:
        """Where ``text`` goes on the axis."""
        if self.numeric:
            return magnitude(text) / self.scale
        return float(self.values.index(text))

    def value_text(self, text: str) -> str:
        """``text`` as a legend or tick shows it: in the axis unit."""
        if not self.numeric:
            return text
        shown = number_text(magnitude(text) / self.scale)
        if not self.unit or self.unit.startswith("/"):
            return shown + self.unit
        return f"{shown} {self.unit}"


def key_label(keys: Sequence[str]) -> str:
    """Key paths as one name: those that differ in one index only share it (``[0,1]``)."""
    if len(keys) == 1:
        return keys[0]
    shapes = {_INDEX.sub("[]", k) for k in keys}
    indices = [_INDEX.findall(k) for k in keys]
    if len(shapes) == 1 and len({len(i) for i in indices}) == 1:
        varying = [n for n in range(len(indices[0]))
                   if len({i[n] for i in indices}) > 1]
        if len(varying) == 1:
            at = varying[0]
            joined = ",".join(dict.fromkeys(i[at] for i in indices))
            parts = _INDEX.split(keys[0])
            parts[2 * at + 1] = joined
            return "".join(p if n % 2 == 0 else f"[{p}]" for n, p in enumerate(parts))
    return " & ".join(keys)


def swept_params(points: pd.DataFrame, keys: Sequence[str]) -> list[Param]:
    """The sweep's parameters, from one row per point (the key columns as text).

    Keys whose values split the points the same way are one parameter, named by all.
    """
    groups: dict[tuple[int, ...], list[str]] = {}
    for key in keys:
        codes = tuple(pd.factorize(points[key])[0].tolist())
        groups.setdefault(codes, []).append(key)
    return [_param(points, tuple(group)) for group in groups.values()]


def _param(points: pd.DataFrame, keys: tuple[str, ...]) -> Param:
    texts = tuple(dict.fromkeys(str(v) for v in points[keys[0]]))
    kind = value_kind(texts)
    ordered = texts if kind is None else tuple(sorted(texts, key=magnitude))
    first = points[keys[0]].astype(str).tolist()
    spelt = tuple(tuple(str(points[k].iloc[first.index(t)]) for t in ordered) for k in keys)
    if kind is None:
        return Param(keys, "category", "", 1.0, texts, spelt)
    largest = max(abs(magnitude(t)) for t in texts)
    if kind == "size":
        unit, scale = size_unit(largest)
    elif kind == "duration":
        unit, scale = time_unit(largest / 1e9)
        scale *= 1e9
    else:
        unit, scale = ("/s", 1.0) if kind == "rate" else ("", 1.0)
    return Param(keys, kind, unit, scale, ordered, spelt)


@dataclass(frozen=True)
class Line:
    """A metric against one parameter at fixed values of the others.

    ``others`` are those values (texts, one per other parameter); ``x`` the positions on
    the parameter's axis, ascending; ``mean``, ``ci_low``, ``ci_high`` the statistics of
    ``summary.csv`` (NaN where a point has no interval), ``n`` the values behind each.
    """

    others: tuple[str, ...]
    points: tuple[int, ...]
    x: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray


def metric_lines(rows: pd.DataFrame, param: Param, others: Sequence[Param]) -> list[Line]:
    """One line per combination of the ``others``' values, from a metric's summary rows.

    Points where no run had the metric (``n`` 0) are left out; a line without points too.
    """
    rows = rows[rows["n"] > 0]
    key = param.keys[0]
    other_keys = [p.keys[0] for p in others]
    lines = []
    for combo in _combinations(others):
        mask = np.ones(len(rows), dtype=bool)
        for k, v in zip(other_keys, combo, strict=True):
            mask &= (rows[k] == v).to_numpy()
        part = rows[mask]
        if part.empty:
            continue
        x = np.array([param.position(t) for t in part[key]], dtype=float)
        order = np.argsort(x, kind="stable")
        part = part.iloc[order]
        lines.append(Line(combo, tuple(int(p) for p in part["point"]), x[order],
                          part["mean"].to_numpy(float), part["ci_low"].to_numpy(float),
                          part["ci_high"].to_numpy(float), part["n"].to_numpy(int)))
    return lines


def _combinations(params: Sequence[Param]) -> list[tuple[str, ...]]:
    combos: list[tuple[str, ...]] = [()]
    for p in params:
        combos = [(*c, v) for c in combos for v in p.values]
    return combos


def point_rows(summary: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per point: ``point`` and the key columns."""
    return summary.drop_duplicates("point").sort_values("point")[["point", *keys]]


@dataclass(frozen=True)
class MetricSplit:
    """The metrics to plot, and those not.

    Not plotted: the same at every point, the same as a metric plotted
    (``(metric, the one plotted)``), or never recorded.
    """

    plotted: tuple[str, ...]
    constant: tuple[tuple[str, float], ...]
    same: tuple[tuple[str, str], ...]
    empty: tuple[str, ...]


def split_metrics(summary: pd.DataFrame) -> MetricSplit:
    """Which metrics vary (plotted), are constant, repeat another, or were never recorded.

    A constant metric has the same mean and a zero-width interval at every point with
    values; a repeat has the statistics of a metric before it in name order at every
    point (``requests.C.order0`` of a caller that asks for order 0 only is
    ``requests.C``). Both are listed, not drawn.
    """
    plotted, constant, same, empty = [], [], [], []
    seen: dict[tuple[object, ...], str] = {}
    for metric, rows in summary.groupby("metric", sort=True):
        valued = rows[rows["n"] > 0]
        if valued.empty:
            empty.append(str(metric))
            continue
        spread = pd.concat([valued["mean"], valued["ci_low"], valued["ci_high"]]).dropna()
        if spread.nunique() == 1 and valued["std"].fillna(0).eq(0).all():
            constant.append((str(metric), float(spread.iloc[0])))
            continue
        stats = valued.sort_values("point")[["point", "n", "mean", "ci_low", "ci_high"]]
        key = tuple(stats.fillna(-math.inf).itertuples(index=False, name=None))
        if key in seen:
            same.append((str(metric), seen[key]))
        else:
            seen[key] = str(metric)
            plotted.append(str(metric))
    return MetricSplit(tuple(plotted), tuple(constant), tuple(same), tuple(empty))


def wide_range(values: np.ndarray) -> bool:
    """Whether positive values span two decades or more (a log axis reads them)."""
    positive = values[np.isfinite(values) & (values > 0)]
    return bool(positive.size) and float(positive.max() / positive.min()) >= 100.0
