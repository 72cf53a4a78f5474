"""Isolated pageblocks and the migratetype numbers the user sees.

free_pcppages_bulk() re-reads the pageblock type while the zone has isolated pageblocks
(``zone->nr_isolate_pageblock``), so a pcp page of a pageblock isolated meanwhile goes
to the ISOLATE list and stays out of NR_FREE_PAGES. The trace writes migratetypes in
the kernel's numbering for the machine's ``CONFIG_CMA``: ISOLATE is 4 without CMA (the
oracle kernel), 5 with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

from simcore.config.parse import dump_config, parse_config
from simcore.formats import trace_schema as ts
from simcore.mm.constants import MigrateType, kernel_migratetype_numbers
from simcore.mm.gfp import GFP_KERNEL
from simcore.mm.invariants import check_invariants
from simcore.mm.page_isolation import set_migratetype_isolate, unset_migratetype_isolate
from simcore.mm.tracepoints import Tracer
from simcore.sim.recorder import SnapshotRecorder
from simcore.sim.tracer import RecordingTracer

if TYPE_CHECKING:
    from conftest import CallLog, Lab

    from simcore.mm.page_alloc import PageAllocator

UNMOV = int(MigrateType.UNMOVABLE)
MOV = int(MigrateType.MOVABLE)
ISOLATE = int(MigrateType.ISOLATE)
KERNEL = int(GFP_KERNEL)


def _pcp_page_then_isolate(lab: Lab, tracer: Tracer | None, cma: bool = False
                           ) -> tuple[PageAllocator, int]:
    """Free one UNMOVABLE page to the pcp, then isolate its pageblock under it."""
    mm = lab.machine(tracer=tracer, cma=cma)
    zone = mm.zones[1]
    lab.pcp_batch(zone, 1)
    pfn = mm.alloc_pages(KERNEL, 0, 0, 0)  # steals an order-10 block: pageblocks UNMOVABLE
    mm.free_pages(pfn, 0, 0)
    assert zone.per_cpu_pageset[0].entries(UNMOV) == [pfn << 3 | UNMOV]
    free = zone.nr_free_pages
    assert set_migratetype_isolate(zone, pfn)
    assert not set_migratetype_isolate(zone, pfn)  # -EBUSY: already isolated
    assert zone.nr_isolate_pageblock == 1
    assert zone.nr_free_pages == free - 511  # the rest of the pageblock, now ISOLATE
    check_invariants(mm, {})
    return mm, pfn


def test_pcp_drain_rereads_an_isolated_pageblock(lab: Lab, call_log: CallLog) -> None:
    mm, pfn = _pcp_page_then_isolate(lab, call_log)
    zone = mm.zones[1]
    free = zone.nr_free_pages
    zone.per_cpu_pageset[0].drain()
    (drain,) = call_log.named("mm_page_pcpu_drain")
    assert drain[1:] == (pfn, 0, ISOLATE)  # not the cached UNMOVABLE
    assert zone.nr_free_pages == free  # ISOLATE pages are not free pages
    # merged with the isolated rest of its pageblock, on the ISOLATE list
    assert lab.blocks(zone)[pfn] == (9, ISOLATE)
    check_invariants(mm, {})


def test_unset_isolation_merges_back_and_counts_free(lab: Lab) -> None:
    mm, pfn = _pcp_page_then_isolate(lab, None)
    zone = mm.zones[1]
    zone.per_cpu_pageset[0].drain()
    free = zone.nr_free_pages
    unset_migratetype_isolate(zone, pfn, UNMOV)
    assert zone.nr_isolate_pageblock == 0
    assert zone.nr_free_pages == free + 512
    # __isolate_free_page() + __putback_isolated_page(): merged with its free buddy
    assert lab.blocks(zone)[pfn] == (10, UNMOV)
    unset_migratetype_isolate(zone, pfn, MOV)  # not isolated: nothing happens
    assert zone.get_pageblock_migratetype(pfn) == UNMOV
    check_invariants(mm, {})


def test_isolating_a_free_max_order_block_round_trips(lab: Lab) -> None:
    mm = lab.machine()
    zone = mm.zones[1]
    before = lab.blocks(zone)
    free = zone.nr_free_pages
    pfn = 8192
    assert before[pfn] == (10, MOV)
    set_migratetype_isolate(zone, pfn)
    assert lab.blocks(zone)[pfn] == (10, ISOLATE)  # move_freepages() moves it whole
    assert zone.nr_free_pages == free - 1024
    check_invariants(mm, {})
    unset_migratetype_isolate(zone, pfn + 5, MOV)  # any pfn of the pageblock
    assert lab.blocks(zone) == before
    assert zone.nr_free_pages == free
    check_invariants(mm, {})


def test_invariants_catch_an_uncounted_isolation(lab: Lab) -> None:
    mm = lab.machine()
    mm.zones[1].set_pageblock_migratetype(8192, ISOLATE)  # no nr_isolate_pageblock++
    with pytest.raises(AssertionError, match="nr_isolate_pageblock is 0, 1 pageblocks"):
        check_invariants(mm, {})


# -- CONFIG_CMA and the numbers the user sees -----------------------------------------------


def test_kernel_migratetype_numbers() -> None:
    assert kernel_migratetype_numbers(False) == (0, 1, 2, 3, -1, 4)
    assert kernel_migratetype_numbers(True) == (0, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(("cma", "isolate"), [(False, 4), (True, 5)])
def test_trace_writes_the_kernel_numbering(
    lab: Lab, tmp_path: Path, cma: bool, isolate: int
) -> None:
    path = tmp_path / "events.parquet"
    tracer = RecordingTracer(path, clock=lambda: 0)
    mm, pfn = _pcp_page_then_isolate(lab, tracer, cma=cma)
    mm.zones[1].per_cpu_pageset[0].drain()
    tracer.close()
    ev = pq.read_table(path).to_pandas()
    ev["event"] = ev["event"].astype(str)
    (drain,) = ev[ev.event == ts.MM_PAGE_PCPU_DRAIN].itertuples()
    assert (drain.pfn, drain.migratetype) == (pfn, isolate)
    (steal,) = ev[ev.event == ts.MM_PAGE_ALLOC_EXTFRAG].itertuples()
    assert (steal.migratetype, steal.fallback_migratetype) == (UNMOV, MOV)
    free = ev[ev.event == ts.MM_PAGE_FREE]
    assert (free.migratetype == -1).all() and (free.fallback_migratetype == -1).all()


@pytest.mark.parametrize("cma", [False, True])
def test_cma_rows_only_with_config_cma(lab: Lab, cma: bool) -> None:
    mm = lab.machine(cma=cma)
    recorder = SnapshotRecorder(mm)
    recorder.take(0)
    names = set(recorder.buddy.cols["migratetype"])
    assert ("CMA" in names) is cma
    assert "Isolate" in names and "Movable" in names


def test_machine_cma_key_parses_and_dumps() -> None:
    doc = {"name": "t", "seed": 1, "duration": "1ms",
           "machine": {"nodes": [{"memory": "64MiB"}], "cma": True}}
    cfg = parse_config(doc, "t.yaml")
    assert cfg.machine.cma is True
    dumped = dump_config(cfg)
    assert dumped["machine"]["cma"] is True  # type: ignore[index]
    assert parse_config(dumped, "t.yaml") == cfg
    assert parse_config({**doc, "machine": {"nodes": [{"memory": "64MiB"}]}},
                        "t.yaml").machine.cma is False
