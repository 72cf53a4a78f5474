"""``allocsim replay``: a host's traced allocations and frees, replayed against the model.

The machine comes from a ``/proc`` snapshot directory (``machine: {from_proc: DIR}``) or a
YAML file with a ``machine:`` section (an experiment file, or what ``allocsim proc import``
writes; its ``sysctl:``, ``cost:``, ``limits:`` and ``trace:`` sections are used too, its
callers and actions are not). The trace is an imported one (``allocsim trace import``) or
ftrace text, imported on the fly. The result is a normal run directory (with
``summary.json``'s ``replay`` section: what was replayed and every disagreement) and its
report. See :mod:`simcore.sim.replay` for the two placements.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from allocsim.hostmem import check_fits_host
from allocsim.run import ProgressFn, RunResult, simulate
from simcore.config.parse import parse_config, read_yaml
from simcore.config.types import ExperimentConfig
from simcore.errors import ConfigError, TraceError
from simcore.formats.trace_table import compaction_runs, open_trace_table, time_bounds
from simcore.sim.machine import Machine
from simcore.sim.replay import Replay

MACHINE_FILE_KEYS = ("machine", "sysctl", "cost", "limits", "trace", "initial_state")
"""The sections of a ``--machine`` YAML file a replay uses."""
TAIL_NS = 1_000_000
"""Simulated time after the last event (so the events at the very end run)."""


def replay_config(machine: Path, seed: int, name: str,
                  initial_state: str | None = None) -> ExperimentConfig:
    """The experiment a replay runs: the machine of ``machine`` and no callers.

    ``initial_state`` (``fresh`` or ``from_proc``) overrides the default: a snapshot
    directory's own state when it has ``pagetypeinfo`` and ``meminfo`` (the host's memory
    at the trace's start), else the YAML file's ``initial_state`` (fresh without one).

    Raises:
        ConfigError: ``machine`` is neither a snapshot directory nor a YAML file with a
            valid ``machine:`` section.
    """
    base: dict[str, Any] = {"name": name, "seed": seed, "duration": "1s"}
    if machine.is_dir():
        kept: dict[str, Any] = {"machine": {"from_proc": str(machine.resolve())}}
        if initial_state != "fresh" and (machine / "pagetypeinfo").is_file() and (
                machine / "meminfo").is_file():
            kept["initial_state"] = "from_proc"
        elif initial_state == "from_proc":
            kept["initial_state"] = "from_proc"  # parse_config names what is missing
        return parse_config({**base, **kept}, str(machine / "zoneinfo"))
    if not machine.exists():
        raise ConfigError(str(machine), "--machine", "a /proc snapshot directory or a YAML "
                          "file with a machine: section", "no such file or directory")
    data = read_yaml(machine)
    if not isinstance(data, dict) or "machine" not in data:
        raise ConfigError(str(machine), "machine", "a /proc snapshot directory or a YAML file "
                          "with a machine: section", "no machine: section")
    kept = {k: v for k, v in data.items() if k in MACHINE_FILE_KEYS}
    if initial_state == "fresh":
        kept.pop("initial_state", None)
    elif initial_state is not None:
        kept["initial_state"] = initial_state
    return parse_config({**base, **kept}, str(machine))


@contextmanager
def imported_trace(trace: Path) -> Iterator[Path]:
    """``trace`` as an imported Parquet table (ftrace text is imported to a temp file)."""
    if not trace.is_file():
        raise TraceError(str(trace), 0, "an ftrace text file or an imported trace.parquet",
                         "no such file")
    if trace.suffix == ".parquet":
        yield trace
        return
    from simcore.formats.ftrace import import_trace

    with tempfile.TemporaryDirectory(prefix="allocsim-replay-") as tmp:
        out = Path(tmp) / "trace.parquet"
        import_trace(trace, out)
        yield out


def check_cpus(table: Path, nr_cpus: int, shown_as: Path) -> None:
    """Refuse a trace whose events name a CPU the machine does not have.

    Raises:
        TraceError: Naming ``shown_as`` (the file the user gave) and the first such line.
    """
    import pyarrow.compute as pc

    cols = open_trace_table(table).read(columns=["line", "cpu"])
    bad = pc.greater_equal(cols.column("cpu"), nr_cpus)
    if pc.any(bad).as_py():
        first = cols.filter(bad).slice(0, 1).to_pydict()
        raise TraceError(str(shown_as), first["line"][0], f"a CPU of the machine (0-"
                         f"{nr_cpus - 1})", f"CPU {first['cpu'][0]}")


def _check_span(cfg: ExperimentConfig, trace: Path, span_ns: int) -> None:
    """A trace whose events span more time than the host can simulate is the trace's fault.

    The run lasts from the first event to the last, with its periodic snapshots; a
    timestamp years away from the others (a damaged line) would need them by the billion.
    """
    try:
        check_fits_host(cfg)
    except ConfigError as exc:
        if exc.key != "trace.snapshot_interval":
            raise  # the machine itself does not fit: that error names it
        raise TraceError(str(trace), 0, f"events within a time span the replay can simulate "
                         f"({exc.expected})", f"{span_ns / 1e9:,.0f} s from the first event "
                         "to the last") from None


def replay(
    trace: Path, machine: Path, out: Path, placement: str = "model", seed: int = 0,
    progress: ProgressFn | None = None, report: bool = True,
    prepare: Callable[[Machine], None] | None = None,
    compaction_trace: Path | None = None, initial_state: str | None = None,
) -> RunResult:
    """Replay ``trace`` on the machine of ``machine``; the run directory is ``out``.

    ``prepare(machine)`` runs before the replay starts (e.g. to set an initial state).
    ``compaction_trace``: ftrace text with the host's ``mm_compaction_begin``/``_end``
    events, which tell migrations from frees (:func:`simcore.sim.replay.compaction_runs`).

    Raises:
        ConfigError: A bad ``machine``.
        TraceError: A bad trace, or one naming a CPU the machine does not have.
    """
    runs = compaction_runs(compaction_trace) if compaction_trace is not None else None
    with imported_trace(trace) as table:
        first_ns, last_ns = time_bounds(table)
        span = last_ns - first_ns
        cfg = replay_config(machine, seed, out.name, initial_state)
        cfg = dataclasses.replace(cfg, duration_ns=span + TAIL_NS)
        check_cpus(table, sum(n.cpus for n in cfg.machine.nodes), trace)
        _check_span(cfg, trace, span)

        def setup(m: Machine) -> None:
            if prepare is not None:
                prepare(m)
            r = Replay(m, table, placement, compaction_runs=runs)
            m.env.process(r.process())

        return simulate(cfg, out.parent, progress, report=report, setup=setup,
                        dir_name=out.name)
