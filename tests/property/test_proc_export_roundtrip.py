"""Export -> import -> export of the /proc files over small machines (hypothesis).

A machine's snapshot directory (:func:`simcore.formats.procstate.proc_texts`, what a run
writes under ``proc/<when>/``) is read back by the importer
(:func:`simcore.formats.procfs.read_snapshot`) and:

- printed again from what was read, it is the same text (zoneinfo, buddyinfo,
  pagetypeinfo, vmstat);
- converted to a machine (:func:`simcore.formats.procmachine.machine_from_snapshot`, what
  ``machine: {from_proc: DIR}`` and ``allocsim proc import`` use), it lays out the same
  zones: node, zone type, start pfn, spanned, present and managed pages, and present
  ranges; and that machine exports the same zoneinfo geometry.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from simcore.config.machine import check_machine
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.errors import ConfigError
from simcore.formats.procfmt import format_zoneinfo, zones_from_snapshot
from simcore.formats.procfs import read_snapshot
from simcore.formats.procmachine import machine_from_snapshot, sysctl_from_snapshot
from simcore.formats.procstate import proc_texts
from simcore.formats.snapshots import format_buddyinfo, format_pagetypeinfo
from simcore.formats.vmstat_text import format_proc_vmstat
from simcore.mm.gfp import parse_gfp
from simcore.mm.page_alloc import PageAllocator
from simcore.mm.topology import layout_machine

MIB = 256  # pages


@st.composite
def machines(draw: st.DrawFn) -> MachineConfig:
    nr_nodes = draw(st.integers(1, 2))
    nodes = []
    for _ in range(nr_nodes):
        memory = draw(st.sampled_from([48, 64, 96, 160])) * MIB
        nodes.append(NodeConfig(
            memory_pages=memory, cpus=draw(st.integers(0 if nr_nodes > 1 else 1, 3)),
            movable_pages=draw(st.sampled_from([0, 0, 8 * MIB])),
            reserved_pages=draw(st.sampled_from([0, 100, 1000]))))
    layout = draw(st.sampled_from(["flat", "x86"]))
    return MachineConfig(nodes=tuple(nodes), layout=layout)


def _valid(cfg: MachineConfig) -> bool:
    try:
        check_machine(cfg, "<test>")
    except ConfigError:
        return False
    return True


def _geometry(cfg: MachineConfig) -> list[tuple[object, ...]]:
    return [(s.nid, s.zone_idx, s.zone_start_pfn, s.spanned_pages, s.present_pages,
             s.managed_pages, tuple(s.present())) for s in layout_machine(cfg)]


def _exercise(mm: PageAllocator, seed: int) -> None:
    """A few allocations of several orders and types, so the lists are not as at boot."""
    gfps = [int(parse_gfp(g)) for g in ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE",
                                        "GFP_KERNEL|__GFP_RECLAIMABLE")]
    held = []
    for i in range(40):
        cpu = (seed + i) % mm.nr_cpus
        order = (0, 1, 3, 9)[(seed + i) % 4]
        pfn = mm.alloc_pages(gfps[i % 3], order, mm.cpu_to_node[cpu], cpu)
        if pfn >= 0:
            held.append((pfn, order, cpu))
    for pfn, order, cpu in held[::2]:
        mm.free_pages(pfn, order, cpu)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=machines(), seed=st.integers(0, 3))
def test_export_import_export(cfg: MachineConfig, seed: int) -> None:
    assume(_valid(cfg))
    mm = PageAllocator(cfg, SysctlConfig())
    _exercise(mm, seed)
    texts = proc_texts(mm)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, text in texts.items():
            (directory / name).write_text(text)
        snap = read_snapshot(directory)
        imported = machine_from_snapshot(snap, directory)
        sysctl = sysctl_from_snapshot(snap)
    # The same text, printed from what was read.
    assert format_zoneinfo(zones_from_snapshot(snap)) == texts["zoneinfo"]
    rows = [(nid, zone, counts) for (nid, zone), counts in snap.buddyinfo.items()]
    assert format_buddyinfo(rows) == texts["buddyinfo"]
    assert snap.pagetypeinfo is not None
    assert format_pagetypeinfo(snap.pagetypeinfo) == texts["pagetypeinfo"]
    assert format_proc_vmstat(snap.vmstat) == texts["vmstat"]
    # The same machine.
    assert _geometry(imported) == _geometry(cfg)
    assert [n.cpus for n in imported.nodes] == [n.cpus for n in cfg.nodes]
    assert sysctl.min_free_kbytes == mm.min_free_kbytes
    again = PageAllocator(imported, sysctl)
    geometry = [line for line in proc_texts(again)["zoneinfo"].splitlines()
                if line.startswith(("Node ", "        spanned", "        present",
                                    "        managed", "  start_pfn", "        min"))]
    assert geometry == [line for line in texts["zoneinfo"].splitlines()
                        if line.startswith(("Node ", "        spanned", "        present",
                                            "        managed", "  start_pfn", "        min"))]
