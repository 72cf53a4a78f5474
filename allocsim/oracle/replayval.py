"""Replay validation: the model replaying a real run's trace, against what the host showed.

For a run laid out like ``../shared/oracle/<run>/`` (``start/`` snapshot, ``trace.txt.xz``,
``buddyinfo.periodic`` or ``end/``, ``meta.txt``), :func:`replay_fidelity` replays the
trace with ``--placement model`` from the ``start/`` state and compares, at the last real
``buddyinfo.periodic`` sample inside the trace (else at the ``end/`` snapshot):

- the buddyinfo per zone and order, as an L1 distance in pages: the sum over zones and
  orders of ``|sim - real| * 2**order``, divided by the real free pages, in %;
- the free pages on the buddy lists (``NR_FREE_PAGES``);
- the share of allocations served from pcp lists and the ``mm_page_alloc_extfrag``
  events, derived by one rule from the real trace and from the model's own
  (:mod:`simcore.formats.trace_metrics`) over the whole trace.

:func:`hugepage_steps` validates each huge-page request of the run: the state just before
the request is rebuilt with ``--placement real`` from ``start/`` (whatever the host did
before it, a ``compact_memory`` write included, is in that state: its migrations are
replayed as such); the model's hugetlb caller then makes the request itself, with the
sysctls the run had then (the snapshot taken after that step), and the pool it ends with
is set against ``meta.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from allocsim.replay import replay_config
from simcore.formats import trace_schema as ts
from simcore.formats.procfs import read_snapshot
from simcore.formats.procmachine import sysctl_from_snapshot
from simcore.formats.proctables import parse_buddyinfo
from simcore.formats.trace_metrics import PageEvents, extfrag_events, served_from
from simcore.formats.trace_table import compaction_runs, time_bounds
from simcore.mm.sysctl import write_sysctl
from simcore.sim.hugetlb import hugetlb_of
from simcore.sim.machine import Machine
from simcore.sim.replay import Replay, is_hugetlb_page
from simcore.sim.tracer import RecordingTracer

Prepare = Callable[[Machine, Path], Any]
"""``prepare(machine, start_dir)``: put a new machine into a snapshot's state."""
STEP_KEY = re.compile(r"^hugepages_total_after_(\d+)_(.+)$")
TAIL_NS = 1_000_000


@dataclass
class Fidelity:
    """Replay fidelity of one run (see the module docstring)."""

    at_s: float
    buddyinfo_l1_pct: float
    free_pages_sim: int
    free_pages_real: int
    pcp_share_sim: float | None
    pcp_share_real: float | None
    extfrag_sim: int
    extfrag_real: int
    replay: dict[str, Any]
    slowpath: dict[str, dict[str, int]] | None = None
    """Direct reclaims, compactions and kswapd wakes: ``{"sim": ..., "real": ...}``."""


def read_meta(run: Path) -> dict[str, str]:
    """``meta.txt``'s ``key=value`` pairs (empty if absent)."""
    path = run / "meta.txt"
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines()
             if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def _machine(run: Path, start: Path, tracer: RecordingTracer | None,
             prepare: Prepare | None) -> Machine:
    """The run's machine as its ``start/`` snapshot shows it.

    ``prepare`` puts it in that snapshot's state (a fresh machine when None).
    """
    cfg = replay_config(start, 0, run.name, "fresh")
    m = Machine.from_config(cfg, tracer)
    if tracer is not None:
        tracer.clock = m.trace_now
    if prepare is not None:
        prepare(m, start)
    return m


def _runs(run: Path) -> dict[int, list[tuple[int, int]]] | None:
    """The compaction runs of the run's ``slowpath-trace.txt.xz``, if it has one."""
    slow = run / "slowpath-trace.txt.xz"
    return compaction_runs(slow) if slow.is_file() else None


def _real_buddyinfo(run: Path, last_s: float) -> tuple[float, dict[tuple[int, str], list[int]]]:
    """The last ``buddyinfo.periodic`` sample at or before ``last_s`` (else ``end/``)."""
    from reports.overlay import read_buddyinfo_periodic

    periodic = run / "buddyinfo.periodic"
    if periodic.is_file():
        df = read_buddyinfo_periodic(periodic)
        df = df[df.time_s <= last_s]
        if len(df):
            at = float(df.time_s.max())
            rows: dict[tuple[int, str], list[int]] = {}
            for r in df[df.time_s == at].itertuples():
                rows.setdefault((int(r.nid), str(r.zone)), [0] * (int(r.order) + 1))
                counts = rows[(int(r.nid), str(r.zone))]
                counts += [0] * (int(r.order) + 1 - len(counts))
                counts[int(r.order)] = int(r.nr_free)
            return at, rows
    end = run / "end" / "buddyinfo"
    return last_s, {k: list(v) for k, v in parse_buddyinfo(end.read_text(), str(end)).items()}


def _sim_buddyinfo(m: Machine) -> dict[tuple[int, str], list[int]]:
    return {(z.nid, z.name): [int(n) for n in z.free_area.nr_free] for z in m.mm.zones}


def buddyinfo_l1(sim: dict[tuple[int, str], list[int]],
                 real: dict[tuple[int, str], list[int]]) -> tuple[float, int, int]:
    """``(L1 %, free pages sim, free pages real)`` over every zone either side has."""
    dist = sim_pages = real_pages = 0
    for key in sorted(set(sim) | set(real)):
        s, r = sim.get(key, []), real.get(key, [])
        for order in range(max(len(s), len(r))):
            a = s[order] if order < len(s) else 0
            b = r[order] if order < len(r) else 0
            dist += abs(a - b) << order
            sim_pages += a << order
            real_pages += b << order
    return (100.0 * dist / real_pages if real_pages else 0.0), sim_pages, real_pages


def replay_fidelity(run: Path, table: Path, work: Path, prepare: Prepare | None) -> Fidelity:
    """Replay ``table`` (the run's imported trace) with placement model; compare."""
    _, last_ns = time_bounds(table)
    at_s, real = _real_buddyinfo(run, last_ns / 1e9)
    tracer = RecordingTracer(work / "events.parquet", clock=lambda: 0)
    m = _machine(run, run / "start", tracer, prepare)
    replay = Replay(m, table, "model", compaction_runs=_runs(run))
    done = m.env.process(replay.process())
    env = m.env
    compare_at = int(at_s * 1e9) - replay.first_time_ns() + 1
    while env.peek() < compare_at and not done.triggered:
        env.step()
    l1, free_sim, free_real = buddyinfo_l1(_sim_buddyinfo(m), real)
    env.run(until=done)
    tracer.close()
    sim_ev, real_ev = PageEvents.read(work / "events.parquet"), PageEvents.read(table)
    slow = run / "slowpath-trace.txt.xz"
    return Fidelity(at_s, round(l1, 2), free_sim, free_real,
                    served_from(sim_ev).pcp_share, served_from(real_ev).pcp_share,
                    extfrag_events(sim_ev), extfrag_events(real_ev), replay.counts.as_dict(),
                    slowpath_counts(slow, m, replay.first_time_ns()) if slow.is_file() else None)


SLOWPATH_EVENTS = {
    "direct_reclaim": ("mm_vmscan_direct_reclaim_begin", ts.SPAN_DIRECT_RECLAIM),
    "compaction": ("mm_compaction_begin", ts.SPAN_COMPACTION),
    "kswapd_wake": ("mm_vmscan_kswapd_wake", ts.SPAN_KSWAPD_WAKE),
}
"""What is counted: the host's tracepoint and the model's span of the same name."""
_SLOW_LINE = re.compile(r"\s(\d+\.\d+):\s+(mm_\w+):")


def slowpath_counts(path: Path, m: Machine, t0_ns: int) -> dict[str, dict[str, int]]:
    """:data:`SLOWPATH_EVENTS` in the host's slowpath trace and in the model's replay.

    Both are counted over the time the slowpath trace covers.
    """
    from simcore.formats.ftrace import open_text

    real = dict.fromkeys(SLOWPATH_EVENTS, 0)
    by_event = {event: key for key, (event, _) in SLOWPATH_EVENTS.items()}
    first = last = -1
    with open_text(path) as f:
        for line in f:
            match = _SLOW_LINE.search(line)
            if match is None:
                continue
            t = round(float(match[1]) * 1e9)
            first = t if first < 0 else first
            last = t
            key = by_event.get(match[2])
            if key is not None:
                real[key] += 1
    cols = m.spans.columns.cols
    sim = dict.fromkeys(SLOWPATH_EVENTS, 0)
    by_span = {span: key for key, (_, span) in SLOWPATH_EVENTS.items()}
    for name, start in zip(cols["name"], cols["start_ns"], strict=True):
        key = by_span.get(name)
        if key is not None and first <= start + t0_ns <= last:
            sim[key] += 1
    return {key: {"sim": sim[key], "real": real[key]} for key in SLOWPATH_EVENTS}


@dataclass
class Step:
    """One huge-page request of a run."""

    name: str
    line: int
    """The trace line of its first pool allocation."""
    snapshot: Path | None
    """The snapshot taken after it (its sysctls are the request's)."""
    real: int


def _uptime(snapshot: Path) -> float | None:
    path = snapshot / "uptime"
    if not path.is_file():
        return None
    return float(path.read_text().split()[0])


def find_steps(run: Path, table: Path, pageblock_order: int) -> list[Step]:
    """The run's huge-page requests, from ``meta.txt`` and the trace (see module doc).

    A request's first pool allocation is the first hugetlb ``mm_page_alloc`` after the
    snapshot of the previous request (its ``uptime``).
    """
    meta = read_meta(run)
    named = sorted((int(m[1]), m[2], int(v)) for k, v in meta.items()
                   if (m := STEP_KEY.match(k)) is not None)
    if not named and "hugepages_obtained" in meta:
        named = [(1, "request", int(meta["hugepages_obtained"]))]
    cols = pq.read_table(table, columns=["line", "time_ns", "event", "order", "gfp", "pfn"])
    rows = cols.filter(pc.and_(pc.equal(cols.column("event"), "mm_page_alloc"),
                               pc.equal(cols.column("order"), pageblock_order))).to_pydict()
    pool = [(line, t) for line, t, gfp in zip(rows["line"], rows["time_ns"], rows["gfp"],
                                              strict=True)
            if is_hugetlb_page(gfp, pageblock_order, pageblock_order)]
    steps, after_s = [], -1.0
    for number, name, real in named:
        snap = run / f"after_{number}_{name}"
        first = next((line for line, t in pool if t / 1e9 > after_s), None)
        if first is None:
            break
        steps.append(Step(name, first, snap if snap.is_dir() else None, real))
        uptime = _uptime(snap) if snap.is_dir() else None
        if uptime is None:
            break
        after_s = uptime
    return steps


def _set_sysctls(m: Machine, snapshot: Path) -> None:
    """Write every sysctl of ``snapshot`` that differs from the machine's."""
    want = sysctl_from_snapshot(read_snapshot(snapshot))
    for name in want.__dataclass_fields__:
        value = getattr(want, name)
        if value is not None and value != getattr(m.mm.sysctl, name):
            write_sysctl(m.mm, name, value)


def run_step(run: Path, table: Path, step: Step, prepare: Prepare | None) -> dict[str, Any]:
    """Rebuild the state before ``step`` (placement real), then request huge pages."""
    m = _machine(run, run / "start", None, prepare)
    replay = Replay(m, table, "real", stop_before_line=step.line, compaction_runs=_runs(run))
    m.env.run(until=m.env.process(replay.process()))
    mm = m.mm
    held = sum(1 for h in replay.live.values()
               if h.alive and is_hugetlb_page(h.gfp, h.order, mm.pageblock_order))
    replay.hand_over_to_reclaim()
    snapshot = step.snapshot if step.snapshot is not None else run / "end"
    if (snapshot / "sysctl_vm").is_file():
        _set_sysctls(m, snapshot)
    pool = hugetlb_of(m)
    count = held + mm.managed_pages // (1 << mm.pageblock_order)  # as many as fit
    cpu = mm.nodes[0].cpus[0]
    proc = m.env.process(pool.resize(count, None, mm.pageblock_order, cpu, "validate"))
    m.env.run(until=proc)
    request = proc.value
    assert request is not None
    obtained = pool.entry(request)["allocated"]
    return {"step": step.name, "hugepages_sim": held + obtained, "hugepages_real": step.real,
            "held_before": held, "obtained_by_model": obtained,
            "replay": replay.counts.as_dict()}
