"""The memory map: zones with holes, x86 layouts, present ranges and reserved placement.

The model's pfns must be the host's: a zone spans its holes (x86 DMA32 runs to 4 GiB past
the PCI hole), pageblocks in holes hold no pages, and the pages a real trace allocates are
managed pages of the machine built from that host's snapshot.
"""

from __future__ import annotations

import lzma
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.config.machine import format_range
from simcore.config.parse import parse_config
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.errors import ConfigError
from simcore.formats.procfs import read_snapshot
from simcore.formats.procmachine import machine_from_proc, read_iomem
from simcore.formats.snapshots import pagetypeinfo_tables
from simcore.mm.constants import MIGRATE_TYPES, MT_MOVABLE, MT_UNMOVABLE
from simcore.mm.gfp import GFP
from simcore.mm.invariants import check_invariants
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.topology import layout_machine, x86_ranges
from simcore.sim.machine import Machine

DATA = Path(__file__).parent.parent / "data" / "oracle"
GiB = 1 << 18  # pages


def _config(machine: object, sysctl: object = None) -> dict[str, object]:
    doc: dict[str, object] = {"name": "m", "seed": 1, "duration": "1s", "machine": machine}
    if sysctl is not None:
        doc["sysctl"] = sysctl
    return doc


def _zones(mm: PageAllocator) -> list[tuple[str, int, int, int, int]]:
    return [(z.name, z.zone_start_pfn, z.spanned_pages, z.present_pages, z.managed_pages)
            for z in mm.zones]


def _free_pfns(mm: PageAllocator) -> np.ndarray:
    free = np.zeros(mm.pages.nr_pages, dtype=bool)
    for zone in mm.zones:
        for order in range(zone.max_order + 1):
            for mt in range(MIGRATE_TYPES):
                for pfn in zone.free_area.iter_list(order, mt):
                    free[pfn : pfn + (1 << order)] = True
    return free


# -- the x86 layout -----------------------------------------------------------------------
def test_x86_layout_puts_the_pci_hole_inside_dma32() -> None:
    """QEMU's pc machine with 1 GiB, 512 MiB below 4 GiB: the oracle host's map."""
    cfg = parse_config(_config({"layout": "x86", "below_4g": "512MiB",
                                "nodes": [{"memory": "1GiB", "cpus": 2}]}), "t.yaml")
    mm = PageAllocator(cfg.machine, cfg.sysctl)
    assert _zones(mm) == [
        ("DMA", 1, 4095, 3998, 3998),  # 0x9f..0xff is the PC hole
        ("DMA32", 4096, 1044480, 126976, 126976),  # spans to 4 GiB; memory ends at 512 MiB
        ("Normal", 1048576, 131072, 131072, 131072),
    ]
    free = _free_pfns(mm)
    assert free[1:0x9F].all() and not free[0x9F:0x100].any()
    assert free[0x100:0x20000].all() and not free[0x20000:0x100000].any()
    assert free[0x100000:0x120000].all()
    # pageblocks of the hole hold no pages: no zone, and pagetypeinfo skips them
    assert all(mm.pb_zone[pb] == 255 for pb in range(0x20000 >> 9, 0x100000 >> 9))
    info = pagetypeinfo_tables(mm.zones)
    assert [sum(info.block_counts[(0, z)]) for z in ("DMA", "DMA32", "Normal")] == \
        [8, 248, 256]
    check_invariants(mm, {})


def test_compaction_never_scans_the_hole() -> None:
    """pageblock_pfn_to_page() finds no struct page in the PCI hole: both scanners skip
    its 1,792 pageblocks, so a whole-zone pass scans at most the zone's present pages."""
    cfg = parse_config(_config({"layout": "x86", "below_4g": "256MiB",
                                "nodes": [{"memory": "512MiB", "cpus": 1}]}), "t.yaml")
    m = Machine(cfg.machine, cfg.sysctl, seed=1)
    held = []
    movable = int(GFP.MOVABLE | GFP.HIGHMEM)  # no reclaim bits: kswapd stays asleep
    while (h := m.alloc_now("fill", movable, 0, 0)) is not None:
        held.append(h)
    for h in held[::2]:
        m.free(h)
    m.apply_pending_frees()
    m.mm.drain_all_pages()
    m.mm.reclaim.compaction.compact_node(0, 0)
    vm = m.mm.vm.as_dict()
    dma32 = m.mm.zones[1]
    assert dma32.spanned_pages > 15 * dma32.present_pages
    scanned = vm["compact_migrate_scanned"] + vm["compact_free_scanned"]
    assert 0 < scanned <= 2 * sum(z.present_pages for z in m.mm.zones)
    assert vm["compact_stall"] == 0 and vm["pgmigrate_success"] > 0
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})


def test_x86_default_split_follows_qemu() -> None:
    assert x86_ranges(2 * GiB, None)[-1] == (0x100, 2 * GiB)  # all below 4 GiB
    assert x86_ranges(4 * GiB, None)[-1] == (1 << 20, (1 << 20) + GiB)  # 3 GiB + 1 GiB


def test_a_pageblock_whose_first_pfn_is_not_ram_starts_unmovable() -> None:
    """memmap_init_range() labels blocks only at present aligned pfns (behaviour 13)."""
    cfg = parse_config(_config({"nodes": [{"present": ["0x1000-0x9efff", "0x100000-0x3ffffff"],
                                           "cpus": 1}]}), "t.yaml")
    mm = PageAllocator(cfg.machine, cfg.sysctl)
    assert mm.pageblock_mt[0] == MT_UNMOVABLE  # pfn 0 is not RAM
    assert set(mm.pageblock_mt[1 : 0x4000 >> 9]) == {MT_MOVABLE}
    dma = mm.zones[0]
    assert list(dma.free_area.iter_list(8, MT_UNMOVABLE)) == [0x100]
    assert dma.managed_pages == 0x9E + 0xF00


# -- present ranges and reserved pages in a config --------------------------------------
def test_present_ranges_and_per_zone_reserved() -> None:
    node = {"present": ["0x1000-0x9efff", "0x100000-0x7fffffff", "0x100000000-0x13fffffff"],
            "reserved": {"DMA": "632KiB", "DMA32": "64MiB", "Normal": "2MiB"},
            "reserved_at": ["0x1000000-0x1ffffff"], "cpus": 2}
    cfg = parse_config(_config({"nodes": [node]}), "t.yaml")
    spans = layout_machine(cfg.machine)
    dma, dma32, normal = spans
    assert dma.reserved() == ((1, 0x9F),)  # the first 1 MiB, as x86 reserves it
    # DMA32: the known 16 MiB (the kernel image) first, the rest at the top of RAM
    assert dma32.reserved() == ((0x1000, 0x2000), (0x80000 - 12288, 0x80000))
    assert normal.reserved() == ((0x140000 - 512, 0x140000),)
    assert [s.managed_pages for s in spans] == [3840, 0x7F000 - 16384, GiB - 512]
    mm = PageAllocator(cfg.machine, cfg.sysctl)
    free = _free_pfns(mm)
    assert not free[0x1000:0x2000].any() and free[0x2000:0x80000 - 12288].all()


@pytest.mark.parametrize(("node", "key", "word"), [
    ({"present": ["0x1000-0x9efff"], "memory": "1GiB"}, "machine.nodes[0].memory",
     "size of the present ranges"),
    ({"present": ["0x1001-0x9efff"]}, "machine.nodes[0].present[0]", "page aligned"),
    ({"present": ["0x1000-0x9f000"]}, "machine.nodes[0].present[0]", "END inclusive"),
    ({"present": ["0x100000-0x1ffffff", "0x1000-0x9efff"]}, "machine.nodes[0].present[1]",
     "ascending"),
    ({"present": ["0x1000000-0x3ffffff"], "reserved": {"DMA": "1MiB"}},
     "machine.nodes[0].reserved.DMA", "present memory"),
    ({"present": ["0x1000000-0x3ffffff"], "reserved": {"Highmem": "1MiB"}},
     "machine.nodes[0].reserved.Highmem", "DMA, DMA32, Normal, Movable"),
    ({"cpus": 1}, "machine.nodes[0].memory", "required unless"),
])
def test_bad_memory_maps_name_the_key(node: dict[str, object], key: str, word: str) -> None:
    node = {"cpus": 1, **node}
    with pytest.raises(ConfigError) as info:
        parse_config(_config({"nodes": [node]}), "t.yaml")
    assert info.value.key == key and word in str(info.value)


def test_nodes_may_not_overlap() -> None:
    nodes = [{"present": ["0x1000000-0x4ffffff"]}, {"present": ["0x4000000-0x7ffffff"]}]
    with pytest.raises(ConfigError, match="do not overlap node 0"):
        parse_config(_config({"nodes": nodes}), "t.yaml")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 300)), min_size=1, max_size=4),
       st.integers(0, 3), st.integers(0, 600))
def test_any_memory_map_boots_with_every_managed_page_free_once(
    gaps_and_sizes: list[tuple[int, int]], skew: int, reserved: int
) -> None:
    """Conservation: at boot, free pages == managed pages, none in a hole or reserved."""
    ranges, pfn = [], 4096 + skew * 37
    for gap, size in gaps_and_sizes:
        pfn += gap * 97
        ranges.append((pfn, pfn + size * 61))
        pfn += size * 61
    ranges.append((1 << 20, (1 << 20) + 8192))  # enough memory to group by mobility
    node = NodeConfig(memory_pages=sum(hi - lo for lo, hi in ranges), cpus=1,
                      present=tuple(ranges), reserved_pages=reserved)
    mm = PageAllocator(MachineConfig(nodes=(node,)), SysctlConfig())
    free = _free_pfns(mm)
    present = np.zeros(mm.pages.nr_pages, dtype=bool)
    for lo, hi in ranges:
        present[lo:hi] = True
    assert not (free & ~present).any()
    assert int(free.sum()) == sum(z.managed_pages for z in mm.zones)
    assert int(present.sum()) - int(free.sum()) == reserved
    check_invariants(mm, {})


# -- machines from real snapshots ---------------------------------------------------------
@pytest.mark.parametrize("run", ["boot-idle/start", "hugetlb-fresh/start",
                                 "boot-idle-numa2/start"])
def test_snapshot_zones_are_the_hosts(run: str) -> None:
    snap = read_snapshot(DATA / run)
    cfg, sysctl = machine_from_proc(DATA / run)
    mm = PageAllocator(cfg, sysctl)
    want = [(z.name, z.start_pfn, z.spanned, z.present, z.managed)
            for z in snap.zones if z.present]
    assert _zones(mm) == want
    assert snap.pagetypeinfo is not None
    info = pagetypeinfo_tables(mm.zones)
    for key, counts in snap.pagetypeinfo.block_counts.items():
        assert sum(info.block_counts[key]) == sum(counts), key  # holes hold no pageblock
    assert sysctl.min_free_kbytes == snap.sysctl_int("min_free_kbytes")


def _trace_blocks(path: Path) -> list[tuple[int, int]]:
    pat = re.compile(r"mm_page_(?:alloc|free): .*pfn=0x([0-9a-f]+) order=(\d+)")
    with lzma.open(path, "rt") as f:
        return [(int(m.group(1), 16), int(m.group(2))) for line in f
                if (m := pat.search(line)) and int(m.group(1), 16)]


def test_real_trace_pfns_are_in_the_layout_s_ram() -> None:
    """Every block the host allocated or freed lies in the zones' present memory, none
    in a hole; the pages the model leaves unmanaged are the only misses, and few."""
    cfg, _ = machine_from_proc(DATA / "hugetlb-fresh" / "start")
    spans = layout_machine(cfg)
    present = np.zeros(0x120000, dtype=bool)
    managed = np.zeros(0x120000, dtype=bool)
    for span in spans:
        for lo, hi in span.present():
            present[lo:hi] = True
        for lo, hi in span.managed():
            managed[lo:hi] = True
    blocks = _trace_blocks(DATA / "hugetlb-fresh" / "trace.txt.xz")
    assert len(blocks) > 400
    assert all(present[p : p + (1 << o)].all() for p, o in blocks)
    misses = sum(not managed[p : p + (1 << o)].all() for p, o in blocks)
    assert misses < 0.05 * len(blocks)


def test_from_proc_config_and_proc_import_agree(tmp_path: Path) -> None:
    from allocsim.procimport import import_machine

    snap_dir = DATA / "boot-idle-numa2" / "start"
    out = tmp_path / "machine.yaml"
    import_machine(snap_dir, out)
    doc = yaml.safe_load(out.read_text())
    imported = parse_config({**_config(doc["machine"]), "sysctl": doc["sysctl"]}, str(out))
    direct = parse_config(_config({"from_proc": str(snap_dir)},
                                  {"watermark_scale_factor": 25}), "t.yaml")
    assert imported.machine == direct.machine
    assert layout_machine(imported.machine) == layout_machine(direct.machine)
    assert direct.sysctl.watermark_scale_factor == 25  # the file's own keys win
    assert imported.sysctl.min_free_kbytes == direct.sysctl.min_free_kbytes == 45104
    assert [n.cpus for n in direct.machine.nodes] == [1, 1]


def test_from_proc_refuses_topology_keys_and_missing_dirs(tmp_path: Path) -> None:
    snap_dir = str(DATA / "boot-idle" / "start")
    with pytest.raises(ConfigError) as info:
        parse_config(_config({"from_proc": snap_dir, "nodes": []}), "t.yaml")
    assert info.value.key == "machine.nodes"
    with pytest.raises(ConfigError) as info:
        parse_config(_config({"from_proc": "no-such-dir"}), str(tmp_path / "t.yaml"))
    assert info.value.key == "machine.from_proc" and "zoneinfo" in str(info.value)


def test_iomem_gives_the_exact_map_and_the_kernel_image(tmp_path: Path) -> None:
    iomem = tmp_path / "iomem"
    iomem.write_text(
        "00000000-00000fff : Reserved\n"
        "00001000-0009efff : System RAM\n"
        "000a0000-000bffff : PCI Bus 0000:00\n"
        "00100000-1ffd9fff : System RAM\n"
        "  0c000000-0d0025c6 : Kernel code\n"
        "  0d200000-0dbc1fff : Kernel rodata\n"
        "1ffda000-1fffffff : Reserved\n"
        "100000000-11fffffff : System RAM\n")
    ram, kernel = read_iomem(iomem)
    assert ram == [(1, 0x9F), (0x100, 0x1FFDA), (0x100000, 0x120000)]
    assert kernel == [(0xC000, 0xD003), (0xD200, 0xDBC2)]
    unreadable = tmp_path / "iomem0"
    unreadable.write_text("00000000-00000000 : System RAM\n")
    assert read_iomem(unreadable) == (None, [])
    assert format_range((0x100, 0x1FFDA)) == "0x100000-0x1ffd9fff"
