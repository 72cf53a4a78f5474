"""Names of a run directory's ``/proc`` snapshots (``proc/start``, ``proc/t=1.000s``, ...).

Each ``proc/<when>/`` directory holds the files of a real host's snapshot
(:func:`simcore.formats.procstate.proc_texts`), so ``allocsim proc show RUN/proc/end``
and ``machine: {from_proc: RUN/proc/end}`` read it as they read a real host's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from simcore.atomic import atomic_write_text

SIM_VMSTAT_FILE = "vmstat_simulator.txt"
"""The simulator-only counters at the end, in ``/proc/vmstat`` layout."""
PROC_DIR = "proc"
PROC_FILES = ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "extfrag_index",
              "unusable_index", "sysctl_vm", "transparent_hugepage_enabled", "iomem")
"""Files of every ``proc/<when>/`` snapshot directory, besides each node's
(:func:`proc_node_files`): together, what :func:`simcore.formats.procstate.proc_texts`
writes, and what :func:`allocsim.run.expected_outputs` requires."""
PROC_START, PROC_END = "start", "end"


def proc_node_files(nid: int) -> tuple[str, str]:
    """The files of node ``nid`` in a snapshot directory."""
    return f"node{nid}.cpulist", f"node{nid}.distance"


def proc_snapshot_name(time_ns: int) -> str:
    """``t=<seconds>s`` with at least millisecond digits and no rounding (``t=1.000s``)."""
    frac = f"{time_ns % 10**9:09d}".rstrip("0").ljust(3, "0")
    return f"t={time_ns // 10**9}.{frac}s"


def write_proc_dir(directory: Path, texts: Mapping[str, str]) -> None:
    """Write a snapshot directory (file name -> text), each file atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        atomic_write_text(directory / name, text)
