"""Importer for snapshots of ``/proc`` and ``/sys`` files taken on a real Linux host.

A snapshot directory holds ``zoneinfo`` (required) and, optionally, ``buddyinfo``,
``pagetypeinfo``, ``vmstat``, ``sysctl_vm`` (``vm.name = value`` lines),
``transparent_hugepage_enabled`` and ``nodeN.cpulist``. The layouts parsed are those
printed by ``zoneinfo_show_print()`` in mm/vmstat.c (:mod:`simcore.formats.zoneinfo`),
``frag_show_print()``, ``pagetypeinfo_show()`` and ``vmstat_show()`` (in
:mod:`simcore.formats.proctables`), all re-exported here, and by
``cpumap_print_list_to_buf()`` for ``/sys/devices/system/node/nodeN/cpulist`` (empty for
a node without CPUs). The pinned layout is 6.1's; files of other 5.x and 6.x kernels are
read wherever their lines exist, and what 6.1 prints but they lack is listed in
:attr:`ProcSnapshot.notes`.

Broken input raises :class:`ProcParseError` naming the file, the line and what was expected,
never a bare IndexError or ValueError; that includes a file that is not text (the line
of the first byte that is not UTF-8).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
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
    parse_nid,
    parse_pagetypeinfo,
    parse_vmstat,
)
from simcore.formats.zoneinfo import OPTIONAL_LINES, PcpSnapshot, ZoneSnapshot, parse_zoneinfo
from simcore.mm.constants import DEFAULT_PAGEBLOCK_ORDER

__all__ = [
    "PagetypeInfo", "PcpSnapshot", "ProcParseError", "ProcSnapshot", "SysctlValue",
    "ZoneSnapshot", "parse_buddyinfo", "parse_cpulist", "parse_pagetypeinfo",
    "parse_sysctl_vm", "parse_thp_enabled", "parse_vmstat", "parse_zoneinfo",
    "read_snapshot",
]

SysctlValue = int | tuple[int, ...] | str
_T = TypeVar("_T")
NR_CPUS = 8192
"""x86_64's largest ``CONFIG_NR_CPUS`` (``NR_CPUS_RANGE_END``, arch/x86/Kconfig): no
cpulist names a CPU past it."""
MAX_PROC_FILE_BYTES = 64 << 20
"""Largest snapshot file read: a zoneinfo of 8192 CPUs and 4 zones is about 5 MiB."""


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
    notes: tuple[str, ...] = ()
    """What the files say that the model does not use as it is, one sentence each: lines
    6.1 prints that this kernel did not, CMA pageblocks (:func:`snapshot_notes`)."""

    def sysctl_int(self, name: str, default: int | None = None) -> int:
        """Integer sysctl ``vm.<name>``; ``default`` if absent.

        Raises:
            ProcParseError: the value is absent with no default, or not one integer
                (naming the ``sysctl_vm`` line).
        """
        value = self.sysctl.get(name, default)
        if not isinstance(value, int):
            raise self.sysctl_error(name, "a single integer", value)
        return value

    def sysctl_ints(self, name: str) -> tuple[int, ...]:
        """List-valued sysctl ``vm.<name>`` (e.g. ``lowmem_reserve_ratio``)."""
        value = self.sysctl.get(name)
        if isinstance(value, int):
            return (value,)
        if not isinstance(value, tuple):
            raise self.sysctl_error(name, "a list of integers", value)
        return value

    def sysctl_error(self, name: str, expected: str, value: object) -> ProcParseError:
        """An error at the ``sysctl_vm`` line of ``vm.<name>`` (past the end if absent)."""
        lines = getattr(self.sysctl, "lines", {})
        line = lines.get(name, getattr(self.sysctl, "end_line", None))
        got = "no such line" if value is None else f"vm.{name} = {value}"
        return ProcParseError(self.sysctl_path, line, f"vm.{name} = <{expected}>", got)

    @property
    def sysctl_path(self) -> str:
        """The ``sysctl_vm`` file of the snapshot."""
        return getattr(self.sysctl, "path", str(Path(self.path) / "sysctl_vm"))


class SysctlValues(dict[str, SysctlValue]):
    """``vm.name`` -> value, with the line each was read from (for error messages)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.lines: dict[str, int] = {}
        self.end_line = 1


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
        if last >= NR_CPUS:
            raise ProcParseError(path, 1, f"CPU numbers below {NR_CPUS} (x86_64's largest "
                                 "NR_CPUS)", part)
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
    result = SysctlValues(path)
    for lineno, line in numbered_lines(text):
        result.end_line = lineno + 1
        if not line.strip():
            continue
        match = _SYSCTL_RE.fullmatch(line.strip())
        if match is None:
            raise ProcParseError(path, lineno, "'vm.<name> = <value>'", line)
        name, raw = match.group(1), match.group(2).strip()
        result.lines[name] = lineno
        tokens = raw.split()
        if tokens and all(INT_RE.fullmatch(tok) for tok in tokens):
            ints = tuple(parse_int(tok, path, lineno, f"a number for vm.{name}")
                         for tok in tokens)
            result[name] = ints[0] if len(ints) == 1 else ints
        else:
            result[name] = raw
    return result


def read_text_file(path: Path) -> str:
    """The file's text; a binary (non-UTF-8) file is malformed input (ProcParseError).

    The error names the line holding the first byte that is not UTF-8.
    """
    with path.open("rb") as f:
        data = f.read(MAX_PROC_FILE_BYTES + 1)
    if len(data) > MAX_PROC_FILE_BYTES:
        raise ProcParseError(str(path), None, f"a file of at most {MAX_PROC_FILE_BYTES >> 20} "
                             "MiB (a copy of a /proc file)", "a larger file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start:exc.start + 4]
        raise ProcParseError(str(path), line, "UTF-8 text (a /proc file is text)",
                             f"the byte(s) {bad!r}") from None


def _free_pages(info: PagetypeInfo, nid: int, zone: str, mt: str) -> int:
    counts = info.free_counts.get((nid, zone, mt), ())
    return sum(n << order for order, n in enumerate(counts))


def snapshot_notes(path: Path, zones: tuple[ZoneSnapshot, ...],
                   pagetype: PagetypeInfo | None) -> tuple[str, ...]:
    """What the model takes differently from the files, one sentence each.

    Lines 6.1 prints that the file's kernel did not (``boost``: 5.15 and older; ``cma``:
    5.10 and older) are taken as 0. CMA pageblocks (``CONFIG_CMA``, a ``CMA`` row and
    column in pagetypeinfo) are reported with their free pages: the model has no CMA
    area, so that memory is modelled as ordinary memory of its zone.
    """
    zoneinfo = snapshot_file(path, "zoneinfo")
    since = {"boost": "5.15 and older do not", "cma": "5.10 and older do not"}
    notes = [f"{zoneinfo}: no {key!r} line (6.1 prints it; {since[key]}): taken as 0"
             for key in OPTIONAL_LINES if any(key in zone.absent for zone in zones)]
    if pagetype is not None and "CMA" in pagetype.block_types:
        column = pagetype.block_types.index("CMA")
        for (nid, zone), counts in pagetype.block_counts.items():
            free = _free_pages(pagetype, nid, zone, "CMA")
            if counts[column] or free:
                notes.append(f"{snapshot_file(path, 'pagetypeinfo')}: node {nid} {zone} has "
                             f"{counts[column]} CMA pageblocks ({free} free pages on the "
                             "CMA lists); the model has no CMA area and takes them as "
                             "ordinary memory of the zone")
    return tuple(notes)


class _OptionalFiles:
    """Reads a snapshot's optional files: missing or unreadable ones are skipped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.skipped: list[str] = []

    def text(self, path: Path) -> str | None:
        """The text of ``path``, or None if it is missing or cannot be read."""
        try:
            return read_text_file(path)
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
            if not (nid_text.isascii() and nid_text.isdigit()):
                continue  # not a node's file (node*.cpulist matched something else)
            text = self.text(cpulist)
            if text is not None:
                node_cpus[parse_nid(nid_text, str(cpulist), 1)] = parse_cpulist(
                    text, str(cpulist))
        return node_cpus


def snapshot_file(directory: Path, name: str) -> Path:
    """``directory/name``, or ``directory/name.txt`` as a run directory exports it."""
    plain = directory / name
    exported = directory / f"{name}.txt"
    return exported if not plain.exists() and exported.exists() else plain


def _check_buddyinfo(path: Path, zones: Sequence[ZoneSnapshot],
                     buddyinfo: dict[tuple[int, str], tuple[int, ...]]) -> None:
    """A buddyinfo read has a line for every zone zoneinfo shows populated.

    ``frag_show()`` prints every populated zone (``populated_zone()``: present pages), so
    a missing one means the file was cut short.
    """
    if not buddyinfo:
        return
    for zone in zones:
        if zone.present > 0 and (zone.nid, zone.name) not in buddyinfo:
            raise ProcParseError(str(path), len(buddyinfo) + 1, f"a line for node "
                                 f"{zone.nid}, zone {zone.name} (zoneinfo shows it "
                                 "populated)", "end of file (cut short?)")


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
        zones = parse_zoneinfo(read_text_file(zoneinfo), str(zoneinfo))
    except FileNotFoundError:
        raise ProcParseError(str(zoneinfo), None, "a zoneinfo file (the one file a snapshot "
                             "directory must have)", "no such file") from None
    except OSError as exc:
        raise ProcParseError(str(zoneinfo), None, "a readable file", str(exc)) from None
    files = _OptionalFiles(path)
    pagetype = files.parse("pagetypeinfo", parse_pagetypeinfo)
    buddyinfo = files.parse("buddyinfo", parse_buddyinfo) or {}
    _check_buddyinfo(snapshot_file(path, "buddyinfo"), zones, buddyinfo)
    return ProcSnapshot(
        path=str(path),
        zones=zones,
        buddyinfo=buddyinfo,
        pagetypeinfo=pagetype,
        sysctl=files.parse("sysctl_vm", parse_sysctl_vm) or {},
        thp_enabled=files.parse("transparent_hugepage_enabled", parse_thp_enabled),
        node_cpus=files.node_cpus(),
        pageblock_order=pagetype.pageblock_order if pagetype else DEFAULT_PAGEBLOCK_ORDER,
        vmstat=files.parse("vmstat", parse_vmstat) or {},
        skipped=tuple(files.skipped),
        notes=snapshot_notes(path, zones, pagetype),
    )
