"""``/proc`` files of other 5.x and 6.x kernels parse wherever their lines exist.

The samples in tests/data/kernels (see its README: each derived from that kernel's
printing code) are read, ``proc show`` and ``proc import`` work on each, and the lines
6.1 prints that a kernel did not are reported in a note, never an error.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from allocsim.cli import main
from simcore.formats.procfmt import ZoneInfo
from simcore.formats.procfs import read_snapshot

KERNELS = Path(__file__).resolve().parents[1] / "data" / "kernels"
VERSIONS = ("5.4", "5.10", "5.15", "6.6", "6.12")
ABSENT = {"5.4": ("boost", "cma"), "5.10": ("boost", "cma"), "5.15": ("boost",),
          "6.6": (), "6.12": ()}


def test_every_sample_is_documented() -> None:
    readme = (KERNELS / "README.md").read_text()
    assert sorted(p.name for p in KERNELS.iterdir() if p.is_dir()) == sorted(VERSIONS)
    for version in VERSIONS:
        assert f"| `{version}/` |" in readme


@pytest.mark.parametrize("version", VERSIONS)
def test_sample_parses(version: str) -> None:
    snap = read_snapshot(KERNELS / version)
    assert [z.name for z in snap.zones] == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    dma32 = snap.zones[1]
    assert (dma32.start_pfn, dma32.present, dma32.managed) == (4096, 126941, 110557)
    assert len(dma32.pcp) == 2 and dma32.zone_stats[0] == ("nr_free_pages", dma32.nr_free_pages)
    assert snap.zones[0].node_stats is not None and dma32.node_stats is None
    assert all(z.absent == ABSENT[version] for z in snap.zones)
    assert snap.vmstat["nr_free_pages"] > 0 and snap.pagetypeinfo is not None
    assert sum(snap.buddyinfo[(0, "Normal")]) > 0


@pytest.mark.parametrize("version", VERSIONS)
def test_proc_show_and_import_report_absent_lines(
    version: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = KERNELS / version
    assert main(["proc", "show", str(directory)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Node 0, zone      DMA\n")
    for line in ABSENT[version]:
        assert f"{directory / 'zoneinfo'}: no {line!r} line" in err
    assert err.count("\n") == len(ABSENT[version]) + (version == "5.15")
    assert main(["proc", "import", str(directory), "-o", str(tmp_path / "m.yaml")]) == 0
    machine = yaml.safe_load((tmp_path / "m.yaml").read_text())["machine"]
    assert machine["nodes"][0]["cpus"] == 2


def test_older_kernels_vmstat_names() -> None:
    """5.4 prints nr_unstable as a node stat, later kernels as a deprecated last line."""
    names_54 = list(read_snapshot(KERNELS / "5.4").vmstat)
    assert "nr_unstable" in names_54 and names_54[-1] != "nr_unstable"
    assert "workingset_refault" in names_54 and "pgalloc_device" not in names_54
    assert list(read_snapshot(KERNELS / "5.10").vmstat)[-1] == "nr_unstable"


def test_cma_kernel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """5.15 with CONFIG_CMA: the cma line, the CMA rows and column, and import accepts it."""
    snap = read_snapshot(KERNELS / "5.15")
    assert snap.zones[1].cma == 16384 and snap.zones[2].cma == 0
    info = snap.pagetypeinfo
    assert info is not None
    assert info.block_types == ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA",
                                "Isolate")
    assert info.block_counts[(0, "DMA32")][4] == 32
    assert info.free_counts[(0, "DMA32", "CMA")][0] == 8
    assert snap.vmstat["nr_free_cma"] == 1560 and "cma_alloc_success" in snap.vmstat
    assert main(["proc", "import", str(KERNELS / "5.15"), "-o", str(tmp_path / "m.yaml")]) == 0
    assert "node 0 DMA32 has 32 CMA pageblocks" in capsys.readouterr().err
    assert yaml.safe_load((tmp_path / "m.yaml").read_text())["machine"]["cma"] is True


def test_promo_watermark_of_6_12() -> None:
    zone = read_snapshot(KERNELS / "6.12").zones[1]
    assert zone.wmark_promo == zone.wmark_high + (zone.wmark_high - zone.wmark_low)
    assert ZoneInfo.from_snapshot(zone).watermark[3] == zone.wmark_promo
    assert read_snapshot(KERNELS / "6.6").zones[1].wmark_promo is None
