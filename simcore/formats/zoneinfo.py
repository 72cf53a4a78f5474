"""Parser for ``/proc/zoneinfo``: mirrors the layout zoneinfo_show_print() prints.

Every line of Linux 6.1's layout is read and kept: the zone header, the ``per-node
stats`` block (under the first populated zone of a node), ``pages free`` .. ``cma``,
``protection:``, the zone's vmstat and NUMA counters, the ``pagesets`` (``cpu``,
``count``, ``high``, ``batch`` and ``vm stats threshold``), ``node_unreclaimable`` and
``start_pfn``. :mod:`simcore.formats.procfmt` prints what is read back byte for byte.

Other 5.x and 6.x kernels print the same layout with lines added over time; each is
read where it exists. Lines 6.1 prints that an older kernel lacks are optional and
listed in :attr:`ZoneSnapshot.absent` (``boost``: not printed by 5.15 and older;
``cma``: not printed by 5.10 and older; both are then taken as 0). ``promo`` (6.12
prints it after ``high``) is kept. Counter names are whatever the file has (they
differ between kernel versions and configs).

Broken input raises :class:`~simcore.formats.proctables.ProcParseError` naming the
file, the line and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simcore.formats.proctables import (
    ProcParseError,
    numbered_lines,
    parse_int,
    parse_ints,
    parse_nid,
)

Counters = tuple[tuple[str, int], ...]
"""``(name, value)`` pairs in the order the file prints them."""


@dataclass(frozen=True)
class PcpSnapshot:
    """One CPU's pageset of a zone, as printed under ``pagesets``."""

    cpu: int
    count: int
    high: int
    batch: int
    stat_threshold: int = 0
    """``vm stats threshold`` (CONFIG_SMP): the CPU's ``stat_threshold`` of the zone."""


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
    cma: int = 0
    wmark_promo: int | None = None
    """``promo`` where the kernel prints it (6.12), else None."""
    node_stats: Counters | None = None
    """The ``per-node stats`` block printed under this zone (None: not under this one)."""
    zone_stats: Counters = ()
    """The zone's counters (zone stat items, then NUMA events), for a populated zone."""
    node_unreclaimable: int = 0
    absent: tuple[str, ...] = ()
    """Lines 6.1 prints that this file's kernel did not (``boost``, ``cma``)."""


_ZONE_HEADER_RE = re.compile(r"Node ([0-9]+), zone\s+(\S+)")
_KEYVAL_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_ ]*?)(:?)\s+(\S+)\s*")
_PROTECTION_RE = re.compile(r"\s*protection: \((.*)\)\s*")
_COUNTER_RE = re.compile(r"[a-z][a-z0-9_]*")
_ZONE_FIELDS = {
    "pages free": "nr_free_pages",
    "boost": "boost",
    "min": "wmark_min",
    "low": "wmark_low",
    "high": "wmark_high",
    "promo": "wmark_promo",
    "spanned": "spanned",
    "present": "present",
    "managed": "managed",
    "cma": "cma",
}
OPTIONAL_LINES = ("boost", "cma")
"""Headline lines of 6.1 that older kernels do not print (taken as 0 there)."""
_REQUIRED_FIELDS = ("nr_free_pages", "wmark_min", "wmark_low", "wmark_high", "spanned",
                    "present", "managed")
_PCP_FIELDS = ("count", "high", "batch")
_HEADLINE, _NODE, _COUNTERS, _PAGESETS = "headline", "node", "counters", "pagesets"


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
        self.node_stats: list[tuple[str, int]] | None = None
        self.zone_stats: list[tuple[str, int]] = []
        self.section = _HEADLINE

    def error(self, lineno: int, expected: str, got: str) -> ProcParseError:
        return ProcParseError(self.path, lineno, expected, got)

    def feed(self, lineno: int, line: str) -> None:
        """Consume one line of the zone's block."""
        stripped = line.strip()
        if stripped == "per-node stats":
            if self.fields or self.node_stats is not None:
                raise self.error(lineno, "'per-node stats' right after the zone header", line)
            self.node_stats, self.section = [], _NODE
            return
        if stripped == "pagesets":
            if self.protection is None:
                raise self.error(lineno, f"'protection:' of zone {self.name} before "
                                 "'pagesets'", line)
            self.section = _PAGESETS
            return
        protection = _PROTECTION_RE.fullmatch(line)
        if protection is not None:
            tokens = [tok.strip() for tok in protection.group(1).split(",")]
            self.protection = parse_ints(tokens, self.path, lineno, "a protection entry")
            self.section = _COUNTERS
            return
        match = _KEYVAL_RE.fullmatch(line)
        if match is None:
            raise self.error(lineno, "'<name> <number>' zoneinfo line", line)
        key, colon = match.group(1), match.group(2)
        value = parse_int(match.group(3), self.path, lineno, f"a number for {key!r}")
        if colon:
            self._feed_colon(key, value, lineno, line)
        elif key in _ZONE_FIELDS and self.section in (_HEADLINE, _NODE):
            self.section = _HEADLINE
            self._set(self.fields, _ZONE_FIELDS[key], value, lineno, line)
        elif self.section == _NODE:
            self._counter(self.node_stats, key, value, lineno, line)
        elif self.section == _COUNTERS:
            self._counter(self.zone_stats, key, value, lineno, line)
        # Anything else (a headline line a newer kernel added) is checked and skipped.

    def _counter(self, into: list[tuple[str, int]] | None, key: str, value: int,
                 lineno: int, line: str) -> None:
        assert into is not None
        if not _COUNTER_RE.fullmatch(key):
            raise self.error(lineno, "a vmstat counter name (lowercase, digits, '_')", line)
        if any(name == key for name, _ in into):
            raise self.error(lineno, f"{key!r} once per block", line)
        into.append((key, value))

    def _feed_colon(self, key: str, value: int, lineno: int, line: str) -> None:
        if key == "cpu":
            if self.section != _PAGESETS:
                raise self.error(lineno, "'pagesets' before 'cpu:'", line)
            self.pcp.append({"cpu": value})
        elif key in _PCP_FIELDS or key == "vm stats threshold":
            if not self.pcp:
                raise self.error(lineno, "'cpu: N' before pcp fields", line)
            field = "stat_threshold" if key == "vm stats threshold" else key
            self._set(self.pcp[-1], field, value, lineno, line)
        elif key in ("start_pfn", "node_unreclaimable"):
            self._set(self.fields, key, value, lineno, line)

    def _set(self, target: dict[str, int], key: str, value: int, lineno: int, line: str) -> None:
        if key in target:
            raise self.error(lineno, f"{key!r} once per block", line)
        target[key] = value
        if target is self.fields:
            self.lines[key] = (lineno, line)

    def build(self, lineno: int, got: str) -> ZoneSnapshot:
        """Check the block is complete (``lineno``/``got`` locate the block's end)."""
        needed = _REQUIRED_FIELDS + (("start_pfn",) if self.fields.get("present") else ())
        for key in needed:
            if key not in self.fields:
                raise self.error(lineno, f"{key!r} of zone {self.name}", got)
        if self.protection is None:
            raise self.error(lineno, f"'protection:' of zone {self.name}", got)
        self._check_bounds()
        for entry in self.pcp:
            if any(key not in entry for key in _PCP_FIELDS):
                raise self.error(lineno, "count, high and batch per cpu", got)
        pcp = tuple(PcpSnapshot(e["cpu"], e["count"], e["high"], e["batch"],
                                e.get("stat_threshold", 0)) for e in self.pcp)
        f = self.fields
        return ZoneSnapshot(
            self.nid, self.name, f.get("start_pfn", 0), f["spanned"], f["present"],
            f["managed"], f["nr_free_pages"], f.get("boost", 0), f["wmark_min"],
            f["wmark_low"], f["wmark_high"], self.protection, pcp, line=self.lineno,
            cma=f.get("cma", 0), wmark_promo=f.get("wmark_promo"),
            node_stats=None if self.node_stats is None else tuple(self.node_stats),
            zone_stats=tuple(self.zone_stats),
            node_unreclaimable=f.get("node_unreclaimable", 0),
            absent=tuple(key for key in OPTIONAL_LINES if key not in f),
        )

    def _check_bounds(self) -> None:
        """The kernel keeps managed <= present <= spanned and free <= managed."""
        for key, bound in (("present", "spanned"), ("managed", "present"),
                           ("nr_free_pages", "managed")):
            if self.fields[key] > self.fields[bound]:
                where, text = self.lines[key]
                raise self.error(where, f"{key} <= {bound} ({self.fields[bound]}) in zone "
                                 f"{self.name}", text.strip())


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
            nid = parse_nid(header.group(1), path, lineno)
            current = _ZoneBuilder(nid, header.group(2), path, lineno)
        elif current is None:
            raise ProcParseError(path, lineno, "'Node N, zone NAME'", line)
        else:
            current.feed(lineno, line)
    if current is None:
        raise ProcParseError(path, last + 1, "at least one 'Node N, zone NAME' block", "")
    zones.append(current.build(last + 1, "end of file"))
    return tuple(zones)
