"""The ``machine:`` section of an experiment file: nodes, memory map, CPUs and build constants.

A node's memory is either a size laid out by the machine's ``layout`` or its real memory
map::

    machine:
      layout: x86             # flat (default) | x86: the PC's low-memory holes, the PCI
      below_4g: 2GiB          # hole below 4 GiB; RAM below 4 GiB (default: QEMU's rule)
      nodes:
        - memory: 8GiB
          cpus: 4
        - present: ["0x240000000-0x43fffffff"]   # physical ranges, as /proc/iomem prints
          reserved: {Normal: 18MiB}               # present but not managed, per zone
          reserved_at: ["0x241000000-0x241ffffff"]  # where some of it is known to be
          cpus: 4

or the machine of a real host, imported from a ``/proc`` snapshot directory (see
:mod:`simcore.formats.procmachine`)::

    machine: {from_proc: snapshots/host1}   # relative to this file's directory

With ``from_proc`` the topology, zones and (as defaults for the ``sysctl:`` section) the
vm sysctls come from the snapshot; only ``swap``, ``cma`` and ``transparent_hugepage``
may be given beside it.
"""

from __future__ import annotations

import re
from pathlib import Path

from simcore.config.fields import (
    MISSING,
    FieldReader,
    child,
    expect_bool,
    expect_int,
    expect_list,
    expect_mapping,
    expect_size_pages,
    expect_str,
    read_fields,
)
from simcore.config.schema import key_named, names, ordered_fields
from simcore.config.schema_keys import FROM_PROC_EXTRAS, MACHINE_KEYS
from simcore.config.schema_keys import NODE_KEYS as NODE_SCHEMA
from simcore.config.types import MachineConfig, NodeConfig
from simcore.config.units import format_size
from simcore.errors import ConfigError
from simcore.mm.constants import PAGE_SHIFT, PAGE_SIZE, ZONE_NAMES, ZoneType
from simcore.mm.topology import (
    Range,
    boot_managed_estimate,
    layout_machine,
    mobility_grouping_min_pages,
)

MAX_NODES = 64
NR_CPUS_MAX = 8192
"""x86_64's largest ``CONFIG_NR_CPUS`` (``NR_CPUS_RANGE_END`` in arch/x86/Kconfig, 6.1)."""
MIN_MAX_ORDER, MAX_MAX_ORDER = 1, 16
LOCAL_DISTANCE, REMOTE_DISTANCE, MAX_DISTANCE = 10, 20, 255
"""``include/linux/topology.h``; node distances are a u8 in the SLIT."""
THP_MODES = ("always", "madvise", "never")
LAYOUTS = ("flat", "x86")
LAID_OUT_ZONES = ZONE_NAMES[: int(ZoneType.MOVABLE) + 1]
"""The zone types a node's ``reserved`` mapping may name."""
RANGE_RE = re.compile(r"^\s*(0x[0-9a-fA-F]+|[0-9]+)\s*-\s*(0x[0-9a-fA-F]+|[0-9]+)\s*$")
MAX_RANGES = 3200
"""Most ranges in a node's memory map: x86_64's ``E820_MAX_ENTRIES`` (128 + 3 per node,
MAX_NUMNODES 1024)."""
MAX_PHYS_ADDR = 1 << 52
"""x86_64's ``MAX_PHYSMEM_BITS`` with 5-level paging (arch/x86/include/asm/sparsemem.h)."""
RANGE_FORMAT = ("a physical address range 'START-END' with END inclusive, as /proc/iomem "
                "prints it (e.g. '0x100000-0x1ffdcfff'), page aligned")


def _bounded(lo: int | None, hi: int | None) -> FieldReader:
    return lambda value, key, source: expect_int(value, key, source, lo, hi)


def format_range(pfns: Range) -> str:
    """A pfn range as the ``present:`` key writes it (``"0x100000-0x1ffdcfff"``)."""
    return f"{pfns[0] << PAGE_SHIFT:#x}-{(pfns[1] << PAGE_SHIFT) - 1:#x}"


def _range(value: object, key: str, source: str) -> Range:
    match = RANGE_RE.match(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(source, key, RANGE_FORMAT, value)
    if any(len(g) > 20 for g in match.groups()):  # int() of 4300+ digits would raise
        raise ConfigError(source, key, f"{RANGE_FORMAT}, below {MAX_PHYS_ADDR:#x}", value)
    start, last = (int(g, 16 if g.startswith("0x") else 10) for g in match.groups())
    if start % PAGE_SIZE or (last + 1) % PAGE_SIZE or last < start:
        raise ConfigError(source, key, RANGE_FORMAT, value)
    if last >= MAX_PHYS_ADDR:
        raise ConfigError(source, key, f"{RANGE_FORMAT}, below {MAX_PHYS_ADDR:#x} "
                          "(x86_64's MAX_PHYSMEM_BITS, 52)", value)
    return start >> PAGE_SHIFT, (last + 1) >> PAGE_SHIFT


def _present(value: object, key: str, source: str) -> tuple[Range, ...]:
    items = expect_list(value, key, source, min_len=1, max_len=MAX_RANGES)
    ranges = [_range(item, child(key, i), source) for i, item in enumerate(items)]
    for i in range(1, len(ranges)):
        if ranges[i][0] < ranges[i - 1][1]:
            raise ConfigError(source, child(key, i), "ranges in ascending address order, "
                              "not overlapping the previous one", items[i])
    return tuple(ranges)


def _reserved(value: object, key: str, source: str) -> tuple[str, object]:
    """A size (split lowest zone first) or a mapping zone name -> size."""
    if not isinstance(value, dict):
        return "reserved_pages", expect_size_pages(value, key, source)
    data = expect_mapping(value, key, source, names(key_named(NODE_SCHEMA, "reserved").keys))
    per_zone = [0] * len(LAID_OUT_ZONES)
    for name, size in data.items():
        per_zone[LAID_OUT_ZONES.index(name)] = expect_size_pages(size, child(key, name), source)
    return "reserved_by_zone", tuple(per_zone)


NODE_KEYS = names(NODE_SCHEMA)


def _node(value: object, key: str, source: str) -> NodeConfig:
    data = expect_mapping(value, key, source, NODE_KEYS)
    if "memory" not in data and "present" not in data:
        raise ConfigError(source, child(key, "memory"), "a value (this key is required "
                          "unless the node gives its present ranges)", MISSING)
    kwargs: dict[str, object] = {}
    present: tuple[Range, ...] = ()
    if "present" in data:
        present = _present(data["present"], child(key, "present"), source)
        kwargs["present"] = present
        kwargs["memory_pages"] = sum(hi - lo for lo, hi in present)
    if "memory" in data:
        memory = expect_size_pages(data["memory"], child(key, "memory"), source, min_pages=1)
        if present and memory != kwargs["memory_pages"]:
            size = format_size(sum(hi - lo for lo, hi in present) * PAGE_SIZE)
            raise ConfigError(source, child(key, "memory"), f"the size of the present ranges "
                              f"({size}), or no memory key", data["memory"])
        kwargs["memory_pages"] = memory
    if "cpus" in data:
        kwargs["cpus"] = expect_int(data["cpus"], child(key, "cpus"), source, 0, NR_CPUS_MAX)
    if "movable" in data:
        kwargs["movable_pages"] = expect_size_pages(data["movable"], child(key, "movable"),
                                                    source)
    if "reserved" in data:
        name, reserved = _reserved(data["reserved"], child(key, "reserved"), source)
        kwargs[name] = reserved
    if "reserved_at" in data:
        kwargs["reserved_at"] = _present(data["reserved_at"], child(key, "reserved_at"), source)
    return NodeConfig(**kwargs)  # type: ignore[arg-type]


def _nodes(value: object, key: str, source: str) -> tuple[NodeConfig, ...]:
    items = expect_list(value, key, source, min_len=1, max_len=MAX_NODES)
    return tuple(_node(item, child(key, i), source) for i, item in enumerate(items))


def _distance(value: object, key: str, source: str) -> tuple[tuple[int, ...], ...] | None:
    """Rows of SLIT distances (integers); shape and bounds checked by :func:`_check_distance`."""
    if value is None:
        return None
    rows = expect_list(value, key, source, min_len=1, max_len=MAX_NODES)
    matrix = []
    for i, row in enumerate(rows):
        row_key = child(key, i)
        cells = expect_list(row, row_key, source, min_len=1, max_len=MAX_NODES)
        matrix.append(tuple(expect_int(cell, child(row_key, j), source)
                            for j, cell in enumerate(cells)))
    return tuple(matrix)


def _check_distance(matrix: tuple[tuple[int, ...], ...], nr_nodes: int, source: str) -> None:
    """One row and one entry per node; LOCAL_DISTANCE on the diagonal only."""
    key = "machine.distance"
    if len(matrix) != nr_nodes:
        raise ConfigError(source, key, f"a {nr_nodes}x{nr_nodes} matrix (one row per node, "
                          f"{nr_nodes} nodes)", [list(row) for row in matrix])
    for i, row in enumerate(matrix):
        row_key = child(key, i)
        if len(row) != nr_nodes:
            raise ConfigError(source, row_key, f"a row of {nr_nodes} entries (one per node)",
                              list(row))
        for j, cell in enumerate(row):
            lo = LOCAL_DISTANCE if i == j else LOCAL_DISTANCE + 1
            hi = LOCAL_DISTANCE if i == j else MAX_DISTANCE
            expect_int(cell, child(row_key, j), source, lo, hi)


MACHINE_FIELDS: dict[str, tuple[str, FieldReader]] = ordered_fields(
    tuple(k for k in MACHINE_KEYS if k.name != "from_proc"), {
        "nodes": ("nodes", _nodes),
        "distance": ("distance", _distance),
        "max_order": ("max_order", _bounded(MIN_MAX_ORDER, MAX_MAX_ORDER)),
        "pageblock_order": ("pageblock_order", _bounded(1, MAX_MAX_ORDER)),
        "transparent_hugepage": (
            "transparent_hugepage", lambda v, k, s: expect_str(v, k, s, choices=THP_MODES)),
        "cma": ("cma", expect_bool),
        "swap": ("swap_pages", expect_size_pages),
        "layout": ("layout", lambda v, k, s: expect_str(v, k, s, choices=LAYOUTS)),
        "below_4g": ("below_4g_pages",
                     lambda v, k, s: expect_size_pages(v, k, s, min_pages=1)),
    })
"""The machine keys besides ``from_proc`` (:func:`parse_machine` reads that one)."""


def _check_node(machine: MachineConfig, i: int, node: NodeConfig, source: str) -> None:
    key = child("machine.nodes", i)
    block = 1 << machine.pageblock_order
    block_text = f"a multiple of the pageblock size ({format_size(block * PAGE_SIZE)})"
    sizes = [("movable", node.movable_pages)]
    if not node.present:
        sizes.insert(0, ("memory", node.memory_pages))
    for name, pages in sizes:
        if pages % block:
            raise ConfigError(source, child(key, name), block_text,
                              format_size(pages * PAGE_SIZE))
    if node.movable_pages > node.memory_pages:
        raise ConfigError(source, child(key, "movable"), "movable <= memory",
                          format_size(node.movable_pages * PAGE_SIZE))
    reserved = sum(node.reserved_by_zone) or node.reserved_pages
    if node.movable_pages + reserved > node.memory_pages:
        raise ConfigError(source, child(key, "reserved"), "movable + reserved <= memory",
                          format_size(reserved * PAGE_SIZE))


def _check_layout(machine: MachineConfig, source: str) -> None:
    """Zones must hold their reserved pages, and nodes must not overlap."""
    spans = layout_machine(machine)
    for i, node in enumerate(machine.nodes):
        for zone_idx, pages in enumerate(node.reserved_by_zone):
            present = sum(s.present_pages for s in spans if s.nid == i and s.zone_idx == zone_idx)
            if pages > present:
                key = child(child(child("machine.nodes", i), "reserved"), ZONE_NAMES[zone_idx])
                raise ConfigError(source, key, f"at most the zone's present memory "
                                  f"({format_size(present * PAGE_SIZE)})",
                                  format_size(pages * PAGE_SIZE))
    # Sorted by start, a range overlaps another node's exactly when it starts before the
    # furthest end seen so far of another node (n log n: a map may have thousands).
    ranges = sorted((lo, hi, span.nid) for span in spans for lo, hi in span.present())
    reach: dict[int, int] = {}
    for lo, hi, nid in ranges:
        for other, end in reach.items():
            if other != nid and lo < end:
                later = max(nid, other)
                raise ConfigError(source, child(child("machine.nodes", later), "present"),
                                  f"ranges that do not overlap node {min(nid, other)}'s",
                                  format_range((lo, hi)))
        reach[nid] = max(reach.get(nid, 0), hi)


def check_machine(machine: MachineConfig, source: str) -> None:
    """Cross-key checks that need the whole machine section."""
    if machine.pageblock_order > machine.max_order:
        raise ConfigError(source, "machine.pageblock_order",
                          f"1..max_order ({machine.max_order})", machine.pageblock_order)
    for i, node in enumerate(machine.nodes):
        _check_node(machine, i, node, source)
    _check_layout(machine, source)
    boot_pages = sum(boot_managed_estimate(span) for span in layout_machine(machine))
    if boot_pages < mobility_grouping_min_pages(machine):
        need = format_size(mobility_grouping_min_pages(machine) * PAGE_SIZE)
        raise ConfigError(source, "machine.nodes", f"at least {need} of memory outside the "
                          "memmap at boot (6.1 stops grouping by mobility below that; not "
                          "modelled)", format_size(boot_pages * PAGE_SIZE))
    nr_cpus = sum(node.cpus for node in machine.nodes)
    if nr_cpus > NR_CPUS_MAX:
        raise ConfigError(source, "machine.nodes", f"at most {NR_CPUS_MAX} CPUs in all "
                          "(x86_64's largest NR_CPUS)", nr_cpus)
    if not nr_cpus:
        raise ConfigError(source, "machine.nodes", "at least one node with cpus >= 1",
                          [node.cpus for node in machine.nodes])
    if machine.distance is not None:
        _check_distance(machine.distance, len(machine.nodes), source)


def resolve_proc_dir(value: object, key: str, source: str) -> Path:
    """A snapshot directory named in a config, relative to the config file's directory."""
    text = expect_str(value, key, source)
    path = Path(text).expanduser()
    if not path.is_absolute() and source and not source.startswith("<"):
        path = Path(source).parent / path
    if not (path / "zoneinfo").is_file():
        raise ConfigError(source, key, "a /proc snapshot directory holding a zoneinfo file "
                          "(see allocsim proc capture)", text)
    return path


def parse_machine(value: object, key: str, source: str) -> MachineConfig:
    """The ``machine:`` section (see the module docstring)."""
    if isinstance(value, dict) and "from_proc" in value:
        from simcore.formats.procmachine import machine_from_proc  # a cycle at import time

        data = expect_mapping(value, key, source, ("from_proc", *FROM_PROC_EXTRAS))
        path = resolve_proc_dir(data["from_proc"], child(key, "from_proc"), source)
        base, _ = machine_from_proc(path)
        extras = {k: v for k, v in data.items() if k != "from_proc"}
        kwargs = read_fields(extras, key, source, MACHINE_FIELDS)
        machine = MachineConfig(**{**base.__dict__, **kwargs})
    else:
        expect_mapping(value, key, source, names(MACHINE_KEYS), ("nodes",))
        kwargs = read_fields(value, key, source, MACHINE_FIELDS)
        machine = MachineConfig(**kwargs)
    check_machine(machine, source)
    return machine


def _dump_node(node: NodeConfig) -> dict[str, object]:
    out: dict[str, object] = {}
    if node.present:
        out["present"] = [format_range(r) for r in node.present]
    else:
        out["memory"] = format_size(node.memory_pages * PAGE_SIZE)
    out["cpus"] = node.cpus
    out["movable"] = format_size(node.movable_pages * PAGE_SIZE)
    if node.reserved_by_zone:
        out["reserved"] = {ZONE_NAMES[i]: format_size(pages * PAGE_SIZE)
                           for i, pages in enumerate(node.reserved_by_zone) if pages}
    else:
        out["reserved"] = format_size(node.reserved_pages * PAGE_SIZE)
    if node.reserved_at:
        out["reserved_at"] = [format_range(r) for r in node.reserved_at]
    return out


def dump_machine(machine: MachineConfig) -> dict[str, object]:
    """The machine section as YAML-ready data.

    A ``from_proc`` machine is written out in full, so a run directory's config needs no
    snapshot to be run again.
    """
    distance = machine.distance
    out: dict[str, object] = {
        "nodes": [_dump_node(node) for node in machine.nodes],
        "distance": None if distance is None else [list(row) for row in distance],
        "max_order": machine.max_order,
        "pageblock_order": machine.pageblock_order,
        "transparent_hugepage": machine.transparent_hugepage,
        "cma": machine.cma,
        "swap": format_size(machine.swap_pages * PAGE_SIZE),
        "layout": machine.layout,
    }
    if machine.below_4g_pages is not None:
        out["below_4g"] = format_size(machine.below_4g_pages * PAGE_SIZE)
    return out
