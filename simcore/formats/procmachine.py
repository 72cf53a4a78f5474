"""The machine of a real host, from a ``/proc`` snapshot directory.

One conversion serves ``machine: {from_proc: DIR}``, ``allocsim proc import`` and
``allocsim proc show``: a :class:`~simcore.config.types.MachineConfig` whose zones have the
host's start pfn, spanned, present and managed pages, and a
:class:`~simcore.config.types.SysctlConfig` from ``sysctl_vm``.

The memory map:

- with ``iomem`` (a copy of ``/proc/iomem``, whose addresses only root can read), each
  node's present memory is the ``System RAM`` ranges inside its zones' spans, exactly,
  and the kernel image's ranges are reserved where they are;
- without it, each zone's present pages are taken to run from its start pfn, except
  that ZONE_DMA skips the PC hole at 636 KiB..1 MiB
  (:data:`~simcore.mm.topology.PC_HOLE`) when its span has room for it. That is the
  oracle host's layout (QEMU's ``pc`` machine). SIMPLIFICATION: holes elsewhere inside a
  zone (firmware tables between RAM ranges) are placed at the zone's end, and when they
  end a node, that node's last zone spans fewer pages than on the host.

Each zone's ``present - managed`` pages are reserved, placed as
:func:`~simcore.mm.topology.zone_spans` says.
"""

from __future__ import annotations

import re
from pathlib import Path

from simcore.config.machine import LOCAL_DISTANCE, MAX_DISTANCE, MAX_NODES, MAX_RANGES
from simcore.config.types import MachineConfig, NodeConfig, SysctlConfig
from simcore.formats.procfs import (
    ProcParseError,
    ProcSnapshot,
    ZoneSnapshot,
    read_snapshot,
    read_text_file,
)
from simcore.formats.proctables import numbered_lines
from simcore.mm.constants import PAGE_SHIFT, ZONE_NAMES, ZoneType
from simcore.mm.topology import PC_HOLE, Range, clip_ranges

THP_DEFAULT = "always"
"""THP mode of a snapshot without ``transparent_hugepage_enabled``: 6.1's Kconfig default
(``TRANSPARENT_HUGEPAGE_ALWAYS``), as on the oracle's Debian kernel."""
KERNEL_IMAGE = ("Kernel code", "Kernel rodata", "Kernel data", "Kernel bss")
"""``/proc/iomem`` resources of the kernel image (arch/x86/kernel/setup.c)."""
_IOMEM_RE = re.compile(r"^([0-9a-fA-F]{1,16})-([0-9a-fA-F]{1,16}) : (.+)$")
"""A resource line: 64-bit hex addresses (``%0*llx``, 16 digits at most)."""
_DISTANCE_RE = re.compile(r"^[0-9]{1,3}( [0-9]{1,3})*$")
"""``node_read_distance()``: one u8 SLIT distance per node."""


def machine_from_proc(path: Path) -> tuple[MachineConfig, SysctlConfig]:
    """The machine and sysctls of the snapshot in ``path`` (see the module docstring)."""
    snap = read_snapshot(path)
    return machine_from_snapshot(snap, path), sysctl_from_snapshot(snap)


def machine_from_snapshot(snap: ProcSnapshot, path: Path | None = None) -> MachineConfig:
    """The :class:`MachineConfig` of a parsed snapshot (``path`` for its extra files)."""
    directory = Path(path if path is not None else snap.path)
    zones = populated_zones(snap)
    last = max(snap.zones, key=lambda z: z.nid)
    if last.nid >= MAX_NODES:  # before anything is built per node
        raise ProcParseError(snap.path + "/zoneinfo", last.line or None,
                             f"nodes 0..{MAX_NODES - 1} (the model builds at most "
                             f"{MAX_NODES})", f"node {last.nid}")
    nids = list(range(last.nid + 1))
    cpus = node_cpus(snap, nids)
    ram, kernel = read_iomem(directory / "iomem")
    nodes = []
    for nid in nids:
        mine = [z for z in zones if z.nid == nid]
        ranges = _node_ranges(mine, ram)
        reserved = [0] * (int(ZoneType.MOVABLE) + 1)
        movable = 0
        for zone in mine:
            idx = ZONE_NAMES.index(zone.name)
            reserved[idx] = zone.present - zone.managed
            if idx == ZoneType.MOVABLE:
                movable = zone.present
        known = tuple(r for k in kernel for r in clip_ranges(ranges, *k))
        nodes.append(NodeConfig(memory_pages=sum(hi - lo for lo, hi in ranges), cpus=cpus[nid],
                                movable_pages=movable, present=tuple(ranges),
                                reserved_by_zone=tuple(reserved), reserved_at=known))
    cma = bool(snap.pagetypeinfo is not None and "CMA" in snap.pagetypeinfo.block_types)
    return MachineConfig(nodes=tuple(nodes), distance=read_distances(directory, nids),
                         pageblock_order=snap.pageblock_order,
                         transparent_hugepage=snap.thp_enabled or THP_DEFAULT, cma=cma,
                         from_proc=str(directory))


def _node_ranges(zones: list[ZoneSnapshot], ram: list[Range] | None) -> list[Range]:
    ranges: list[Range] = []
    for zone in zones:
        end = zone.start_pfn + zone.spanned
        if ram is not None and (found := clip_ranges(ram, zone.start_pfn, end)) \
                and sum(hi - lo for lo, hi in found) == zone.present:
            ranges.extend(found)
            continue
        start, left = zone.start_pfn, zone.present
        if zone.name == "DMA" and start < PC_HOLE[0] and \
                zone.spanned - zone.present >= PC_HOLE[1] - PC_HOLE[0]:
            ranges.append((start, PC_HOLE[0]))
            left -= PC_HOLE[0] - start
            start = PC_HOLE[1]
        ranges.append((start, start + left))
    merged: list[Range] = []
    for lo, hi in ranges:
        if merged and merged[-1][1] == lo:
            merged[-1] = (merged[-1][0], hi)
        elif hi > lo:
            merged.append((lo, hi))
    return merged


def read_iomem(path: Path) -> tuple[list[Range] | None, list[Range]]:
    """The ``System RAM`` and kernel-image pfn ranges of a ``/proc/iomem`` copy.

    RAM is None if the file is absent or unreadable; one that is not text is an error.
    Only top-level lines are RAM
    (nested ones lie inside a parent resource); ``Kernel code``, ``Kernel rodata``,
    ``Kernel data`` and ``Kernel bss`` (nested in System RAM) are memblock-reserved. A
    copy made without root shows every address as 0: it says nothing, so it is ignored.
    """
    try:
        text = read_text_file(path)
    except OSError:
        return None, []
    ram: list[Range] = []
    kernel: list[Range] = []
    for lineno, line in numbered_lines(text):
        if not line.strip():
            continue
        match = _IOMEM_RE.match(line.strip())
        if match is None:
            raise ProcParseError(str(path), lineno, "'START-END : name' (hex addresses)", line)
        start, last = int(match.group(1), 16), int(match.group(2), 16)
        pfns = (start >> PAGE_SHIFT, (last >> PAGE_SHIFT) + 1)
        name = match.group(3)
        if not last:
            continue
        if name == "System RAM" and not line.startswith(" "):
            if len(ram) == MAX_RANGES:
                raise ProcParseError(str(path), lineno, f"at most {MAX_RANGES} System RAM "
                                     "ranges (x86_64's E820_MAX_ENTRIES)", line)
            ram.append((-(-start >> PAGE_SHIFT), (last + 1) >> PAGE_SHIFT))
        elif name in KERNEL_IMAGE:
            kernel.append(pfns)
    return sorted(ram) or None, sorted(kernel)


def read_distances(directory: Path, nids: list[int]) -> tuple[tuple[int, ...], ...] | None:
    """The NUMA distance table from ``nodeN.distance`` files; None if any is missing."""
    rows = []
    for nid in nids:
        path = directory / f"node{nid}.distance"
        try:
            text = read_text_file(path).strip()
        except OSError:
            return None
        if not _DISTANCE_RE.match(text) or len(text.split()) != len(nids):
            raise ProcParseError(str(path), 1, f"{len(nids)} distances (0..255) separated by "
                                 "spaces (one per node)", text)
        row = tuple(int(v) for v in text.split())
        if any(not (v == LOCAL_DISTANCE if i == nid else LOCAL_DISTANCE < v <= MAX_DISTANCE)
               for i, v in enumerate(row)):
            raise ProcParseError(str(path), 1, f"{LOCAL_DISTANCE} to node {nid} itself and "
                                 f"{LOCAL_DISTANCE + 1}..{MAX_DISTANCE} to the others (a "
                                 "SLIT row, as slit_valid() accepts it)", text)
        rows.append(row)
    return tuple(rows)


def sysctl_from_snapshot(snap: ProcSnapshot) -> SysctlConfig:
    """The vm sysctls the model uses, from ``sysctl_vm`` (6.1's defaults where absent).

    Raises:
        ProcParseError: a value is not what the model can use (naming its line of
            ``sysctl_vm``), or ``min_free_kbytes`` is missing from a ``sysctl_vm`` file
            (a truncated copy).
    """
    defaults = SysctlConfig()
    ratio = snap.sysctl_ints("lowmem_reserve_ratio") if "lowmem_reserve_ratio" in snap.sysctl \
        else defaults.lowmem_reserve_ratio
    if len(ratio) < len(ZONE_NAMES):
        raise snap.sysctl_error("lowmem_reserve_ratio", f"one value per zone type (at least "
                                f"{len(ZONE_NAMES)})", " ".join(map(str, ratio)))
    # A snapshot without sysctl_vm gets min_free_kbytes as the kernel derives it at boot;
    # a sysctl_vm file without it is truncated, which is an error.
    min_free_kbytes = snap.sysctl_int("min_free_kbytes") if snap.sysctl else None
    names = ("watermark_scale_factor", "watermark_boost_factor", "percpu_pagelist_high_fraction",
             "extfrag_threshold", "compaction_proactiveness", "swappiness")
    values = {name: snap.sysctl_int(name, getattr(defaults, name)) for name in names}
    _check_sysctl_ranges(snap, {"min_free_kbytes": min_free_kbytes, **values}, ratio)
    return SysctlConfig(min_free_kbytes=min_free_kbytes, lowmem_reserve_ratio=tuple(ratio),
                        **values)


def _check_sysctl_ranges(snap: ProcSnapshot, values: dict[str, int | None],
                         ratio: tuple[int, ...]) -> None:
    """Each value within the range the config schema gives its key (one rule for both).

    Raises:
        ProcParseError: naming the ``sysctl_vm`` line of the first value out of range.
    """
    from simcore.config.schema import Type, integer
    from simcore.config.schema_keys import INT_MAX, SYSCTL_HELP

    for name, value in values.items():
        if value is None:
            continue
        spec = SYSCTL_HELP[name][0] if name != "min_free_kbytes" else integer(0, INT_MAX)
        if name == "percpu_pagelist_high_fraction":
            ok, text = value == 0 or value >= 8, str(spec)
        elif isinstance(spec, Type):
            lo, hi = spec.json.get("minimum", value), spec.json.get("maximum", value)
            ok, text = lo <= value <= hi, spec.text
        else:
            continue
        if not ok:
            raise snap.sysctl_error(name, text, value)
    if any(not 0 <= r <= INT_MAX for r in ratio):
        raise snap.sysctl_error("lowmem_reserve_ratio", f"integers 0..{INT_MAX}",
                                " ".join(map(str, ratio)))


def _online_cpus(snap: ProcSnapshot) -> set[int]:
    """CPUs the kernel lists under ``pagesets`` (for_each_online_cpu()), else the cpulists."""
    online = {pcp.cpu for zone in snap.zones for pcp in zone.pcp}
    return online or {cpu for cpus in snap.node_cpus.values() for cpu in cpus}


def node_cpus(snap: ProcSnapshot, nids: list[int]) -> dict[int, int]:
    """Number of CPUs of each node.

    A node's ``nodeN.cpulist`` gives its CPUs; an empty one is a node without CPUs (a
    memory-only node, e.g. CXL). Online CPUs that no cpulist names are spread over the
    nodes whose cpulist is missing (all nodes if there is none), lowest node first.
    SIMPLIFICATION: if every node has a cpulist, such CPUs (an inconsistent snapshot)
    are given to the first node that has CPUs, so the machine keeps the kernel's count
    of online CPUs, which pcp ``high`` of a CPU-less node is split across.
    """
    listed = {nid: set(snap.node_cpus[nid]) for nid in nids if nid in snap.node_cpus}
    counts = {nid: len(listed.get(nid, ())) for nid in nids}
    orphans = len(_online_cpus(snap).difference(*listed.values()))
    takers = [nid for nid in nids if nid not in listed]
    if not takers:
        takers = [next((nid for nid in nids if counts[nid]), nids[0])]
    share, extra = divmod(orphans, len(takers))
    for i, nid in enumerate(takers):
        counts[nid] += share + (1 if i < extra else 0)
    if not sum(counts.values()):
        raise ProcParseError(snap.path + "/zoneinfo", None,
                             "pagesets of an online CPU, or a non-empty nodeN.cpulist", "none")
    return counts


def populated_zones(snap: ProcSnapshot) -> list[ZoneSnapshot]:
    """The zones with present pages, checked to be zone types the model lays out."""
    zones = [z for z in snap.zones if z.present > 0]
    if not zones:
        raise ProcParseError(snap.path + "/zoneinfo", None, "at least one populated zone")
    for zone in zones:
        if zone.name not in ZONE_NAMES:
            raise ProcParseError(snap.path + "/zoneinfo", zone.line or None,
                                 f"a populated zone among {', '.join(ZONE_NAMES)}", zone.name)
    return zones
