"""The ``initial_state:`` key of an experiment file: the state a run starts from.

::

    initial_state: fresh               # the default: a freshly booted machine
    initial_state: from_proc           # the snapshot of machine: {from_proc: DIR}
    initial_state: {from_proc: DIR}    # any snapshot whose zones are the machine's

With a snapshot, the run starts from its free lists, pageblock types and allocated memory
(:mod:`simcore.sim.initial_state`). ``DIR`` is relative to the config file's directory,
like ``machine: {from_proc: DIR}``; it must hold ``zoneinfo``, ``pagetypeinfo`` and
``meminfo``, and its zones must be the machine's (start pfn, spanned, present and
managed pages per zone) and its pageblock order the machine's. The parsed value is the
snapshot's absolute path (None: fresh), which the effective config writes back as
``{from_proc: /abs/DIR}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from simcore.config.fields import child, expect_mapping
from simcore.config.machine import resolve_proc_dir
from simcore.config.types import MachineConfig
from simcore.errors import ConfigError
from simcore.mm.topology import layout_machine

FRESH, FROM_PROC = "fresh", "from_proc"
INITIAL_STATE_FORMAT = "fresh, from_proc or {from_proc: DIR}"


def parse_initial_state(value: object, key: str, source: str,
                        machine: MachineConfig) -> str | None:
    """The ``initial_state`` key: None (fresh) or the snapshot directory, absolute.

    Raises:
        ConfigError: Not one of the three forms; ``from_proc`` without a ``from_proc``
            machine; a snapshot lacking pagetypeinfo or meminfo, or whose zones or
            pageblock order are not the machine's (the message names the zone).
        ProcParseError: A snapshot file is malformed.
    """
    if value == FRESH:
        return None
    if value == FROM_PROC:
        if machine.from_proc is None:
            raise ConfigError(source, key, "fresh or {from_proc: DIR} with a machine not "
                              "imported from /proc (from_proc alone means the snapshot of "
                              "machine: {from_proc: DIR})", value)
        path = Path(machine.from_proc)
    elif isinstance(value, Mapping):
        data = expect_mapping(value, key, source, (FROM_PROC,), (FROM_PROC,))
        path = resolve_proc_dir(data[FROM_PROC], child(key, FROM_PROC), source)
    else:
        raise ConfigError(source, key, INITIAL_STATE_FORMAT, value)
    path = path.resolve()
    _check_snapshot(path, key, source, machine)
    return str(path)


def _check_snapshot(path: Path, key: str, source: str, machine: MachineConfig) -> None:
    """The snapshot has what the setup reads, and the machine's zones."""
    from simcore.formats.meminfo import read_meminfo
    from simcore.formats.procfs import read_snapshot
    from simcore.sim.initial_state import zone_mismatch  # (simcore.sim imports config)

    where = child(key, FROM_PROC)
    for name in ("pagetypeinfo", "meminfo"):
        if not (path / name).is_file():
            raise ConfigError(source, where, f"a snapshot directory with a {name} file "
                              "(see allocsim proc capture)", str(path))
    snap = read_snapshot(path)
    read_meminfo(path / "meminfo")
    if snap.pagetypeinfo is None:
        raise ConfigError(source, where, "a snapshot with a readable pagetypeinfo", str(path))
    if snap.pageblock_order != machine.pageblock_order:
        raise ConfigError(source, where, f"a snapshot with the machine's pageblock order "
                          f"{machine.pageblock_order}", f"order {snap.pageblock_order} in "
                          f"{path / 'pagetypeinfo'}")
    problem = zone_mismatch(list(layout_machine(machine)), snap)
    if problem is not None:
        raise ConfigError(source, where, "a snapshot whose zones are the machine's",
                          f"{path}: {problem}")


def dump_initial_state(value: str | None) -> object:
    """The YAML value of a parsed ``initial_state``."""
    return FRESH if value is None else {FROM_PROC: value}
