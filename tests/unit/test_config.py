"""Config parsing: the schema, its error messages (key paths) and the dump round trip."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simcore.config.parse import dump_config, load_config, parse_config
from simcore.config.types import (
    ExperimentConfig,
    MachineConfig,
    NodeConfig,
    SysctlConfig,
    TraceConfig,
    WorkloadConfig,
)
from simcore.errors import ConfigError
from simcore.mm.gfp import GFP, GFP_KERNEL
from workloads.registry import (
    WORKLOADS,
    dump_experiment,
    load_experiment,
    workload_dumpers,
    workload_parsers,
)
from workloads.synthetic_params import LifetimeSpec, SyntheticParams

GOOD_YAML = """\
name: quickstart
seed: 42
duration: 10s
machine:
  nodes:
    - memory: 4GiB
      cpus: 2
    - memory: 2GiB
      cpus: 0
      movable: 1GiB
      reserved: 64KiB
  distance: [[10, 21], [21, 10]]
  max_order: 10
  pageblock_order: 9
  transparent_hugepage: madvise
sysctl:
  min_free_kbytes: 67584
  watermark_scale_factor: 150
  watermark_boost_factor: 0
  lowmem_reserve_ratio: [256, 256, 32, 0, 0]
  percpu_pagelist_high_fraction: 8
  extfrag_threshold: 500
  compaction_proactiveness: 0
trace:
  events: false
  snapshot_interval: 250ms
workloads:
  - name: background
    type: synthetic
    rate: 200/s
    order: {0: 0.9, 1: 0.05, 3: 0.05}
    lifetime: {lognormal: {median: 10ms, sigma: 1.5}}
    gfp: GFP_KERNEL|__GFP_COMP
    cpus: [0, 1]
    nid: 1
    max_requests: 1000
    start: 1s
  - name: pinned
    type: synthetic
    rate: 5/ms
    order: 9
    lifetime: forever
"""

GOOD = ExperimentConfig(
    name="quickstart",
    seed=42,
    duration_ns=10 * 10**9,
    machine=MachineConfig(
        nodes=(NodeConfig(memory_pages=1 << 20, cpus=2),
               NodeConfig(memory_pages=1 << 19, cpus=0, movable_pages=1 << 18,
                          reserved_pages=16)),
        distance=((10, 21), (21, 10)),
        max_order=10,
        pageblock_order=9,
        transparent_hugepage="madvise",
    ),
    sysctl=SysctlConfig(min_free_kbytes=67584, watermark_scale_factor=150,
                        watermark_boost_factor=0, lowmem_reserve_ratio=(256, 256, 32, 0, 0),
                        percpu_pagelist_high_fraction=8, extfrag_threshold=500,
                        compaction_proactiveness=0),
    trace=TraceConfig(events=False, snapshot_interval_ns=250_000_000),
    workloads=(
        WorkloadConfig("background", "synthetic", {"params": SyntheticParams(
            rate_per_s=200.0,
            order_weights=((0, 0.9), (1, 0.05), (3, 0.05)),
            lifetime=LifetimeSpec("lognormal", median_ns=10_000_000, sigma=1.5),
            gfp=int(GFP_KERNEL | GFP.COMP),
            cpus=(0, 1), nid=1, max_requests=1000, start_ns=10**9)}),
        WorkloadConfig("pinned", "synthetic", {"params": SyntheticParams(
            rate_per_s=5000.0, order_weights=((9, 1.0),), lifetime=LifetimeSpec("forever"),
            gfp=int(GFP_KERNEL))}),
    ),
    source="good.yaml",
)

MINIMAL: dict[str, Any] = {
    "name": "m", "seed": 0, "duration": "1s", "machine": {"nodes": [{"memory": "1GiB"}]},
}


def parse(data: object) -> ExperimentConfig:
    return parse_config(data, "test.yaml", workload_parsers())


def good_data() -> dict[str, Any]:
    data = yaml.safe_load(GOOD_YAML)
    assert isinstance(data, dict)
    return data


def test_good_config_parses_to_exact_dataclasses() -> None:
    assert parse_config(good_data(), "good.yaml", workload_parsers()) == GOOD


def test_minimal_config_takes_the_dataclass_defaults() -> None:
    cfg = parse(MINIMAL)
    assert cfg == ExperimentConfig("m", 0, 10**9, MachineConfig((NodeConfig(1 << 18),)),
                                   source="test.yaml")
    assert cfg.sysctl.min_free_kbytes is None and cfg.workloads == ()


def test_auto_min_free_kbytes_and_plain_lifetime() -> None:
    data = copy.deepcopy(MINIMAL)
    data["sysctl"] = {"min_free_kbytes": "auto"}
    data["workloads"] = [{"name": "w", "type": "synthetic", "rate": 10, "lifetime": "50ms",
                          "order": {0: 0.75, 2: 0.25}}]
    cfg = parse(data)
    params = cfg.workloads[0].params["params"]
    assert cfg.sysctl.min_free_kbytes is None
    assert params.lifetime == LifetimeSpec("exponential", mean_ns=50_000_000)
    assert params.order_weights == ((0, 0.75), (2, 0.25))
    assert params.gfp == int(GFP_KERNEL)


@pytest.mark.parametrize("weights", [{0: 3, 2: 1}, {0: 0.9, 1: 0.05}, {0: 0.5, 1: 0.500002}])
def test_order_weights_must_sum_to_one(weights: dict[int, float]) -> None:
    """A mapping that is not a distribution is a typo, not something to rescale."""
    with pytest.raises(ConfigError, match="summing to 1") as info:
        parse(with_change("workloads/0/order", weights))
    assert info.value.key == "workloads[0].order"


def test_order_weights_within_tolerance_are_kept_as_written() -> None:
    cfg = parse(with_change("workloads/0/order", {0: 0.5, 1: 0.4999995}))
    assert cfg.workloads[0].params["params"].order_weights == ((0, 0.5), (1, 0.4999995))


def with_change(path: str, value: object) -> dict[str, Any]:
    """GOOD data with ``value`` put at a slash-separated ``path``; ``...`` deletes it."""
    data = good_data()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split("/")]
    node: Any = data
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


BAD = [
    # (path to change, new value, key path in the error, a word the message must contain)
    ("colour", "red", "colour", "duration"),
    ("machine/numa", 2, "machine.numa", "nodes"),
    ("machine/nodes/1/ram", "1GiB", "machine.nodes[1].ram", "memory"),
    ("sysctl/swappiness", 201, "sysctl.swappiness", "0..200"),
    ("sysctl/dirty_ratio", 20, "sysctl.dirty_ratio", "swappiness"),
    ("trace/format", "csv", "trace.format", "snapshot_interval"),
    ("workloads/0/burst", 3, "workloads[0].burst", "rate"),
    ("workloads/0/lifetime/lognormal/mu", 1, "workloads[0].lifetime.lognormal.mu", "median"),
    ("seed", ..., "seed", "required"),
    ("machine/nodes/0/memory", ..., "machine.nodes[0].memory", "required"),
    ("seed", True, "seed", "integer"),
    ("seed", -1, "seed", ">= 0"),
    ("machine/nodes/0/cpus", "2", "machine.nodes[0].cpus", "integer"),
    ("machine/nodes/0/cpus", True, "machine.nodes[0].cpus", "0..8192"),
    ("trace/events", "yes", "trace.events", "true or false"),
    ("machine/max_order", 17, "machine.max_order", "1..16"),
    ("machine/pageblock_order", 11, "machine.pageblock_order", "max_order"),
    ("machine/transparent_hugepage", "sometimes", "machine.transparent_hugepage", "madvise"),
    ("machine/nodes", [], "machine.nodes", "1..64"),
    ("machine/nodes/0/memory", "4 gigs", "machine.nodes[0].memory", "64MiB"),
    ("machine/nodes/0/memory", "3MiB", "machine.nodes[0].memory", "pageblock size (2MiB)"),
    ("machine/nodes/0/memory", 0, "machine.nodes[0].memory", "a size > 0"),
    ("machine/nodes/0/memory", "4097", "machine.nodes[0].memory", "4096-byte pages"),
    ("machine/nodes/1/movable", "3GiB", "machine.nodes[1].movable", "movable <= memory"),
    ("machine/nodes/1/reserved", "1100MiB", "machine.nodes[1].reserved", "movable + reserved"),
    ("machine/nodes/0/cpus", 0, "machine.nodes", "at least one node with cpus"),
    ("machine/nodes/0/cpus", 8193, "machine.nodes[0].cpus", "0..8192"),
    ("machine/nodes/1/cpus", 8192, "machine.nodes", "at most 8192 CPUs"),
    ("duration", "10", "duration", "unit"),
    ("duration", "0s", "duration", "> 0"),
    ("trace/snapshot_interval", "5 parsecs", "trace.snapshot_interval", "known units"),
    ("machine/distance", [[10, 20, 20], [20, 10, 20], [20, 20, 10]], "machine.distance",
     "2x2"),
    ("machine/distance", [[10, 20], [20]], "machine.distance[1]", "2 entries"),
    # Too few rows is a shape error, not a row that is too long (a new user's report).
    ("machine/distance", [[10, 20, 20]], "machine.distance", "2x2 matrix"),
    ("machine/distance/0/0", 12, "machine.distance[0][0]", "10..10"),
    ("machine/distance/1/0", 10, "machine.distance[1][0]", "11..255"),
    ("machine/distance/1/0", 256, "machine.distance[1][0]", "11..255"),
    ("sysctl/min_free_kbytes", -1, "sysctl.min_free_kbytes", "0..2147483647"),
    ("sysctl/min_free_kbytes", "lots", "sysctl.min_free_kbytes", "auto"),
    ("sysctl/watermark_scale_factor", 0, "sysctl.watermark_scale_factor", "1..3000"),
    ("sysctl/watermark_scale_factor", 3001, "sysctl.watermark_scale_factor", "1..3000"),
    ("sysctl/percpu_pagelist_high_fraction", 7, "sysctl.percpu_pagelist_high_fraction",
     ">= 8"),
    ("sysctl/extfrag_threshold", 1001, "sysctl.extfrag_threshold", "0..1000"),
    ("sysctl/compaction_proactiveness", 101, "sysctl.compaction_proactiveness", "0..100"),
    ("sysctl/lowmem_reserve_ratio", [256, 32, 0], "sysctl.lowmem_reserve_ratio", "4..5"),
    ("sysctl/lowmem_reserve_ratio/2", -1, "sysctl.lowmem_reserve_ratio[2]", "0.."),
    ("name", "quick start", "name", "letters"),
    ("workloads/0/type", "stress-ng", "workloads[0].type", "synthetic"),
    ("workloads/1/name", "background", "workloads[1].name", "not used"),
    ("workloads/0/name", ..., "workloads[0].name", "required"),
    ("workloads/0/rate", "-5/s", "workloads[0].rate", ">= 0"),
    ("workloads/0/rate", 0, "workloads[0].rate", "> 0"),
    ("workloads/0/gfp", "GFP_KERNEL|__GFP_COMPP", "workloads[0].gfp", "__GFP_COMP"),
    ("workloads/0/gfp", 3264, "workloads[0].gfp", "GFP_KERNEL"),
    ("workloads/0/order", 17, "workloads[0].order", "0..16"),
    ("workloads/0/order", True, "workloads[0].order", "order"),
    ("workloads/0/order/1", 0, "workloads[0].order.1", "> 0"),
    ("workloads/0/order", {}, "workloads[0].order", "at least one"),
    ("workloads/0/lifetime/lognormal/sigma", "wide", "workloads[0].lifetime.lognormal.sigma",
     "number"),
    ("workloads/0/lifetime/lognormal/sigma", ..., "workloads[0].lifetime.lognormal.sigma",
     "required"),
    ("workloads/0/lifetime", {"weibull": "1s"}, "workloads[0].lifetime.weibull", "fixed"),
    ("workloads/0/lifetime", {"fixed": "0ms"}, "workloads[0].lifetime.fixed", "> 0"),
    ("workloads/0/lifetime", 50, "workloads[0].lifetime", "forever"),
    ("workloads/0/cpus", [0, 0], "workloads[0].cpus", "distinct"),
    ("workloads/0/cpus/1", -1, "workloads[0].cpus[1]", ">= 0"),
    ("workloads/0/max_requests", 0, "workloads[0].max_requests", ">= 1"),
    ("workloads/0/start", "-1s", "workloads[0].start", ">= 0"),
]


@pytest.mark.parametrize(("path", "value", "key", "word"), BAD,
                         ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_config_names_the_key(path: str, value: object, key: str, word: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_change(path, value))
    err = info.value
    assert err.key == key
    assert err.source == "test.yaml"
    assert word in str(err)
    assert str(err).startswith(f"test.yaml: {key}: ")  # no file: no line
    text = str(err).removeprefix(f"test.yaml: {key}: ")
    assert text.startswith("expected ") or (
        text.startswith("unknown ") and text.endswith(f"(expected {err.expected})"))
    assert "\n" not in str(err)


def test_unknown_key_lists_the_allowed_keys() -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_change("machine/nodez", 1))
    assert info.value.got == "nodez"
    for allowed in ("nodes", "distance", "max_order", "pageblock_order"):
        assert allowed in info.value.expected
    assert str(info.value).startswith("test.yaml: machine.nodez: unknown key; did you mean "
                                      "'nodes'? (expected one of the keys nodes, distance,")


@pytest.mark.parametrize(("path", "key", "hint"), [
    ("workloads/0/rat", "workloads[0].rat", "; did you mean 'rate'?"),
    ("sysctl/min_free_kbyte", "sysctl.min_free_kbyte", "; did you mean 'min_free_kbytes'?"),
    ("machine/nodes/0/cpu", "machine.nodes[0].cpu", "; did you mean 'cpus'?"),
    ("trace/zzzz", "trace.zzzz", ""),  # nothing near: no guess
])
def test_unknown_key_suggests_the_nearest_valid_key(path: str, key: str, hint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_change(path, 1))
    assert info.value.key == key
    assert str(info.value).startswith(f"test.yaml: {key}: unknown key{hint} "
                                      "(expected one of the keys ")


def test_unknown_workload_type_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_change("workloads/0/type", "synthetics"))
    assert str(info.value).startswith("test.yaml: workloads[0].type: unknown workload type "
                                      "'synthetics'; did you mean 'synthetic'? (expected a "
                                      "registered workload type (")


@pytest.mark.parametrize("top", [None, [1, 2], "name: x", 42])
def test_top_level_must_be_a_mapping(top: object) -> None:
    with pytest.raises(ConfigError, match="expected a mapping") as info:
        parse(top)
    assert info.value.key == "<top>"


def test_unknown_workload_kind_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError) as info:
        parse(with_change("workloads/0/type", "fio"))
    assert sorted(WORKLOADS) == ["anon", "atomic_bursts", "hugetlb", "nofree", "page_cache",
                             "pinned", "slab", "speculative_refs", "synthetic",
                             "threads", "vmalloc"]
    assert all(kind in info.value.expected for kind in WORKLOADS)
    assert info.value.got == "fio"


def test_without_parsers_params_stay_raw() -> None:
    cfg = parse_config(with_change("workloads/0/type", "anything"), "raw.yaml")
    assert cfg.workloads[0].kind == "anything"
    assert cfg.workloads[0].params["rate"] == "200/s"
    assert parse_config(dump_config(cfg), "raw.yaml") == cfg


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nseed: 1\nmachine:\n  nodes: [\n duration: 1s: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "<yaml>"
    assert info.value.line == 5
    assert str(info.value).startswith(f"{path}:5: <yaml>: expected valid YAML (column")


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: x\nseed: 1\nseed: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'seed'") as info:
        load_config(path)
    assert info.value.line == 3


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.key == "<file>" and info.value.source.endswith("nope.yaml")


def test_load_experiment_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(GOOD_YAML)
    cfg = load_experiment(path)
    assert cfg.source == str(path)
    assert cfg.workloads == GOOD.workloads and cfg.machine == GOOD.machine


@pytest.mark.parametrize(("max_order", "order", "ok"), [
    (10, 11, False), (10, 10, True), (10, {0: 0.5, 11: 0.5}, False), (8, 9, False)])
def test_order_above_max_order_does_not_validate(
    tmp_path: Path, max_order: int, order: object, ok: bool
) -> None:
    """__alloc_pages() refuses order >= MAX_ORDER with a WARN: a config asking for it is wrong."""
    data = with_change("workloads/0/order", order)
    data["machine"]["max_order"] = max_order
    data["machine"]["pageblock_order"] = min(9, max_order)
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(data))
    if ok:
        assert load_experiment(path).machine.max_order == max_order
        return
    expected = rf"orders 0\.\.{max_order} \(machine.max_order\)"
    with pytest.raises(ConfigError, match=expected) as info:
        load_experiment(path)
    assert info.value.key == "workloads[0].order"


def test_dump_round_trips_through_yaml_text() -> None:
    dumped: Any = dump_experiment(GOOD)
    assert dumped["machine"]["nodes"][1] == {
        "memory": "2GiB", "cpus": 0, "movable": "1GiB", "reserved": "64KiB"}
    assert dumped["workloads"][0]["lifetime"] == {"lognormal": {"median": "10ms", "sigma": 1.5}}
    assert dumped["workloads"][0]["gfp"] == "GFP_KERNEL|__GFP_COMP"
    text = yaml.safe_dump(dumped, sort_keys=False)
    assert parse_config(yaml.safe_load(text), "good.yaml", workload_parsers()) == GOOD


def test_dump_without_a_dumper_for_a_kind_fails() -> None:
    with pytest.raises(ValueError, match="synthetic"):
        dump_config(GOOD, workload_dumpers={})
    assert set(workload_dumpers()) == {"anon", "atomic_bursts", "hugetlb", "nofree",
                                       "page_cache", "pinned", "slab", "speculative_refs",
                                       "synthetic", "threads", "vmalloc"}


def test_lowmem_reserve_ratio_keeps_all_five_entries() -> None:
    """6.1's sysctl prints MAX_NR_ZONES = 5 values (ZONE_DEVICE last); none is dropped."""
    cfg = parse(with_change("sysctl/lowmem_reserve_ratio", [1, 2, 3, 4, 5]))
    assert cfg.sysctl.lowmem_reserve_ratio == (1, 2, 3, 4, 5)
    dumped = dump_experiment(cfg)["sysctl"]
    assert isinstance(dumped, dict) and dumped["lowmem_reserve_ratio"] == [1, 2, 3, 4, 5]
    assert parse(MINIMAL).sysctl.lowmem_reserve_ratio == (256, 256, 32, 0, 0)
    four = parse(with_change("sysctl/lowmem_reserve_ratio", [1, 2, 3, 4]))
    assert four.sysctl.lowmem_reserve_ratio == (1, 2, 3, 4)


weights = st.dictionaries(st.integers(0, 16), st.floats(1e-3, 1e3), min_size=1, max_size=5)
lifetimes = st.one_of(
    st.just({"fixed": "1ms"}), st.integers(1, 10**12).map(lambda n: f"{n}ns"),
    st.just("forever"), st.floats(0.01, 5).map(lambda s: {"lognormal": {"median": "3us",
                                                                          "sigma": s}}))


@settings(max_examples=60, deadline=None)
@given(
    mem_blocks=st.lists(st.integers(6, 4096), min_size=1, max_size=4),  # >= 12 MiB (not tiny)
    seed=st.integers(0, 2**64),
    order=weights,
    lifetime=lifetimes,
    rate=st.floats(1e-3, 1e9),
    wsf=st.integers(1, 3000),
)
def test_parse_dump_parse_is_exact(mem_blocks: list[int], seed: int, order: dict[int, float],
                                   lifetime: object, rate: float, wsf: int) -> None:
    total = sum(order.values())
    order = {k: v / total for k, v in order.items()}
    data = {
        "name": "h", "seed": seed, "duration": "1500us",
        "machine": {"nodes": [{"memory": f"{2 * n}MiB"} for n in mem_blocks]},
        "sysctl": {"watermark_scale_factor": wsf},
        "workloads": [{"name": "w", "type": "synthetic", "rate": rate, "order": order,
                       "lifetime": lifetime}],
    }
    cfg = parse(data)
    assert math_isclose_sum(cfg.workloads[0].params["params"].order_weights)
    assert parse(yaml.safe_load(yaml.safe_dump(dump_experiment(cfg)))) == cfg


def math_isclose_sum(order_weights: tuple[tuple[int, float], ...]) -> bool:
    return abs(sum(w for _, w in order_weights) - 1.0) < 1e-9


def test_every_key_path_has_its_line(tmp_path: Path) -> None:
    from simcore.config.yamlio import line_of, read_yaml_lines

    path = tmp_path / "lines.yaml"
    path.write_text("name: x\nmachine:\n  nodes:\n    - memory: 1GiB\n      cpus: 2\n"
                    "    - {memory: 2GiB}\nworkloads:\n  - name: w\n    order: {0: 0.5, 3: 0.5}\n")
    doc, lines = read_yaml_lines(path)
    assert doc["machine"]["nodes"][1] == {"memory": "2GiB"}
    assert lines["machine.nodes[0].cpus"] == 5
    assert lines["machine.nodes[1]"] == lines["machine.nodes[1].memory"] == 6
    assert lines["workloads[0].order.3"] == 9
    assert line_of(lines, "workloads[0].rate") == 8  # not in the file: its entry's line
    assert line_of(lines, "machine.nodes[1].memory.x") == 6
    assert line_of(lines, "seed") is None


def test_a_config_error_keeps_its_line_and_problem_through_pickle() -> None:
    import pickle

    err = ConfigError("x.yaml", "workloads[0].rat", "one of the keys rate", "rat", 7,
                      problem="unknown key; did you mean 'rate'?")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) == ("x.yaml:7: workloads[0].rat: unknown key; did you mean "
                                      "'rate'? (expected one of the keys rate)")


def test_opening_comment_is_the_question() -> None:
    from simcore.config.yamlio import opening_comment

    text = "# What does X do?\n#  indented\n#\n# Expect: Y.\n\nname: x  # not this\n# nor this\n"
    assert opening_comment(text) == "What does X do?\n indented\n\nExpect: Y."
    assert opening_comment("name: x\n# late comment\n") == ""
    assert opening_comment("\n\n# after blank lines\nname: x\n") == "after blank lines"
