"""The registry of workload kinds, and experiment loading with their parameter parsers.

A workload kind is a generator function ``run(machine, spec, rng)`` plus the parser and
dumper of its own YAML keys. :func:`load_experiment` hands the parsers to
:func:`simcore.config.parse.load_config`, which cannot import this package itself.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from simcore.config.override import scalar_text, set_value
from simcore.config.parse import (
    WorkloadDumper,
    WorkloadParser,
    dump_config,
    parse_config,
)
from simcore.config.schema import Key
from simcore.config.schema_keys import experiment_keys
from simcore.config.types import ExperimentConfig, MachineConfig, WorkloadConfig
from simcore.config.units import format_duration
from simcore.config.yamlio import KeyLines, line_of, read_yaml_lines, with_line
from simcore.errors import ConfigError
from simcore.sim.hugetlb import POOL_OWNER
from workloads.anon import anon_workload, check_anon_params, dump_anon_params, parse_anon_params
from workloads.atomic_bursts import (
    atomic_bursts_workload,
    check_atomic_bursts_params,
    dump_atomic_bursts_params,
    parse_atomic_bursts_params,
)
from workloads.hugetlb import (
    HugetlbParams,
    check_hugetlb_params,
    dump_hugetlb_params,
    hugetlb_workload,
    parse_hugetlb_params,
)
from workloads.nofree import nofree_workload
from workloads.nofree_params import (
    check_nofree_params,
    dump_nofree_params,
    parse_nofree_params,
)
from workloads.page_cache import page_cache_workload
from workloads.page_cache_params import (
    check_page_cache_params,
    dump_page_cache_params,
    parse_page_cache_params,
)
from workloads.pinned import (
    check_pinned_params,
    dump_pinned_params,
    parse_pinned_params,
    pinned_workload,
)
from workloads.schema import KINDS, WORKLOAD_KEYS
from workloads.slab import check_slab_params, dump_slab_params, parse_slab_params, slab_workload
from workloads.speculative_refs import (
    check_speculative_refs_params,
    dump_speculative_refs_params,
    parse_speculative_refs_params,
    speculative_refs_workload,
)
from workloads.synthetic import synthetic
from workloads.synthetic_params import (
    check_synthetic_params,
    dump_synthetic_params,
    parse_synthetic_params,
)
from workloads.task_objects import OBJECT_SIZES
from workloads.threads import (
    ThreadsParams,
    check_threads_params,
    dump_threads_params,
    parse_threads_params,
    threads_workload,
)
from workloads.vmalloc import (
    check_vmalloc_params,
    dump_vmalloc_params,
    parse_vmalloc_params,
    vmalloc_workload,
)

WorkloadCheck = Callable[[Mapping[str, object], MachineConfig, str, str], None]
"""``check(params, machine, key_prefix, source)``: raise ConfigError if the machine cannot
run the parsed parameters (e.g. a CPU it does not have)."""
WorkloadFn = Callable[[Any, WorkloadConfig, np.random.Generator], Generator[Any, Any, None]]
"""``run(machine, spec, rng)``: a SimPy process body for one workload instance."""


@dataclass(frozen=True)
class WorkloadKind:
    """One registered workload kind.

    Attributes:
        name: The ``type:`` value in the YAML file.
        parse_params: Parser of the kind's own keys (see ``simcore.config.parse.WorkloadParser``).
        dump_params: Inverse of ``parse_params``, in human units.
        run: The generator function started once per workload instance.
        check: Validation of the parsed parameters against the machine.
    """

    name: str
    parse_params: WorkloadParser
    dump_params: WorkloadDumper
    run: WorkloadFn
    check: WorkloadCheck


def _build_registry(*kinds: WorkloadKind) -> Mapping[str, WorkloadKind]:
    return MappingProxyType({kind.name: kind for kind in kinds})


WORKLOADS: Mapping[str, WorkloadKind] = _build_registry(
    WorkloadKind("synthetic", parse_synthetic_params, dump_synthetic_params, synthetic,
                 check_synthetic_params),
    WorkloadKind("vmalloc", parse_vmalloc_params, dump_vmalloc_params, vmalloc_workload,
                 check_vmalloc_params),
    WorkloadKind("threads", parse_threads_params, dump_threads_params, threads_workload,
                 check_threads_params),
    WorkloadKind("nofree", parse_nofree_params, dump_nofree_params, nofree_workload,
                 check_nofree_params),
    WorkloadKind("page_cache", parse_page_cache_params, dump_page_cache_params,
                 page_cache_workload, check_page_cache_params),
    WorkloadKind("anon", parse_anon_params, dump_anon_params, anon_workload,
                 check_anon_params),
    WorkloadKind("pinned", parse_pinned_params, dump_pinned_params, pinned_workload,
                 check_pinned_params),
    WorkloadKind("slab", parse_slab_params, dump_slab_params, slab_workload,
                 check_slab_params),
    WorkloadKind("atomic_bursts", parse_atomic_bursts_params, dump_atomic_bursts_params,
                 atomic_bursts_workload, check_atomic_bursts_params),
    WorkloadKind("hugetlb", parse_hugetlb_params, dump_hugetlb_params, hugetlb_workload,
                 check_hugetlb_params),
    WorkloadKind("speculative_refs", parse_speculative_refs_params,
                 dump_speculative_refs_params, speculative_refs_workload,
                 check_speculative_refs_params),
)
"""Workload kind name -> kind. Read-only."""


def experiment_schema() -> Key:
    """The catalog of every key of an experiment file, the workload kinds' included."""
    return experiment_keys(WORKLOAD_KEYS, KINDS)


def workload_parsers() -> dict[str, WorkloadParser]:
    """Kind name -> parameter parser, as :func:`simcore.config.parse.parse_config` takes them."""
    return {name: kind.parse_params for name, kind in WORKLOADS.items()}


def workload_dumpers() -> dict[str, WorkloadDumper]:
    """Kind name -> parameter dumper, as :func:`simcore.config.parse.dump_config` takes them."""
    return {name: kind.dump_params for name, kind in WORKLOADS.items()}


def load_experiment(path: Path,
                    overrides: Sequence[tuple[str, object]] = ()) -> ExperimentConfig:
    """Load an experiment file, parsing each workload's parameters with its kind's parser.

    ``overrides`` are ``--set`` values (:func:`simcore.config.override.parse_set_arg`),
    set in the document before it is validated; an error in one names its argument.

    Raises:
        simcore.errors.ConfigError: On any problem, naming the file, the line and the
            key path (or the ``--set`` argument).
    """
    doc, lines = read_yaml_lines(path)
    if isinstance(doc, Mapping) and "sweep" in doc:
        raise ConfigError(str(path), "sweep", "no sweep: section in a file for one run "
                          "(run it with allocsim sweep)", "a sweep: section",
                          line_of(lines, "sweep"))
    origins = {}
    for key_path, value in overrides:
        arg = f"--set {key_path}={scalar_text(value)}"
        doc = set_value(doc, key_path, value, arg)
        origins[key_path] = (arg, key_path)
    return experiment_from_data(doc, str(path), origins, lines)


def experiment_from_data(doc: object, source: str,
                         origins: Mapping[str, tuple[str, str]] | None = None,
                         lines: KeyLines | None = None) -> ExperimentConfig:
    """Validate a loaded experiment document (:func:`load_experiment` without the file).

    ``origins`` maps key paths whose values came from elsewhere (``--set``, a sweep
    point) to the ``(source, key)`` an error in them should name instead. ``lines``
    (:func:`simcore.config.yamlio.read_yaml_lines`) gives the line of each key path of
    ``source``, for the error's line.

    Raises:
        simcore.errors.ConfigError: On any problem, naming the file (or the origin),
            the line when known, and the key path.
    """
    try:
        cfg = parse_config(doc, source, workload_parsers())
        reserved = _reserved_names(cfg)
        for i, spec in enumerate(cfg.workloads):
            WORKLOADS[spec.kind].check(spec.params, cfg.machine, f"workloads[{i}]",
                                       cfg.source)
            if spec.name in reserved:
                raise ConfigError(cfg.source, f"workloads[{i}].name",
                                  "a name no caller of the model itself uses here (not "
                                  f"{', '.join(sorted(reserved))})", spec.name)
            _check_resize_times(spec, cfg, f"workloads[{i}]")
    except ConfigError as exc:
        raise from_origin(exc, origins or {}, lines or {}) from None
    return cfg


def from_origin(exc: ConfigError, origins: Mapping[str, tuple[str, str]],
                 lines: KeyLines) -> ConfigError:
    """``exc``, naming where its key's value came from if an origin set it, and its line.

    A value from the file itself (a sweep point) gets the line of its place there; a
    ``--set`` value has no line.
    """
    for key_path, (source, key) in origins.items():
        if exc.key == key_path or exc.key.startswith((key_path + ".", key_path + "[")):
            where = key + exc.key[len(key_path):]
            line = line_of(lines, where) if source == exc.source else None
            return exc.moved(source, where, line)
    return with_line(exc, lines)


def _reserved_names(cfg: ExperimentConfig) -> frozenset[str]:
    """The hugetlb pool's caller, and the forks' slab caches when a fork makes them."""
    forks = any(isinstance(p, ThreadsParams) and p.slab_objects
                for p in (spec.params.get("params") for spec in cfg.workloads))
    return frozenset({POOL_OWNER, *(OBJECT_SIZES if forks else ())})


def _check_resize_times(spec: WorkloadConfig, cfg: ExperimentConfig, key: str) -> None:
    """A hugetlb workload's writes must fall within the run, as ``actions:`` must."""
    params = spec.params.get("params")
    if not isinstance(params, HugetlbParams):
        return
    for j, resize in enumerate(params.resizes):
        if resize.at_ns > cfg.duration_ns:
            raise ConfigError(cfg.source, f"{key}.resize[{j}].at",
                              f"a time within the run's duration "
                              f"({format_duration(cfg.duration_ns)})",
                              format_duration(resize.at_ns))


def dump_experiment(cfg: ExperimentConfig) -> dict[str, object]:
    """The effective config of ``cfg`` in YAML shape, with every workload's own keys."""
    return dump_config(cfg, workload_dumpers())
