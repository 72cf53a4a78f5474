"""Unit tests for the /proc importer (formats.procfs) and zoneinfo printer (formats.procfmt)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from simcore.formats.procfmt import (
    EmptyZone,
    ObservedZone,
    format_zoneinfo,
    kernel_zone_keys,
    zoneinfo_views,
    zones_from_snapshot,
)
from simcore.formats.procfs import (
    PcpSnapshot,
    ProcParseError,
    parse_buddyinfo,
    parse_cpulist,
    parse_pagetypeinfo,
    parse_sysctl_vm,
    parse_thp_enabled,
    parse_vmstat,
    parse_zoneinfo,
    read_snapshot,
)

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
S00 = ORACLE / "wmark-recompute" / "s00-mfk128-wsf10"
BOOT = ORACLE / "boot-idle" / "start"
NUMA2 = ORACLE / "boot-idle-numa2" / "start"
# Lines of /proc/zoneinfo that the printer must reproduce byte for byte.
MODELLED_PREFIXES = (
    "Node ",
    "  pages free",
    "        boost",
    "        min",
    "        low",
    "        high ",
    "        spanned",
    "        present",
    "        managed",
    "        cma",
    "        protection:",
    "  pagesets",
    "    cpu:",
    "              count:",
    "              high:",
    "              batch:",
    "  start_pfn:",
)


def _modelled_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(MODELLED_PREFIXES)]


# ---- zoneinfo -------------------------------------------------------------------------


def test_parse_oracle_zoneinfo_keeps_all_five_zones() -> None:
    zones = read_snapshot(S00).zones
    assert [z.name for z in zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma32 = zones[1]
    assert (dma32.start_pfn, dma32.spanned, dma32.present, dma32.managed) == (
        4096,
        1044480,
        126941,
        110557,
    )
    assert (dma32.wmark_min, dma32.wmark_low, dma32.wmark_high) == (15, 125, 235)
    assert dma32.protection == (0, 0, 448, 448, 448)
    assert dma32.pcp == (PcpSnapshot(0, 669, 124, 31, 12), PcpSnapshot(1, 0, 124, 31, 12))
    assert zones[0].node_stats is not None and zones[0].node_stats[0][0] == "nr_inactive_anon"
    assert dma32.node_stats is None and dma32.node_unreclaimable == 0
    assert dma32.zone_stats[0][0] == "nr_free_pages" and dma32.zone_stats[-1][0] == "numa_other"
    assert zones[3].present == 0 and zones[3].pcp == () and zones[3].start_pfn == 0


ZONE_TEXT = """Node 0, zone   Normal
  pages free     10
        boost    0
        min      1
        low      2
        high     3
        spanned  100
        present  100
        managed  90
        cma      0
        protection: (0, 0, 0, 0)
      nr_free_pages 10
  pagesets
    cpu: 0
              count: 5
              high:  12
              batch: 3
  vm stats threshold: 4
  node_unreclaimable:  0
  start_pfn:           4096
"""


def test_parse_zoneinfo_minimal_block() -> None:
    (zone,) = parse_zoneinfo(ZONE_TEXT, "zi")
    assert (zone.nid, zone.name, zone.start_pfn, zone.nr_free_pages) == (0, "Normal", 4096, 10)
    assert zone.pcp == (PcpSnapshot(0, 5, 12, 3, 4),)
    assert zone.zone_stats == (("nr_free_pages", 10),) and zone.absent == ()


@pytest.mark.parametrize("cut", [3, 7, 9, 10, 15, 17])
def test_truncated_zoneinfo_names_file_and_line(cut: int) -> None:
    text = "\n".join(ZONE_TEXT.splitlines()[:cut])
    with pytest.raises(ProcParseError) as info:
        parse_zoneinfo(text, "snap/zoneinfo")
    assert info.value.path == "snap/zoneinfo"
    assert info.value.line == cut + 1
    assert str(info.value).startswith(f"snap/zoneinfo:{cut + 1}: expected ")


def test_garbage_number_in_zoneinfo() -> None:
    text = ZONE_TEXT.replace("managed  90", "managed  9x0")
    with pytest.raises(ProcParseError) as info:
        parse_zoneinfo(text, "zi")
    assert info.value.line == 9
    assert "'managed'" in info.value.expected
    assert "9x0" in str(info.value)


@pytest.mark.parametrize(
    ("bad_line", "replacing", "line"),
    [
        ("        protection: (0, zero)", "        protection: (0, 0, 0, 0)", 11),
        ("this is not zoneinfo", "      nr_free_pages 10", 12),
        ("              count: 5", "    cpu: 0", 14),
    ],
)
def test_malformed_zoneinfo_lines(bad_line: str, replacing: str, line: int) -> None:
    with pytest.raises(ProcParseError) as info:
        parse_zoneinfo(ZONE_TEXT.replace(replacing, bad_line, 1), "zi")
    assert info.value.line == line


def test_zoneinfo_rejects_text_before_first_zone_and_empty_input() -> None:
    with pytest.raises(ProcParseError) as info:
        parse_zoneinfo("hello\n" + ZONE_TEXT, "zi")
    assert info.value.line == 1
    with pytest.raises(ProcParseError):
        parse_zoneinfo("", "zi")


def test_zoneinfo_rejects_duplicate_field() -> None:
    with pytest.raises(ProcParseError) as info:
        parse_zoneinfo(ZONE_TEXT.replace("        cma      0", "        min      7"), "zi")
    assert info.value.line == 10


# ---- other files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("0-1\n", (0, 1)), ("0,2-3", (0, 2, 3)), ("5", (5,)), ("\n", ())],
)
def test_parse_cpulist(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("text", ["0-", "a", "3-1", "0,,1", "0-1:2"])
def test_parse_cpulist_rejects_garbage(text: str) -> None:
    with pytest.raises(ProcParseError):
        parse_cpulist(text, "node0.cpulist")


def test_parse_sysctl_vm_values() -> None:
    sysctl = parse_sysctl_vm(
        "vm.min_free_kbytes = 45036\nvm.lowmem_reserve_ratio = 256\t256\t32\t0\t0\n"
        "vm.stat_refresh = \nvm.name = some text\n"
    )
    assert sysctl["min_free_kbytes"] == 45036
    assert sysctl["lowmem_reserve_ratio"] == (256, 256, 32, 0, 0)
    assert sysctl["stat_refresh"] == ""
    assert sysctl["name"] == "some text"


def test_parse_sysctl_vm_rejects_bad_line() -> None:
    with pytest.raises(ProcParseError) as info:
        parse_sysctl_vm("vm.a = 1\nkernel.b = 2\n", "sysctl_vm")
    assert info.value.line == 2


def test_parse_thp_enabled() -> None:
    assert parse_thp_enabled("[always] madvise never\n") == "always"
    assert parse_thp_enabled("always [madvise] never") == "madvise"
    with pytest.raises(ProcParseError):
        parse_thp_enabled("always madvise never")


def test_parse_buddyinfo_oracle_and_garbage() -> None:
    buddy = read_snapshot(BOOT).buddyinfo
    assert buddy[(0, "DMA")] == (0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 3)
    assert set(buddy) == {(0, "DMA"), (0, "DMA32"), (0, "Normal")}
    with pytest.raises(ProcParseError) as info:
        parse_buddyinfo("Node 0, zone DMA 1 2\nNode 0, zone DMA32 1 x\n", "buddyinfo")
    assert info.value.line == 2
    with pytest.raises(ProcParseError):
        parse_buddyinfo("Node 0, zone DMA\n", "buddyinfo")


def test_parse_pagetypeinfo_oracle() -> None:
    info = read_snapshot(BOOT).pagetypeinfo
    assert info is not None and info.pageblock_order == 9
    assert info.free_counts[(0, "DMA32", "Movable")][-1] == 92
    assert info.block_types == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
    assert info.block_counts[(0, "Normal")] == (51, 199, 6, 0, 0)


def test_parse_pagetypeinfo_capped_count_and_errors() -> None:
    text = (BOOT / "pagetypeinfo").read_text()
    capped = text.replace("Movable      3      2", "Movable >100000      2", 1)
    parsed = parse_pagetypeinfo(capped, "pti")
    assert parsed.free_counts[(0, "DMA32", "Movable")][0] == 100000
    with pytest.raises(ProcParseError) as err:
        parse_pagetypeinfo("Page block order: nine\n", "pti")
    assert err.value.line == 1
    with pytest.raises(ProcParseError):
        parse_pagetypeinfo(text.split("Number of blocks")[0], "pti")  # truncated
    short_row = text.replace("199            6", "199", 1)
    with pytest.raises(ProcParseError):
        parse_pagetypeinfo(short_row, "pti")


def test_parse_pagetypeinfo_two_nodes() -> None:
    """Each node with memory has its own header and tables (pagetypeinfo_show())."""
    text = (NUMA2 / "pagetypeinfo").read_text()
    assert text.count("Page block order: 9") == 2
    info = parse_pagetypeinfo(text, "pti")
    assert info.pageblock_order == 9
    assert list(info.block_counts) == [(0, "DMA"), (0, "DMA32"), (1, "Normal")]
    assert info.block_counts[(1, "Normal")] == (27, 223, 6, 0, 0)
    assert info.free_counts[(1, "Normal", "Movable")][-1] == 111
    assert info.free_counts[(0, "DMA32", "Movable")][-1] == 78
    assert len(info.free_counts) == 3 * 5


def _numa2_pti_lines() -> list[str]:
    return (NUMA2 / "pagetypeinfo").read_text().splitlines(keepends=True)


@pytest.mark.parametrize(
    ("lineno", "replacement", "expected"),
    [
        (19, "Page block order: 10\n", "the same pageblock order 9"),
        (20, "Pages per block:  1024\n", "'Pages per block:  512'"),
        (20, "\n", "'Pages per block:  512'"),
        (22, "Free pages count per migrate type at order 0 1 2\n", "orders 0..10"),
        (23, "Node    0, zone   Normal, type    Unmovable      0 \n", "11 counts"),
        (24, "Node    0, zone   Normal, type      Movable" + "      0" * 11 + " \n", "node 1"),
        (29, "Number of blocks type     Unmovable      Movable\n", "migratetype columns"),
        (30, "Node 1, zone   Normal           27          223\n", "5 counts"),
        (29, "Page block order: 9\n", "before the next node"),
    ],
)
def test_parse_pagetypeinfo_second_node_errors(
    lineno: int, replacement: str, expected: str
) -> None:
    lines = _numa2_pti_lines()
    lines[lineno - 1] = replacement
    with pytest.raises(ProcParseError) as err:
        parse_pagetypeinfo("".join(lines), "pti")
    assert err.value.path == "pti" and err.value.line == lineno
    assert expected in err.value.expected


def test_parse_pagetypeinfo_truncated_second_node() -> None:
    lines = _numa2_pti_lines()
    with pytest.raises(ProcParseError) as err:
        parse_pagetypeinfo("".join(lines[:26]), "pti")  # node 1 has no block table
    assert err.value.line == 27 and "Number of blocks type" in err.value.expected
    with pytest.raises(ProcParseError):
        parse_pagetypeinfo("".join(lines[:19]), "pti")  # header without 'Pages per block'


def test_parse_buddyinfo_rows_must_have_the_same_orders() -> None:
    with pytest.raises(ProcParseError) as info:
        parse_buddyinfo("Node 0, zone DMA 1 2 3\nNode 1, zone Normal 1 2\n", "buddyinfo")
    assert info.value.line == 2 and "3 counts" in info.value.expected
    # A first row cut short is named, not the good rows after it.
    with pytest.raises(ProcParseError) as info:
        parse_buddyinfo("Node 0, zone DMA 1 2\nNode 0, zone DMA32 1 2 3\n"
                        "Node 0, zone Normal 4 5 6\n", "buddyinfo")
    assert info.value.line == 1 and "3 counts" in info.value.expected


def test_parse_vmstat_real_and_simulated() -> None:
    real = parse_vmstat((NUMA2 / "vmstat").read_text(), "vmstat")
    assert real["nr_free_pages"] == 200349 and real["numa_interleave"] == 614
    assert list(real)[:2] == ["nr_free_pages", "nr_zone_inactive_anon"]
    sim = parse_vmstat("nr_free_pages 5\npgfree 3\n# simulator-only\nbad_page 1\n")
    assert sim == {"nr_free_pages": 5, "pgfree": 3, "bad_page": 1}
    for bad, line in (("pgfree 3\npgfree 4\n", 2), ("pgfree\n", 1), ("pgfree x\n", 1),
                      ("nr_free_pages 1\nPgFree 2\n", 2)):
        with pytest.raises(ProcParseError) as err:
            parse_vmstat(bad, "vmstat")
        assert err.value.line == line, bad


# ---- read_snapshot --------------------------------------------------------------------


def test_read_snapshot_optional_files(tmp_path: Path) -> None:
    shutil.copy(S00 / "zoneinfo", tmp_path / "zoneinfo")
    snap = read_snapshot(tmp_path)
    assert len(snap.zones) == 5
    assert snap.sysctl == {} and snap.buddyinfo == {} and snap.pagetypeinfo is None
    assert snap.thp_enabled is None and snap.node_cpus == {} and snap.pageblock_order == 9


def test_read_snapshot_full_oracle() -> None:
    snap = read_snapshot(S00)
    assert snap.thp_enabled == "always"
    assert snap.node_cpus == {0: (0, 1)}
    assert snap.sysctl_int("min_free_kbytes") == 128
    assert snap.sysctl_ints("lowmem_reserve_ratio") == (256, 256, 32, 0, 0)


def test_read_snapshot_missing_zoneinfo(tmp_path: Path) -> None:
    with pytest.raises(ProcParseError) as info:
        read_snapshot(tmp_path)
    assert info.value.path.endswith("zoneinfo") and info.value.line is None


def test_read_snapshot_bad_optional_file(tmp_path: Path) -> None:
    shutil.copy(S00 / "zoneinfo", tmp_path / "zoneinfo")
    (tmp_path / "node0.cpulist").write_text("zero-one\n")
    with pytest.raises(ProcParseError) as info:
        read_snapshot(tmp_path)
    assert info.value.path.endswith("node0.cpulist")


def test_read_snapshot_binary_file(tmp_path: Path) -> None:
    (tmp_path / "zoneinfo").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ProcParseError):
        read_snapshot(tmp_path)


# ---- printer ----------------------------------------------------------------------------


REAL_ZONEINFOS = sorted(ORACLE.glob("**/zoneinfo"))


@pytest.mark.parametrize("real", REAL_ZONEINFOS, ids=lambda p: str(p.parent.relative_to(ORACLE)))
def test_format_round_trips_oracle_zoneinfo(real: Path) -> None:
    """Every line of a real 6.1 zoneinfo is read and printed back byte for byte."""
    printed = format_zoneinfo(zones_from_snapshot(read_snapshot(real.parent)), 5)
    assert printed == real.read_text()


def test_per_node_stats_sit_under_each_node_s_first_populated_zone() -> None:
    """Node 1 of the 2-node host has only Normal: its block is under Normal."""
    zones = read_snapshot(NUMA2).zones
    with_stats = [(z.nid, z.name) for z in zones if z.node_stats is not None]
    assert with_stats == [(0, "DMA"), (1, "Normal")]


def test_format_adds_boost_and_pads_protection() -> None:
    (zone,) = parse_zoneinfo(ZONE_TEXT, "zi")
    view = ObservedZone.from_snapshot(zone)
    boosted = ObservedZone(**{**view.__dict__, "watermark_boost": 5, "lowmem_reserve": (0, 7)})
    text = format_zoneinfo([boosted], nr_protection_entries=4)
    assert (
        "        boost    5\n        min      6\n        low      7\n        high     8\n" in text
    )
    assert "        protection: (0, 7, 7, 7)\n" in text
    assert text.startswith("Node 0, zone   Normal\n")
    assert text.endswith("  start_pfn:           4096\n")


def test_format_unpopulated_zone_has_no_pagesets() -> None:
    device = zones_from_snapshot(read_snapshot(S00))[4]
    assert format_zoneinfo([device]).splitlines()[-1] == "        protection: (0, 0, 0, 0, 0)"


def test_empty_zone_prints_as_the_kernel_prints_an_unpopulated_zone() -> None:
    """Node 1's DMA on the 2-node host: headline block and 5 zero protection entries."""
    text = (NUMA2 / "zoneinfo").read_text()
    real = text.split("Node 1, zone      DMA\n")[1].split("Node 1")[0]
    assert format_zoneinfo([EmptyZone(1, "DMA")]) == "Node 1, zone      DMA\n" + real


def test_zoneinfo_views_fill_every_zone_type_of_every_node() -> None:
    observed = [ObservedZone.from_snapshot(z) for z in read_snapshot(NUMA2).zones if z.present]
    keys = kernel_zone_keys([0, 1])
    views = list(zoneinfo_views(observed, keys))
    assert [(v.nid, v.name) for v in views] == keys and len(keys) == 10
    assert [v.present_pages > 0 for v in views] == [
        True, True, False, False, False, False, False, True, False, False]
    assert _modelled_lines(format_zoneinfo(views)) == _modelled_lines(text_of(NUMA2))


def text_of(snapshot: Path) -> str:
    return (snapshot / "zoneinfo").read_text()


def test_empty_optional_file_is_skipped_with_a_note(tmp_path: Path) -> None:
    """/proc/pagetypeinfo is mode 0400: a non-root copy is empty, like a missing file."""
    shutil.copy(S00 / "zoneinfo", tmp_path / "zoneinfo")
    (tmp_path / "pagetypeinfo").write_text("")
    snap = read_snapshot(tmp_path)
    assert snap.pagetypeinfo is None and snap.pageblock_order == 9
    assert snap.skipped == (f"{tmp_path / 'pagetypeinfo'}: empty file",)


@pytest.mark.parametrize(("field", "value", "bound"), [
    ("managed", 2000000, "present"),   # beyond the zone: used to crash in freelist.add
    ("managed", 4000, "present"),      # DMA present is 3998 in this snapshot
    ("present", 5000, "spanned"),
    ("pages free", 3999, "managed"),
])
def test_zoneinfo_counts_that_contradict_each_other(
    tmp_path: Path, field: str, value: int, bound: str
) -> None:
    lines = (S00 / "zoneinfo").read_text().splitlines(keepends=True)
    lineno = next(i for i, line in enumerate(lines, 1) if line.strip().startswith(field))
    lines[lineno - 1] = lines[lineno - 1].rstrip("\n").rsplit(" ", 1)[0] + f" {value}\n"
    with pytest.raises(ProcParseError) as info:
        parse_zoneinfo("".join(lines), "zoneinfo")
    assert info.value.line == lineno
    assert f"<= {bound}" in str(info.value) and "zone DMA" in str(info.value)
