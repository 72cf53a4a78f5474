"""The pcp/buddy rule and the extfrag count of simcore.formats.trace_metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simcore.formats.ftrace import import_trace
from simcore.formats.trace_metrics import (
    EV_ALLOC,
    EV_EXTFRAG,
    EV_OTHER,
    EV_ZONE_LOCKED,
    PageEvents,
    extfrag_events,
    served_from,
)

FRESH = Path(__file__).parent.parent / "data" / "oracle" / "hugetlb-fresh"


def events(rows: list[tuple[int, ...]]) -> PageEvents:
    """``(code, cpu, pfn[, percpu_refill])`` rows; zone_locked defaults to refill 0."""
    full = [(*r, r[3] if len(r) > 3 else (0 if r[0] == EV_ZONE_LOCKED else -1)) for r in rows]
    code, cpu, pfn, refill = zip(*[r[:4] for r in full], strict=True)
    return PageEvents(np.array(code, dtype=np.int8), np.array(cpu), np.array(pfn),
                      np.array(refill))


def test_one_zone_locked_of_the_same_pfn_is_buddy() -> None:
    ev = events([(EV_ZONE_LOCKED, 0, 100), (EV_ALLOC, 0, 100)])
    assert served_from(ev) == served_from(ev).__class__(pcp=0, buddy=1)


def test_a_one_block_refill_is_pcp() -> None:
    """rmqueue_bulk() stops early when the lists run dry: one block, percpu_refill=1."""
    ev = events([(EV_ZONE_LOCKED, 0, 100, 1), (EV_ALLOC, 0, 100)])
    s = served_from(ev)
    assert (s.pcp, s.buddy) == (1, 0)


def test_a_refill_batch_is_pcp() -> None:
    """rmqueue_bulk() moves at least two blocks, then the list's first is allocated."""
    ev = events([(EV_ZONE_LOCKED, 0, 100, 1), (EV_ZONE_LOCKED, 0, 101, 1), (EV_ALLOC, 0, 100),
                 (EV_ALLOC, 0, 101)])
    s = served_from(ev)
    assert (s.pcp, s.buddy) == (2, 0) and s.pcp_share == 1.0


def test_cpus_are_followed_separately() -> None:
    """CPU 1's zone_locked between CPU 0's events does not count for CPU 0."""
    ev = events([(EV_ZONE_LOCKED, 0, 100), (EV_ZONE_LOCKED, 1, 200), (EV_OTHER, 1, 5),
                 (EV_ALLOC, 0, 100), (EV_ALLOC, 1, 300), (EV_ALLOC, 1, 0)])
    s = served_from(ev)
    assert (s.pcp, s.buddy) == (1, 1)  # CPU 1's alloc of 300 came from its pcp list
    assert extfrag_events(events([(EV_EXTFRAG, 0, 1), (EV_ALLOC, 0, 1)])) == 1


def test_real_trace_is_mostly_pcp(tmp_path: Path) -> None:
    """The oracle's README: about 99 % of successful allocations come from pcp lists."""
    table = tmp_path / "t.parquet"
    import_trace(FRESH / "trace.txt.xz", table)
    s = served_from(PageEvents.read(table))
    assert s.pcp + s.buddy == 379  # 380 mm_page_alloc, one failed
    assert s.pcp == 379  # order 0 and 9 alike go through the pcp lists (no CMA)
