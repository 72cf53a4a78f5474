"""What the host can give: MemAvailable, lowered to a cgroup v2 limit."""

from __future__ import annotations

from pathlib import Path

import pytest

import allocsim.hostmem as hostmem

MEMINFO = "MemTotal:       24000000 kB\nMemFree:  1000 kB\nMemAvailable:   20000000 kB\n"


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "meminfo").write_text(MEMINFO)
    (tmp_path / "cgroup").mkdir()
    monkeypatch.setattr(hostmem, "MEMINFO", tmp_path / "meminfo")
    monkeypatch.setattr(hostmem, "CGROUP_ROOT", tmp_path / "cgroup")
    return tmp_path


def test_mem_available_without_a_cgroup(host: Path) -> None:
    assert hostmem.available_bytes() == 20000000 * 1024


def test_unlimited_cgroup_changes_nothing(host: Path) -> None:
    (host / "cgroup" / "memory.max").write_text("max\n")
    assert hostmem.available_bytes() == 20000000 * 1024


def test_cgroup_limit_lowers_what_is_available(host: Path) -> None:
    (host / "cgroup" / "memory.max").write_text(f"{8 << 30}\n")
    (host / "cgroup" / "memory.current").write_text(f"{3 << 30}\n")
    assert hostmem.available_bytes() == 5 << 30


def test_nothing_readable_skips_the_check(host: Path) -> None:
    (host / "meminfo").unlink()
    assert hostmem.available_bytes() is None


@pytest.mark.parametrize(("damaged", "available"), [
    (b"MemTotal:       24000000 kB\nMemAvail", None),  # cut in the middle of the name
    (b"MemAvailable: \xff\xfe\x00 kB\n", None),       # binary garbage
    (b"MemAvailable:   200", 200 * 1024),             # a cut number cannot be told apart
])
def test_a_damaged_meminfo(host: Path, damaged: bytes, available: int | None) -> None:
    """The host's own /proc/meminfo, damaged: no traceback; without a value, no check."""
    (host / "meminfo").write_bytes(damaged)
    assert hostmem.available_bytes() == available
