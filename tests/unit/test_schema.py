"""The schema catalog against the parsers: same keys, same defaults, a JSON Schema that fits.

The catalog (``simcore.config.schema_keys``, ``workloads.schema``) documents every key of an
experiment file. These tests make it impossible for the documentation and the parsers to
drift apart:

- every mapping the catalog documents is probed with an unknown key, and the parser's
  error must list exactly the catalog's keys there (a key the parser accepts but the
  catalog lacks, or the reverse, fails);
- every documented default is written into a file that lacked the key, and the parsed
  experiment must not change;
- every shipped config validates against the JSON Schema made from the catalog, and
  broken ones do not.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from allocsim.sweep.spec import parse_sweep
from simcore.config.schema import REQUIRED, Derived, Key, flatten, json_schema, key_named
from simcore.config.schema_keys import FROM_PROC_EXTRAS, MACHINE_KEYS
from simcore.errors import ConfigError
from workloads.registry import WORKLOADS, experiment_from_data, experiment_schema
from workloads.schema import KINDS, WORKLOAD_KEYS

REPO = Path(__file__).resolve().parents[2]
SCHEMA = experiment_schema()
BASE: dict[str, Any] = {"name": "probe", "seed": 1, "duration": "1s",
                        "machine": {"nodes": [{"memory": "256MiB"}]}}
SKELETONS: dict[str, object] = {"sweep": {"grid": {"seed": [1, 2]}}}
"""Context the catalog's required keys do not give (a sweep needs grid or points)."""
PROBE = "zz_probe"
TOKEN = re.compile(r"\[type=\w+\]|\[\]|[^.\[\]]+")


def _skeleton(key: Key, path: str, as_mapping: bool = False) -> object:
    """The least value of ``key`` that parses: its required keys, with their examples.

    ``as_mapping``: the mapping form of a value that has one (``lifetime``).
    """
    if path in SKELETONS:
        return copy.deepcopy(SKELETONS[path])
    entry = {k.name: _skeleton(k, f"{path}.{k.name}") for k in key.keys if k.required}
    if key.type.form == "mapping" or as_mapping:
        return entry
    if key.type.form == "list":
        return [entry]
    assert key.example is not None, f"{path}: a required key needs an example"
    return copy.deepcopy(key.example)


def _context(path: str) -> tuple[dict[str, Any], Any, str | int, str, Key]:
    """A valid document holding the parent of ``path``: (doc, parent, step, concrete, key).

    ``parent[step]`` is where the key's value goes; ``concrete`` is the path as an
    error names it (``workloads[0].rate``); ``key`` is the key (for ``[type=K]``, a
    mapping of the kind's keys).
    """
    doc = copy.deepcopy(BASE)
    parent: Any = {"": doc}
    step: str | int = ""
    keys, concrete, key = SCHEMA.keys, "", SCHEMA
    for tok in TOKEN.findall(path):
        if tok.startswith("[type="):
            kind_keys = next(k for name, _, k in KINDS if name == tok[6:-1])
            parent[step] = [{"name": "w", "type": tok[6:-1], **{
                k.name: _skeleton(k, k.name) for k in kind_keys if k.required}}]
            parent, step, concrete = parent[step], 0, f"{concrete}[0]"
            keys = kind_keys
            key = Key(tok, key.type, "", keys=kind_keys)
        elif tok == "[]":
            if not isinstance(parent[step], list) or not parent[step]:
                parent[step] = _skeleton(key, "")
            parent, step, concrete = parent[step], 0, f"{concrete}[0]"
            keys = key.keys
        else:
            if not isinstance(parent[step], dict):
                parent[step] = {}  # a value's mapping form (lifetime: {lognormal: ...})
            parent, step = parent[step], tok
            key = key_named(keys, tok)
            concrete = f"{concrete}.{tok}" if concrete else tok
            if tok not in parent and concrete != path:
                parent[tok] = _skeleton(key, tok, as_mapping=True)
            keys = key.keys
    return doc, parent, step, concrete, key


def _parse(doc: dict[str, Any]) -> object:
    sweep = parse_sweep(doc["sweep"], "probe.yaml") if "sweep" in doc else None
    rest = {k: v for k, v in doc.items() if k not in ("sweep", "study")}
    return experiment_from_data(rest, "probe.yaml"), sweep


PROBED = [(p, k) for p, k in flatten(SCHEMA)
          if (k.keys and not k.open_keys and p != "workloads") or "[type=" in p[-30:]
          and p.endswith("]")]


def test_the_probes_cover_every_documented_mapping() -> None:
    paths = {p for p, _ in PROBED}
    for expected in ("machine", "machine.nodes", "machine.nodes[].reserved", "sysctl", "trace",
                     "cost", "limits", "actions", "actions[].do", "actions[].do.sysctl",
                     "actions[].do.nr_hugepages", "initial_state", "sweep",
                     "workloads[type=synthetic].lifetime.lognormal",
                     "workloads[type=hugetlb].resize",
                     *(f"workloads[type={kind}]" for kind in WORKLOADS)):
        assert expected in paths


@pytest.mark.parametrize(("path", "key"), [("", SCHEMA), *PROBED],
                         ids=["<top>", *(p for p, _ in PROBED)])
def test_the_parser_allows_exactly_the_documented_keys(path: str, key: Key) -> None:
    if path:
        doc, parent, step, concrete, key = _context(path)
        if "[type=" in path.rsplit(".", 1)[-1]:
            parent[step][PROBE] = 1
            where = f"{concrete}.{PROBE}"
        elif key.type.form == "list":
            parent[step] = [{PROBE: 1}]
            where = f"{concrete}[0].{PROBE}"
        else:
            parent[step] = {PROBE: 1}
            where = f"{concrete}.{PROBE}"
    else:
        doc, where = {**copy.deepcopy(BASE), PROBE: 1}, PROBE
    with pytest.raises(ConfigError) as info:
        _parse(doc)
    err = info.value
    assert (err.key, err.problem) == (where, "unknown key"), str(err)
    listed = err.expected.removeprefix("one of the keys ").split(", ")
    assert sorted(listed) == sorted(k.name for k in key.keys)


DEFAULTS = [(p, k) for p, k in flatten(SCHEMA)
            if k.default is not REQUIRED and not isinstance(k.default, Derived)]


@pytest.mark.parametrize(("path", "key"), DEFAULTS, ids=[p for p, _ in DEFAULTS])
def test_a_documented_default_is_what_leaving_the_key_out_gives(path: str, key: Key) -> None:
    doc, parent, step, _, _ = _context(path)
    parent.pop(step, None)
    without = copy.deepcopy(doc)
    parent[step] = copy.deepcopy(key.default)
    assert _parse(doc) == _parse(without)


def test_every_kind_is_documented_and_registered() -> None:
    assert [name for name, _, _ in KINDS] == list(WORKLOADS)
    assert key_named(WORKLOAD_KEYS, "type").type.json["enum"] == list(WORKLOADS)


def test_from_proc_extras_are_machine_keys() -> None:
    assert set(FROM_PROC_EXTRAS) <= {k.name for k in MACHINE_KEYS}


# ---------------------------------------------------------------- JSON Schema

VALIDATOR = jsonschema.Draft7Validator(json_schema(SCHEMA))


def _as_json(path: Path) -> object:
    """A YAML file as an editor's YAML-to-JSON step sees it (mapping keys are strings)."""
    return json.loads(json.dumps(yaml.safe_load(path.read_text()), default=str))


def test_the_json_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(json_schema(SCHEMA))


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_validates_against_the_json_schema(config: Path) -> None:
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in VALIDATOR.iter_errors(_as_json(config))]
    assert errors == []


@pytest.mark.parametrize(("change", "where"), [
    (lambda d: d.update(colour="red"), ""),
    (lambda d: d["machine"]["nodes"][0].update(ram="1GiB"), "machine.nodes.0"),
    (lambda d: d["machine"].update(transparent_hugepage="sometimes"), "machine"),
    (lambda d: d.update(workloads=[{"name": "w", "type": "synthetic", "rate": "1/s",
                                    "lifetime": "1s", "burst": 3}]), "workloads.0"),
    (lambda d: d.update(workloads=[{"name": "w", "type": "nonsense"}]), "workloads.0"),
    (lambda d: d.update(sysctl={"swappiness": 201}), "sysctl.swappiness"),
    (lambda d: d.update(duration=5), "duration"),
])
def test_the_json_schema_refuses_what_the_parser_refuses(change: Any, where: str) -> None:
    doc = copy.deepcopy(BASE)
    assert list(VALIDATOR.iter_errors(doc)) == []
    change(doc)
    with pytest.raises(ConfigError):
        _parse(doc)
    errors = list(VALIDATOR.iter_errors(doc))
    assert errors
    assert any(".".join(map(str, e.absolute_path)).startswith(where) for e in errors)
