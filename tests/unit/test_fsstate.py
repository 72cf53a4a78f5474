"""``/proc/sys/fs/dentry-state`` and ``inode-state``: the shrinkable share of slab."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.formats.fsstate import CacheState, parse_state, read_fs_state
from simcore.formats.proctables import ProcParseError


def test_the_first_two_fields_are_total_and_unused() -> None:
    # 6.1's dentry_stat_t: nr_dentry nr_unused age_limit want_pages nr_negative dummy
    assert parse_state("38254\t21532\t45\t0\t7186\t0\n", "d") == CacheState(38254, 21532)
    # inodes_stat_t: nr_inodes nr_unused and five dummies
    assert parse_state("30129\t1289\t0\t0\t0\t0\t0\n", "i") == CacheState(30129, 1289)
    # two per-CPU sums read one after the other: unused may pass total for a moment
    assert parse_state("12 13 45 0 0 0\n", "d") == CacheState(12, 12)


def test_the_share_is_over_both_caches(tmp_path: Path) -> None:
    assert read_fs_state(tmp_path) is None  # neither file
    (tmp_path / "dentry-state").write_text("300 200 45 0 0 0\n")
    assert read_fs_state(tmp_path) is None  # one alone says nothing of inode pages
    (tmp_path / "inode-state").write_text("100 0 0 0 0 0 0\n")
    assert read_fs_state(tmp_path) == 0.5
    (tmp_path / "dentry-state").write_text("0 0 45 0 0 0\n")
    (tmp_path / "inode-state").write_text("0 0 0 0 0 0 0\n")
    assert read_fs_state(tmp_path) == 0.0


@pytest.mark.parametrize(("text", "line", "expected"), [
    ("12\n", 1, "one line of numbers"),
    ("12 x 45\n", 1, "one line of numbers"),
    ("12 3\n4 5\n", 2, "one line of numbers"),
    ("", None, "one line of numbers"),
])
def test_bad_input_names_file_and_line(text: str, line: int | None, expected: str) -> None:
    with pytest.raises(ProcParseError) as info:
        parse_state(text, "snap/dentry-state")
    assert info.value.path == "snap/dentry-state" and info.value.line == line
    assert expected in info.value.expected


def test_binary_garbage_is_one_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "dentry-state").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "inode-state").write_text("1 0 0 0 0 0 0\n")
    with pytest.raises(ProcParseError, match="dentry-state"):
        read_fs_state(tmp_path)
