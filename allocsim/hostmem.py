"""Refuse a simulated machine that would not fit in this host's memory, before building it.

The estimate is :func:`simcore.config.footprint.estimate_footprint`. What the host can give is
``MemAvailable`` from ``/proc/meminfo``, lowered to the cgroup v2 limit
(``memory.max - memory.current``) when the process runs in a limited cgroup, as in a
container. Where neither can be read (not Linux), the check is skipped.
"""

from __future__ import annotations

from pathlib import Path

from simcore.config.footprint import Footprint, estimate_footprint, estimate_run_footprint
from simcore.config.types import ExperimentConfig, MachineConfig
from simcore.config.units import format_size, format_size_approx
from simcore.errors import ConfigError

MEMINFO = Path("/proc/meminfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    """``MemAvailable`` in bytes; None if the file cannot be read or has no such line."""
    try:
        lines = MEMINFO.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if name == "MemAvailable" and fields and fields[0].isdigit():
            return int(fields[0]) * 1024
    return None


def _cgroup_available() -> int | None:
    limit = _read_int(CGROUP_ROOT / "memory.max")  # "max" (no limit) reads as None
    if limit is None:
        return None
    return max(0, limit - (_read_int(CGROUP_ROOT / "memory.current") or 0))


def available_bytes() -> int | None:
    """Memory this process can still get, in bytes; None where it cannot be told."""
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(known) if known else None


def describe(footprint: Footprint) -> str:
    """``about 4.0 GiB (mem_map 3.9 GiB for 1.0 Gi pfns, ...)``, for messages."""
    snapshots = "" if footprint.snapshots < 64 << 20 else (
        f", {format_size_approx(footprint.snapshots)} for {footprint.nr_snapshots:,} "
        "periodic snapshots (duration / trace.snapshot_interval)")
    return (f"about {format_size_approx(footprint.total)} "
            f"({format_size_approx(footprint.page_state)} of per-page state for "
            f"{footprint.nr_pfns:,} pfns{snapshots}, plus free lists and the interpreter)")


def check_fits_host(cfg: ExperimentConfig) -> Footprint:
    """Return the machine's estimated footprint, or refuse it if the host is too small.

    Raises:
        ConfigError: Naming ``machine``, with the estimate and what is available.
    """
    return _check_fits(estimate_run_footprint(cfg), cfg.machine, cfg.source)


def check_machine_fits(machine: MachineConfig, source: str) -> Footprint:
    """:func:`check_fits_host` for a machine alone (``source`` names it in the error)."""
    return _check_fits(estimate_footprint(machine), machine, source)


def _check_fits(footprint: Footprint, machine: MachineConfig, source: str) -> Footprint:
    available = available_bytes()
    if available is None or footprint.total <= available:
        return footprint
    key, what = "machine", "a machine"
    got: object = format_size(sum(n.memory_pages for n in machine.nodes) << 12)
    if footprint.snapshots > footprint.total // 2:  # a long run, not a large machine
        key, what, got = "trace.snapshot_interval", "a run", \
            f"{footprint.nr_snapshots:,} snapshots"
    raise ConfigError(source, key, f"{what} that fits in this host's available memory "
                      f"({format_size_approx(available)}); it needs {describe(footprint)}", got)
