"""The ``/proc/meminfo`` importer: both layouts, and errors naming file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.formats.meminfo import meminfo_pages, parse_meminfo, read_meminfo, require
from simcore.formats.proctables import ProcParseError

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle" / "hugetlb-fresh" / "start"


def test_proc_meminfo_values_are_kept_as_printed() -> None:
    info = read_meminfo(ORACLE / "meminfo")
    assert info["MemTotal"] == 917180  # kB
    assert info["Active(anon)"] == 2408
    assert info["HugePages_Total"] == 0  # a count, no unit
    assert meminfo_pages(info["Shmem"]) == 7064 // 4


def test_a_node_meminfo_drops_its_prefix() -> None:
    info = read_meminfo(ORACLE / "node0.meminfo")
    assert info["FilePages"] == 7064 and info["MemUsed"] == 126820


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("MemTotal: 100 kB\nMemFree 50 kB\n", 2, "'Name:  <number> kB'"),
    ("MemTotal: 100 kB\nMemTotal: 100 kB\n", 2, "'MemTotal' once"),
    ("MemTotal: 100 kB\nMemFree: lots kB\n", 2, "'Name:  <number> kB'"),
    ("Node 0 MemTotal: 100 kB\nNode 1 MemFree: 50 kB\n", 2, "the prefix 'Node 0'"),
    ("MemTotal: 100 kB\nNode 0 MemFree: 50 kB\n", 2, "no 'Node N' prefix"),
])
def test_bad_lines_name_file_and_line(text: str, line: int, expected: str) -> None:
    with pytest.raises(ProcParseError) as info:
        parse_meminfo(text, "host/meminfo")
    assert info.value.path == "host/meminfo" and info.value.line == line
    assert expected in info.value.expected


def test_missing_file_and_counter_are_named(tmp_path: Path) -> None:
    with pytest.raises(ProcParseError, match="meminfo: expected a meminfo file"):
        read_meminfo(tmp_path / "meminfo")
    with pytest.raises(ProcParseError, match="x/meminfo: expected a 'Shmem:' line"):
        require({"MemTotal": 1}, "Shmem", "x/meminfo")
    with pytest.raises(ProcParseError, match="expected meminfo lines"):
        parse_meminfo("\n\n", "empty")
