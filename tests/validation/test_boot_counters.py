"""Boot-time frees count ``pgfree``, as ``__free_pages_ok()`` does.

memblock_free_all() hands memory to the buddy allocator through __free_pages_core() ->
__free_pages_ok(), which adds ``1 << order`` to PGFREE per chunk. So right after boot a
real host's ``pgfree`` already exceeds its managed pages (the oracle's boot-idle
snapshot: 232734 against 229294 managed), and a freshly built model starts at exactly
its managed pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from allocsim.procshow import machine_from_snapshot
from simcore.formats.procfs import read_snapshot

if TYPE_CHECKING:
    from conftest import Lab

BOOT = Path(__file__).resolve().parents[1] / "data" / "oracle" / "boot-idle" / "start"


def _vmstat(path: Path) -> dict[str, int]:
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {name: int(value) for name, value in pairs}


def test_model_boot_pgfree_is_its_managed_pages(lab: Lab) -> None:
    mm = lab.machine(reserved_pages=700)
    assert mm.vm["pgfree"] == mm.managed_pages == mm.nr_free_pages
    assert mm.vm["pgfree"] == 16383 - 700  # 64 MiB less pfn 0 and the reserved pages


def test_real_boot_pgfree_covers_managed_pages_as_the_model_does() -> None:
    real = _vmstat(BOOT / "vmstat")
    mm = machine_from_snapshot(read_snapshot(BOOT), recompute=False)
    managed = mm.managed_pages
    assert managed == 3840 + 99239 + 126215
    assert mm.vm["pgfree"] == managed
    # The host freed a little more since (pages allocated and freed during boot).
    assert managed <= real["pgfree"] <= managed * 1.02
