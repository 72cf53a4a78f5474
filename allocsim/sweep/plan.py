"""A sweep's runs: one per point and replicate, each an experiment document and its hash.

Every run's document is the file's, with the point's values and the replicate's seed set
in it (:func:`simcore.config.override.set_value`), and is validated here, before anything
runs: a bad value stops the sweep at once, named by its place in ``sweep:``. A run is
identified by the SHA-256 of its effective config (the validated experiment, dumped with
every default filled in, as ``config.yaml`` of its run directory records it): a resumed
sweep finds the runs it already has by that hash, whatever their order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from allocsim.sweep.spec import SweepSpec, replicate_seeds
from simcore.config.override import set_value
from simcore.config.types import ExperimentConfig
from simcore.config.yamlio import KeyLines
from workloads.registry import dump_experiment, experiment_from_data

HASH_CHARS = 12
"""Hex digits of the config hash in a run directory's name."""


@dataclass(frozen=True)
class RunTask:
    """One run of a sweep, as an executor receives it (plain data: it is pickled).

    Attributes:
        point: The point's number.
        replicate: The replicate's number (0-based).
        seed: Its seed.
        params: The point's values, by key path.
        doc: The experiment document to validate and run.
        source: The experiment file (relative paths in it are relative to its directory).
        config_hash: SHA-256 of the effective config (hex).
        dir_name: Its run directory's name under the sweep's ``runs/``.
    """

    point: int
    replicate: int
    seed: int
    params: tuple[tuple[str, object], ...]
    doc: Mapping[str, object]
    source: str
    config_hash: str
    dir_name: str


def config_hash(cfg: ExperimentConfig) -> str:
    """SHA-256 of the effective config: canonical JSON of :func:`dump_experiment`."""
    text = json.dumps(dump_experiment(cfg), sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_runs(doc: Mapping[str, object], spec: SweepSpec, source: str,
              lines: KeyLines | None = None,
              set_origins: Mapping[str, tuple[str, str]] | None = None) -> list[RunTask]:
    """Every run of the sweep, points in order, replicates within each.

    ``set_origins`` names the ``--set`` argument of each key path it set, for errors.

    Raises:
        simcore.errors.ConfigError: A point's value is bad (named by its place in
            ``sweep:``), or the file is, or two runs would have the same config (the
            sweep sets a key to values that mean the same, such as ``1GiB`` and
            ``1024MiB``).
    """
    base = experiment_from_data(doc, source, dict(set_origins or {}), lines)
    seeds = replicate_seeds(base.seed, spec.replicates)
    tasks = []
    seen: dict[str, tuple[int, int]] = {}
    for point in spec.points:
        point_doc: object = doc
        origins = dict(set_origins or {})
        for (path, value), (_, where) in zip(point.params, point.origin, strict=True):
            point_doc = set_value(point_doc, path, value, source)
            origins[path] = (source, where)
        for r, seed in enumerate(seeds):
            run_doc = set_value(point_doc, "seed", seed, source)
            assert isinstance(run_doc, dict)
            cfg = experiment_from_data(run_doc, source, origins, lines)
            digest = config_hash(cfg)
            if digest in seen:
                from simcore.errors import ConfigError

                other = seen[digest]
                raise ConfigError(source, "sweep", "points that differ from each other",
                                  f"points {other[0]} and {point.index} give the same "
                                  "config")
            seen[digest] = (point.index, r)
            tasks.append(RunTask(point.index, r, seed, point.params, run_doc, source, digest,
                                 f"p{point.index:03d}-r{r:02d}-{digest[:HASH_CHARS]}"))
    return tasks


def task_config(task: RunTask) -> ExperimentConfig:
    """The task's experiment, validated again where it runs."""
    return experiment_from_data(dict(task.doc), task.source)


def runs_dir(out: Path) -> Path:
    """Where a sweep keeps its run directories."""
    return out / "runs"
