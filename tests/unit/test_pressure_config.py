"""The ``cost:``, ``limits:`` and ``actions:`` sections, swap and swappiness: parsing,
errors that name the key, and the dump/parse round trip."""

from __future__ import annotations

from typing import Any

import pytest

from simcore.config.parse import dump_config, parse_config
from simcore.config.types import ActionConfig, CostConfig
from simcore.errors import ConfigError

BASE: dict[str, Any] = {
    "name": "p", "seed": 1, "duration": "60s",
    "machine": {"nodes": [{"memory": "128MiB", "cpus": 2}], "swap": "64MiB"},
    "sysctl": {"swappiness": 100},
}


def _parse(**extra: Any) -> Any:
    return parse_config({**BASE, **extra}, "p.yaml")


def test_cost_limits_and_actions_are_parsed_in_internal_units() -> None:
    cfg = _parse(
        cost={"pcp_hit": "80ns", "reclaim_dirty": "40us", "oom_kill": "5ms", "hz": 1000},
        limits={"nofail_stall": "2s"},
        actions=[{"at": "30s", "do": {"sysctl": {"min_free_kbytes": 90000}}},
                 {"at": "45s", "do": "drop_caches"},
                 {"at": "50s", "do": {"drop_caches": 2}}],
    )
    assert cfg.machine.swap_pages == 64 * 256
    assert cfg.sysctl.swappiness == 100
    assert (cfg.cost.pcp_hit_ns, cfg.cost.reclaim_dirty_ns, cfg.cost.oom_kill_ns) == (
        80, 40_000, 5_000_000)
    assert cfg.cost.buddy_ns == CostConfig().buddy_ns  # unset keys keep the defaults
    assert cfg.cost.jiffy_ns == 1_000_000
    assert cfg.limits.nofail_stall_ns == 2 * 10**9
    assert cfg.actions == (
        ActionConfig(30 * 10**9, "sysctl", (("min_free_kbytes", 90000),)),
        ActionConfig(45 * 10**9, "drop_caches", (("what", 3),)),
        ActionConfig(50 * 10**9, "drop_caches", (("what", 2),)),
    )


def test_dump_and_parse_round_trip() -> None:
    cfg = _parse(cost={"reclaim_swap": "12us"}, limits={"nofail_stall": "3s"},
                 actions=[{"at": "1s", "do": {"sysctl": {"watermark_scale_factor": 200,
                                                         "lowmem_reserve_ratio":
                                                             [256, 256, 32, 0, 0]}}},
                          {"at": "2s", "do": {"drop_caches": 1}}])
    assert parse_config(dump_config(cfg), "p.yaml") == cfg


@pytest.mark.parametrize(("extra", "key", "words"), [
    ({"cost": {"pcp_hit": "fast"}}, "cost.pcp_hit", "duration"),
    ({"cost": {"reclaim": "1us"}}, "cost.reclaim", "reclaim_clean"),
    ({"cost": {"hz": 50}}, "cost.hz", "100..1000"),
    ({"limits": {"nofail_stall": "0s"}}, "limits.nofail_stall", "> 0"),
    ({"actions": [{"at": "1s"}]}, "actions[0].do", "missing"),
    ({"actions": [{"at": "soon", "do": "drop_caches"}]}, "actions[0].at", "duration"),
    ({"actions": [{"at": "1s", "do": "reboot"}]}, "actions[0].do", "drop_caches"),
    ({"actions": [{"at": "1s", "do": {"drop_caches": 4}}]}, "actions[0].do.drop_caches",
     "1..3"),
    ({"actions": [{"at": "1s", "do": {"sysctl": {"dirty_ratio": 5}}}]},
     "actions[0].do.sysctl.dirty_ratio", "min_free_kbytes"),
    ({"actions": [{"at": "1s", "do": {"sysctl": {"swappiness": 300}}}]},
     "actions[0].do.sysctl.swappiness", "0..200"),
    ({"actions": [{"at": "1s", "do": {"sysctl": {"min_free_kbytes": "auto"}}}]},
     "actions[0].do.sysctl.min_free_kbytes", "cannot ask for 'auto'"),
    ({"actions": [{"at": "1s", "do": {"compact_memory": 2}}]},
     "actions[0].do.compact_memory", "the only value"),
    ({"actions": [{"at": "1s", "do": {"nr_hugepages": {"count": 8, "size": "4MiB"}}}]},
     "actions[0].do.nr_hugepages.size", "2MiB or 1GiB"),
    ({"machine": {"nodes": [{"memory": "128MiB"}], "swap": "lots"}}, "machine.swap", "size"),
    ({"actions": [{"at": "1s", "do": "drop_caches"}], "duration": "1s"}, "actions[0].at",
     "before the end of the run (duration 1s)"),
])
def test_bad_values_name_the_key(extra: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(**extra)
    text = str(info.value)
    assert text.startswith(f"p.yaml: {key}:"), text
    assert words in text, text


def test_action_sysctl_accepts_the_vm_prefix() -> None:
    cfg = _parse(actions=[{"at": "1s", "do": {"sysctl": {"vm.swappiness": 10}}}],
                 duration="2s")
    assert cfg.actions[0].args == (("swappiness", 10),)


def test_psi_some_is_the_union_of_the_stalls() -> None:
    from simcore.sim.pressure import LatencyStats, StallClock

    clock = StallClock()
    clock.enter(100)  # caller A stalls 100..400
    clock.enter(200)  # caller B stalls 200..600, overlapping A
    clock.leave(400)
    assert clock.some_at(500) == 400  # 100..500 so far, B still stalled
    clock.leave(600)
    clock.enter(900)
    clock.leave(1000)
    assert clock.some_ns == 500 + 100  # 100..600 and 900..1000, not 300 + 400 + 100
    stats = LatencyStats()
    stats.add("fast", 100, 998)
    stats.add("fast", 400, 1)
    stats.add("fast", 1500, 1)
    assert stats.summary()["fast"] == {"count": 1000, "p50": 100, "p99": 100, "p999": 400}
