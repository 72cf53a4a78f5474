"""The background callers together: config errors, determinism, and conservation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from allocsim.run import simulate
from simcore.errors import ConfigError
from simcore.mm.invariants import check_invariants
from simcore.sim.machine import Machine
from workloads.registry import WORKLOADS, dump_experiment, load_experiment

BACKGROUND_YAML = """\
name: bg
seed: 7
duration: 3s
machine:
  nodes:
    - {memory: 128MiB, cpus: 2}
  transparent_hugepage: always
  swap: 16MiB
sysctl: {compaction_proactiveness: 0}
trace: {events: true, snapshot_interval: 100ms}
workloads:
  - name: cache
    type: page_cache
    size: 160MiB
    file_size: 16MiB
    rate: 1000/s
    reread_rate: 300/s
    write_rate: 100/s
    lifetime: {fixed: 800ms}
    dirty_expire: 200ms
    writeback_interval: 100ms
    max_requests: 1500
  - name: heap
    type: anon
    rate: 40/s
    size: {2MiB: 0.5, 3MiB: 0.5}
    lifetime: {fixed: 300ms}
    hot: 0.2
    max_requests: 60
  - name: pipes
    type: pinned
    rate: 500/s
    pages: 2
    lifetime: {fixed: 500ms}
    max_requests: 500
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bg.yaml"
    path.write_text(text)
    return path


def test_the_kinds_are_registered() -> None:
    assert {"page_cache", "anon", "pinned"} <= set(WORKLOADS)


def test_every_caller_frees_what_it_owns_and_every_page_is_accounted_for(
        tmp_path: Path) -> None:
    """Conservation: once the files are unlinked, the regions unmapped and the pipes
    closed, every managed page is free again and the swap slots are released."""
    cfg = load_experiment(_write(tmp_path, BACKGROUND_YAML))
    m = Machine.from_config(cfg)
    procs = []
    for spec, rng in zip(cfg.workloads, m.spawn_rngs(len(cfg.workloads)), strict=True):
        procs.append(m.env.process(WORKLOADS[spec.kind].run(m, spec, rng)))
    m.env.run(until=m.env.all_of(procs))
    m.apply_pending_frees()
    stats = m.extras["caller_stats"]
    assert stats["cache"]["files"] >= 10 and stats["cache"]["reads"] > 0
    assert stats["cache"]["writes"] > 0 and stats["cache"]["written_back"] > 0
    assert stats["heap"]["regions"] == 60 and stats["heap"]["thp"] > 0
    assert stats["pipes"]["pipes"] == 500
    assert m.stats.pages_reclaimed > 0  # the cache outgrew memory
    assert not m.owner_of
    assert all(o.pages == 0 and o.swap_pages == 0 for o in m.owners.values())
    assert m.mm.reclaim.swap_used == 0
    assert sum(z.nr_free_pages + z.pcp_pages for z in m.mm.zones) == m.mm.managed_pages
    assert sum(lv.size(lru) for lv in m.mm.reclaim.lruvecs for lru in range(4)) == 0
    check_invariants(m.mm, {})


def test_same_seed_same_run(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, BACKGROUND_YAML.replace("3s", "1s")))
    runs = [simulate(cfg, tmp_path / f"out{i}", report=False) for i in range(2)]
    summaries = [{k: v for k, v in r.summary.items() if k != "wall_seconds"} for r in runs]
    assert summaries[0] == summaries[1]
    assert summaries[0]["callers"]["heap"]["regions"] > 0
    events = [(r.run_dir / "trace" / "events.parquet").read_bytes() for r in runs]
    assert events[0] == events[1]


def test_the_effective_config_round_trips(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, BACKGROUND_YAML))
    import yaml

    again = load_experiment(_write(tmp_path, yaml.safe_dump(dump_experiment(cfg))))
    assert again.workloads == cfg.workloads
    assert json.dumps(dump_experiment(again)) == json.dumps(dump_experiment(cfg))


@pytest.mark.parametrize("old,new,key", [
    ("    rate: 1000/s\n", "    rate: 1000/s\n    grow_by: mmap\n", "workloads[0].grow_by"),
    ("    file_size: 16MiB\n", "    file_size: 1GiB\n", "workloads[0].file_size"),
    ("    file_size: 16MiB\n", "    chunk: 0\n", "workloads[0].chunk"),
    ("    reread_rate: 300/s\n", "    reread_rate: fast\n", "workloads[0].reread_rate"),
    ("    dirty_expire: 200ms\n", "    dirty_expire: soon\n", "workloads[0].dirty_expire"),
    ("    size: 160MiB\n", "    sizes: 160MiB\n", "workloads[0].sizes"),
    ("    hot: 0.2\n", "    defrag: sometimes\n", "workloads[1].defrag"),
    ("    hot: 0.2\n", "    hot: 2\n", "workloads[1].hot"),
    ("    hot: 0.2\n", "    madvise: true\n    nohugepage: true\n",
     "workloads[1].nohugepage"),
    ("    hot: 0.2\n", "    madvise: sometimes\n", "workloads[1].madvise"),
    ("    size: {2MiB: 0.5, 3MiB: 0.5}\n", "    size: 1GiB\n", "workloads[1].size"),
    ("    size: {2MiB: 0.5, 3MiB: 0.5}\n", "    size: {2MiB: 0.5}\n", "workloads[1].size"),
    ("    hot: 0.2\n", "    nid: 3\n", "workloads[1].nid"),
    ("    pages: 2\n", "    pages: 0\n", "workloads[2].pages"),
    ("    pages: 2\n", "    pages: 1000\n", "workloads[2].pages"),
    ("    pages: 2\n", "    gfp: GFP_BOGUS\n", "workloads[2].gfp"),
    ("    pages: 2\n", "    cpus: [5]\n", "workloads[2].cpus"),
    ("    pages: 2\n", "    oom_score_adj: 0\n", "workloads[2].oom_score_adj"),
])
def test_bad_keys_name_their_key_path(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = BACKGROUND_YAML.replace(old, new, 1)
    with pytest.raises(ConfigError) as err:
        load_experiment(_write(tmp_path, text))
    assert key in str(err.value)
