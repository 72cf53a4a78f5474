"""Importer for snapshots of ``/proc`` and ``/sys`` files taken on a real Linux 6.1 host.

A snapshot directory holds ``zoneinfo`` (required) and, optionally, ``buddyinfo``,
``pagetypeinfo``, ``vmstat``, ``sysctl_vm`` (``vm.name = value`` lines),
``transparent_hugepage_enabled`` and ``nodeN.cpulist``. The layouts parsed are those
printed by ``zoneinfo_show_print()`` in mm/vmstat.c (here), ``frag_show_print()``,
``pagetypeinfo_show()`` and ``vmstat_show()`` (in :mod:`simcore.formats.proctables`, re-exported
here), and by ``cpumap_print_list_to_buf()`` for
``/sys/devices/system/node/nodeN/cpulist`` (empty for a node without CPUs).

Broken input raises :class:`ProcParseError` naming the file, the line and what was expected,
never a bare IndexError or ValueError. Lines the kernel prints that the model does not use
(per-node and per-zone vmstat counters, ``vm stats threshold``) are checked for shape and
skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from simcore.formats.proctables import (
    INT_RE,
    PagetypeInfo,
    ProcParseError,
    numbered_lines,
    parse_buddyinfo,
    parse_int,
    parse_ints,
    parse_pagetypeinfo,
    parse_vmstat,
)
from simcore.mm.constants import DEFAULT_PAGEBLOCK_ORDER

__all__ = [
    "PagetypeInfo", "PcpSnapshot", "ProcParseError", "ProcSnapshot", "SysctlValue",
    "ZoneSnapshot", "parse_buddyinfo", "parse_cpulist", "parse_pagetypeinfo",
    "parse_sysctl_vm", "parse_thp_enabled", "parse_vmstat", "parse_zoneinfo",
    "read_snapshot",
]

SysctlValue = int | tuple[int, ...] | str
_T = TypeVar("_T")


@dataclass(frozen=True)
class PcpSnapshot:
    """One CPU's pageset of a zone, as printed under ``pagesets``."""

    cpu: int
    count: int
    high: int
    batch: int


@dataclass(frozen=True)
class ZoneSnapshot:
    """One zone of ``/proc/zoneinfo``; watermarks are as printed (boost included)."""

    nid: int
    name: str
    start_pfn: int
    spanned: int
    present: int
    managed: int
    nr_free_pages: int
    boost: int
    wmark_min: int
    wmark_low: int
    wmark_high: int
    protection: tuple[int, ...]
    pcp: tuple[PcpSnapshot, ...]
    line: int = 0
    """Line of the ``Node N, zone NAME`` header, for error messages (0 if unknown)."""


@dataclass(frozen=True)
class ProcSnapshot:
    """Everything read from one snapshot directory."""

    path: str
    zones: tuple[ZoneSnapshot, ...]
    buddyinfo: dict[tuple[int, str], tuple[int, ...]]
    pagetypeinfo: PagetypeInfo | None
    sysctl: dict[str, SysctlValue]
    thp_enabled: str | None
    node_cpus: dict[int, tuple[int, ...]]
    pageblock_order: int
    vmstat: dict[str, int] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    """Optional files that exist but could not be read (``path: reason``); ignored."""

    def sysctl_int(self, name: str, default: int | None = None) -> int:
        """Integer sysctl ``vm.<name>``; ``default`` if absent (KeyError if no default)."""
        value = self.sysctl.get(name, default)
        if not isinstance(value, int):
            raise KeyError(f"sysctl vm.{name} is not a single integer: {value!r}")
        return value

    def sysctl_ints(self, name: str) -> tuple[int, ...]:
        """List-valued sysctl ``vm.<name>`` (e.g. ``lowmem_reserve_ratio``)."""
        value = self.sysctl[name]
        if isinstance(value, int):
            return (value,)
        if isinstance(value, str):
            raise KeyError(f"sysctl vm.{name} is not a list of integers: {value!r}")
        return value


_ZONE_HEADER_RE = re.compile(r"Node (\d+), zone\s+(\S+)")
_SYSCTL_RE = re.compile(r"vm\.([A-Za-z0-9_-]+) = ?(.*)")  # vm.page-cluster has a hyphen
_THP_RE = re.compile(r"\[(\w+)\]")


def parse_cpulist(text: str, path: str = "<cpulist>") -> tuple[int, ...]:
    """Parse a kernel CPU list such as ``0-1`` or ``0,2-3`` (empty means no CPU)."""
    cpus: list[int] = []
    body = text.strip()
    for part in body.split(",") if body else []:
        lo, sep, hi = part.partition("-")
        first = parse_int(lo, path, 1, "a CPU number or range like 0-3")
        last = parse_int(hi, path, 1, "a CPU number or range like 0-3") if sep else first
        if first < 0 or last < first:
            raise ProcParseError(path, 1, "an ascending CPU range", part)
        cpus.extend(range(first, last + 1))
    return tuple(cpus)


def parse_thp_enabled(text: str, path: str = "<thp>") -> str:
    """Return the bracketed choice of ``transparent_hugepage/enabled`` (e.g. ``always``)."""
    match = _THP_RE.search(text)
    if match is None:
        raise ProcParseError(path, 1, "a [bracketed] choice", text.strip())
    return match.group(1)


def parse_sysctl_vm(text: str, path: str = "<sysctl_vm>") -> dict[str, SysctlValue]:
    """Parse ``vm.name = value`` lines, keyed by ``name`` (without ``vm.``).

    A value that is one integer becomes an ``int``; a whitespace-separated list of
    integers (``lowmem_reserve_ratio``) a tuple; anything else stays a string.
    """
    result: dict[str, SysctlValue] = {}
    for lineno, line in numbered_lines(text):
        if not line.strip():
            continue
        match = _SYSCTL_RE.fullmatch(line.strip())
        if match is None:
            raise ProcParseError(path, lineno, "'vm.<name> = <value>'", line)
        name, raw = match.group(1), match.group(2).strip()
        tokens = raw.split()
        if tokens and all(INT_RE.fullmatch(tok) for tok in tokens):
            ints = tuple(int(tok) for tok in tokens)
            result[name] = ints[0] if len(ints) == 1 else ints
        else:
            result[name] = raw
    return result


_KEYVAL_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_ ]*?)(:?)\s+(\S+)\s*")
_PROTECTION_RE = re.compile(r"\s*protection: \((.*)\)\s*")
_ZONE_FIELDS = {
    "pages free": "nr_free_pages",
    "boost": "boost",
    "min": "wmark_min",
    "low": "wmark_low",
    "high": "wmark_high",
    "spanned": "spanned",
    "present": "present",
    "managed": "managed",
    "cma": "cma",
}
_REQUIRED_FIELDS = tuple(v for v in _ZONE_FIELDS.values() if v != "cma")
_PCP_FIELDS = ("count", "high", "batch")


class _ZoneBuilder:
    """Accumulates the lines of one ``Node N, zone NAME`` block of /proc/zoneinfo."""

    def __init__(self, nid: int, name: str, path: str, lineno: int) -> None:
        self.nid = nid
        self.name = name
        self.path = path
        self.lineno = lineno
        self.fields: dict[str, int] = {}
        self.lines: dict[str, tuple[int, str]] = {}
        self.protection: tuple[int, ...] | None = None
        self.pcp: list[dict[str, int]] = []
        self.in_pagesets = False

    def feed(self, lineno: int, line: str) -> None:
        """Consume one line of the zone's block."""
        stripped = line.strip()
        if stripped in ("per-node stats", "pagesets"):
            self.in_pagesets = self.in_pagesets or stripped == "pagesets"
            return
        protection = _PROTECTION_RE.fullmatch(line)
        if protection is not None:
            tokens = [tok.strip() for tok in protection.group(1).split(",")]
            self.protection = parse_ints(tokens, self.path, lineno, "a protection entry")
            return
        match = _KEYVAL_RE.fullmatch(line)
        if match is None:
            raise ProcParseError(self.path, lineno, "'<name> <number>' zoneinfo line", line)
        key, colon = match.group(1), match.group(2)
        value = parse_int(match.group(3), self.path, lineno, f"a number for {key!r}")
        if colon:
            self._feed_colon(key, value, lineno, line)
        elif key in _ZONE_FIELDS and not self.in_pagesets:
            self._set(self.fields, _ZONE_FIELDS[key], value, lineno, line)

    def _feed_colon(self, key: str, value: int, lineno: int, line: str) -> None:
        if key == "cpu":
            if not self.in_pagesets:
                raise ProcParseError(self.path, lineno, "'pagesets' before 'cpu:'", line)
            self.pcp.append({"cpu": value})
        elif key in _PCP_FIELDS:
            if not self.pcp:
                raise ProcParseError(self.path, lineno, "'cpu: N' before pcp fields", line)
            self._set(self.pcp[-1], key, value, lineno, line)
        elif key == "start_pfn":
            self._set(self.fields, key, value, lineno, line)

    def _set(self, target: dict[str, int], key: str, value: int, lineno: int, line: str) -> None:
        if key in target:
            raise ProcParseError(self.path, lineno, f"{key!r} once per block", line)
        target[key] = value
        if target is self.fields:
            self.lines[key] = (lineno, line)

    def build(self, lineno: int, got: str) -> ZoneSnapshot:
        """Check the block is complete (``lineno``/``got`` locate the block's end)."""
        needed = _REQUIRED_FIELDS + (("start_pfn",) if self.fields.get("present") else ())
        for key in needed:
            if key not in self.fields:
                raise ProcParseError(self.path, lineno, f"{key!r} of zone {self.name}", got)
        if self.protection is None:
            raise ProcParseError(self.path, lineno, f"'protection:' of zone {self.name}", got)
        # The kernel keeps managed <= present <= spanned and free <= managed.
        for key, bound in (("present", "spanned"), ("managed", "present"),
                           ("nr_free_pages", "managed")):
            if self.fields[key] > self.fields[bound]:
                where, text = self.lines[key]
                raise ProcParseError(self.path, where, f"{key} <= {bound} "
                                     f"({self.fields[bound]}) in zone {self.name}", text.strip())
        for entry in self.pcp:
            if len(entry) != 1 + len(_PCP_FIELDS):
                raise ProcParseError(self.path, lineno, "count, high and batch per cpu", got)
        pcp = tuple(PcpSnapshot(e["cpu"], e["count"], e["high"], e["batch"]) for e in self.pcp)
        counts = {key: self.fields[key] for key in _REQUIRED_FIELDS}
        start_pfn = self.fields.get("start_pfn", 0)
        return ZoneSnapshot(
            self.nid, self.name, start_pfn, protection=self.protection, pcp=pcp,
            line=self.lineno, **counts
        )


def parse_zoneinfo(text: str, path: str = "<zoneinfo>") -> tuple[ZoneSnapshot, ...]:
    """Parse ``/proc/zoneinfo`` as printed by zoneinfo_show_print() in mm/vmstat.c.

    Every zone is kept, including unpopulated ones (Movable, Device) with 0 present
    pages; those have no pagesets and ``start_pfn`` 0.
    """
    zones: list[ZoneSnapshot] = []
    current: _ZoneBuilder | None = None
    last = 0
    for lineno, line in numbered_lines(text):
        last = lineno
        if not line.strip():
            continue
        header = _ZONE_HEADER_RE.fullmatch(line.rstrip())
        if header is not None:
            if current is not None:
                zones.append(current.build(lineno, line))
            current = _ZoneBuilder(int(header.group(1)), header.group(2), path, lineno)
        elif current is None:
            raise ProcParseError(path, lineno, "'Node N, zone NAME'", line)
        else:
            current.feed(lineno, line)
    if current is None:
        raise ProcParseError(path, last or None, "at least one 'Node N, zone NAME' block", "")
    zones.append(current.build(last + 1, "end of file"))
    return tuple(zones)


def _read(path: Path) -> str:
    """The file's text; a binary (non-UTF-8) file is malformed input."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProcParseError(str(path), None, "a UTF-8 text file", str(exc)) from None


class _OptionalFiles:
    """Reads a snapshot's optional files: missing or unreadable ones are skipped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.skipped: list[str] = []

    def text(self, path: Path) -> str | None:
        """The text of ``path``, or None if it is missing or cannot be read."""
        try:
            return _read(path)
        except FileNotFoundError:
            return None
        except OSError as exc:  # permission denied, a directory, an I/O error ...
            self.skipped.append(f"{path}: {exc.strerror or exc}")
            return None

    def parse(self, name: str, parser: Callable[[str, str], _T]) -> _T | None:
        """Parse ``directory/name`` with ``parser`` if it can be read."""
        path = snapshot_file(self.directory, name)
        text = self.text(path)
        if text is None:
            return None
        if not text.strip():
            # e.g. /proc/pagetypeinfo copied by a non-root user (the file is mode 0400)
            self.skipped.append(f"{path}: empty file")
            return None
        return parser(text, str(path))

    def node_cpus(self) -> dict[int, tuple[int, ...]]:
        """CPUs of each node from ``nodeN.cpulist`` (an empty file: a node with no CPU)."""
        node_cpus: dict[int, tuple[int, ...]] = {}
        for cpulist in sorted(self.directory.glob("node*.cpulist")):
            nid_text = cpulist.name.removeprefix("node").removesuffix(".cpulist")
            text = self.text(cpulist) if nid_text.isdigit() else None
            if text is not None:
                node_cpus[int(nid_text)] = parse_cpulist(text, str(cpulist))
        return node_cpus


def snapshot_file(directory: Path, name: str) -> Path:
    """``directory/name``, or ``directory/name.txt`` as a run directory exports it."""
    plain = directory / name
    exported = directory / f"{name}.txt"
    return exported if not plain.exists() and exported.exists() else plain


def read_snapshot(path: Path) -> ProcSnapshot:
    """Read a snapshot directory (see the module docstring for its files).

    Each file may also be named ``NAME.txt``, as a run directory exports it, so
    ``proc show`` reads a run directory. Only ``zoneinfo`` is required. An optional
    file that is missing, empty or cannot be read (permissions, I/O error) is skipped
    and listed in ``ProcSnapshot.skipped``; one that can be read but is malformed is an
    error.

    Raises:
        ProcParseError: if ``zoneinfo`` is missing or unreadable, or any file read is
            malformed.
    """
    zoneinfo = snapshot_file(path, "zoneinfo")
    try:
        zones = parse_zoneinfo(_read(zoneinfo), str(zoneinfo))
    except FileNotFoundError:
        raise ProcParseError(str(zoneinfo), None, "a zoneinfo file (the one file a snapshot "
                             "directory must have)", "no such file") from None
    except OSError as exc:
        raise ProcParseError(str(zoneinfo), None, "a readable file", str(exc)) from None
    files = _OptionalFiles(path)
    pagetype = files.parse("pagetypeinfo", parse_pagetypeinfo)
    return ProcSnapshot(
        path=str(path),
        zones=zones,
        buddyinfo=files.parse("buddyinfo", parse_buddyinfo) or {},
        pagetypeinfo=pagetype,
        sysctl=files.parse("sysctl_vm", parse_sysctl_vm) or {},
        thp_enabled=files.parse("transparent_hugepage_enabled", parse_thp_enabled),
        node_cpus=files.node_cpus(),
        pageblock_order=pagetype.pageblock_order if pagetype else DEFAULT_PAGEBLOCK_ORDER,
        vmstat=files.parse("vmstat", parse_vmstat) or {},
        skipped=tuple(files.skipped),
    )
