"""Importer for snapshots of ``/proc`` and ``/sys`` files taken on a real Linux 6.1 host.

A snapshot directory holds ``zoneinfo`` (required) and, optionally, ``buddyinfo``,
``pagetypeinfo``, ``sysctl_vm`` (``vm.name = value`` lines), ``transparent_hugepage_enabled``
and ``nodeN.cpulist``. The layouts parsed are those printed by ``zoneinfo_show_print()``,
``frag_show_print()`` and ``pagetypeinfo_show()`` in mm/vmstat.c, and by
``cpumap_print_list_to_buf()`` for ``/sys/devices/system/node/nodeN/cpulist``.

Broken input raises :class:`ProcParseError` naming the file, the line and what was expected,
never a bare IndexError or ValueError. Lines the kernel prints that the model does not use
(per-node and per-zone vmstat counters, ``vm stats threshold``) are checked for shape and
skipped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from simcore.constants import DEFAULT_PAGEBLOCK_ORDER

SysctlValue = int | tuple[int, ...] | str
_T = TypeVar("_T")


class ProcParseError(Exception):
    """A snapshot file did not have the expected layout.

    Attributes:
        path: the file.
        line: 1-based line number, or ``None`` for whole-file problems.
        expected: what the parser wanted to see.
        got: a short snippet of what it saw instead.
    """

    def __init__(self, path: str, line: int | None, expected: str, got: str = "") -> None:
        self.path = path
        self.line = line
        self.expected = expected
        self.got = got if len(got) <= 60 else got[:57] + "..."
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: expected {expected}, got {self.got!r}")


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


@dataclass(frozen=True)
class PagetypeInfo:
    """``/proc/pagetypeinfo``.

    ``free_counts[(nid, zone, migratetype)]`` is the free-list length per order (values
    the kernel capped and printed as ``>100000`` read as 100000). ``block_counts`` and
    ``mixed_counts`` map ``(nid, zone)`` to counts aligned with ``block_types``.
    """

    pageblock_order: int
    free_counts: dict[tuple[int, str, str], tuple[int, ...]]
    block_types: tuple[str, ...]
    block_counts: dict[tuple[int, str], tuple[int, ...]]
    mixed_counts: dict[tuple[int, str], tuple[int, ...]] = field(default_factory=dict)


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


_INT_RE = re.compile(r"-?\d+")
_ZONE_HEADER_RE = re.compile(r"Node (\d+), zone\s+(\S+)")
_BUDDY_RE = re.compile(r"Node (\d+), zone\s+(\S+)((?:\s+\S+)*)\s*")
_FREE_RE = re.compile(r"Node\s+(\d+), zone\s+(\S+), type\s+(\S+)((?:\s+\S+)*)\s*")
_SYSCTL_RE = re.compile(r"vm\.([A-Za-z0-9_]+) = ?(.*)")
_THP_RE = re.compile(r"\[(\w+)\]")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    return enumerate(text.splitlines(), start=1)


def _int(token: str, path: str, line: int, what: str) -> int:
    if not _INT_RE.fullmatch(token):
        raise ProcParseError(path, line, what, token)
    return int(token)


def _ints(tokens: list[str], path: str, line: int, what: str) -> tuple[int, ...]:
    # A '>' prefix marks a count the kernel capped (pagetypeinfo's 100000 limit).
    return tuple(_int(tok.removeprefix(">"), path, line, what) for tok in tokens)


def parse_cpulist(text: str, path: str = "<cpulist>") -> tuple[int, ...]:
    """Parse a kernel CPU list such as ``0-1`` or ``0,2-3`` (empty means no CPU)."""
    cpus: list[int] = []
    body = text.strip()
    for part in body.split(",") if body else []:
        lo, sep, hi = part.partition("-")
        first = _int(lo, path, 1, "a CPU number or range like 0-3")
        last = _int(hi, path, 1, "a CPU number or range like 0-3") if sep else first
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
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        match = _SYSCTL_RE.fullmatch(line.strip())
        if match is None:
            raise ProcParseError(path, lineno, "'vm.<name> = <value>'", line)
        name, raw = match.group(1), match.group(2).strip()
        tokens = raw.split()
        if tokens and all(_INT_RE.fullmatch(tok) for tok in tokens):
            ints = tuple(int(tok) for tok in tokens)
            result[name] = ints[0] if len(ints) == 1 else ints
        else:
            result[name] = raw
    return result


def parse_buddyinfo(text: str, path: str = "<buddyinfo>") -> dict[tuple[int, str], tuple[int, ...]]:
    """Parse ``/proc/buddyinfo``: ``(nid, zone)`` -> free blocks per order."""
    result: dict[tuple[int, str], tuple[int, ...]] = {}
    for lineno, line in _lines(text):
        if not line.strip():
            continue
        match = _BUDDY_RE.fullmatch(line)
        if match is None or not match.group(3).split():
            raise ProcParseError(path, lineno, "'Node N, zone NAME c0 c1 ...'", line)
        key = (int(match.group(1)), match.group(2))
        if key in result:
            raise ProcParseError(path, lineno, "each zone once", line)
        result[key] = _ints(match.group(3).split(), path, lineno, "a free block count")
    return result


def parse_pagetypeinfo(text: str, path: str = "<pagetypeinfo>") -> PagetypeInfo:
    """Parse ``/proc/pagetypeinfo`` as printed by pagetypeinfo_show() in mm/vmstat.c."""
    lines = list(_lines(text))
    order = _header_value(lines, 0, "Page block order:", path)
    _header_value(lines, 1, "Pages per block:", path)
    free_counts: dict[tuple[int, str, str], tuple[int, ...]] = {}
    tables: dict[str, dict[tuple[int, str], tuple[int, ...]]] = {}
    block_types: tuple[str, ...] = ()
    section = ""
    for lineno, line in lines[2:]:
        if not line.strip():
            continue
        if line.startswith("Free pages count per migrate type"):
            section = "free"
        elif line.startswith(("Number of blocks type", "Number of mixed blocks")):
            section = "mixed" if "mixed" in line else "blocks"
            block_types = tuple(line.split()[4:] if section == "blocks" else block_types)
            tables[section] = {}
        elif section == "free":
            match = _FREE_RE.fullmatch(line)
            if match is None:
                raise ProcParseError(path, lineno, "'Node N, zone Z, type T c0 ...'", line)
            free_key = (int(match.group(1)), match.group(2), match.group(3))
            free_counts[free_key] = _ints(match.group(4).split(), path, lineno, "a free count")
        elif section in tables:
            key, counts = _count_row(line, lineno, len(block_types), path)
            tables[section][key] = counts
        else:
            raise ProcParseError(path, lineno, "a pagetypeinfo section header", line)
    if "blocks" not in tables:
        raise ProcParseError(path, None, "a 'Number of blocks type' table", "end of file")
    return PagetypeInfo(order, free_counts, block_types, tables["blocks"], tables.get("mixed", {}))


def _header_value(lines: list[tuple[int, str]], index: int, prefix: str, path: str) -> int:
    if index >= len(lines) or not lines[index][1].startswith(prefix):
        got = lines[index][1] if index < len(lines) else "end of file"
        raise ProcParseError(path, index + 1, f"'{prefix} N'", got)
    return _int(lines[index][1][len(prefix) :].strip(), path, index + 1, f"'{prefix} N'")


def _count_row(
    line: str, lineno: int, width: int, path: str
) -> tuple[tuple[int, str], tuple[int, ...]]:
    match = _BUDDY_RE.fullmatch(line)
    tokens = match.group(3).split() if match else []
    if match is None or len(tokens) != width:
        raise ProcParseError(path, lineno, f"'Node N, zone NAME' and {width} counts", line)
    return (int(match.group(1)), match.group(2)), _ints(tokens, path, lineno, "a block count")


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

    def __init__(self, nid: int, name: str, path: str) -> None:
        self.nid = nid
        self.name = name
        self.path = path
        self.fields: dict[str, int] = {}
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
            self.protection = _ints(tokens, self.path, lineno, "a protection entry")
            return
        match = _KEYVAL_RE.fullmatch(line)
        if match is None:
            raise ProcParseError(self.path, lineno, "'<name> <number>' zoneinfo line", line)
        key, colon = match.group(1), match.group(2)
        value = _int(match.group(3), self.path, lineno, f"a number for {key!r}")
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

    def build(self, lineno: int, got: str) -> ZoneSnapshot:
        """Check the block is complete (``lineno``/``got`` locate the block's end)."""
        needed = _REQUIRED_FIELDS + (("start_pfn",) if self.fields.get("present") else ())
        for key in needed:
            if key not in self.fields:
                raise ProcParseError(self.path, lineno, f"{key!r} of zone {self.name}", got)
        if self.protection is None:
            raise ProcParseError(self.path, lineno, f"'protection:' of zone {self.name}", got)
        for entry in self.pcp:
            if len(entry) != 1 + len(_PCP_FIELDS):
                raise ProcParseError(self.path, lineno, "count, high and batch per cpu", got)
        pcp = tuple(PcpSnapshot(e["cpu"], e["count"], e["high"], e["batch"]) for e in self.pcp)
        counts = {key: self.fields[key] for key in _REQUIRED_FIELDS}
        start_pfn = self.fields.get("start_pfn", 0)
        return ZoneSnapshot(
            self.nid, self.name, start_pfn, protection=self.protection, pcp=pcp, **counts
        )


def parse_zoneinfo(text: str, path: str = "<zoneinfo>") -> tuple[ZoneSnapshot, ...]:
    """Parse ``/proc/zoneinfo`` as printed by zoneinfo_show_print() in mm/vmstat.c.

    Every zone is kept, including unpopulated ones (Movable, Device) with 0 present
    pages; those have no pagesets and ``start_pfn`` 0.
    """
    zones: list[ZoneSnapshot] = []
    current: _ZoneBuilder | None = None
    last = 0
    for lineno, line in _lines(text):
        last = lineno
        if not line.strip():
            continue
        header = _ZONE_HEADER_RE.fullmatch(line.rstrip())
        if header is not None:
            if current is not None:
                zones.append(current.build(lineno, line))
            current = _ZoneBuilder(int(header.group(1)), header.group(2), path)
        elif current is None:
            raise ProcParseError(path, lineno, "'Node N, zone NAME'", line)
        else:
            current.feed(lineno, line)
    if current is None:
        raise ProcParseError(path, last or None, "at least one 'Node N, zone NAME' block", "")
    zones.append(current.build(last + 1, "end of file"))
    return tuple(zones)


def _read(path: Path, required: bool = False) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise ProcParseError(str(path), None, "the file to exist", "missing") from None
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProcParseError(str(path), None, "a readable UTF-8 text file", str(exc)) from None


def _optional(directory: Path, name: str, parser: Callable[[str, str], _T]) -> _T | None:
    text = _read(directory / name)
    return None if text is None else parser(text, str(directory / name))


def read_snapshot(path: Path) -> ProcSnapshot:
    """Read a snapshot directory (see the module docstring for its files).

    Raises:
        ProcParseError: if ``zoneinfo`` is missing or any file present is malformed.
    """
    zones = parse_zoneinfo(_read(path / "zoneinfo", required=True) or "", str(path / "zoneinfo"))
    buddy = _optional(path, "buddyinfo", parse_buddyinfo)
    pagetype = _optional(path, "pagetypeinfo", parse_pagetypeinfo)
    sysctl = _optional(path, "sysctl_vm", parse_sysctl_vm)
    thp = _optional(path, "transparent_hugepage_enabled", parse_thp_enabled)
    node_cpus: dict[int, tuple[int, ...]] = {}
    for cpulist in sorted(path.glob("node*.cpulist")):
        nid_text = cpulist.name.removeprefix("node").removesuffix(".cpulist")
        if nid_text.isdigit():
            node_cpus[int(nid_text)] = parse_cpulist(_read(cpulist) or "", str(cpulist))
    return ProcSnapshot(
        path=str(path),
        zones=zones,
        buddyinfo=buddy or {},
        pagetypeinfo=pagetype,
        sysctl=sysctl or {},
        thp_enabled=thp,
        node_cpus=node_cpus,
        pageblock_order=pagetype.pageblock_order if pagetype else DEFAULT_PAGEBLOCK_ORDER,
    )
