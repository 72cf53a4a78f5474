"""The ``nr_hugepages`` action and the ``hugetlb``/``speculative_refs`` workload keys: what
they parse to, the dump/parse round trip, and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from simcore.config.parse import dump_config, parse_config
from simcore.config.types import ActionConfig
from simcore.errors import ConfigError
from workloads.hugetlb import HugetlbParams, Resize
from workloads.registry import workload_dumpers, workload_parsers
from workloads.speculative_refs import SpeculativeRefsParams

BASE: dict[str, Any] = {
    "name": "h", "seed": 1, "duration": "60s",
    "machine": {"nodes": [{"memory": "128MiB", "cpus": 1}, {"memory": "128MiB", "cpus": 1}]},
}


def _parse(**extra: Any) -> Any:
    return parse_config({**BASE, **extra}, "h.yaml", workload_parsers())


def test_the_action_forms_parse_to_count_node_and_size_in_pages() -> None:
    cfg = _parse(actions=[{"at": "30s", "do": {"nr_hugepages": 2048}},
                          {"at": "31s", "do": {"nr_hugepages": {"count": 512, "node": 1}}},
                          {"at": "32s", "do": {"nr_hugepages": {"count": 2, "size": "1GiB"}}}])
    assert cfg.actions == (
        ActionConfig(30 * 10**9, "nr_hugepages", (("count", 2048), ("node", None),
                                                  ("size_pages", 512))),
        ActionConfig(31 * 10**9, "nr_hugepages", (("count", 512), ("node", 1),
                                                  ("size_pages", 512))),
        ActionConfig(32 * 10**9, "nr_hugepages", (("count", 2), ("node", None),
                                                  ("size_pages", 262144))),
    )
    dumped = dump_config(cfg, workload_dumpers())
    assert [a["do"] for a in dumped["actions"]] == [
        {"nr_hugepages": 2048}, {"nr_hugepages": {"count": 512, "node": 1}},
        {"nr_hugepages": {"count": 2, "size": "1GiB"}}]
    assert parse_config(dumped, "h.yaml", workload_parsers()) == cfg


def test_the_workloads_parse_and_round_trip() -> None:
    cfg = _parse(workloads=[
        {"name": "db", "type": "hugetlb", "size": "2MiB", "use": 0.5, "release": "9s",
         "resize": [{"at": "5s", "count": 8, "node": 1}, {"at": "1s", "count": 64}]},
        {"name": "gup", "type": "speculative_refs", "rate": "5000/s", "mode": "gup_fast",
         "hold": "50us", "race_window": "2us", "max_requests": 10},
    ])
    db, gup = (w.params["params"] for w in cfg.workloads)
    assert db == HugetlbParams(512, (Resize(10**9, 64), Resize(5 * 10**9, 8, 1)), 0.5,
                               9 * 10**9)
    assert gup == SpeculativeRefsParams(5000.0, 50_000, "gup_fast", 2_000, 0, 10)
    assert parse_config(dump_config(cfg, workload_dumpers()), "h.yaml",
                        workload_parsers()) == cfg


@pytest.mark.parametrize(("do", "key", "words"), [
    ({"nr_hugepages": -1}, "actions[0].do.nr_hugepages", ">= 0"),
    ({"nr_hugepages": "lots"}, "actions[0].do.nr_hugepages", "a huge page count"),
    ({"nr_hugepages": {"node": 1}}, "actions[0].do.nr_hugepages.count", "required"),
    ({"nr_hugepages": {"count": 4, "nodes": 1}}, "actions[0].do.nr_hugepages.nodes",
     "count, node, size"),
    ({"nr_hugepages": {"count": 4, "node": 2}}, "actions[0].do.nr_hugepages.node",
     "a node of the machine (0..1)"),
    ({"nr_hugepages": {"count": 4, "node": -1}}, "actions[0].do.nr_hugepages.node", ">= 0"),
    ({"nr_hugepages": {"count": 4, "size": "4MiB"}}, "actions[0].do.nr_hugepages.size",
     "2MiB or 1GiB"),
    ({"nr_hugepages": {"count": True}}, "actions[0].do.nr_hugepages.count", "integer"),
])
def test_action_errors_name_the_key(do: object, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(actions=[{"at": "1s", "do": do}])
    text = str(info.value)
    assert text.startswith(f"h.yaml: {key}:"), text
    assert words in text, text


@pytest.mark.parametrize(("workload", "key", "words"), [
    ({"type": "hugetlb"}, "workloads[0].resize", "required"),
    ({"type": "hugetlb", "resize": []}, "workloads[0].resize", "at least 1"),
    ({"type": "hugetlb", "resize": [{"at": "1s"}]}, "workloads[0].resize[0].count",
     "required"),
    ({"type": "hugetlb", "resize": [{"at": "1s", "count": 1, "node": 3}]},
     "workloads[0].resize[0].node", "a node of this machine"),
    ({"type": "hugetlb", "resize": [{"at": "1s", "count": 1}], "size": "1MiB"},
     "workloads[0].size", "2MiB or 1GiB"),
    ({"type": "hugetlb", "resize": [{"at": "1s", "count": 1}], "use": 1.5},
     "workloads[0].use", "0..1"),
    ({"type": "speculative_refs"}, "workloads[0].rate", "required"),
    ({"type": "speculative_refs", "rate": "1/s", "mode": "gup"}, "workloads[0].mode",
     "pfn|gup_fast"),
    ({"type": "speculative_refs", "rate": "1/s", "hold": "0s"}, "workloads[0].hold", "> 0"),
    ({"type": "speculative_refs", "rate": "1/s", "cpus": [5]}, "workloads[0].cpus",
     "CPUs of this machine"),
])
def test_workload_errors_name_the_key(workload: dict[str, Any], key: str, words: str) -> None:
    from workloads.registry import WORKLOADS

    with pytest.raises(ConfigError) as info:
        cfg = _parse(workloads=[{"name": "w", **workload}])
        for i, spec in enumerate(cfg.workloads):
            WORKLOADS[spec.kind].check(spec.params, cfg.machine, f"workloads[{i}]", "h.yaml")
    text = str(info.value)
    assert text.startswith(f"h.yaml: {key}:"), text
    assert words in text, text
