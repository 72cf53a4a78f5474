"""Metrics of a study's per-node callers: one caller made of one workload per node.

For ``per_node_callers: {thp: [thp-node0, thp-node1]}`` each run gets, besides its own
metrics (:mod:`allocsim.sweep.metrics`):

``requests.thp``, ``failures.thp`` (and ``.orderN``)
    the members' sums;
``failure_rate.thp`` (and ``.orderN``)
    failures / requests of those sums (the whole machine's rate, pooled over requests,
    not a mean of the members' rates); NaN without requests;
``failure_rate.thp[.orderN].nodeI``
    member ``I``'s rate;
``first_failure_s.thp``
    the earliest of the members' first failures (NaN: none failed), and
    ``first_failure_s.thp.nodeI``, member ``I``'s;
``stall_s.thp``
    the members' stalls summed, and ``stall_s.thp.nodeI``, member ``I``'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

_ORDER = re.compile(r"\.order(\d+)$")


def group_metrics(metrics: Mapping[str, float], members: Sequence[str],
                  group: str) -> dict[str, float]:
    """One run's metrics of the per-node caller ``group`` (see the module docstring)."""
    out: dict[str, float] = {}
    suffixes = [""]
    for member in members:
        prefix = f"requests.{member}.order"
        for name in metrics:
            if name.startswith(prefix) and _ORDER.search(name):
                suffix = name[len(f"requests.{member}"):]
                if suffix not in suffixes:
                    suffixes.append(suffix)
    suffixes.sort(key=lambda s: -1 if not s else int(s[len(".order"):]))
    for suffix in suffixes:
        asked = sum(metrics.get(f"requests.{m}{suffix}", 0.0) for m in members)
        lost = sum(metrics.get(f"failures.{m}{suffix}", 0.0) for m in members)
        if not asked and not any(f"requests.{m}{suffix}" in metrics for m in members):
            continue
        out[f"requests.{group}{suffix}"] = asked
        out[f"failures.{group}{suffix}"] = lost
        out[f"failure_rate.{group}{suffix}"] = lost / asked if asked else math.nan
        for nid, member in enumerate(members):
            rate = metrics.get(f"failure_rate.{member}{suffix}")
            if rate is not None:
                out[f"failure_rate.{group}{suffix}.node{nid}"] = rate
    _first_failure(metrics, members, group, out)
    stalls = [metrics.get(f"stall_s.{m}") for m in members]
    if any(v is not None for v in stalls):
        out[f"stall_s.{group}"] = sum(v for v in stalls if v is not None)
        out.update({f"stall_s.{group}.node{nid}": v for nid, v in enumerate(stalls)
                    if v is not None})
    return out


def _first_failure(metrics: Mapping[str, float], members: Sequence[str], group: str,
                   out: dict[str, float]) -> None:
    firsts = [metrics.get(f"first_failure_s.{m}") for m in members]
    if any(f is not None for f in firsts):
        failed = [f for f in firsts if f is not None and not math.isnan(f)]
        out[f"first_failure_s.{group}"] = min(failed) if failed else math.nan
        for nid, first in enumerate(firsts):
            if first is not None:
                out[f"first_failure_s.{group}.node{nid}"] = first


def per_node_rows(rows: pd.DataFrame,
                  groups: Sequence[tuple[str, Sequence[str]]]) -> pd.DataFrame:
    """Tidy rows (as ``sweep.parquet``'s) of every group's metrics, for every run."""
    if not groups or rows.empty:
        return rows.iloc[0:0]
    out: list[dict[str, Any]] = []
    ident = [c for c in rows.columns if c not in ("metric", "value", "wall")]
    for _, run in rows.groupby("run_dir", sort=True):
        metrics = dict(zip(run["metric"], run["value"], strict=True))
        first = run.iloc[0]
        for group, members in groups:
            for name, value in group_metrics(metrics, members, group).items():
                out.append({**{c: first[c] for c in ident}, "metric": name,
                            "value": value, "wall": False})
    return pd.DataFrame(out, columns=rows.columns).astype(rows.dtypes.to_dict())
