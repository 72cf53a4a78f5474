"""Parse an experiment YAML file into frozen dataclasses once, at the edge, and dump it back.

The schema (see ``configs/*.yaml``) has ``name``, ``seed``, ``duration``, ``machine``,
``sysctl``, ``trace``, ``workloads``, ``cost``, ``limits`` and ``actions`` (the last
three in :mod:`simcore.config.sections`) and ``initial_state``
(:mod:`simcore.config.initial`). Unknown keys and wrong types are errors, and each
error is one :class:`~simcore.errors.ConfigError` naming the file and the key path
(``machine.nodes[1].memory``). Human units are converted here: sizes become pages and
durations integer nanoseconds (:mod:`simcore.config.units`).

Sysctl bounds follow the 6.1 ``vm_table`` in ``kernel/sysctl.c`` and the handlers in
``mm/page_alloc.c``. Workload parameters are parsed by per-kind parsers handed in by the
caller (``workloads.registry``), since ``simcore`` never imports ``workloads``.
:func:`dump_config` writes the *effective* config in the same shape, and
``parse_config(dump_config(c), c.source) == c``.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from simcore.config.fields import (
    FieldReader,
    child,
    expect_bool,
    expect_duration_ns,
    expect_int,
    expect_list,
    expect_mapping,
    expect_str,
    read_fields,
)
from simcore.config.initial import dump_initial_state, parse_initial_state
from simcore.config.machine import dump_machine, parse_machine
from simcore.config.schema import names, ordered_fields, required
from simcore.config.schema_keys import SYSCTL_KEYS, TRACE_KEYS, experiment_keys
from simcore.config.sections import (
    check_actions,
    dump_actions,
    dump_cost,
    dump_limits,
    parse_actions,
    parse_cost,
    parse_limits,
)
from simcore.config.types import (
    ExperimentConfig,
    SysctlConfig,
    TraceConfig,
    WorkloadConfig,
)
from simcore.config.units import format_duration
from simcore.config.yamlio import read_yaml, read_yaml_lines, with_line
from simcore.errors import ConfigError

EXPERIMENT = experiment_keys((), ())
"""The file's core keys (the workloads' are added by ``workloads.registry``)."""
ONLY_FOR_SWEEPS = ("sweep", "study")
"""Top-level keys that only ``allocsim sweep`` reads."""
WorkloadParser = Callable[[Mapping[str, object], str, str], Mapping[str, object]]
"""``parser(raw_params, key_prefix, source)`` -> converted params; raises ConfigError."""
WorkloadDumper = Callable[[Mapping[str, object]], dict[str, object]]
"""``dumper(params)`` -> the raw YAML keys (human units) that the parser would accept."""

NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
NAME_FORMAT = "a name of letters, digits, '_', '.' or '-'"
INT_MAX = 2**31 - 1
"""Sysctls are C ``int``s (``proc_dointvec_minmax``)."""
MIN_PERCPU_PAGELIST_HIGH_FRACTION = 8
"""``mm/page_alloc.c``: 0 (the default sizing) or at least this."""
LOWMEM_RESERVE_ZONES = 4
"""DMA, DMA32, Normal, Movable: the zone types the model lays out."""
MAX_NR_ZONES = 5
"""6.1 on x86_64 with ``CONFIG_ZONE_DEVICE`` (Debian's kernel): DMA, DMA32, Normal, Movable,
Device. ``/proc/sys/vm/lowmem_reserve_ratio`` prints this many values; all are kept, so a
real host's line can be pasted and is written back as it was. The Device entry is never
used for allocation (ZONE_DEVICE has no managed pages)."""


def _name(value: object, key: str, source: str) -> str:
    return expect_str(value, key, source, pattern=NAME_RE, expected=NAME_FORMAT)


def _positive_duration(value: object, key: str, source: str) -> int:
    return expect_duration_ns(value, key, source, min_ns=1)


def _bounded(lo: int | None, hi: int | None = INT_MAX) -> FieldReader:
    """A reader for an int in ``lo..hi``."""
    return lambda value, key, source: expect_int(value, key, source, lo, hi)


# ---------------------------------------------------------------- machine


# ---------------------------------------------------------------- sysctl and trace


def _min_free_kbytes(value: object, key: str, source: str) -> int | None:
    if value is None or value == "auto":
        return None
    # kernel/sysctl.c: extra1 = SYSCTL_ZERO.
    return expect_int(value, key, source, 0, INT_MAX, expected="'auto' or an integer")


def _lowmem_reserve_ratio(value: object, key: str, source: str) -> tuple[int, ...]:
    items = expect_list(value, key, source, LOWMEM_RESERVE_ZONES, MAX_NR_ZONES)
    return tuple(expect_int(v, child(key, i), source, 0, INT_MAX) for i, v in enumerate(items))


def _pcp_high_fraction(value: object, key: str, source: str) -> int:
    fraction = expect_int(value, key, source, 0, INT_MAX)
    if 0 < fraction < MIN_PERCPU_PAGELIST_HIGH_FRACTION:
        raise ConfigError(source, key, f"0 or >= {MIN_PERCPU_PAGELIST_HIGH_FRACTION}", value)
    return fraction


SYSCTL_FIELDS: dict[str, tuple[str, FieldReader]] = ordered_fields(SYSCTL_KEYS, {
    "min_free_kbytes": ("min_free_kbytes", _min_free_kbytes),
    "watermark_scale_factor": ("watermark_scale_factor", _bounded(1, 3000)),
    "watermark_boost_factor": ("watermark_boost_factor", _bounded(0)),
    "lowmem_reserve_ratio": ("lowmem_reserve_ratio", _lowmem_reserve_ratio),
    "percpu_pagelist_high_fraction": ("percpu_pagelist_high_fraction", _pcp_high_fraction),
    "extfrag_threshold": ("extfrag_threshold", _bounded(0, 1000)),
    "compaction_proactiveness": ("compaction_proactiveness", _bounded(0, 100)),
    "swappiness": ("swappiness", _bounded(0, 200)),
})


def _proc_snapshot_times(value: object, key: str, source: str) -> tuple[int, ...]:
    """``trace.proc_snapshots``: distinct times (``[1s, 5s]``), in the order given."""
    times = [expect_duration_ns(v, child(key, i), source)
             for i, v in enumerate(expect_list(value, key, source))]
    for i, t in enumerate(times):
        if t in times[:i]:
            raise ConfigError(source, child(key, i), "a time not listed before it",
                              format_duration(t))
    return tuple(times)


TRACE_FIELDS: dict[str, tuple[str, FieldReader]] = ordered_fields(TRACE_KEYS, {
    "events": ("events", expect_bool),
    "snapshot_interval": ("snapshot_interval_ns", _positive_duration),
    "proc_snapshots": ("proc_snapshot_times_ns", _proc_snapshot_times),
})


def _sysctl(value: object, key: str, source: str) -> SysctlConfig:
    return SysctlConfig(**read_fields(value, key, source, SYSCTL_FIELDS))


def _trace(value: object, key: str, source: str) -> TraceConfig:
    return TraceConfig(**read_fields(value, key, source, TRACE_FIELDS))


# ---------------------------------------------------------------- workloads


def _workload(
    value: object, key: str, source: str, parsers: Mapping[str, WorkloadParser] | None
) -> WorkloadConfig:
    data = expect_mapping(value, key, source, allowed=None, required=("name", "type"))
    name = _name(data["name"], child(key, "name"), source)
    kind = expect_str(data["type"], child(key, "type"), source)
    raw = {k: v for k, v in data.items() if k not in ("name", "type")}
    if parsers is None:
        return WorkloadConfig(name, kind, raw)
    if kind not in parsers:
        near = difflib.get_close_matches(kind, sorted(parsers), n=1, cutoff=0.6)
        raise ConfigError(source, child(key, "type"),
                          f"a registered workload type ({', '.join(sorted(parsers))})", kind,
                          problem=f"unknown workload type {kind!r}"
                          + (f"; did you mean {near[0]!r}?" if near else ""))
    return WorkloadConfig(name, kind, dict(parsers[kind](raw, key, source)))


def _workloads(
    value: object, key: str, source: str, parsers: Mapping[str, WorkloadParser] | None
) -> tuple[WorkloadConfig, ...]:
    if value is None:
        return ()
    specs: list[WorkloadConfig] = []
    for i, item in enumerate(expect_list(value, key, source)):
        spec = _workload(item, child(key, i), source, parsers)
        if any(spec.name == other.name for other in specs):
            raise ConfigError(source, child(child(key, i), "name"),
                              "a workload name not used by an earlier workload", spec.name)
        specs.append(spec)
    return tuple(specs)


# ---------------------------------------------------------------- entry points


def parse_config(
    data: object, source: str, workload_parsers: Mapping[str, WorkloadParser] | None = None
) -> ExperimentConfig:
    """Validate a YAML document (as loaded) and build the experiment's dataclasses.

    Args:
        data: What ``yaml.safe_load`` returned.
        source: File path for error messages; stored as ``ExperimentConfig.source``.
        workload_parsers: Workload kind -> parameter parser. None keeps each workload's
            parameters raw and does not check its ``type``.

    Returns:
        The frozen experiment config, sizes in pages and times in nanoseconds.

    Raises:
        ConfigError: On the first problem found, naming its key path.
    """
    fields: dict[str, tuple[str, FieldReader]] = {
        "name": ("name", _name),
        "seed": ("seed", _bounded(0, None)),
        "duration": ("duration_ns", _positive_duration),
        "machine": ("machine", parse_machine),
        "sysctl": ("sysctl", _sysctl),
        "trace": ("trace", _trace),
        "workloads": ("workloads",
                      lambda v, k, s: _workloads(v, k, s, workload_parsers)),
        "cost": ("cost", parse_cost),
        "limits": ("limits", parse_limits),
        "actions": ("actions", lambda v, k, s: parse_actions(v, k, s, SYSCTL_FIELDS)),
        "initial_state": ("initial_state", lambda v, k, s: v),  # needs the machine: below
    }
    top = expect_mapping(data, "", source, names(EXPERIMENT.keys), required(EXPERIMENT.keys))
    for name in ONLY_FOR_SWEEPS:
        if name in top:
            raise ConfigError(source, name, f"no {name}: section in a file for one run (run "
                              "it with allocsim sweep)", f"a {name}: section")
    kwargs = read_fields(data, "", source, ordered_fields(
        tuple(k for k in EXPERIMENT.keys if k.name not in ONLY_FOR_SWEEPS), fields))
    if kwargs["machine"].from_proc is not None:
        kwargs["sysctl"] = _proc_sysctl(kwargs["machine"].from_proc, data, source)
    if "initial_state" in kwargs:
        kwargs["initial_state"] = parse_initial_state(kwargs["initial_state"], "initial_state",
                                                      source, kwargs["machine"])
    cfg = ExperimentConfig(**kwargs, source=source)
    check_actions(cfg.actions, cfg.machine, source)
    for i, action in enumerate(cfg.actions):
        if action.at_ns >= cfg.duration_ns:
            raise ConfigError(source, f"actions[{i}].at", f"a time before the end of the run "
                              f"(duration {format_duration(cfg.duration_ns)})",
                              format_duration(action.at_ns))
    _check_proc_snapshot_times(cfg, source)
    return cfg


def _check_proc_snapshot_times(cfg: ExperimentConfig, source: str) -> None:
    """Each ``trace.proc_snapshots`` time lies before the end (``proc/end`` is that one)."""
    for i, t in enumerate(cfg.trace.proc_snapshot_times_ns):
        if t >= cfg.duration_ns:
            raise ConfigError(source, f"trace.proc_snapshots[{i}]", "a time before the end "
                              f"of the run (duration {format_duration(cfg.duration_ns)}; "
                              "proc/end is written at the end)", format_duration(t))


def _proc_sysctl(snapshot_dir: str, data: object, source: str) -> SysctlConfig:
    """A ``from_proc`` machine's sysctls: the snapshot's, with the file's own on top."""
    from simcore.formats.procfs import read_snapshot
    from simcore.formats.procmachine import sysctl_from_snapshot

    base = sysctl_from_snapshot(read_snapshot(Path(snapshot_dir)))
    raw = data.get("sysctl") if isinstance(data, Mapping) else None
    return dataclasses.replace(base, **read_fields(raw or {}, "sysctl", source, SYSCTL_FIELDS))


def load_config(
    path: Path, workload_parsers: Mapping[str, WorkloadParser] | None = None
) -> ExperimentConfig:
    """Read and parse an experiment YAML file (see :func:`parse_config`).

    Raises:
        ConfigError: If the file is unreadable, is not valid YAML, or breaks the schema;
            the error names the line of its key.
    """
    doc, lines = read_yaml_lines(path)
    try:
        return parse_config(doc, str(path), workload_parsers)
    except ConfigError as exc:
        raise with_line(exc, lines) from None


# ---------------------------------------------------------------- dumping


def dump_sysctl(sysctl: SysctlConfig) -> dict[str, object]:
    out: dict[str, object] = dataclasses.asdict(sysctl)
    out["min_free_kbytes"] = "auto" if sysctl.min_free_kbytes is None else sysctl.min_free_kbytes
    out["lowmem_reserve_ratio"] = list(sysctl.lowmem_reserve_ratio)
    return out


def _dump_workload(
    spec: WorkloadConfig, dumpers: Mapping[str, WorkloadDumper] | None
) -> dict[str, object]:
    if dumpers is None:
        params = dict(spec.params)
    elif spec.kind in dumpers:
        params = dumpers[spec.kind](spec.params)
    else:
        raise ValueError(f"no dumper for workload type {spec.kind!r} ({spec.name!r})")
    return {"name": spec.name, "type": spec.kind, **params}


def dump_config(
    cfg: ExperimentConfig, workload_dumpers: Mapping[str, WorkloadDumper] | None = None
) -> dict[str, object]:
    """Return the effective config as plain YAML-ready data, in human units.

    Every key is written, defaults included. ``machine.first_pfn`` is not part of the
    file schema and is not written. ``parse_config(dump_config(c), c.source) == c``.

    Args:
        cfg: The experiment.
        workload_dumpers: Workload kind -> dumper; None writes the params as they are.

    Raises:
        ValueError: If a workload's kind has no dumper.
    """
    return {
        "name": cfg.name,
        "seed": cfg.seed,
        "duration": format_duration(cfg.duration_ns),
        "machine": dump_machine(cfg.machine),
        "sysctl": dump_sysctl(cfg.sysctl),
        "trace": {"events": cfg.trace.events,
                  "snapshot_interval": format_duration(cfg.trace.snapshot_interval_ns),
                  "proc_snapshots": [format_duration(t)
                                     for t in cfg.trace.proc_snapshot_times_ns]},
        "workloads": [_dump_workload(w, workload_dumpers) for w in cfg.workloads],
        "cost": dump_cost(cfg.cost),
        "limits": dump_limits(cfg.limits),
        "actions": dump_actions(cfg.actions),
        "initial_state": dump_initial_state(cfg.initial_state),
    }


__all__ = [
    "WorkloadDumper",
    "WorkloadParser",
    "dump_config",
    "load_config",
    "parse_config",
    "read_yaml",
]
