"""Line-level parsing of ``/proc`` tables: the error type, numbers and the count tables.

Parses the layouts printed by mm/vmstat.c (Linux 6.1): ``frag_show_print()``
(``/proc/buddyinfo``), ``pagetypeinfo_show()`` (``/proc/pagetypeinfo``, one section per
node with memory) and ``vmstat_show()`` (``/proc/vmstat``, and the simulator's own
``vmstat.txt``). :mod:`simcore.formats.procfs` builds whole snapshots from these and re-exports
every public name here.

Broken input raises :class:`ProcParseError` naming the file, the line and what was
expected, never a bare IndexError or ValueError.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from simcore.errors import AllocsimError, shown

MAX_NUMNODES = 1024
"""x86_64's largest ``MAX_NUMNODES`` (``1 << NODES_SHIFT``, NODES_SHIFT at most 10 in
arch/x86/Kconfig): no real file names a node past it."""
MAX_DIGITS = 20
"""The longest number a ``/proc`` file prints (a u64 has 20 digits)."""


class ProcParseError(AllocsimError):
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
        where = shown(path) if line is None else f"{shown(path)}:{line}"
        super().__init__(f"{where}: expected {expected}, got {self.got!r}")


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


INT_RE = re.compile(r"-?[0-9]+")
_BUDDY_RE = re.compile(r"Node ([0-9]+), zone\s+(\S+)((?:\s+\S+)*)\s*")
_FREE_RE = re.compile(r"Node\s+([0-9]+), zone\s+(\S+), type\s+(\S+)((?:\s+\S+)*)\s*")
_VMSTAT_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """``(line number from 1, line)`` pairs."""
    return enumerate(text.splitlines(), start=1)


def parse_int(token: str, path: str, line: int, what: str) -> int:
    """``token`` as an int, or ProcParseError saying ``what`` was expected.

    Only ASCII digits, at most :data:`MAX_DIGITS` of them, as the kernel prints numbers.
    """
    if not INT_RE.fullmatch(token):
        raise ProcParseError(path, line, what, token)
    if len(token.lstrip("-")) > MAX_DIGITS:
        raise ProcParseError(path, line, f"{what} (a 64-bit number, at most {MAX_DIGITS} "
                             "digits)", token)
    return int(token)


def parse_nid(token: str, path: str, line: int) -> int:
    """A node number: ASCII digits, below :data:`MAX_NUMNODES`."""
    nid = parse_int(token, path, line, "a node number")
    if not 0 <= nid < MAX_NUMNODES:
        raise ProcParseError(path, line, f"a node number below {MAX_NUMNODES} (x86_64's "
                             "largest MAX_NUMNODES)", token)
    return nid


def parse_ints(tokens: list[str], path: str, line: int, what: str) -> tuple[int, ...]:
    """Every token as an int (see :func:`parse_int`)."""
    # A '>' prefix marks a count the kernel capped (pagetypeinfo's 100000 limit).
    return tuple(parse_int(tok.removeprefix(">"), path, line, what) for tok in tokens)


def parse_buddyinfo(text: str, path: str = "<buddyinfo>") -> dict[tuple[int, str], tuple[int, ...]]:
    """Parse ``/proc/buddyinfo``: ``(nid, zone)`` -> free blocks per order.

    Every row must have as many counts as the others (MAX_ORDER of the kernel): a row
    with another number (a line cut short) is named, against the width most rows have.
    """
    result: dict[tuple[int, str], tuple[int, ...]] = {}
    where: dict[tuple[int, str], tuple[int, str]] = {}
    for lineno, line in numbered_lines(text):
        if not line.strip():
            continue
        match = _BUDDY_RE.fullmatch(line)
        if match is None or not match.group(3).split():
            raise ProcParseError(path, lineno, "'Node N, zone NAME c0 c1 ...'", line)
        key = (parse_nid(match.group(1), path, lineno), match.group(2))
        if key in result:
            raise ProcParseError(path, lineno, "each zone once", line)
        result[key] = parse_ints(match.group(3).split(), path, lineno, "a free block count")
        where[key] = (lineno, line)
    # The width most rows have (the first row's on a tie): a row cut short is the odd one.
    widths = Counter(len(counts) for counts in result.values())
    width = widths.most_common(1)[0][0] if widths else 0
    for key, counts in result.items():
        if len(counts) != width:
            lineno, line = where[key]
            raise ProcParseError(path, lineno, f"{width} counts (orders 0..{width - 1}, as "
                                 "the other rows)", line)
    return result


def parse_vmstat(text: str, path: str = "<vmstat>") -> dict[str, int]:
    """Parse ``/proc/vmstat`` (``name value`` lines, vmstat_show() in mm/vmstat.c).

    Also reads the simulator's ``vmstat.txt`` and ``vmstat_simulator.txt`` (the same
    layout), and the ``vmstat.txt`` of older run directories, whose simulator-only
    counters follow a ``# simulator-only`` comment line: comment lines are skipped.
    """
    result: dict[str, int] = {}
    for lineno, line in numbered_lines(text):
        if not line.strip() or line.startswith("#"):
            continue
        tokens = line.split()
        if len(tokens) != 2 or not _VMSTAT_NAME_RE.fullmatch(tokens[0]):
            raise ProcParseError(path, lineno, "'<counter name> <number>'", line)
        if tokens[0] in result:
            raise ProcParseError(path, lineno, f"{tokens[0]!r} once", line)
        result[tokens[0]] = parse_int(tokens[1], path, lineno, f"a number for {tokens[0]!r}")
    return result


def parse_pagetypeinfo(text: str, path: str = "<pagetypeinfo>") -> PagetypeInfo:
    """Parse ``/proc/pagetypeinfo`` as printed by pagetypeinfo_show() in mm/vmstat.c.

    The kernel prints one section per node with memory, each with its own ``Page block
    order:`` / ``Pages per block:`` header, free-count table, ``Number of blocks type``
    table and (with page_owner) ``Number of mixed blocks`` table. Any number of node
    sections is accepted; they must agree on the pageblock order, the orders and the
    migratetype columns, and every row of a section must belong to one node.
    """
    parser = _PagetypeParser(path)
    last = 0
    for lineno, line in numbered_lines(text):
        parser.feed(lineno, line)
        last = lineno
    return parser.finish(last + 1)


class _PagetypeParser:
    """Line-by-line state of :func:`parse_pagetypeinfo`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.order: int | None = None
        self.section = ""
        self.expect_per_block = False
        self.nid: int | None = None
        self.nr_orders: int | None = None
        self.block_types: tuple[str, ...] | None = None
        self.free_counts: dict[tuple[int, str, str], tuple[int, ...]] = {}
        self.tables: dict[str, dict[tuple[int, str], tuple[int, ...]]] = {
            "blocks": {}, "mixed": {}}

    def error(self, lineno: int | None, expected: str, got: str) -> ProcParseError:
        return ProcParseError(self.path, lineno, expected, got)

    def feed(self, lineno: int, line: str) -> None:
        """Consume one line."""
        if self.expect_per_block:
            self._per_block(lineno, line)
        elif line.startswith("Page block order:"):
            self._node_header(lineno, line)
        elif not line.strip():
            return
        elif self.order is None:
            raise self.error(lineno, "'Page block order: N'", line)
        elif line.startswith("Free pages count per migrate type at order"):
            self._free_header(lineno, line)
        elif line.startswith(("Number of blocks type", "Number of mixed blocks")):
            self._count_header(lineno, line)
        elif self.section == "free":
            self._free_row(lineno, line)
        elif self.section in self.tables:
            self._count_row(lineno, line)
        else:
            raise self.error(lineno, "a pagetypeinfo section header", line)

    def _node_header(self, lineno: int, line: str) -> None:
        if self.order is not None and self.section not in ("blocks", "mixed"):
            raise self.error(lineno, "a 'Number of blocks type' table before the next node",
                             line)
        order = parse_int(line.removeprefix("Page block order:").strip(), self.path, lineno,
                          "'Page block order: N'")
        if self.order is not None and order != self.order:
            raise self.error(lineno, f"the same pageblock order {self.order} for every node",
                             line)
        self.order, self.section, self.nid = order, "header", None
        self.expect_per_block = True

    def _per_block(self, lineno: int, line: str) -> None:
        assert self.order is not None
        self.expect_per_block = False
        expected = f"'Pages per block:  {1 << self.order}'"
        if not line.startswith("Pages per block:"):
            raise self.error(lineno, expected, line)
        value = parse_int(line.removeprefix("Pages per block:").strip(), self.path, lineno,
                          expected)
        if value != 1 << self.order:
            raise self.error(lineno, expected, line)

    def _free_header(self, lineno: int, line: str) -> None:
        tokens = line.removeprefix("Free pages count per migrate type at order").split()
        orders = parse_ints(tokens, self.path, lineno, "the orders 0 1 2 ...")
        if not orders or orders != tuple(range(len(orders))):
            raise self.error(lineno, "the orders 0 1 2 ... in sequence", line)
        if self.nr_orders is not None and len(orders) != self.nr_orders:
            raise self.error(lineno, f"orders 0..{self.nr_orders - 1} for every node", line)
        self.nr_orders = len(orders)
        self.section = "free"

    def _count_header(self, lineno: int, line: str) -> None:
        section = "mixed" if line.startswith("Number of mixed blocks") else "blocks"
        if section == "mixed" and self.section != "blocks":
            raise self.error(lineno, "'Number of blocks type' before the mixed table", line)
        if section == "blocks" and self.section != "free":
            raise self.error(lineno, "the free-count table before 'Number of blocks type'",
                             line)
        types = tuple(line.split()[4:])
        if not types or (self.block_types is not None and types != self.block_types):
            raise self.error(lineno, f"migratetype columns {self.block_types}", line)
        self.block_types, self.section = types, section

    def _check_nid(self, nid: int, lineno: int, line: str) -> None:
        if self.nid is None:
            self.nid = nid
        elif nid != self.nid:
            raise self.error(lineno, f"rows of node {self.nid} only (one node per section)",
                             line)

    def _free_row(self, lineno: int, line: str) -> None:
        match = _FREE_RE.fullmatch(line)
        tokens = match.group(4).split() if match else []
        if match is None or len(tokens) != self.nr_orders:
            raise self.error(lineno, f"'Node N, zone Z, type T' and {self.nr_orders} counts",
                             line)
        key = (parse_nid(match.group(1), self.path, lineno), match.group(2), match.group(3))
        self._check_nid(key[0], lineno, line)
        if key in self.free_counts:
            raise self.error(lineno, "each zone and type once", line)
        self.free_counts[key] = parse_ints(tokens, self.path, lineno, "a free count")

    def _count_row(self, lineno: int, line: str) -> None:
        assert self.block_types is not None
        width = len(self.block_types)
        match = _BUDDY_RE.fullmatch(line)
        tokens = match.group(3).split() if match else []
        if match is None or len(tokens) != width:
            raise self.error(lineno, f"'Node N, zone NAME' and {width} counts", line)
        key = (parse_nid(match.group(1), self.path, lineno), match.group(2))
        self._check_nid(key[0], lineno, line)
        table = self.tables[self.section]
        if key in table:
            raise self.error(lineno, "each zone once per table", line)
        table[key] = parse_ints(tokens, self.path, lineno, "a block count")

    def finish(self, lineno: int) -> PagetypeInfo:
        """Check the last section is complete (``lineno``: past the last line)."""
        if self.section not in ("blocks", "mixed"):
            raise self.error(lineno, "a 'Number of blocks type' table", "end of file")
        assert self.block_types is not None and self.order is not None
        return PagetypeInfo(self.order, self.free_counts, self.block_types,
                            self.tables["blocks"], self.tables["mixed"])
