"""Importer for ``/proc/meminfo`` and ``/sys/devices/system/node/nodeN/meminfo``.

Parses the layouts printed by ``meminfo_proc_show()`` (fs/proc/meminfo.c) and
``node_read_meminfo()`` (drivers/base/node.c) of Linux 6.1: one ``Name:  value kB`` line
per counter (``HugePages_*`` have no unit), the per-node file prefixing each line with
``Node N``. Values are kept as printed: kB for the ``kB`` lines, counts for the others;
:func:`meminfo_pages` converts one to pages.

Broken input raises :class:`~simcore.formats.proctables.ProcParseError` naming the file,
the line and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path

from simcore.formats.procfs import read_text_file
from simcore.formats.proctables import ProcParseError, numbered_lines
from simcore.mm.constants import PAGE_SIZE

_LINE_RE = re.compile(r"(?:Node ([0-9]+) )?([A-Za-z0-9_()]+):\s+([0-9]{1,20})(?: (kB))?\s*")
"""A counter line; its value is an unsigned long (20 digits at most)."""


def parse_meminfo(text: str, path: str = "<meminfo>") -> dict[str, int]:
    """Parse ``/proc/meminfo`` or a node's ``meminfo``: counter name -> value as printed.

    A node file must name the same node on every line. Blank lines are skipped.
    """
    result: dict[str, int] = {}
    nid: str | None = ""
    for lineno, line in numbered_lines(text):
        if not line.strip():
            continue
        match = _LINE_RE.fullmatch(line)
        if match is None:
            raise ProcParseError(path, lineno, "'Name:  <number> kB' (a meminfo line)", line)
        if nid == "":
            nid = match.group(1)  # None for /proc/meminfo, the node's number for a node file
        elif match.group(1) != nid:
            want = "no 'Node N' prefix" if nid is None else f"the prefix 'Node {nid}'"
            raise ProcParseError(path, lineno, f"{want}, as on the first line", line)
        name = match.group(2)
        if name in result:
            raise ProcParseError(path, lineno, f"{name!r} once", line)
        result[name] = int(match.group(3))
    if not result:
        raise ProcParseError(path, None, "meminfo lines ('MemTotal:  <number> kB', ...)",
                             text[:40])
    return result


def require(info: dict[str, int], name: str, path: str) -> int:
    """``info[name]``, or a ProcParseError saying the file lacks that counter."""
    if name not in info:
        raise ProcParseError(path, None, f"a '{name}:' line", "none")
    return info[name]


def meminfo_pages(kbytes: int) -> int:
    """A meminfo ``kB`` value in pages."""
    return kbytes * 1024 // PAGE_SIZE


def read_meminfo(path: Path) -> dict[str, int]:
    """Read and parse one meminfo file.

    Raises:
        ProcParseError: it is missing, unreadable or malformed.
    """
    try:
        text = read_text_file(path)  # binary input: an error naming its line
    except FileNotFoundError:
        raise ProcParseError(str(path), None, "a meminfo file (a copy of /proc/meminfo)",
                             "no such file") from None
    except OSError as exc:
        raise ProcParseError(str(path), None, "a readable file", str(exc)) from None
    return parse_meminfo(text, str(path))
