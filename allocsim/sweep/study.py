"""The ``study:`` section of a sweep file: the questions the sweep answers.

::

    study:
      baseline:                        # the fresh-box baseline (required)
        remove: [cache, pipes]         # workloads left out, by name
        set: {initial_state: fresh}    # key paths set, as --set would set them
      per_node_callers:                # optional: one caller made of one workload per node
        thp: [thp-node0, thp-node1]    # the i-th runs on node i (its nid: i)
      questions:
        - estimate: hugetlb[0].obtained
          ask: How many 2 MiB pages does a nr_hugepages write at 3 s get?
        - threshold: failure_rate.thp.order9
          key: [machine.nodes[0].memory, machine.nodes[1].memory]
          below: 1%                    # or above: N
          ask: What is the smallest machine for which THP faults fall back < 1 %?
          # node_limit: N              # the limit of each node's value (default: below's)

An ``estimate`` gives a metric's mean and 95 % interval at every point, for the whole
machine and, where the metric has ``.nodeN`` values, per node. A ``threshold`` gives,
for each combination of the other swept keys, the smallest value of ``key`` (a swept key,
or several that move together, ordered by the first) from which on the metric's 95 %
interval lies wholly below (``below``: its upper bound) or above (``above``: its lower
bound) the limit at every larger swept value too; and says so when no swept value
qualifies. Every study also reports each caller's time to its first failure against the
baseline: the same points run again with ``remove``'s workloads left out and ``set``'s
values set (:mod:`allocsim.sweep.baseline`).

A ``per_node_callers`` entry ``G: [W0, W1, ...]`` adds, per run, metrics for a caller
``G`` made of workloads ``Wi`` each pinned to node ``i`` (``nid: i``): its requests and
failures (per order too) summed, its failure rates pooled from those sums, its first
failure the earliest; and each ``Wi``'s value as ``G``'s ``.nodeI`` value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from allocsim.sweep.metrics import is_known_metric
from allocsim.sweep.spec import SweepSpec
from simcore.config.fields import child, expect_list, expect_mapping, expect_str
from simcore.config.override import parse_key_path, scalar_text
from simcore.config.units import (
    UnitError,
    parse_duration_ns,
    parse_rate_per_s,
    parse_size_bytes,
)
from simcore.errors import ConfigError

STUDY_KEY = "study"
STUDY_KEYS = ("baseline", "per_node_callers", "questions")
BASELINE_KEYS = ("remove", "set")
ESTIMATE_KEYS = ("estimate", "ask")
THRESHOLD_KEYS = ("threshold", "ask", "key", "below", "above", "node_limit")


@dataclass(frozen=True)
class Baseline:
    """The fresh-box baseline: workloads removed (by name) and values set."""

    remove: tuple[str, ...]
    set_values: tuple[tuple[str, object], ...]

    def describe(self) -> str:
        """In words, for study.md."""
        parts = []
        if self.remove:
            parts.append("without " + ", ".join(f"`{n}`" for n in self.remove))
        if self.set_values:
            parts.append("with " + ", ".join(f"`{k}: {scalar_text(v)}`"
                                             for k, v in self.set_values))
        return "the same points " + " and ".join(parts)


@dataclass(frozen=True)
class Question:
    """One question: ``kind`` is ``estimate`` or ``threshold``.

    For a threshold, ``keys`` is the swept key (or keys moving together), ``limit`` the
    limit and ``below`` whether the upper bound must lie below it (else the lower bound
    above it); ``node_limit`` is the limit of each node's value (a count's share of a
    node is smaller than the machine's; a rate's is not).
    """

    kind: str
    metric: str
    ask: str | None = None
    keys: tuple[str, ...] = ()
    limit: float = math.nan
    below: bool = True
    node_limit: float = math.nan


@dataclass(frozen=True)
class StudySpec:
    """A parsed ``study:`` section."""

    baseline: Baseline
    per_node_callers: tuple[tuple[str, tuple[str, ...]], ...]
    questions: tuple[Question, ...]


def parse_study(raw: object, source: str, doc: Mapping[str, object],
                sweep: SweepSpec) -> StudySpec:
    """Parse and check the ``study:`` section against the experiment ``doc`` and sweep.

    Raises:
        ConfigError: A missing baseline, an unknown workload name, a per-node member not
            pinned to its node, an unknown metric, a threshold key that is not swept or
            whose values are not sizes, durations, rates or numbers, or a bad limit.
    """
    data = expect_mapping(raw, STUDY_KEY, source, STUDY_KEYS, ("baseline",))
    names = workload_names(doc)
    groups = _per_node_callers(data.get("per_node_callers", {}), source, doc, names)
    raw_questions = data.get("questions", [])
    key = child(STUDY_KEY, "questions")
    questions = tuple(_question(q, child(key, i), source, sweep)
                      for i, q in enumerate(expect_list(raw_questions, key, source)))
    return StudySpec(_baseline(data["baseline"], source, names), groups, questions)


def workload_names(doc: Mapping[str, object]) -> list[str]:
    """The ``name`` of each workload of the document, in order ('' where none)."""
    workloads = doc.get("workloads")
    if not isinstance(workloads, list):
        return []
    return [str(w.get("name", "")) if isinstance(w, Mapping) else "" for w in workloads]


def _baseline(raw: object, source: str, names: Sequence[str]) -> Baseline:
    key = child(STUDY_KEY, "baseline")
    data = expect_mapping(raw, key, source, BASELINE_KEYS)
    remove_key = child(key, "remove")
    remove = []
    for i, name in enumerate(expect_list(data.get("remove", []), remove_key, source)):
        if name not in names:
            raise ConfigError(source, child(remove_key, i), "the name of a workload of "
                              f"this file ({', '.join(names)})", name)
        remove.append(str(name))
    set_key = child(key, "set")
    values = expect_mapping(data.get("set", {}), set_key, source, None)
    for path in values:
        parse_key_path(str(path), source)
    if not remove and not values:
        raise ConfigError(source, key, "remove (workloads to leave out) or set (values), "
                          "so that the baseline differs from the study's runs", dict(data))
    return Baseline(tuple(remove), tuple((str(k), v) for k, v in values.items()))


def _per_node_callers(raw: object, source: str, doc: Mapping[str, object],
                      names: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    key = child(STUDY_KEY, "per_node_callers")
    data = expect_mapping(raw, key, source, None)
    workloads = doc.get("workloads")
    out = []
    for group, members in data.items():
        where = child(key, str(group))
        if str(group) in names:
            raise ConfigError(source, where, "a name no workload has", group)
        listed = expect_list(members, where, source, 1)
        for nid, name in enumerate(listed):
            if name not in names:
                raise ConfigError(source, child(where, nid), "the name of a workload of "
                                  f"this file ({', '.join(names)})", name)
            spec = workloads[names.index(str(name))]  # type: ignore[index]
            if not isinstance(spec, Mapping) or spec.get("nid") != nid:
                raise ConfigError(source, child(where, nid), f"a workload pinned to node "
                                  f"{nid} (nid: {nid}), as the {nid}th of the list",
                                  f"{name} with nid: {spec.get('nid')}")
        out.append((str(group), tuple(str(n) for n in listed)))
    return tuple(out)


def _question(raw: object, key: str, source: str, sweep: SweepSpec) -> Question:
    data = expect_mapping(raw, key, source, None)
    kinds = [k for k in ("estimate", "threshold") if k in data]
    if len(kinds) != 1:
        raise ConfigError(source, key, "exactly one of estimate: METRIC or threshold: "
                          "METRIC", sorted(map(str, data)))
    kind = kinds[0]
    expect_mapping(data, key, source, ESTIMATE_KEYS if kind == "estimate" else
                   THRESHOLD_KEYS)
    metric = expect_str(data[kind], child(key, kind), source)
    if not is_known_metric(metric):
        raise ConfigError(source, child(key, kind), "a sweep metric (see allocsim/sweep/"
                          "metrics.py), e.g. hugetlb[0].obtained or "
                          "failure_rate.CALLER.order9", metric)
    ask = None if "ask" not in data else expect_str(data["ask"], child(key, "ask"), source)
    if kind == "estimate":
        return Question(kind, metric, ask)
    keys = _threshold_keys(data.get("key"), child(key, "key"), source, sweep)
    below, limit = _limit(data, key, source)
    node_limit = limit
    if "node_limit" in data:
        node_limit = parse_limit(data["node_limit"])  # type: ignore[assignment]
        if node_limit is None:
            raise ConfigError(source, child(key, "node_limit"), "a number or a percentage "
                              "like '1%'", data["node_limit"])
    return Question(kind, metric, ask, keys, limit, below, node_limit)


def _threshold_keys(raw: object, key: str, source: str,
                    sweep: SweepSpec) -> tuple[str, ...]:
    listed = raw if isinstance(raw, list) else [raw]
    keys = []
    for i, path in enumerate(listed):
        where = child(key, i) if isinstance(raw, list) else key
        if path not in sweep.keys:
            raise ConfigError(source, where, "a swept key (one of "
                              f"{', '.join(sweep.keys)})", path)
        keys.append(str(path))
    if not keys:
        raise ConfigError(source, key, "a swept key, or a list of swept keys", raw)
    for path in keys:
        values = []
        for point in sweep.points:
            params = dict(point.params)
            if path not in params:
                raise ConfigError(source, key, f"a key every point sets (point "
                                  f"{point.index} does not set {path})", path)
            values.append(scalar_text(params[path]))
        if value_kind(values) is None:
            raise ConfigError(source, key, "a swept key whose values are all sizes, all "
                              f"durations, all rates or all numbers ({path})", values)
    return tuple(keys)


def _limit(data: Mapping[str, object], key: str, source: str) -> tuple[bool, float]:
    sides = [s for s in ("below", "above") if s in data]
    if len(sides) != 1:
        raise ConfigError(source, key, "exactly one of below: LIMIT or above: LIMIT",
                          sorted(map(str, data)))
    where = child(key, sides[0])
    limit = parse_limit(data[sides[0]])
    if limit is None:
        raise ConfigError(source, where, "a number or a percentage like '1%'",
                          data[sides[0]])
    return sides[0] == "below", limit


def parse_limit(value: object) -> float | None:
    """``1%`` -> 0.01, a number -> itself; None if neither (or not finite)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


_KINDS = (("number", float), ("size", parse_size_bytes), ("duration", parse_duration_ns),
          ("rate", parse_rate_per_s))


def _kind_of(text: str) -> tuple[str, float] | None:
    for name, parse in _KINDS:
        try:
            return name, float(parse(text))  # type: ignore[operator]
        except (UnitError, ValueError, TypeError):
            continue
    return None


def value_kind(values: Sequence[str]) -> str | None:
    """The one kind (number, size, duration, rate) all ``values`` are, or None."""
    kinds = {k[0] if k else None for k in map(_kind_of, values)}
    return next(iter(kinds)) if len(kinds) == 1 and None not in kinds else None


def magnitude(text: str) -> float:
    """A swept value's size for ordering (``1GiB`` -> bytes, ``200/s`` -> 200, ...).

    Raises:
        ValueError: ``text`` is not a number, size, duration or rate.
    """
    kind = _kind_of(text)
    if kind is None:
        raise ValueError(f"not a number, size, duration or rate: {text!r}")
    return kind[1]
