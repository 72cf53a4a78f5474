"""Every named caller on one machine: conservation of pages once each has freed what it
owns, and attribution of requests, failures and polluted pageblocks to the callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from simcore.errors import ConfigError
from simcore.mm.invariants import check_invariants
from simcore.sim.machine import Machine
from simcore.sim.pollution import pollution_summary
from workloads.registry import WORKLOADS, load_experiment
from workloads.slab import kmem_cache_shrink
from workloads.task_objects import CACHES_KEY
from workloads.threads import free_vm_stack_cache

ALL_CALLERS_YAML = """\
name: all
seed: 11
duration: 4s
machine:
  nodes:
    - {memory: 96MiB, cpus: 2}
    - {memory: 96MiB, cpus: 2}
  distance: [[10, 20], [20, 10]]
  transparent_hugepage: always
  swap: 32MiB
sysctl: {compaction_proactiveness: 0}
trace: {events: false, snapshot_interval: 100ms}
workloads:
  - {name: files, type: page_cache, size: 128MiB, file_size: 8MiB, rate: 400/s,
     max_requests: 1024, lifetime: 1s, reread_rate: 100/s, write_rate: 10/s}
  - {name: heap, type: anon, rate: 40/s, size: 4MiB, lifetime: 300ms, max_requests: 40}
  - {name: pipes, type: pinned, rate: 400/s, lifetime: 500ms, max_requests: 300}
  - {name: dentry, type: slab, object_size: 192, reclaimable: true, rate: 4000/s,
     lifetime: {exponential: 300ms}, max_requests: 4000}
  - {name: modules, type: vmalloc, rate: 50/s, size: {64KiB: 0.5, 4MiB: 0.5},
     huge_vmap: true, lifetime: 200ms, max_requests: 60}
  - {name: forks, type: threads, rate: 100/s, burst: {1: 0.5, 8: 0.5},
     lifetime: 50ms, max_requests: 200}
  - {name: perm, type: nofree, rate: 200/s, size: {4KiB: 0.8, 16KiB: 0.2},
     max_requests: 300}
  - {name: rx, type: atomic_bursts, rate: 200/s, burst: 16, order: {0: 0.5, 3: 0.5},
     lifetime: {exponential: 2ms}, gfp: GFP_ATOMIC|__GFP_NOWARN|__GFP_COMP,
     max_requests: 200}
  - {name: walkers, type: speculative_refs, rate: 5000/s, hold: 20us, max_requests: 5000}
  - {name: db, type: hugetlb, size: 2MiB, resize: [{at: 1s, count: 32}, {at: 2s, count: 0}],
     use: 0.5, release: 1500ms}
"""


def _run_all(tmp_path: Path) -> Machine:
    path = tmp_path / "all.yaml"
    path.write_text(ALL_CALLERS_YAML)
    cfg = load_experiment(path)
    assert {spec.kind for spec in cfg.workloads} == set(WORKLOADS) - {"synthetic"}
    m = Machine.from_config(cfg)
    for spec, rng in zip(cfg.workloads, m.spawn_rngs(len(cfg.workloads)), strict=True):
        m.env.process(WORKLOADS[spec.kind].run(m, spec, rng))
    m.env.run()  # until no event is left: every caller has finished and freed
    m.apply_pending_frees()
    return m


def test_every_caller_frees_what_it_owns_and_pages_are_conserved(tmp_path: Path) -> None:
    m = _run_all(tmp_path)
    for cpu in range(m.nr_cpus):
        free_vm_stack_cache(m, cpu)  # the cached thread stacks, as at CPU hot-unplug
    for cache in m.extras.get(CACHES_KEY, {}).values():
        kmem_cache_shrink(m, cache)  # the fork caches' CPU slabs
    left = {h.owner for h in m.owner_of.values()}
    assert left == {"perm"}, left  # NOFREE chunks are never given back
    stats = m.extras["caller_stats"]
    perm = stats["perm"]
    assert sum(1 << h.order for h in m.owner_of.values()) == 512 * perm["chunks_imported"] \
        + perm["import_fallbacks"]
    assert all(o.pages == 0 for o in m.owners.values() if o.name != "perm")
    assert m.mm.reclaim.swap_used == 0
    check_invariants(m.mm, {h.pfn: h.order for h in m.owner_of.values()})
    # every caller did its work
    assert stats["files"]["reads"] and stats["heap"]["regions"] == 40
    assert stats["pipes"]["pipes"] == 300 and stats["dentry"]["objects"] == 4000
    assert stats["modules"]["calls"] == 60 and stats["forks"]["forks"] == 200
    assert stats["rx"]["bursts"] == 200 and stats["walkers"]["takes"] > 0


def test_requests_and_failures_are_attributed_to_callers(tmp_path: Path) -> None:
    m = _run_all(tmp_path)
    requests = {o.name: o.requests for o in m.owners.values() if o.requests}
    assert sum(requests.values()) == m.stats.alloc_requests
    assert sum(m.stats.failures_by_caller.values()) == sum(m.stats.failures_by_order.values())
    for caller in ("files", "heap", "pipes", "dentry", "modules", "forks", "perm", "rx",
                   "hugetlb", "task_struct"):
        assert requests.get(caller), caller
    pollution = pollution_summary(m)
    assert set(pollution["charged_by_caller"]) <= set(m.owners)
    assert sum(pollution["extfrag_by_caller"].values()) == m.mm.vm["extfrag_steal"]


@pytest.mark.parametrize(("workload", "key", "got"), [
    ("{name: hugetlb, type: synthetic, rate: 10/s, order: 0, lifetime: 1ms}",
     "workloads[0].name", "hugetlb"),
    ("{name: task_struct, type: slab, object_size: 192, rate: 10/s, lifetime: 1ms}\n"
     "  - {name: forks, type: threads, rate: 10/s, lifetime: 1ms}",
     "workloads[0].name", "task_struct"),
    ("{name: db, type: hugetlb, size: 2MiB, resize: [{at: 5s, count: 4}]}",
     "workloads[0].resize[0].at", "5s"),
])
def test_a_workload_cannot_take_an_internal_caller_name_or_write_after_the_run(
    tmp_path: Path, workload: str, key: str, got: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nseed: 1\nduration: 1s\nmachine:\n  nodes:\n    - {memory: 64MiB, "
                    f"cpus: 1}}\nworkloads:\n  - {workload}\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert info.value.key == key and str(info.value.got) == got
