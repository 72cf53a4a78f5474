"""The pageblock census per zone, the end-of-run pageblock map and the pollution instants.

Writer side of issue 12: ``zonestat``'s ``pageblocks_*`` columns, ``trace/pageblocks.parquet``
and the ``pageblock_polluted`` spans (simcore.sim.pollution, simcore.sim.pageblock_map).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from allocsim.run import simulate
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats import trace_schema as ts
from simcore.mm.constants import MIGRATETYPE_NAMES, MT_CMA, MT_MOVABLE
from simcore.mm.gfp import GFP, GFP_KERNEL, GFP_NOWAIT
from simcore.mm.lru import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, SLAB
from simcore.mm.pages import (
    MT_SHIFT,
    ORDER_MASK,
    PG_ALLOC,
    PG_BUDDY,
    PG_MOVABLE_OWNER,
    PG_RESERVED,
    PG_TAIL,
)
from simcore.sim.machine import Machine
from simcore.sim.pageblock_map import pageblock_columns, string_names
from simcore.sim.pollution import (
    machine_census,
    mixed_pageblocks,
    pageblock_census,
    pollution_summary,
    rescan_census,
)
from workloads.registry import load_experiment

KERNEL = int(GFP_KERNEL)
MOVABLE_NOWAIT = int(GFP_NOWAIT | GFP.MOVABLE)
RECLAIMABLE = int(GFP_KERNEL | GFP.RECLAIMABLE)
THP = int(GFP_NOWAIT | GFP.MOVABLE | GFP.COMP)

# Page cache fills a 64 MiB box while two kernel callers allocate: reclaim leaves holes
# in movable pageblocks, and fallbacks pollute blocks charged to three callers (seed 5).
CONFIG = """\
# Pageblock census test: a 64 MiB box under page-cache pressure, with kernel callers.
name: census
seed: 5
duration: 600ms
machine:
  nodes:
    - memory: 64MiB
      cpus: 2
trace:
  events: true
  snapshot_interval: {interval}
workloads:
  - name: cache
    type: synthetic
    rate: 60000/s
    order: 0
    lifetime: {{exponential: 1s}}
    gfp: GFP_HIGHUSER_MOVABLE
    memory: file
  - name: slab
    type: synthetic
    rate: 3000/s
    order: {{0: 0.8, 1: 0.2}}
    lifetime: {{exponential: 300ms}}
    gfp: GFP_KERNEL
  - name: dentry
    type: synthetic
    rate: 2000/s
    order: 0
    lifetime: {{exponential: 300ms}}
    gfp: GFP_KERNEL|__GFP_RECLAIMABLE
"""


def _run(tmp: Path, interval: str) -> Path:
    path = tmp / f"census-{interval}.yaml"
    path.write_text(CONFIG.format(interval=interval))
    return simulate(load_experiment(path), tmp / interval, report=False).run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("census"), "20ms")


def _summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / ts.SUMMARY_FILE).read_text())


def _table(run_dir: Path, name: str) -> Any:
    return pq.read_table(run_dir / name).to_pandas()


def _polluted(run_dir: Path) -> Any:
    spans = _table(run_dir, ts.SPANS_FILE)
    return spans[spans["name"].astype(str) == ts.SPAN_PAGEBLOCK_POLLUTED]


# -- reference: the census page by page ---------------------------------------------------
def _reference_census(m: Machine) -> list[tuple[str, list[str], list[bool]]]:
    """Per zone: (name, class per pageblock, foreign per pageblock), from block ranges.

    Independent of the vectorised code: every allocation marks each pageblock its pages
    cover, every free buddy block of order >= pageblock order each pageblock it covers.
    """
    mm = m.mm
    pb = mm.pageblock_order
    flags, info = mm.pages.flags_np, mm.pages.info_np
    out = []
    for zone in mm.zones:
        lo, hi = zone.zone_start_pfn, zone.end_pfn
        first = lo >> pb
        n = ((hi - 1) >> pb) - first + 1 if hi > lo else 0
        alloc, held, foreign, free = ([False] * n for _ in range(4))
        for pfn in range(lo, hi):
            f = int(flags[pfn])
            order = int(info[pfn]) & ORDER_MASK
            end = min(pfn + (1 << order), hi)
            blocks = range((pfn >> pb) - first, ((end - 1) >> pb) - first + 1)
            if f & PG_BUDDY and order >= pb:
                for b in blocks:
                    free[b] = True
            if not f & PG_ALLOC or f & (PG_TAIL | PG_RESERVED):
                continue
            mt = int(info[pfn]) >> MT_SHIFT
            stuck = not _compaction_would_migrate(m, zone.nid, pfn, f, order)
            for b in blocks:
                alloc[b] = True
                held[b] |= stuck
                foreign[b] |= mt != zone.get_pageblock_migratetype((b + first) << pb)
        classes = [ts.CENSUS_UNMOVABLE if held[b] else ts.CENSUS_MOVABLE_ONLY if alloc[b]
                   else ts.CENSUS_FREE if free[b] else ts.CENSUS_NO_ALLOCATION
                   for b in range(n)]
        out.append((zone.name, classes, foreign))
    return out


def _compaction_would_migrate(m: Machine, nid: int, pfn: int, f: int, order: int) -> bool:
    """The scalar test of isolate_migratepages_block(), page by page (on_list(), not the
    vectorised lists_of()): an order-0 LRU page not pinned, or a __PageMovable() one."""
    if order:
        return False
    where = m.mm.reclaim.lruvecs[nid].on_list(pfn)
    if 0 <= where < SLAB:
        anon = where in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON)
        return not (anon and int(m.mm.pages.ref_np[pfn]) > 1)
    return where < 0 and bool(f & PG_MOVABLE_OWNER)


def _machine(pages: int = 64 << 8) -> Machine:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=pages, cpus=2),))
    return Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=3)


def _census_names(m: Machine) -> list[tuple[str, list[str], list[bool]]]:
    return [(zc.zone.name, [ts.CENSUS_CLASSES[c] for c in zc.census.tolist()],
             zc.foreign.tolist()) for zc in machine_census(m.mm)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_the_census_matches_a_page_by_page_reference(seed: int) -> None:
    m = _machine()
    rng = np.random.default_rng(seed)
    held = []
    masks = (KERNEL, MOVABLE_NOWAIT, RECLAIMABLE, THP)
    pb = m.mm.pageblock_order
    for _ in range(300):
        if held and rng.random() < 0.4:
            m.free(held.pop(int(rng.integers(len(held)))))
            continue
        gfp = masks[int(rng.integers(len(masks)))]
        order = int(rng.choice([0, 0, 0, 1, 3, pb, pb + 1]))
        h = m.alloc_now(f"c{int(rng.integers(3))}", gfp, order, int(rng.integers(2)))
        if h is not None:
            held.append(h)
    if rng.random() < 0.5:
        m.mm.drain_all_pages()
    assert _census_names(m) == _reference_census(m)


# -- hand-built cases -----------------------------------------------------------------------
def _class_of(m: Machine, pfn: int) -> tuple[str, bool]:
    pb = m.mm.pageblock_order
    for zc in machine_census(m.mm):
        if zc.zone.spans(pfn):
            return ts.CENSUS_CLASSES[zc.census[(pfn >> pb) - zc.first]], bool(
                mixed_pageblocks(m.mm)[pfn >> pb])
    raise AssertionError(f"no zone spans {pfn}")


def test_a_huge_page_a_kernel_page_and_a_relabelled_block() -> None:
    m = _machine()
    huge = m.alloc_now("thp", THP, m.mm.pageblock_order, 0)
    kernel = m.alloc_now("kernel", KERNEL, 0, 0)  # claims a whole free block: clean
    small = m.alloc_now("user", MOVABLE_NOWAIT, 0, 0)
    assert huge is not None and kernel is not None and small is not None
    # a THP is MOVABLE, but compaction does not migrate compound pages: it holds its block
    assert _class_of(m, huge.pfn) == (ts.CENSUS_UNMOVABLE, False)
    assert _class_of(m, kernel.pfn) == (ts.CENSUS_UNMOVABLE, False)
    assert _class_of(m, small.pfn) == (ts.CENSUS_MOVABLE_ONLY, False)
    m.mm.pages.ref[small.pfn] = 2  # an extra reference: a pinned anon page stays put ...
    assert _class_of(m, small.pfn) == (ts.CENSUS_MOVABLE_ONLY, False)  # ... on an LRU only
    m.mm.pages.ref[small.pfn] = 1
    # relabelled MOVABLE behind the machine's back: mixed, charged to nobody
    m.mm.zones[-1].set_pageblock_migratetype(kernel.pfn, MT_MOVABLE)
    assert _class_of(m, kernel.pfn) == (ts.CENSUS_UNMOVABLE, True)
    census, mixed = scan = rescan_census(m)
    cols = pageblock_columns(m, census, mixed)
    names = string_names(m, census)
    pb = m.mm.pageblock_order
    row = int(np.flatnonzero(cols["pfn"] == kernel.pfn >> pb << pb)[0])
    assert names["caller"][cols["caller"][row]] == ""
    assert names["migratetype"][cols["migratetype"][row]] == "Movable"
    assert (names["census"][cols["census"][row]], cols["mixed"][row]) == (ts.CENSUS_UNMOVABLE, 1)
    assert pollution_summary(m, scan)["by_caller"] == {"(unattributed)": 1}
    assert not [s for s in m.spans.columns.cols["name"] if s == ts.SPAN_PAGEBLOCK_POLLUTED]


def test_an_unmovable_page_placed_in_a_movable_block_makes_it_unmovable_and_mixed() -> None:
    m = _machine()
    pb = m.mm.pageblock_order
    held = []
    while (h := m.alloc_now("filler", MOVABLE_NOWAIT, 0, 0)) is not None:
        held.append(h)
    for h in sorted(held, key=lambda h: h.pfn)[::3]:  # a third free: steals claim nothing
        m.free(h)
    for _ in range(2000):
        k = m.alloc_now("kernel", KERNEL, 0, 0)
        assert k is not None
        if m.mm.page_zone(k.pfn).get_pageblock_migratetype(k.pfn) == MT_MOVABLE:
            break
    else:
        raise AssertionError("no kernel page landed in a movable pageblock")
    assert _class_of(m, k.pfn) == (ts.CENSUS_UNMOVABLE, True)
    assert m._owner_list[m.pb_polluter[k.pfn >> pb]].name == "kernel"
    c = m.spans.columns.cols
    instants = [(c["caller"][i], c["detail"][i], c["pages"][i], c["start_ns"][i], c["end_ns"][i])
                for i in range(m.spans.rows) if c["name"][i] == ts.SPAN_PAGEBLOCK_POLLUTED]
    zone = m.mm.page_zone(k.pfn).name
    assert ("kernel", f"pfn={k.pfn >> pb << pb} zone={zone}", 1 << pb, 0, 0) in instants
    assert Counter(i[0] for i in instants) == Counter(
        {o.name: o.polluted for o in m._owner_list if o.polluted})


def test_the_summary_census_per_node_is_the_sum_of_its_zones() -> None:
    cfg = MachineConfig(nodes=(NodeConfig(memory_pages=32 << 8, cpus=1),
                               NodeConfig(memory_pages=32 << 8, cpus=1)))
    m = Machine(cfg, SysctlConfig(compaction_proactiveness=0), seed=3)
    for cpu in (0, 1):
        m.alloc_now("kernel", KERNEL, 0, cpu)
        m.alloc_now("thp", THP, m.mm.pageblock_order, cpu)
    census = machine_census(m.mm)
    mixed = mixed_pageblocks(m.mm, census)
    by_node = pageblock_census(m.mm, mixed, census)
    expected: dict[str, Counter[str]] = {}
    for zone, (_, classes, _) in zip(m.mm.zones, _reference_census(m), strict=True):
        expected.setdefault(str(zone.nid), Counter()).update(
            {"pageblocks": len(classes), **Counter(classes)})
    for nid, counts in by_node.items():
        assert {k: v for k, v in counts.items() if v and k != "mixed"} == dict(expected[nid])
        # the kernel page's pageblock and the THP's (compaction migrates neither)
        assert counts["movable_only"] == 0 and counts["unmovable"] == 2


# -- a whole run ----------------------------------------------------------------------------
def test_zonestat_census_per_node_is_the_summary_census(run_dir: Path) -> None:
    zonestat = _table(run_dir, ts.ZONESTAT_FILE)
    last = zonestat[zonestat["time_ns"] == zonestat["time_ns"].max()]
    by_node = _summary(run_dir)["pollution"]["by_node"]
    sums = last.groupby("nid")[["pageblocks_movable_only", "pageblocks_unmovable",
                                "pageblocks_mixed"]].sum()
    for nid, counts in by_node.items():
        row = sums.loc[int(nid)]
        assert (row["pageblocks_movable_only"], row["pageblocks_unmovable"],
                row["pageblocks_mixed"]) == (counts["movable_only"], counts["unmovable"],
                                             counts["mixed"])
    # the census moves during the run: page cache fills movable blocks
    assert zonestat["pageblocks_movable_only"].nunique() > 1
    assert (zonestat["pageblocks_movable_only"] + zonestat["pageblocks_unmovable"]
            <= zonestat["managed_pages"] // 512 + 2).all()


def test_the_pageblock_map_matches_zonestat_and_the_summary(run_dir: Path) -> None:
    blocks = _table(run_dir, ts.PAGEBLOCKS_FILE)
    summary = _summary(run_dir)
    pollution = summary["pollution"]
    m = Machine.from_config(load_experiment(run_dir / ts.CONFIG_FILE))
    pb = m.mm.pageblock_order
    assert len(blocks) == sum(((z.end_pfn - 1) >> pb) - (z.zone_start_pfn >> pb) + 1
                              for z in m.mm.zones if z.end_pfn > z.zone_start_pfn)
    assert list(blocks.columns) == [n for n, _ in ts.PAGEBLOCKS_COLUMNS]
    schema = pq.read_schema(run_dir / ts.PAGEBLOCKS_FILE)
    assert all(pa.types.is_dictionary(schema.field(n).type)
               for n, t in ts.PAGEBLOCKS_COLUMNS if t == "string")
    for col in ("zone", "migratetype", "census", "caller"):
        blocks[col] = blocks[col].astype(str)
    assert set(blocks["census"]) <= set(ts.CENSUS_CLASSES)
    assert set(blocks["migratetype"]) <= set(MIGRATETYPE_NAMES)
    assert (blocks["pfn"] % (1 << pb) == 0).all()
    for _, zone in blocks.groupby(["nid", "zone"]):
        assert zone["pfn"].is_monotonic_increasing and zone["pfn"].is_unique
    # the census of each zone is the last zonestat row's
    zonestat = _table(run_dir, ts.ZONESTAT_FILE)
    last = zonestat[zonestat["time_ns"] == zonestat["time_ns"].max()]
    for _, row in last.iterrows():
        zone = blocks[(blocks["nid"] == row["nid"]) & (blocks["zone"] == str(row["zone"]))]
        counts = Counter(zone["census"])
        assert counts[ts.CENSUS_MOVABLE_ONLY] == row["pageblocks_movable_only"]
        assert counts[ts.CENSUS_UNMOVABLE] == row["pageblocks_unmovable"]
        assert zone["mixed"].sum() == row["pageblocks_mixed"]
    # the free pageblocks are the free huge pages /proc/buddyinfo shows
    assert sum(n["free"] for n in pollution["by_node"].values()) == (
        blocks["census"] == ts.CENSUS_FREE).sum()
    mixed = blocks[blocks["mixed"] == 1]
    assert mixed["pfn"].nunique() == pollution["mixed_pageblocks"] >= 3
    types = Counter("Movable" if t == MIGRATETYPE_NAMES[MT_CMA] else t
                    for t in mixed.drop_duplicates("pfn")["migratetype"])
    assert {k: v for k, v in pollution["mixed_by_pageblock_type"].items() if v} == dict(types)
    charged = mixed.drop_duplicates("pfn")
    callers = Counter(c if c else "(unattributed)" for c in charged["caller"])
    assert dict(callers) == pollution["by_caller"]
    assert (blocks[blocks["mixed"] == 0]["caller"] == "").all()


def test_polluted_instants_per_caller_are_the_charges(run_dir: Path) -> None:
    polluted = _polluted(run_dir)
    charged = _summary(run_dir)["pollution"]["charged_by_caller"]
    assert len(charged) >= 2
    assert dict(Counter(polluted["caller"].astype(str))) == charged
    assert (polluted["start_ns"] == polluted["end_ns"]).all()
    assert (polluted["pages"] == 512).all()
    zones = set(_table(run_dir, ts.ZONESTAT_FILE)["zone"].astype(str))
    for detail in polluted["detail"].astype(str):
        match = re.fullmatch(r"pfn=(\d+) zone=(\w+)", detail)
        assert match and int(match[1]) % 512 == 0 and match[2] in zones
    # charged blocks that are still mixed at the end keep their caller in the map
    blocks = _table(run_dir, ts.PAGEBLOCKS_FILE)
    blocks["caller"] = blocks["caller"].astype(str)
    charged_pfns = {(int(re.search(r"pfn=(\d+)", d)[1]), c)  # type: ignore[index]
                    for d, c in zip(polluted["detail"].astype(str),
                                    polluted["caller"].astype(str), strict=True)}
    for pfn, caller in zip(blocks["pfn"], blocks["caller"], strict=True):
        if caller:
            assert (pfn, caller) in charged_pfns


def test_snapshots_change_no_event_and_no_charge(run_dir: Path, tmp_path: Path) -> None:
    other = _run(tmp_path, "7ms")
    assert pq.read_table(other / ts.EVENTS_FILE).equals(pq.read_table(run_dir / ts.EVENTS_FILE))
    polluted = _polluted(run_dir)[["caller", "start_ns", "detail"]].astype(str)
    again = _polluted(other)[["caller", "start_ns", "detail"]].astype(str)
    assert polluted.reset_index(drop=True).equals(again.reset_index(drop=True))
    assert _table(other, ts.PAGEBLOCKS_FILE).equals(_table(run_dir, ts.PAGEBLOCKS_FILE))
