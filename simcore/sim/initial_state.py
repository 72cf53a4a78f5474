"""Start a run from a real host's memory state: ``initial_state: {from_proc: DIR}``.

:func:`apply_initial_state` puts a freshly built :class:`~simcore.sim.machine.Machine`
into the state a ``/proc`` snapshot describes:

- per zone, the free lists and pageblock migratetypes of ``pagetypeinfo`` exactly
  (:mod:`simcore.sim.freestate`: the free table per order and migratetype, the "Number
  of blocks type" table), so the model's ``/proc/pagetypeinfo`` prints the snapshot's
  tables; ``nr_free_pages`` is then the free table's page total, which is zoneinfo's
  ``pages free`` too when both files were read at the same moment (neither counts the
  pcp pages);
- every other managed page allocated to the host's owners, sized from ``meminfo``
  (:mod:`simcore.sim.hostowners`), on the LRU and slab lists where reclaim finds them;
- the host's pcp pages on the model's pcp lists of the same CPUs (their orders and
  migratetypes, which zoneinfo does not give, are a SIMPLIFICATION: order 0, in the
  pageblocks :func:`~simcore.sim.hostowners.assign_node` chose).

The placement draws from its own stream of the run's seed, so two runs with the same
seed start from the same state, byte for byte, and the workloads' streams are those of
a run that starts fresh. The machine's zones must be the snapshot's (same start, spanned,
present and managed pages): :func:`zone_mismatch` says which differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from simcore.formats.fsstate import DENTRY_STATE, INODE_STATE, read_fs_state
from simcore.formats.meminfo import meminfo_pages, read_meminfo, require
from simcore.formats.procfs import ProcParseError, ProcSnapshot, read_snapshot
from simcore.formats.snapshots import pagetypeinfo_tables
from simcore.mm.constants import MIGRATE_TYPES, MIGRATETYPE_NAMES, MT_CMA, MT_ISOLATE, MT_MOVABLE
from simcore.sim.freestate import (
    ZonePlacement,
    ZoneTarget,
    managed_in,
    place_zone,
    write_free_lists,
)
from simcore.sim.hostowners import (
    KERNEL,
    OWNERS,
    PCP,
    TYPES,
    assign_node,
    fill_pcp_lists,
    hold_pages,
    split,
)

if TYPE_CHECKING:
    from simcore.sim.machine import Machine

INITIAL_STATE_STREAM = 0x494E4954
"""The spawn key of the placement's random stream (no ``SeedSequence.spawn()`` of a
run reaches it, so the workloads' streams do not change)."""


class ZoneLike(Protocol):
    """A zone's size, as both :class:`~simcore.mm.zone.Zone` and ``ZoneSpan`` give it."""

    @property
    def nid(self) -> int: ...  # noqa: D102

    @property
    def zone_idx(self) -> int: ...  # noqa: D102

    @property
    def zone_start_pfn(self) -> int: ...  # noqa: D102

    @property
    def spanned_pages(self) -> int: ...  # noqa: D102

    @property
    def present_pages(self) -> int: ...  # noqa: D102

    @property
    def managed_pages(self) -> int: ...  # noqa: D102


@dataclass(frozen=True)
class InitialState:
    """What :func:`apply_initial_state` did.

    Attributes:
        snapshot_dir: The snapshot (absolute path).
        owner_pages: Pages each host owner holds after setup.
        wanted_pages: What meminfo asked for each owner; ``host:kernel`` is the rest
            of the allocated pages.
        pcp_pages: The host's pcp pages (zoneinfo's ``count:``), on the model's pcp
            lists.
        mismatches: Where the state differs from the snapshot (empty: it does not).
        zoneinfo_free: Zones whose zoneinfo ``pages free`` is not the page total of
            pagetypeinfo's free table: the files were read at different moments (both
            count the buddy lists only, not the pcp lists). The model follows
            pagetypeinfo; this says by how much zoneinfo differs.
        assumptions: What the setup assumed where the snapshot is silent (e.g. the
            shrinkable share of reclaimable slab without ``dentry-state``).
    """

    snapshot_dir: str
    owner_pages: dict[str, int]
    wanted_pages: dict[str, int]
    pcp_pages: int = 0
    mismatches: tuple[str, ...] = field(default=())
    zoneinfo_free: tuple[str, ...] = field(default=())
    assumptions: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a manifest or summary."""
        return {"from_proc": self.snapshot_dir, "owner_pages": dict(self.owner_pages),
                "wanted_pages": dict(self.wanted_pages), "pcp_pages": self.pcp_pages,
                "mismatches": list(self.mismatches),
                "zoneinfo_free": list(self.zoneinfo_free),
                "assumptions": list(self.assumptions)}


def zone_mismatch(zones: list[ZoneLike], snap: ProcSnapshot) -> str | None:
    """How the machine's populated zones differ from the snapshot's, or None if they match."""
    from simcore.mm.constants import ZONE_NAMES

    theirs = {(z.nid, z.name): z for z in snap.zones if z.present > 0}
    ours = {(z.nid, ZONE_NAMES[z.zone_idx]): z for z in zones if z.present_pages > 0}
    for key in sorted(set(theirs) | set(ours)):
        where = f"node {key[0]} zone {key[1]}"
        if key not in ours or key not in theirs:
            side = "the machine" if key not in ours else "the snapshot"
            return f"{where} is missing from {side}"
        a, b = ours[key], theirs[key]
        for name, mine, snap_value in (("start_pfn", a.zone_start_pfn, b.start_pfn),
                                       ("spanned", a.spanned_pages, b.spanned),
                                       ("present", a.present_pages, b.present),
                                       ("managed", a.managed_pages, b.managed)):
            if mine != snap_value:
                return f"{where}: {name} {snap_value} in the snapshot, {mine} in the machine"
    return None


def apply_initial_state(machine: Machine, snapshot_dir: Path) -> InitialState:
    """Put a freshly built ``machine`` into the state of the snapshot in ``snapshot_dir``.

    The snapshot needs ``zoneinfo``, ``pagetypeinfo`` and ``meminfo`` (and, on a machine
    with several nodes, ``nodeN.meminfo``, else meminfo is split over the nodes in
    proportion to their allocated pages).

    Returns:
        The pages each host owner got and what did not match (see :class:`InitialState`).

    Raises:
        ProcParseError: A file is missing or malformed, or the machine's zones are not
            the snapshot's (the message says which zone and count differ).
        ValueError: The machine is not fresh (it has allocated, or its clock has run).
    """
    _check_fresh(machine)
    snapshot_dir = Path(snapshot_dir).resolve()
    snap = read_snapshot(snapshot_dir)
    if snap.pagetypeinfo is None:
        raise ProcParseError(str(snapshot_dir / "pagetypeinfo"), None,
                             "a readable pagetypeinfo (root only on a real host)", "none")
    mm = machine.mm
    problem = zone_mismatch(list(mm.zones), snap)
    if problem is not None:
        raise ProcParseError(str(snapshot_dir / "zoneinfo"), None,
                             "the zones of the machine being set up", problem)
    rng = np.random.default_rng(np.random.SeedSequence(
        machine.seed_sequence.entropy, spawn_key=(INITIAL_STATE_STREAM,)))
    notes: list[str] = []
    placements = []
    for i, zone in enumerate(mm.zones):
        target = _zone_target(snap, zone.nid, zone.name, notes)
        placement = place_zone(mm, i, target, rng)
        write_free_lists(mm, i, placement)
        notes += placement.notes
        placements.append(placement)
    assumptions: list[str] = []
    wanted, active = _wanted(snapshot_dir, machine, assumptions)
    pfns_by_owner = _assign(machine, snap, placements, wanted, rng)
    hold_pages(machine, pfns_by_owner, active, rng)
    pcp_pfns = pfns_by_owner.get(OWNERS.index(PCP), [])
    notes += fill_pcp_lists(
        machine, np.concatenate(pcp_pfns) if pcp_pfns else np.zeros(0, dtype=np.int64),
        {i: [(p.cpu, p.count) for z in snap.zones if (z.nid, z.name) == (zone.nid, zone.name)
             for p in z.pcp] for i, zone in enumerate(mm.zones)})
    owner_pages = {o.name: machine.owners[o.name].pages for o in OWNERS if o is not PCP}
    pcp_pages = sum(z.pcp_pages for z in mm.zones)
    wanted_total = {name: sum(w.get(name, 0) for w in wanted) for name in owner_pages}
    wanted_pcp = sum(_pcp_pages(snap, z.nid, z.name) for z in mm.zones)
    if pcp_pages < wanted_pcp:
        notes.append(f"pcp lists: zoneinfo counts {wanted_pcp} pages, only {pcp_pages} "
                     "were left for them")
    wanted_total[KERNEL.name] = owner_pages[KERNEL.name]
    for name, pages in owner_pages.items():
        if pages < wanted_total[name]:
            notes.append(f"{name}: meminfo asks for {wanted_total[name]} pages, only "
                         f"{pages} were left for it")
    notes += table_mismatches(machine, snap)
    state = InitialState(str(snapshot_dir), owner_pages, wanted_total, pcp_pages,
                         tuple(notes), tuple(_zoneinfo_free(machine, snap)),
                         tuple(assumptions))
    machine.extras["initial_state"] = state
    return state


def _zoneinfo_free(machine: Machine, snap: ProcSnapshot) -> list[str]:
    """Zones whose zoneinfo ``pages free`` differs from the rebuilt free lists."""
    out = []
    for zone in machine.mm.zones:
        theirs = next(z for z in snap.zones if z.nid == zone.nid and z.name == zone.name)
        if theirs.nr_free_pages != zone.nr_free_pages:
            out.append(f"node {zone.nid} zone {zone.name}: zoneinfo pages free "
                       f"{theirs.nr_free_pages}, pagetypeinfo's free lists "
                       f"{zone.nr_free_pages} (read at another moment)")
    return out


def _check_fresh(machine: Machine) -> None:
    mm = machine.mm
    if (machine.stats.alloc_requests or machine.owner_of or machine.held is not None
            or machine.env.now or any(z.pcp_pages for z in mm.zones)):
        raise ValueError("apply_initial_state() needs a freshly built machine (nothing "
                         "allocated, clock at 0)")


def _zone_target(snap: ProcSnapshot, nid: int, name: str, notes: list[str]) -> ZoneTarget:
    """The snapshot's pagetypeinfo rows of one zone, by internal migratetype.

    CMA and Isolate counts (not modelled) are added to Movable, with a note.
    """
    info = snap.pagetypeinfo
    assert info is not None
    free = np.zeros((0, MIGRATE_TYPES), dtype=np.int64)
    blocks = np.zeros(MIGRATE_TYPES, dtype=np.int64)
    for mt, mt_name in enumerate(MIGRATETYPE_NAMES):
        counts = info.free_counts.get((nid, name, mt_name))
        if counts is None:
            continue
        if not len(free):
            free = np.zeros((len(counts), MIGRATE_TYPES), dtype=np.int64)
        free[: len(counts), mt] = counts
    row = info.block_counts.get((nid, name), ())
    for mt_name, count in zip(info.block_types, row, strict=False):
        if mt_name in MIGRATETYPE_NAMES:
            blocks[MIGRATETYPE_NAMES.index(mt_name)] = count
    for mt in (MT_CMA, MT_ISOLATE):
        if blocks[mt] or free[:, mt].any():
            notes.append(f"node {nid} zone {name}: {MIGRATETYPE_NAMES[mt]} pageblocks and "
                         "free blocks are not modelled: counted as Movable")
            blocks[MT_MOVABLE] += blocks[mt]
            free[:, MT_MOVABLE] += free[:, mt]
            blocks[mt] = 0
            free[:, mt] = 0
    return ZoneTarget(free, blocks)


def _pcp_pages(snap: ProcSnapshot, nid: int, name: str) -> int:
    """Pages the host had on the zone's pcp lists (zoneinfo ``count:`` lines)."""
    return sum(pcp.count for z in snap.zones if z.nid == nid and z.name == name for pcp in z.pcp)


def _meminfo_wanted(info: dict[str, int], path: str, unused_share: float) -> dict[str, int]:
    """Owner pages from one meminfo file (the whole host's, or one node's).

    ``unused_share`` of ``SReclaimable`` is shrinkable (:func:`read_fs_state`).
    """
    shmem = require(info, "Shmem", path)
    if "FilePages" in info:  # a node's meminfo
        file_kb = info["FilePages"] - shmem - require(info, "SwapCached", path)
    else:
        file_kb = require(info, "Cached", path) + require(info, "Buffers", path) - shmem
    return {"host:page_cache": meminfo_pages(max(0, file_kb)),
            "host:anon": meminfo_pages(require(info, "AnonPages", path)),
            "host:shmem": meminfo_pages(shmem),
            **_slab(meminfo_pages(require(info, "SReclaimable", path)), unused_share)}


def _slab(pages: int, unused_share: float) -> dict[str, int]:
    """``SReclaimable`` pages split into shrinkable and in-use slab."""
    shrinkable = round(pages * unused_share)
    return {"host:slab_reclaim": shrinkable, "host:slab_in_use": pages - shrinkable}


def _active_share(info: dict[str, int]) -> dict[str, float]:
    """The fraction of each LRU kind on its active list."""
    out = {}
    for kind, names in (("file", ("host:page_cache",)), ("anon", ("host:anon", "host:shmem"))):
        act, inact = info.get(f"Active({kind})", 0), info.get(f"Inactive({kind})", 0)
        for name in names:
            out[name] = act / (act + inact) if act + inact else 0.0
    return out


def _wanted(snapshot_dir: Path, machine: Machine,
            notes: list[str]) -> tuple[list[dict[str, int]], dict[str, float]]:
    """Per node: owner -> pages from meminfo; and the active shares."""
    mm = machine.mm
    share = read_fs_state(snapshot_dir)
    if share is None:
        notes.append(f"no {DENTRY_STATE} and {INODE_STATE} (/proc/sys/fs): the shrinkable "
                     "share of SReclaimable is unknown, so all of it is held as slab in "
                     "use, which no shrinker frees")
        share = 0.0
    path = snapshot_dir / "meminfo"
    total = read_meminfo(path)
    nids = [node.nid for node in mm.nodes]
    node_files = [snapshot_dir / f"node{nid}.meminfo" for nid in nids]
    if len(nids) > 1 and all(p.is_file() for p in node_files):
        return ([_meminfo_wanted(read_meminfo(p), str(p), share) for p in node_files],
                _active_share(total))
    whole = _meminfo_wanted(total, str(path), share)
    used = np.array([sum(z.managed_pages - z.nr_free_pages for z in node.zones)
                     for node in mm.nodes], dtype=np.int64)
    shares = {name: split(pages, used) for name, pages in whole.items()}
    return ([{name: int(s[i]) for name, s in shares.items()} for i in range(len(nids))],
            _active_share(total))


def _assign(machine: Machine, snap: ProcSnapshot, placements: list[ZonePlacement],
            wanted: list[dict[str, int]], rng: np.random.Generator,
            ) -> dict[int, list[np.ndarray]]:
    """Each owner's pfns, zone by zone: the allocated pages cut into owner runs."""
    mm = machine.mm
    out: dict[int, list[np.ndarray]] = {}
    for node in mm.nodes:
        zones = [i for i, z in enumerate(mm.zones) if z.nid == node.nid]
        if not zones:
            continue
        pools = [_pools(machine, i, placements[i], rng) for i in zones]
        caps = np.array([[len(p[t]) for t in range(len(TYPES))] for p in pools],
                        dtype=np.int64)
        pcp = np.array([_pcp_pages(snap, mm.zones[i].nid, mm.zones[i].name) for i in zones])
        amounts = assign_node(pcp, caps, wanted[node.nid])
        for z, pool in enumerate(pools):
            for t in range(len(TYPES)):
                start = 0
                for owner, n in enumerate(amounts[z][t].tolist()):
                    out.setdefault(owner, []).append(pool[t][start : start + n])
                    start += n
    return out


def _pools(machine: Machine, zone_index: int, placement: ZonePlacement,
           rng: np.random.Generator) -> list[np.ndarray]:
    """The zone's allocated pfns in pageblocks of each of :data:`TYPES`, in owner order.

    Pageblocks come in a seeded order, pfns ascending within each.
    """
    mm = machine.mm
    pb = mm.pageblock_order
    blocks = placement.blocks
    if not len(blocks):
        return [np.zeros(0, dtype=np.int64) for _ in TYPES]
    lo = int(blocks[0]) << pb
    hi = (int(blocks[-1]) + 1) << pb
    alloc = managed_in(mm, zone_index, lo, hi)
    if len(placement.pfn):
        sizes = np.left_shift(1, placement.order)
        starts = np.repeat(placement.pfn - lo, sizes)
        offsets = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        alloc[starts + offsets] = False
    counted = np.zeros((hi - lo) >> pb, dtype=bool)
    counted[blocks - blocks[0]] = True
    pfns = np.flatnonzero(alloc & np.repeat(counted, 1 << pb)) + lo
    label_of = np.full((hi - lo) >> pb, -1, dtype=np.int64)
    label_of[blocks - blocks[0]] = placement.labels
    rank_of = np.zeros((hi - lo) >> pb, dtype=np.int64)
    rank_of[blocks - blocks[0]] = rng.permutation(len(blocks))
    rel = (pfns - lo) >> pb
    order = np.lexsort((pfns, rank_of[rel]))
    pfns, rel = pfns[order], rel[order]
    return [pfns[label_of[rel] == mt] for mt in TYPES]


def table_mismatches(machine: Machine, snap: ProcSnapshot) -> list[str]:
    """Where the model's pagetypeinfo tables differ from the snapshot's."""
    info = snap.pagetypeinfo
    assert info is not None
    mm = machine.mm
    model = pagetypeinfo_tables(mm.zones, show_cma=mm.cma)
    out = []
    for key, counts in info.free_counts.items():
        mine = model.free_counts.get(key)
        if mine is not None and tuple(min(c, 100000) for c in mine) != counts:
            out.append(f"free blocks of node {key[0]} zone {key[1]} {key[2]}: "
                       f"{list(counts)} in the snapshot, {list(mine)} in the model")
    for (nid, zone), row in info.block_counts.items():
        theirs = dict(zip(info.block_types, row, strict=False))
        mine_row = dict(zip(model.block_types, model.block_counts.get((nid, zone), ()),
                            strict=False))
        if any(mine_row.get(name, 0) != n for name, n in theirs.items()):
            out.append(f"pageblocks of node {nid} zone {zone}: {theirs} in the "
                       f"snapshot, {mine_row} in the model")
    return out
