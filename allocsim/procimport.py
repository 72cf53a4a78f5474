"""``allocsim proc import``: a real host's machine as the ``machine:`` and ``sysctl:`` sections.

The YAML it writes can be pasted into an experiment file, or loaded as it is; it says the
same as ``machine: {from_proc: DIR}`` (the snapshot's nodes, CPUs, distances, zones with
their memory maps, THP mode and vm sysctls) without needing the snapshot any more. A
comment block lists each zone as the host printed it and as the model lays it out.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from simcore.atomic import atomic_write_text
from simcore.config.machine import check_machine, dump_machine
from simcore.config.parse import dump_sysctl
from simcore.formats.procfs import read_snapshot
from simcore.formats.procmachine import machine_from_snapshot, populated_zones, sysctl_from_snapshot
from simcore.mm.constants import ZONE_NAMES
from simcore.mm.topology import layout_machine


def import_machine(snapshot_dir: Path, out: Path) -> list[str]:
    """Write ``out`` from the snapshot in ``snapshot_dir``; return notes for the user.

    The notes name each zone whose span the model could not reproduce exactly (see
    :mod:`simcore.formats.procmachine`), what 6.1 prints that the snapshot's kernel did
    not, and CMA memory, which the model takes as ordinary memory
    (:attr:`~simcore.formats.procfs.ProcSnapshot.notes`).
    """
    snap = read_snapshot(snapshot_dir)
    notes = list(snap.notes)
    machine = machine_from_snapshot(snap, snapshot_dir)
    check_machine(machine, str(snapshot_dir / "zoneinfo"))
    sysctl = sysctl_from_snapshot(snap)
    spans = {(s.nid, ZONE_NAMES[s.zone_idx]): s for s in layout_machine(machine)}
    lines = [f"# Imported by `allocsim proc import` from {snapshot_dir}.",
             "# zone            start_pfn    spanned    present    managed   (a model row "
             "follows where the model lays the zone out differently)"]
    for zone in populated_zones(snap):
        span = spans[(zone.nid, zone.name)]
        host = (zone.start_pfn, zone.spanned, zone.present, zone.managed)
        model = (span.zone_start_pfn, span.spanned_pages, span.present_pages,
                 span.managed_pages)
        name = f"node{zone.nid} {zone.name}"
        lines.append(f"# {name:<14}" + "".join(f"{v:>11}" for v in host) + "   host")
        if model != host:
            lines.append(f"# {'':<14}" + "".join(f"{v:>11}" for v in model) + "   model")
            notes.append(f"{name}: the model spans {span.spanned_pages} pages, the host "
                         f"{zone.spanned} (a hole at the end of the node is not in "
                         "zoneinfo; an iomem file in the snapshot gives the exact map)")
    body = yaml.safe_dump({"machine": dump_machine(machine), "sysctl": dump_sysctl(sysctl)},
                          sort_keys=False, default_flow_style=None, width=100)
    atomic_write_text(out, "\n".join(lines) + "\n" + body)
    return notes
