"""A study's fresh-box baseline: the sweep's points run again without the background.

The baseline document is the sweep file's (with the same ``--set`` values), less the
workloads ``study.baseline.remove`` names and with ``study.baseline.set``'s values set.
Each of the sweep's points becomes a baseline point: its values for the removed
workloads are dropped (a value for ``workloads[3]`` becomes one for ``workloads[2]``
when one workload before it is removed), as are its values for keys ``set`` sets; points
that then set the same values are run once (a sweep over the removed caller's rate has
one baseline point). Replicates and seeds are the sweep's. The baseline runs into
``DIR/baseline/`` as a sweep of its own: its ``runs/``, tables and manifest, resumed as
the main sweep's are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from allocsim.sweep.plan import plan_runs
from allocsim.sweep.runner import SweepPlan
from allocsim.sweep.spec import SweepPoint, SweepSpec
from allocsim.sweep.study import Baseline, workload_names
from simcore.config.fields import child
from simcore.config.override import format_key_path, parse_key_path, set_value
from simcore.errors import ConfigError

BASELINE_DIR = "baseline"
"""The baseline's sweep directory, under the study's."""


@dataclass(frozen=True)
class BaselinePlan:
    """The baseline's runs, and the baseline point of each of the sweep's points."""

    plan: SweepPlan
    point_of: Mapping[int, int]


def plan_baseline(config: Path, doc: Mapping[str, object], spec: SweepSpec,
                  baseline: Baseline, study_hashes: set[str]) -> BaselinePlan:
    """Plan the baseline of ``config``'s sweep, validating every run.

    ``doc`` is the file's experiment document (``--set`` values applied), ``spec`` its
    sweep.

    Raises:
        simcore.errors.ConfigError: A baseline run is not a valid experiment (named as
            ``study.baseline``), the sweep sets a removed workload's list as a whole, or
            a baseline run is one of the study's own (``study_hashes``).
    """
    source = str(config)
    names = workload_names(doc)
    removed = sorted(names.index(n) for n in baseline.remove)
    where = child("study", "baseline")
    base_doc: object = _without(doc, removed)
    for path, value in baseline.set_values:
        base_doc = set_value(base_doc, path, value, source)
    set_keys = {k for k, _ in baseline.set_values}
    base_spec, point_of = _baseline_points(spec, removed, set_keys, source)
    try:
        assert isinstance(base_doc, dict)
        tasks = plan_runs(base_doc, base_spec, source)
    except ConfigError as exc:
        raise ConfigError(source, where, f"a baseline whose runs are valid experiments "
                          f"(its {exc.key}: expected {exc.expected})", exc.got) from None
    same = [t for t in tasks if t.config_hash in study_hashes]
    if same:
        raise ConfigError(source, where, "a baseline whose runs differ from the study's "
                          "(remove workloads or set values)", f"point {same[0].point} "
                          "unchanged")
    return BaselinePlan(SweepPlan(config, base_spec, tasks, None), point_of)


def _without(doc: Mapping[str, object], removed: Sequence[int]) -> dict[str, object]:
    out = dict(doc)
    workloads = doc.get("workloads")
    if isinstance(workloads, list):
        out["workloads"] = [w for i, w in enumerate(workloads) if i not in removed]
    return out


def remap_key(path: str, removed: Sequence[int], source: str) -> str | None:
    """``path`` in the document without the workloads at ``removed`` (None: in one).

    Raises:
        ConfigError: ``path`` is the whole ``workloads`` list.
    """
    steps = list(parse_key_path(path, source))
    if not removed or steps[0] != "workloads":
        return path
    if len(steps) < 2 or not isinstance(steps[1], int):
        raise ConfigError(source, child("study", "baseline.remove"), "a sweep that does "
                          "not set the workloads list as a whole", path)
    index = steps[1]
    if index in removed:
        return None
    steps[1] = index - sum(r < index for r in removed)
    return format_key_path(steps)


def _baseline_points(spec: SweepSpec, removed: Sequence[int], set_keys: set[str],
                     source: str) -> tuple[SweepSpec, dict[int, int]]:
    """The distinct baseline points, and the baseline point of each sweep point."""
    points: list[SweepPoint] = []
    index_of: dict[str, int] = {}  # by the values' repr: a value may be a mapping
    point_of = {}
    keys: list[str] = []
    for point in spec.points:
        params = []
        origin = []
        for (path, value), (_, where) in zip(point.params, point.origin, strict=True):
            new = remap_key(path, removed, source)
            if new is None or path in set_keys:
                continue
            params.append((new, value))
            origin.append((new, where))
            if new not in keys:
                keys.append(new)
        ident = repr(params)
        if ident not in index_of:
            index_of[ident] = len(points)
            points.append(SweepPoint(len(points), tuple(params), tuple(origin)))
        point_of[point.index] = index_of[ident]
    return SweepSpec(tuple(keys), tuple(points), spec.replicates), point_of
