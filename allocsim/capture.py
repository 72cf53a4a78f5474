"""``allocsim proc capture``: copy a live Linux host's allocator state into a snapshot dir.

The directory has the layout of ``../shared/oracle/*/start/`` that ``allocsim proc show``
(and :func:`simcore.formats.procfs.read_snapshot`) reads:

- files named as in ``/proc``: ``zoneinfo``, ``buddyinfo``, ``pagetypeinfo`` (mode 0400:
  root only), ``vmstat``, ``meminfo``, ``slabinfo`` (root only), ``iomem`` (its addresses
  read as zeros unless root);
- ``extfrag_index`` and ``unusable_index`` from debugfs (``/sys/kernel/debug/extfrag``,
  root with debugfs mounted);
- ``sysctl_vm``: one ``vm.name = value`` line per readable ``/proc/sys/vm`` file, as
  ``sysctl -a`` prints them (write-only ones such as ``compact_memory`` are left out);
- ``transparent_hugepage_enabled``;
- per node ``nodeN.cpulist``, ``nodeN.meminfo``, ``nodeN.distance`` (its row of the
  NUMA distance table) and ``nodeN.nr_hugepages`` (2 MiB pages);
- ``uptime``.

Capture only reads. What it cannot read is listed (and written to ``capture.txt`` in
the directory) with the reason; only ``zoneinfo`` is required. The directory appears
under its final name only when complete (written to a hidden temporary directory, then
renamed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from simcore.errors import AllocsimError

PROC_FILES = ("zoneinfo", "buddyinfo", "pagetypeinfo", "vmstat", "meminfo", "slabinfo",
              "iomem", "uptime")
FS_FILES = ("dentry-state", "inode-state")
DEBUGFS_FILES = ("extfrag_index", "unusable_index")
NODE_FILES = {"cpulist": "cpulist", "meminfo": "meminfo", "distance": "distance",
              "nr_hugepages": "hugepages/hugepages-2048kB/nr_hugepages"}


class CaptureError(AllocsimError):
    """The snapshot cannot be taken (no ``zoneinfo``, or the output cannot be written)."""

    def __init__(self, path: Path, expected: str, got: str) -> None:
        super().__init__(path, expected, got)
        self.path, self.expected, self.got = path, expected, got

    def __str__(self) -> str:
        return f"{self.path}: expected {self.expected}, got {self.got}"


def _reader(root: Path, missing: list[str]) -> Callable[[str, str], str | None]:
    """A reader of ``root``-relative files that records what it could not read."""

    def read(rel: str, name: str) -> str | None:
        try:
            return (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            missing.append(f"{name}: /{rel}: {exc.strerror or type(exc).__name__}")
            return None

    return read


def _sysctl_vm(root: Path, missing: list[str]) -> str:
    """``vm.name = value`` lines for every readable ``/proc/sys/vm`` file."""
    lines = []
    vm = root / "proc/sys/vm"
    for entry in sorted(vm.iterdir()) if vm.is_dir() else []:
        if not os.access(entry, os.R_OK) or not entry.stat().st_mode & 0o444:
            continue  # write-only (compact_memory, drop_caches, stat_refresh)
        try:
            value = " ".join(entry.read_text(encoding="utf-8").split())
        except OSError:
            continue  # unreadable: write-only in practice
        lines.append(f"vm.{entry.name} = {value}\n")
    if not lines:
        missing.append("sysctl_vm: /proc/sys/vm: no readable sysctls")
    return "".join(lines)


def capture(out: Path, root: Path = Path("/")) -> list[str]:
    """Write a snapshot of the host at ``root`` into the new directory ``out``.

    Returns what could not be read (one line each, with the reason).

    Raises:
        CaptureError: ``zoneinfo`` cannot be read, or ``out`` exists or cannot be written.
    """
    if out.exists():
        raise CaptureError(out, "a new directory for the snapshot", "an existing path")
    missing: list[str] = []
    read = _reader(root, missing)
    files: dict[str, str] = {}
    for name in PROC_FILES:
        if (text := read(f"proc/{name}", name)) is not None:
            files[name] = text
    if "zoneinfo" not in files:
        raise CaptureError(root / "proc/zoneinfo", "a readable zoneinfo (this captures "
                           "a live Linux host)", missing[0].split(": ", 2)[-1])
    for name in DEBUGFS_FILES:
        if (text := read(f"sys/kernel/debug/extfrag/{name}", name)) is not None:
            files[name] = text
        elif not (root / "sys/kernel/debug/extfrag").is_dir():
            missing[-1] += " (is debugfs mounted? mount -t debugfs none /sys/kernel/debug)"
    if (text := read("sys/kernel/mm/transparent_hugepage/enabled",
                     "transparent_hugepage_enabled")) is not None:
        files["transparent_hugepage_enabled"] = text
    files["sysctl_vm"] = _sysctl_vm(root, missing)
    for name in FS_FILES:  # the shrinkable share of SReclaimable
        if (text := read(f"proc/sys/fs/{name}", name)) is not None:
            files[name] = text
    nodes = root / "sys/devices/system/node"
    for node in sorted(nodes.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        for name, rel in NODE_FILES.items():
            text = read(str(node.relative_to(root) / rel), f"{node.name}.{name}")
            if text is not None:
                files[f"{node.name}.{name}"] = text
    files["capture.txt"] = "".join(f"not captured: {m}\n" for m in missing)
    _write_dir(out, files)
    return missing


def _write_dir(out: Path, files: dict[str, str]) -> None:
    """Write ``files`` into a hidden temporary directory, then rename it to ``out``."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CaptureError(out, "a directory this process can write",
                           exc.strerror or type(exc).__name__) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
