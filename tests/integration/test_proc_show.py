"""``allocsim proc show`` against the real 6.1 ``/proc/zoneinfo`` it was built from.

For each zone the lines ``min``, ``low``, ``high``, ``spanned``, ``present``, ``managed``,
``protection:`` and every pageset ``high:``/``batch:`` are compared as strings with the
real file, whitespace included: the output must be in /proc/zoneinfo layout, not just
carry the same numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from allocsim.cli import main

REPO = Path(__file__).resolve().parents[2]
ORACLE = REPO / "tests" / "data" / "oracle"
WMARK = sorted(p for p in (ORACLE / "wmark-recompute").iterdir() if (p / "zoneinfo").exists())
BOOT = sorted(p.parent for p in ORACLE.glob("*/start/zoneinfo"))
ZONE_KEYS = ("min", "low", "high", "spanned", "present", "managed")
ZONE_HEADER = re.compile(r"^Node (\d+), zone\s+(\S+)$")

Zones = dict[tuple[int, str], list[str]]


def compared_lines(text: str) -> Zones:
    """Per (node, zone): the compared lines, in file order."""
    zones: Zones = {}
    lines: list[str] = []
    in_pagesets = False
    for line in text.splitlines():
        m = ZONE_HEADER.match(line)
        if m:
            lines = zones.setdefault((int(m[1]), m[2]), [])
            in_pagesets = False
            continue
        fields = line.split()
        if not fields or not zones:
            continue
        if fields[0] == "pagesets":
            in_pagesets = True
        elif in_pagesets and fields[0] in ("high:", "batch:"):
            lines.append(line)
        elif (fields[0] in ZONE_KEYS and len(fields) == 2) or fields[0] == "protection:":
            lines.append(line)
    return zones


def populated(zones: Zones) -> Zones:
    return {k: v for k, v in zones.items() if _value(v, "present") != "0"}


def _value(lines: list[str], key: str) -> str:
    (value,) = [line.split()[1] for line in lines if line.split()[0] == key]
    return value


def _show(capsys: pytest.CaptureFixture[str], snap: Path, recompute: bool) -> Zones:
    argv = ["proc", "show", str(snap)] + (["--recompute"] if recompute else [])
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return compared_lines(captured.out)


def _assert_same(got: Zones, real: Zones) -> None:
    assert list(got) == list(real)
    for zone, lines in real.items():
        nr_cpus = sum(1 for line in lines if line.split()[0] == "batch:")
        if _value(lines, "present") != "0":  # unpopulated zones print no pagesets
            assert nr_cpus >= 1, zone
        assert len(lines) == len(ZONE_KEYS) + 1 + 2 * nr_cpus, zone
        assert got[zone] == lines, zone


@pytest.mark.parametrize("recompute", [False, True], ids=["observed", "recompute"])
@pytest.mark.parametrize("snap", WMARK, ids=[p.name for p in WMARK])
def test_wmark_recompute_snapshot(
    capsys: pytest.CaptureFixture[str], snap: Path, recompute: bool
) -> None:
    """Observed and recomputed watermarks both equal the real ones.

    These snapshots were taken right after a sysctl write, which makes the kernel run
    ``setup_per_zone_wmarks()`` / ``setup_per_zone_lowmem_reserve()`` /
    ``zone_pcp_update()`` on the managed pages the snapshot shows.
    """
    real = compared_lines((snap / "zoneinfo").read_text())
    _assert_same(_show(capsys, snap, recompute), real)


def test_there_are_17_wmark_snapshots() -> None:
    assert len(WMARK) == 17
    assert BOOT, "no */start snapshots"


@pytest.mark.parametrize("snap", BOOT, ids=[p.parent.name for p in BOOT])
def test_boot_snapshot(capsys: pytest.CaptureFixture[str], snap: Path) -> None:
    """Observed lines are reproduced; the recomputation runs but is not compared.

    A boot snapshot's watermarks, lowmem_reserve and pcp sizes were computed during boot
    from the managed pages of that moment, before init memory (and other early
    reservations) were released, and the THP setup then raised min_free_kbytes and
    recomputed. The managed pages in the snapshot are the later, larger ones, so
    recomputing from them legitimately gives different (slightly higher) numbers. The
    zone geometry (spanned/present/managed) must still match.
    """
    real = compared_lines((snap / "zoneinfo").read_text())
    _assert_same(_show(capsys, snap, recompute=False), real)
    recomputed = _show(capsys, snap, recompute=True)
    assert list(recomputed) == list(real)
    for zone, lines in populated(real).items():
        for key in ("spanned", "present", "managed"):
            assert _value(recomputed[zone], key) == _value(lines, key), (zone, key)
        marks = [int(_value(recomputed[zone], key)) for key in ("min", "low", "high")]
        assert 0 < marks[0] < marks[1] < marks[2], (zone, marks)


def test_unpopulated_zones_are_printed(capsys: pytest.CaptureFixture[str]) -> None:
    snap = WMARK[0]
    real = compared_lines((snap / "zoneinfo").read_text())
    assert set(real) != set(populated(real)), "the oracle has unpopulated zones"
    got = _show(capsys, snap, recompute=False)
    assert list(got) == list(real)
