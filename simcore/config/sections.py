"""The ``cost:``, ``limits:`` and ``actions:`` sections of an experiment file.

``cost:`` prices each step of an allocation (durations like ``400ns``, ``25us``);
``limits:`` says what the run reports as a problem; ``actions:`` schedules writes to
the machine during the run::

    actions:
      - {at: 30s, do: {sysctl: {min_free_kbytes: 90000}}}
      - {at: 45s, do: drop_caches}          # = 3; or {drop_caches: 1|2|3}, as the sysctl

      - {at: 50s, do: compact_memory}       # /proc/sys/vm/compact_memory: every node
      - {at: 60s, do: {nr_hugepages: 2048}}  # /proc/sys/vm/nr_hugepages (2 MiB pages)
      - {at: 70s, do: {nr_hugepages: {count: 512, node: 1}}}     # node1's nr_hugepages
      - {at: 80s, do: {nr_hugepages: {count: 2, size: 1GiB}}}    # hugepages-1048576kB

The ``nr_hugepages`` action's arguments are ``count``, ``node`` (the node's own
``/sys/devices/system/node/nodeN/hugepages/`` file; absent: the global one) and ``size``
(``2MiB``, the default, or ``1GiB``), kept as pages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from simcore.config.fields import (
    FieldReader,
    child,
    expect_duration_ns,
    expect_int,
    expect_list,
    expect_mapping,
    expect_size_pages,
    read_fields,
    unknown_key_error,
)
from simcore.config.schema import key_named, names, ordered_fields, required
from simcore.config.schema_keys import ACTION_KEYS, COST_KEYS, DO_KEYS, LIMITS_KEYS
from simcore.config.types import ActionConfig, CostConfig, LimitsConfig, MachineConfig
from simcore.config.units import format_duration, format_size
from simcore.errors import ConfigError

ACTION_KINDS = names(DO_KEYS)
NOT_YET: dict[str, str] = {}
"""Action kinds the schema knows but the model refuses (kind -> why)."""
DO_FORMAT = ("one of drop_caches (= 3), {drop_caches: 1|2|3}, compact_memory (or "
             "{compact_memory: 1}), {sysctl: {name: value}}, {nr_hugepages: count} (or "
             "{nr_hugepages: {count: N, node: nid, size: 2MiB|1GiB}})")
HUGE_PAGE_SIZES = {"2MiB": 512, "1GiB": 262144}
"""The x86_64 huge page sizes (PMD and PUD), in pages."""
NR_HUGEPAGES_KEYS = names(key_named(DO_KEYS, "nr_hugepages").keys)


def _duration(value: object, key: str, source: str) -> int:
    return expect_duration_ns(value, key, source)


COST_FIELDS: dict[str, tuple[str, FieldReader]] = ordered_fields(COST_KEYS, {
    **{name.removesuffix("_ns"): (name, _duration)
       for name in (f.name for f in dataclasses.fields(CostConfig)) if name.endswith("_ns")},
    "hz": ("hz", lambda v, k, s: expect_int(v, k, s, 100, 1000)),
})

LIMITS_FIELDS: dict[str, tuple[str, FieldReader]] = ordered_fields(LIMITS_KEYS, {
    "nofail_stall": ("nofail_stall_ns", lambda v, k, s: expect_duration_ns(v, k, s, 1)),
})


def parse_cost(value: object, key: str, source: str) -> CostConfig:
    """The ``cost:`` section (every key optional)."""
    return CostConfig(**read_fields(value, key, source, COST_FIELDS))


def parse_limits(value: object, key: str, source: str) -> LimitsConfig:
    """The ``limits:`` section."""
    return LimitsConfig(**read_fields(value, key, source, LIMITS_FIELDS))


def parse_actions(
    value: object, key: str, source: str, sysctl_fields: Mapping[str, tuple[str, FieldReader]],
) -> tuple[ActionConfig, ...]:
    """The ``actions:`` list, in file order (equal times run in that order)."""
    if value is None:
        return ()
    out: list[ActionConfig] = []
    for i, item in enumerate(expect_list(value, key, source)):
        at_key = child(key, i)
        data = expect_mapping(item, at_key, source, names(ACTION_KEYS), required(ACTION_KEYS))
        at_ns = expect_duration_ns(data["at"], child(at_key, "at"), source)
        out.append(_action(data["do"], child(at_key, "do"), source, at_ns, sysctl_fields))
    return tuple(out)


def _action(value: object, key: str, source: str, at_ns: int,
            sysctl_fields: Mapping[str, tuple[str, FieldReader]]) -> ActionConfig:
    if isinstance(value, str):
        kind, arg = value, None
    elif isinstance(value, Mapping) and len(value) == 1:
        (kind, arg), = value.items()
    else:
        raise ConfigError(source, key, DO_FORMAT, value)
    if kind not in ACTION_KINDS:
        if isinstance(value, Mapping):
            raise unknown_key_error(source, child(key, str(kind)), kind, ACTION_KINDS)
        raise ConfigError(source, key, DO_FORMAT, value)
    if kind in NOT_YET:
        raise ConfigError(source, child(key, kind) if arg is not None else key,
                          f"an action the model has; {NOT_YET[kind]}", value)
    if kind == "drop_caches":
        what = 3 if arg is None else expect_int(arg, child(key, kind), source, 1, 3)
        return ActionConfig(at_ns, kind, (("what", what),))
    if kind == "nr_hugepages":
        return ActionConfig(at_ns, kind, _nr_hugepages(arg, child(key, kind), source))
    if kind == "compact_memory":  # any write compacts every node (sysctl_compaction_handler)
        if arg is not None and (isinstance(arg, bool) or arg != 1):
            raise ConfigError(source, child(key, kind),
                              "1 (the only value /proc/sys/vm/compact_memory takes)", arg)
        return ActionConfig(at_ns, kind, ())
    sub = child(key, kind)
    if isinstance(arg, Mapping):  # `sysctl -w vm.min_free_kbytes=...` spelling too
        arg = {k.removeprefix("vm.") if isinstance(k, str) else k: v for k, v in arg.items()}
    data = expect_mapping(arg, sub, source, tuple(sysctl_fields))
    if not data:
        raise ConfigError(source, sub, "at least one sysctl: value", arg)
    values = read_fields(data, sub, source, dict(sysctl_fields))
    if "min_free_kbytes" in values and values["min_free_kbytes"] is None:
        raise ConfigError(source, child(sub, "min_free_kbytes"), "an integer (a write "
                          "cannot ask for 'auto')", data["min_free_kbytes"])
    return ActionConfig(at_ns, kind, tuple(values.items()))


def _nr_hugepages(value: object, key: str, source: str) -> tuple[tuple[str, Any], ...]:
    """``{nr_hugepages: 2048}`` or ``{nr_hugepages: {count: 512, node: 1, size: 1GiB}}``."""
    if not isinstance(value, Mapping):
        count = expect_int(value, key, source, 0, None,
                           "a huge page count, or {count: N, node: nid, size: 2MiB|1GiB}")
        return (("count", count), ("node", None), ("size_pages", HUGE_PAGE_SIZES["2MiB"]))
    data = expect_mapping(value, key, source, NR_HUGEPAGES_KEYS, ("count",))  # schema: count
    count = expect_int(data["count"], child(key, "count"), source, 0)
    node = data.get("node")
    if node is not None:
        node = expect_int(node, child(key, "node"), source, 0)
    size = data.get("size", "2MiB")
    size_key = child(key, "size")
    pages = expect_size_pages(size, size_key, source, 1)
    if pages not in HUGE_PAGE_SIZES.values():
        raise ConfigError(source, size_key, "a huge page size of x86_64: 2MiB or 1GiB", size)
    return (("count", count), ("node", node), ("size_pages", pages))


def check_actions(actions: tuple[ActionConfig, ...], machine: MachineConfig,
                  source: str) -> None:
    """Reject an action naming a node the machine does not have."""
    for i, action in enumerate(actions):
        node = dict(action.args).get("node") if action.kind == "nr_hugepages" else None
        if node is not None and node >= len(machine.nodes):
            raise ConfigError(source, f"actions[{i}].do.nr_hugepages.node",
                              f"a node of the machine (0..{len(machine.nodes) - 1})", node)


def dump_cost(cost: CostConfig) -> dict[str, object]:
    """The ``cost:`` section in human units."""
    out: dict[str, object] = {}
    for name, (attr, _) in COST_FIELDS.items():
        raw = getattr(cost, attr)
        out[name] = raw if attr == "hz" else format_duration(raw)
    return out


def dump_limits(limits: LimitsConfig) -> dict[str, object]:
    """The ``limits:`` section in human units."""
    return {"nofail_stall": format_duration(limits.nofail_stall_ns)}


def dump_actions(actions: tuple[ActionConfig, ...]) -> list[dict[str, object]]:
    """The ``actions:`` list as written (sysctl fields are named as their YAML keys)."""
    out: list[dict[str, object]] = []
    for a in actions:
        do: object
        if a.kind == "drop_caches":
            do = {"drop_caches": dict(a.args)["what"]}
        elif a.kind == "compact_memory":
            do = "compact_memory"
        elif a.kind == "nr_hugepages":
            args = dict(a.args)
            arg: dict[str, object] = {"count": args["count"]}
            if args["node"] is not None:
                arg["node"] = args["node"]
            if args["size_pages"] != HUGE_PAGE_SIZES["2MiB"]:
                arg["size"] = format_size(args["size_pages"] * 4096)
            do = {a.kind: arg["count"] if len(arg) == 1 else arg}
        else:
            do = {a.kind: {name: _dump_value(v) for name, v in a.args}}
        out.append({"at": format_duration(a.at_ns), "do": do})
    return out


def _dump_value(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
