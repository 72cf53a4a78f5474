"""Compare runs: baseline against variants, with confidence intervals over replicates.

``allocsim compare RUN_A RUN_B [...]`` (or a sweep directory) groups the runs into
variants: runs whose configs differ only in the seed are replicates of one variant. The
first variant is the baseline. Each variant is labelled by the config keys that set it
apart. The report overlays the single-run report's time series (mean of the replicates,
with a 95 % band where there are at least two) and tabulates every metric of
:mod:`allocsim.sweep.metrics` with its difference from the baseline.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from allocsim.sweep.metrics import WALL_METRICS, run_metrics
from allocsim.sweep.stats import CONFIDENCE, interval
from reports.load import ReportInputError, RunData, load_run

SWEEP_FILE = "sweep.json"
MAX_LABEL_KEYS = 4
"""A variant's label names at most this many of the keys that set it apart."""
RUNS_FILE = "runs.csv"


@dataclass
class Variant:
    """One configuration: its label and its replicate runs."""

    label: str
    runs: list[RunData] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def _flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A config as ``{"machine.nodes[0].memory": "1GiB", ...}`` leaf strings."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, sub in enumerate(value):
            out.update(_flatten(sub, f"{prefix}[{i}]"))
        return out
    return {prefix: json.dumps(value, sort_keys=True) if not isinstance(value, str) else value}


def _identity(manifest: dict[str, Any]) -> dict[str, str]:
    """What makes runs replicates of each other: the config without seed."""
    config = dict(manifest.get("config") or {})
    config.pop("seed", None)
    return _flatten(config)


def group_variants(runs: list[RunData]) -> list[Variant]:
    """Group runs into variants (same config but the seed), in order of first appearance.

    Each variant is labelled by the config keys whose values differ between variants.
    """
    variants: list[Variant] = []
    keys: list[dict[str, str]] = []
    for run in runs:
        ident = _identity(run.manifest)
        for i, known in enumerate(keys):
            if known == ident:
                variants[i].runs.append(run)
                break
        else:
            keys.append(ident)
            variants.append(Variant("", [run], ident))
    differing = sorted({k for ident in keys for k in ident
                        if len({other.get(k) for other in keys}) > 1})
    for variant, ident in zip(variants, keys, strict=True):
        parts = [f"{k}={ident.get(k, '(unset)')}" for k in differing if k != "name"]
        if len(parts) > MAX_LABEL_KEYS:  # unrelated experiments: name the first few
            parts = [*parts[:MAX_LABEL_KEYS - 1],
                     f"... {len(parts) - MAX_LABEL_KEYS + 1} more keys differ (compare.csv)"]
        name = str(variant.runs[0].manifest["name"])
        label = ", ".join(parts) if parts else name
        if "name" in differing and parts:
            label = f"{name}: {label}"
        variant.label = label
    if len(variants) > 1 and all(v.label == variants[0].label for v in variants):
        for i, v in enumerate(variants):
            v.label = f"{v.label} #{i + 1}"
    return variants


def sweep_run_dirs(sweep_dir: Path) -> list[Path]:
    """The completed run directories of a sweep, by point then replicate.

    Raises:
        ReportInputError: If ``runs.csv`` is missing, unreadable or lacks its columns.
    """
    path = sweep_dir / RUNS_FILE
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except FileNotFoundError as exc:
        raise ReportInputError(f"{path}: missing (a sweep directory has {RUNS_FILE})") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportInputError(f"{path}: not readable as CSV ({exc})") from exc
    if not {"point", "run_dir", "status"} <= columns:
        raise ReportInputError(f"{path}: expected the columns point, run_dir and status")
    done = [r for r in rows if r["status"] == "ok"]
    done.sort(key=lambda r: (int(r["point"]), int(r.get("replicate") or 0)))
    return [sweep_dir / r["run_dir"] for r in done]


def load_variants(paths: list[Path]) -> list[Variant]:
    """Variants from run directories, or from one sweep directory.

    Raises:
        ReportInputError: A path is neither, a run is unfinished or its files are bad, or
            there is nothing to compare.
    """
    dirs: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ReportInputError(f"{path}: no such directory (expected a run directory or "
                                   "a sweep directory)")
        if (path / SWEEP_FILE).is_file():
            dirs += sweep_run_dirs(path)
        else:
            dirs.append(path)
    seen: set[Path] = set()
    for d in dirs:
        if d.resolve() in seen:
            raise ReportInputError(f"{d}: given twice (one run would count as two replicates)")
        seen.add(d.resolve())
    if len(dirs) < 2:
        raise ReportInputError(f"{' '.join(map(str, paths))}: compare needs at least two runs "
                               "(run directories, or a sweep directory with completed runs)")
    runs = []
    for d in dirs:
        try:
            runs.append(load_run(d))
        except ReportInputError as exc:  # say which run, there are several
            message = str(exc)
            raise ReportInputError(message if message.startswith(str(d)) else
                                   f"{d}/{message}") from exc
    return group_variants(runs)


@dataclass(frozen=True)
class MetricRow:
    """One metric: each variant's mean and interval, and its difference from the baseline."""

    metric: str
    means: list[float]
    lows: list[float]
    highs: list[float]
    ns: list[int]
    diffs: list[float]
    diff_lows: list[float]
    diff_highs: list[float]


def difference_interval(base: np.ndarray, other: np.ndarray) -> tuple[float, float, float]:
    """``mean(other) - mean(base)`` and its Welch t 95 % interval.

    The bounds are NaN if either side has fewer than two values.
    """
    base = base[~np.isnan(base)]
    other = other[~np.isnan(other)]
    if not len(base) or not len(other):
        return math.nan, math.nan, math.nan
    diff = float(other.mean() - base.mean())
    if len(base) < 2 or len(other) < 2:
        return diff, math.nan, math.nan
    va, vb = base.var(ddof=1) / len(base), other.var(ddof=1) / len(other)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va ** 2 / (len(base) - 1) + vb ** 2 / (len(other) - 1))
    half = float(sps.t.ppf((1 + CONFIDENCE) / 2, dof)) * se
    return diff, diff - half, diff + half


def metric_table(variants: list[Variant]) -> list[MetricRow]:
    """Every model metric any run has, per variant (wall-clock metrics left out)."""
    values = [[run_metrics(r.summary) for r in v.runs] for v in variants]
    names = sorted({m for per in values for run in per for m in run} - WALL_METRICS)
    rows = []
    for name in names:
        arrays = [np.array([run.get(name, math.nan) for run in per], dtype=float)
                  for per in values]
        ivs = [interval(a, name, i) for i, a in enumerate(arrays)]
        diffs = [difference_interval(arrays[0], a) for a in arrays]
        rows.append(MetricRow(name, [iv.mean for iv in ivs], [iv.ci_low for iv in ivs],
                              [iv.ci_high for iv in ivs], [iv.n for iv in ivs],
                              [d[0] for d in diffs], [d[1] for d in diffs],
                              [d[2] for d in diffs]))
    return rows


def mean_band(series: list[pd.Series], low: float = 0.0,
              high: float = math.inf) -> pd.DataFrame:
    """Replicates' step series on their common sample times: mean and 95 % t band.

    Each series is forward-filled onto the union of the sample times (a snapshot holds
    until the next). Returns columns ``mean``, ``low``, ``high`` (``low``/``high`` equal
    the mean with one replicate). The band is clipped to ``[low, high]``, the range the
    quantity can take (pages, blocks and counts are never negative): with two or three
    replicates a t interval easily reaches past it.
    """
    frame = pd.concat(series, axis=1).sort_index().ffill().bfill()
    values = frame.to_numpy(dtype=float)
    n = values.shape[1]
    mean = values.mean(axis=1)
    if n < 2:
        return pd.DataFrame({"mean": mean, "low": mean, "high": mean}, index=frame.index)
    half = (float(sps.t.ppf((1 + CONFIDENCE) / 2, n - 1)) * values.std(axis=1, ddof=1)
            / math.sqrt(n))
    return pd.DataFrame({"mean": mean, "low": np.clip(mean - half, low, high),
                         "high": np.clip(mean + half, low, high)}, index=frame.index)
