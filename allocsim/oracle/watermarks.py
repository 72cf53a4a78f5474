"""Watermark validation: the model's recomputed sizing against a real zoneinfo.

Mirrors what a sysctl write makes 6.1 do: __setup_per_zone_wmarks(),
setup_per_zone_lowmem_reserve() and zone_pcp_update() (pageset_high_and_batch()),
computed by the model from the managed pages, sysctls and CPUs shown in the same
snapshot (``allocsim proc show --recompute``), then compared number by number with what
the kernel printed: ``min``, ``low``, ``high``, ``protection:`` and every CPU's pcp
``high`` and ``batch``.

Only snapshots taken right after such a write can match: in a boot snapshot the kernel
computed them before init memory was freed. In a run laid out like the oracle's, those
snapshots are the directories named ``sNN-...`` (``wmark-recompute/s00-mfk128-wsf10``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from allocsim.procshow import machine_from_snapshot
from simcore.formats.procfs import read_snapshot

SYSCTL_WRITE_SNAPSHOT = re.compile(r"^s\d+-")


@dataclass(frozen=True)
class Mismatch:
    """One number the model computed differently from the kernel."""

    snapshot: str
    zone: str
    field: str
    sim: int
    real: int


def sysctl_write_snapshots(run: Path) -> list[Path]:
    """The run's snapshots taken right after a sysctl write (see the module docstring)."""
    return sorted(p for p in run.iterdir()
                  if p.is_dir() and SYSCTL_WRITE_SNAPSHOT.match(p.name)
                  and (p / "zoneinfo").is_file())


def compare_snapshot(path: Path) -> list[Mismatch]:
    """Every watermark, protection and pcp number of ``path`` the model gets wrong."""
    snap = read_snapshot(path)
    mm = machine_from_snapshot(snap, recompute=True)
    real = {(z.nid, z.name): z for z in snap.zones}
    out = []
    for zone in mm.zones:
        seen = real[(zone.nid, zone.name)]
        name = f"node{zone.nid} {zone.name}"
        boost = zone.watermark_boost
        sim_values = {"min": zone.watermark[0] + boost, "low": zone.watermark[1] + boost,
                      "high": zone.watermark[2] + boost}
        real_values = {"min": seen.wmark_min, "low": seen.wmark_low, "high": seen.wmark_high}
        for i, value in enumerate(seen.protection[: len(zone.lowmem_reserve)]):
            sim_values[f"protection[{i}]"] = zone.lowmem_reserve[i]
            real_values[f"protection[{i}]"] = value
        for pcp, real_pcp in zip(zone.per_cpu_pageset, seen.pcp, strict=False):
            sim_values[f"cpu{real_pcp.cpu} high"] = pcp.high
            sim_values[f"cpu{real_pcp.cpu} batch"] = pcp.batch
            real_values[f"cpu{real_pcp.cpu} high"] = real_pcp.high
            real_values[f"cpu{real_pcp.cpu} batch"] = real_pcp.batch
        out += [Mismatch(path.name, name, key, sim_values[key], real_values[key])
                for key in real_values if sim_values[key] != real_values[key]]
    return out


def check_run(run: Path) -> tuple[bool | None, list[Mismatch], int]:
    """``(exact, mismatches, snapshots checked)``; exact is None without such snapshots."""
    snapshots = sysctl_write_snapshots(run)
    if not snapshots:
        return None, [], 0
    mismatches = [m for path in snapshots for m in compare_snapshot(path)]
    return not mismatches, mismatches, len(snapshots)
