"""SLUB's calculate_order() against a real 6.1 kernel's ``/proc/slabinfo``.

Every cache of the oracle hosts (2 present CPUs each: ``slub_min_objects`` 12) has the
``<pagesperslab>`` and ``<objperslab>`` the model derives from its ``<objsize>``
(``s->size``): 145 caches per file, sizes 8 B to 8 KiB, orders 0 to 3.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.slub import calculate_order, order_objects

ORACLE = Path(__file__).resolve().parents[1] / "data" / "oracle"
SLABINFOS = sorted(ORACLE.glob("*/end/slabinfo"))


def _caches(path: Path) -> list[tuple[str, int, int, int]]:
    """``(name, objsize, objperslab, pagesperslab)`` of every cache line."""
    lines = path.read_text().splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    rows = []
    for line in lines[2:]:
        name, _, _, size, per_slab, pages = line.split()[:6]
        rows.append((name, int(size), int(per_slab), int(pages)))
    return rows


def _nr_cpus(path: Path) -> int:
    cpus = 0
    for cpulist in path.parent.glob("node*.cpulist"):
        for part in cpulist.read_text().strip().split(","):
            lo, _, hi = part.partition("-")
            cpus += int(hi or lo) - int(lo) + 1
    return cpus


def test_there_are_oracle_slabinfos() -> None:
    assert len(SLABINFOS) == 4


@pytest.mark.parametrize("path", SLABINFOS, ids=[p.parts[-3] for p in SLABINFOS])
def test_every_cache_has_the_kernels_order_and_objects_per_slab(path: Path) -> None:
    nr_cpus = _nr_cpus(path)
    assert nr_cpus == 2
    caches = _caches(path)
    assert len(caches) > 100
    wrong = []
    for name, size, per_slab, pages in caches:
        order = calculate_order(size, nr_cpus)
        if (1 << order, order_objects(order, size)) != (pages, per_slab):
            wrong.append((name, size, per_slab, pages, order))
    assert not wrong
    assert {calculate_order(size, nr_cpus) for _, size, _, _ in caches} == {0, 1, 2, 3}
