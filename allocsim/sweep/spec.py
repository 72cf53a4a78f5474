"""The ``sweep:`` section of an experiment file.

::

    sweep:
      grid:                                # every combination, the last key fastest
        machine.nodes[0].memory: [4GiB, 8GiB, 16GiB]
        workloads[0].rate: [1000/s, 4000/s]
      replicates: 5                        # runs per point (default 1)

or, instead of ``grid``, a list of points, each setting any key paths::

      points:
        - machine.nodes[0].memory: 4GiB
          workloads[0].rate: 1000/s
        - machine.nodes[0].memory: 16GiB
          workloads[0].rate: 4000/s

(In YAML's flow style, ``{...}``, a key path holding ``[`` must be quoted:
``{"workloads[0].rate": 1000/s}``.)

A key path is written as error messages print it (:mod:`simcore.config.override`); its
values are set in the document before it is validated, so each is checked as if it had
been written in the file, and a bad one is named by its place in ``sweep:``
(``sweep.grid.workloads[0].rate[1]``). The replicates of every point use the same seeds,
derived from the file's ``seed`` with ``numpy.random.SeedSequence`` (common random
numbers: points differ by their values, not by their luck).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from simcore.config.fields import child, expect_int, expect_mapping
from simcore.config.override import parse_key_path
from simcore.config.schema import names
from simcore.config.schema_keys import SWEEP_KEYS as SWEEP_SCHEMA
from simcore.errors import ConfigError

SWEEP_KEY = "sweep"
SWEEP_KEYS = names(SWEEP_SCHEMA)
MAX_RUNS = 100_000
"""More runs than this is refused (a typo such as ``replicates: 1000000``)."""


@dataclass(frozen=True)
class SweepPoint:
    """One point: its number and the values it sets, by key path, in the file's order.

    ``origin`` maps each key path to where its value was written in ``sweep:``
    (``sweep.grid.workloads[0].rate[1]``), for error messages.
    """

    index: int
    params: tuple[tuple[str, object], ...]
    origin: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed ``sweep:`` section."""

    keys: tuple[str, ...]
    points: tuple[SweepPoint, ...]
    replicates: int

    @property
    def nr_runs(self) -> int:
        """Points times replicates."""
        return len(self.points) * self.replicates


def parse_sweep(raw: object, source: str) -> SweepSpec:
    """Parse the ``sweep:`` section (its key paths only; values are checked per point).

    Raises:
        ConfigError: Neither or both of ``grid`` and ``points``, an empty value list, a
            malformed key path, a point that sets no key, or too many runs.
    """
    data = expect_mapping(raw, SWEEP_KEY, source, SWEEP_KEYS)
    replicates = expect_int(data.get("replicates", 1), child(SWEEP_KEY, "replicates"),
                            source, 1, MAX_RUNS)
    if ("grid" in data) == ("points" in data):
        raise ConfigError(source, SWEEP_KEY, "exactly one of grid (values per key path) "
                          "or points (a list of {key.path: value})", sorted(data))
    if "grid" in data:
        keys, points = _grid(data["grid"], source)
    else:
        keys, points = _points(data["points"], source)
    spec = SweepSpec(keys, points, replicates)
    if spec.nr_runs > MAX_RUNS:
        raise ConfigError(source, SWEEP_KEY, f"at most {MAX_RUNS:,} runs (points x "
                          "replicates)", f"{len(points):,} x {replicates:,}")
    return spec


def _grid(raw: object, source: str) -> tuple[tuple[str, ...], tuple[SweepPoint, ...]]:
    key = child(SWEEP_KEY, "grid")
    grid = expect_mapping(raw, key, source, None)
    if not grid:
        raise ConfigError(source, key, "at least one key path with a list of values", raw)
    keys = []
    values = []
    for path, vals in grid.items():
        where = child(key, str(path))
        parse_key_path(str(path), source)
        if not isinstance(vals, list) or not vals:
            raise ConfigError(source, where, "a non-empty list of values", vals)
        keys.append(str(path))
        values.append(vals)
    nr_points = math.prod(len(v) for v in values)
    if nr_points > MAX_RUNS:  # refused before the product is built (it could be huge)
        raise ConfigError(source, key, f"at most {MAX_RUNS:,} points (the product of the "
                          "value lists' lengths)", " x ".join(f"{len(v):,}" for v in values))
    points = []
    for i, combo in enumerate(itertools.product(*(range(len(v)) for v in values))):
        params = tuple((k, values[j][c]) for j, (k, c) in enumerate(zip(keys, combo,
                                                                        strict=True)))
        origin = tuple((k, f"{child(key, k)}[{c}]") for k, c in zip(keys, combo, strict=True))
        points.append(SweepPoint(i, params, origin))
    return tuple(keys), tuple(points)


def _points(raw: object, source: str) -> tuple[tuple[str, ...], tuple[SweepPoint, ...]]:
    key = child(SWEEP_KEY, "points")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(source, key, "a non-empty list of {key.path: value} mappings", raw)
    keys: list[str] = []
    points = []
    for i, item in enumerate(raw):
        where = child(key, i)
        entry = expect_mapping(item, where, source, None)
        if not entry:
            raise ConfigError(source, where, "a mapping that sets at least one key path", item)
        for path in entry:
            parse_key_path(str(path), source)
            if str(path) not in keys:
                keys.append(str(path))
        params = tuple((str(k), v) for k, v in entry.items())
        origin = tuple((str(k), child(where, str(k))) for k in entry)
        points.append(SweepPoint(i, params, origin))
    return tuple(keys), tuple(points)


def replicate_seeds(base_seed: int, replicates: int) -> list[int]:
    """The seed of each replicate: ``SeedSequence(base_seed).spawn(replicates)``, 32 bits."""
    children = np.random.SeedSequence(base_seed).spawn(replicates)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def split_sweep(doc: object, source: str) -> tuple[Mapping[str, object], object, object]:
    """``(experiment document, sweep section, study section)`` of a loaded file.

    Raises:
        ConfigError: The document is not a mapping, or has no ``sweep:`` section.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(source, "<top>", "a mapping (an experiment file)", doc)
    if SWEEP_KEY not in doc:
        raise ConfigError(source, SWEEP_KEY, "a sweep: section (grid or points, and "
                          "replicates) in a file for allocsim sweep", "none")
    rest = {k: v for k, v in doc.items() if k not in (SWEEP_KEY, "study")}
    return rest, doc[SWEEP_KEY], doc.get("study")
