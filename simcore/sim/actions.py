"""Scheduled actions (the config's ``actions:`` list), run as one SimPy process.

Each action happens at its time, in file order for equal times, before any allocator
call at that instant that was scheduled later. It is traced as an ``action`` span and
logged (time, what, outcome) for ``summary.json``. An ``nr_hugepages`` write takes
simulated time: it starts its own process (:meth:`simcore.sim.hugetlb.HugetlbPool.resize`,
on the first CPU of node 0), the actions after it keep their times, and its log entry's
outcome is filled in when it completes.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from simcore.config.types import ActionConfig
from simcore.config.units import format_size
from simcore.formats import trace_schema as ts
from simcore.mm.sysctl import write_sysctl
from simcore.sim.hugetlb import hugetlb_of
from simcore.sim.machine import Machine


def describe(action: ActionConfig) -> str:
    """``sysctl min_free_kbytes=90000``, ``drop_caches 3``."""
    if action.kind == "drop_caches":
        return f"drop_caches {dict(action.args)['what']}"
    if action.kind == "compact_memory":
        return "compact_memory"
    if action.kind == "nr_hugepages":
        args = dict(action.args)
        node = "" if args["node"] is None else f" node={args['node']}"
        return f"nr_hugepages {args['count']}{node} size={format_size(args['size_pages'] * 4096)}"
    return "sysctl " + " ".join(f"{k}={v}" for k, v in action.args)


def run_action(machine: Machine, action: ActionConfig) -> dict[str, Any]:
    """Apply one action now; returns its log entry."""
    machine.apply_pending_frees()
    mm = machine.mm
    cpu = mm.nodes[0].cpus[0] if mm.nodes[0].cpus else 0
    machine._enter("", cpu)  # spans and trace events of the action have no caller
    pages = 0
    duration_ns = 0
    if action.kind == "drop_caches":
        what = dict(action.args)["what"]
        pages = mm.reclaim.drop_caches(what, cpu)
        outcome = f"{pages} pages freed"
    elif action.kind == "compact_memory":
        # sysctl_compaction_handler() -> compact_nodes(): every node, whole zones, sync.
        # The nodes are compacted in turn; the action's span lasts their cost.
        # SIMPLIFICATION: the work happens at once; nothing waits for the writer.
        for node in mm.nodes:
            moved, cost = mm.reclaim.compaction.compact_node(node.nid, cpu, duration_ns)
            pages += moved
            duration_ns += cost
        outcome = f"{pages} pages migrated"
    else:
        outcome = "; ".join(f"{name}: {write_sysctl(mm, name, value)}"
                            for name, value in action.args)
    now = int(machine.env.now)
    machine.spans.add(ts.SPAN_ACTION, -1, "", now, now + duration_ns, pages,
                      f"{describe(action)}: {outcome}")
    return {"at_ns": now, "do": describe(action), "outcome": outcome, "pages": pages}


def actions_process(machine: Machine, actions: tuple[ActionConfig, ...],
                    log: list[dict[str, Any]]) -> Generator[Any, Any, None]:
    """SimPy process: every action at its time (stable order for equal times)."""
    env = machine.env
    for action in sorted(actions, key=lambda a: a.at_ns):
        if action.at_ns > env.now:
            yield env.timeout(action.at_ns - env.now)
        if action.kind == "nr_hugepages":
            log.append(start_resize(machine, action))
        else:
            log.append(run_action(machine, action))


def start_resize(machine: Machine, action: ActionConfig) -> dict[str, Any]:
    """Start an ``nr_hugepages`` write; its log entry is completed when it ends."""
    machine.apply_pending_frees()
    args = dict(action.args)
    mm = machine.mm
    cpu = mm.nodes[0].cpus[0] if mm.nodes[0].cpus else 0
    now = int(machine.env.now)
    what = describe(action)
    machine.spans.add(ts.SPAN_ACTION, -1, "", now, now, 0, f"{what}: started")
    entry: dict[str, Any] = {"at_ns": now, "do": what, "outcome": "running", "pages": 0}
    order = args["size_pages"].bit_length() - 1
    pool = hugetlb_of(machine)

    def body() -> Generator[Any, Any, None]:
        req = yield from pool.resize(args["count"], args["node"], order, cpu, "action")
        done = pool.entry(req)
        entry["pages"] = done["allocated"] * req.h.nr_pages
        entry["outcome"] = (f"{done['obtained']} of {done['requested']} huge pages "
                            f"({done['allocated']} allocated, {done['freed']} freed) in "
                            f"{done['seconds']:.6f}s")

    machine.env.process(body())
    return entry
