"""Fuzz the experiment loader: every ``configs/*.yaml`` damaged, retyped and rebuilt.

What ``allocsim validate`` and ``allocsim run`` do with a file: ``load_experiment`` (the
strict YAML loader, the schema, every workload kind's parser and checks) and the host
footprint check. Each input must give an :class:`ExperimentConfig` or one
:class:`ConfigError` (or, through ``from_proc``, one ``ProcParseError``) naming the file
and the key or line (:func:`tests.fuzz.fuzzing.check_error`). The sweep loader
(``allocsim validate`` of a ``sweep:`` file) is fuzzed the same way.
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from allocsim.hostmem import check_fits_host
from allocsim.sweep.runner import plan_sweep
from allocsim.sweep.studyrun import plan_study
from simcore.config.schema import REQUIRED, Derived, Key, flatten
from simcore.config.types import ExperimentConfig
from simcore.errors import ConfigError
from tests.fuzz.fuzzing import fuzz_settings, note_class, outcome
from tests.fuzz.hostile import alias_bomb, mutated, yaml_construct_in
from workloads.registry import experiment_schema, load_experiment

REPO = Path(__file__).resolve().parents[2]
CONFIG_FILES = sorted((REPO / "configs").glob("*.yaml"))
SNAPSHOT = REPO / "tests" / "data" / "oracle" / "hugetlb-fresh" / "start"
SWEEP_FILES = sorted((REPO / "tests" / "data" / "sweep").glob("*.yaml"))
"""Sweep files (``configs/capacity_*.yaml`` are sweeps too)."""
WORK = Path(tempfile.mkdtemp(prefix="allocsim-fuzz-yaml-"))


def _config_text(path: Path) -> str:
    """A config's text, its ``from_proc`` directory made absolute (the copy lives in /tmp)."""
    return path.read_text().replace("../tests/data/oracle/hugetlb-fresh/start", str(SNAPSHOT))


def _is_sweep(text: str) -> bool:
    return any(line.startswith("sweep:") for line in text.split("\n"))


TEXTS = tuple(t for t in map(_config_text, CONFIG_FILES) if not _is_sweep(t))
SMALL = _config_text(REPO / "configs" / "quickstart.yaml")
SWEEP_TEXTS = tuple(t for t in map(_config_text, [*CONFIG_FILES, *SWEEP_FILES]) if _is_sweep(t))


def load(path: Path) -> ExperimentConfig:
    """What ``allocsim validate FILE`` does with an experiment file."""
    cfg = load_experiment(path)
    check_fits_host(cfg)
    return cfg


def _write(data: bytes | str, name: str = "config.yaml") -> Path:
    path = WORK / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
    return path


def _check_config(data: bytes | str, parser: str = "yaml") -> object:
    path = _write(data)
    return outcome(parser, str(path), lambda: load(path))


def test_every_base_file_is_valid() -> None:
    """The fuzzers start from valid files (so every error below is the damage's)."""
    assert len(TEXTS) > 10 and len(SWEEP_TEXTS) > 5
    for text in TEXTS:
        assert isinstance(_check_config(text, "yaml-base"), ExperimentConfig)
    for text in SWEEP_TEXTS:
        assert not isinstance(_check_sweep(text), ConfigError)


@fuzz_settings(120)
@given(mutated(TEXTS, "yaml"))
def test_damaged_config_files(case: tuple[bytes, tuple[str, ...]]) -> None:
    _check_config(case[0])


@fuzz_settings(80)
@given(st.data())
def test_hostile_yaml_constructs(data: st.DataObject) -> None:
    text = data.draw(yaml_construct_in(data.draw(st.sampled_from(TEXTS)), "yaml"))
    result = _check_config(text)
    if isinstance(result, ExperimentConfig):  # a tag never builds an object
        assert "python" not in repr(result)


# ---------------------------------------------------------------- structural mutations

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
    st.text(max_size=30),
    st.sampled_from(("1PiB", "1EiB", "16EiB", "-4KiB", "0", "1e400s", "-1ms", "200/ms",
                     "GFP_KERNEL|__GFP_BOGUS", "0x0-0xffffffffffffffffff", "auto", "fresh",
                     "from_proc", "synthetic", "{}", "[]", "~", "1ns", "292y", "4.5pages")),
    st.lists(st.integers(-5, 300), max_size=5),
    st.dictionaries(st.sampled_from(("a", "count", "node", "0", "rate", "at", "do")),
                    st.integers(-1, 5) | st.text(max_size=5), max_size=3),
    st.recursive(st.integers(0, 3), lambda c: st.lists(c, max_size=3), max_leaves=20),
)
"""Values of the wrong type, or of the right type and out of range, for any key."""


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a loaded document (mapping keys and list indices)."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(
        doc, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


@st.composite
def retyped(draw: st.DrawFn) -> tuple[str, str, tuple[Any, ...], object]:
    """A config with one structural change: ``(YAML text, change, key path, value)``."""
    doc = copy.deepcopy(yaml.safe_load(draw(st.sampled_from(TEXTS))))
    path = draw(st.sampled_from(_paths(doc)))
    parent, last = _parent(doc, path), path[-1]
    change = draw(st.sampled_from(("wrong value", "key deleted", "unknown key",
                                   "value wrapped in a list", "mapping for a value")))
    value: object = None
    if change == "wrong value":
        value = draw(HOSTILE_VALUES)
        parent[last] = value
    elif change == "key deleted":
        del parent[last]
    elif change == "unknown key":
        value = draw(st.sampled_from(("rat", "nodez", "x", "memory_pages", "__class__")))
        target = parent[last] if isinstance(parent[last], dict) else parent
        if isinstance(target, dict):
            target[value] = 1
        else:
            doc[value] = 1
    elif change == "value wrapped in a list":
        parent[last] = [parent[last]]
    else:
        parent[last] = {"value": parent[last]}
    note_class("yaml", change)
    style = draw(st.sampled_from((False, True, None)))
    return yaml.safe_dump(doc, default_flow_style=style, sort_keys=False), change, path, value


@fuzz_settings(120)
@given(retyped())
def test_retyped_keys(case: tuple[str, str, tuple[Any, ...], object]) -> None:
    text, change, path, value = case
    result = _check_config(text)
    if isinstance(result, ConfigError) and change == "unknown key" and \
            "unknown key" in str(result):
        assert result.key.endswith(str(value)), (result.key, value)
        assert result.line is not None, str(result)


@fuzz_settings(30)
@given(st.sampled_from(TEXTS), st.sampled_from((False, True, None)), st.booleans(),
       st.integers(1, 8))
def test_valid_rewrites_parse_to_the_same_config(text: str, style: bool | None,
                                                 sort_keys: bool, indent: int) -> None:
    """Rewriting a valid file (flow or block style, keys sorted, other indents, comments
    and blank lines added) is still that config: the fuzzers do not pass by refusing all."""
    original = _check_config(text)
    doc = yaml.safe_load(text)
    rewritten = yaml.safe_dump(doc, default_flow_style=style, sort_keys=sort_keys,
                               indent=indent + 1)
    rewritten = "# a comment\n\n" + rewritten.replace("\n", "\n\n", 3)
    again = _check_config(rewritten)
    assert isinstance(again, ExperimentConfig) and isinstance(original, ExperimentConfig)
    assert again.machine == original.machine and again.workloads == original.workloads


# ---------------------------------------------------------------- schema-shaped documents

CATALOG = tuple((path, key) for path, key in flatten(experiment_schema())
                if not path.startswith(("sweep", "study", "machine.from_proc", "initial_state")))
_STEP = re.compile(r"([^.\[\]]+)((?:\[[^\]]*\])?)")
TYPE_SAMPLES = {"size": "64MiB", "duration": "10ms", "rate": "100/s", "true|false": True,
                "gfp flags": "GFP_KERNEL", "name": "w1", "number": 0.5, "mapping": {}}


def _skeleton() -> dict[str, Any]:
    return {"name": "schema", "seed": 1, "duration": "100ms",
            "machine": {"nodes": [{"memory": "64MiB", "cpus": 1}]}}


def _put(doc: dict[str, Any], path: str, value: object) -> None:
    """Set a catalog path (``workloads[type=anon].lifetime.fixed``) in ``doc``, making the
    sections, the first list entry and its ``type:`` on the way."""
    node: Any = doc
    steps = _STEP.findall(path)
    for i, (name, index) in enumerate(steps):
        last = i == len(steps) - 1
        if not isinstance(node, dict):
            return  # an earlier value replaced a section: nothing below it to set
        if not index:
            if last:
                node[name] = value
            elif not isinstance(node.get(name), dict):
                node[name] = {}
            node = node.get(name)
            continue
        entries = node.get(name)
        if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
            entries = node[name] = [{"name": "w0"} if name == "workloads" else {}]
        kind = re.search(r"type=(\w+)", index)
        if kind:
            entries[0]["type"] = kind[1]
        if last:
            entries[0] = value
        node = entries[0]


def _valid_sample(key: Key) -> object:
    if key.example is not None:
        return key.example
    if key.default is not REQUIRED and not isinstance(key.default, Derived):
        return key.default
    return TYPE_SAMPLES.get(key.type.text.split(",")[0].split(" or ")[0], 1)


@st.composite
def schema_documents(draw: st.DrawFn) -> str:
    """A document built from the catalog's keys: some valid values, some hostile ones."""
    doc = _skeleton()
    for path, key in draw(st.lists(st.sampled_from(CATALOG), min_size=1, max_size=8)):
        hostile = draw(st.booleans())
        _put(doc, path, draw(HOSTILE_VALUES) if hostile else _valid_sample(key))
        note_class("yaml", "schema keys, hostile values" if hostile else "schema keys")
    return yaml.safe_dump(doc, sort_keys=False)


@fuzz_settings(120)
@given(schema_documents())
def test_documents_shaped_like_the_schema(text: str) -> None:
    _check_config(text)


def test_the_schema_skeleton_is_valid() -> None:
    assert isinstance(_check_config(yaml.safe_dump(_skeleton())), ExperimentConfig)


# ---------------------------------------------------------------- sweep files


def _check_sweep(data: bytes | str) -> object:
    path = _write(data, "sweep.yaml")

    def plan() -> object:
        sweep = plan_sweep(path)
        plan_study(sweep)
        return sweep
    return outcome("sweep", str(path), plan)


@fuzz_settings(50)
@given(mutated(SWEEP_TEXTS, "sweep"))
def test_damaged_sweep_files(case: tuple[bytes, tuple[str, ...]]) -> None:
    _check_sweep(case[0])


@fuzz_settings(20)
@given(st.data())
def test_hostile_yaml_in_sweep_files(data: st.DataObject) -> None:
    _check_sweep(data.draw(yaml_construct_in(data.draw(st.sampled_from(SWEEP_TEXTS)), "sweep")))


# ---------------------------------------------------------------- regressions


@pytest.mark.parametrize(("value", "problem"), [
    (alias_bomb(9, 9), "alias bomb"),
    ("[" * 5000 + "]" * 5000, "levels of nested"),
    ("&r [1, *r]", "recursive alias"),
    ("9" * 5000, "at most 4300 digits"),
    ("!!python/object/apply:os.system ['true']", "could not determine a constructor"),
    ("!!python/name:os.system", "could not determine a constructor"),
    ("!custom 1", "could not determine a constructor"),
    ("!!timestamp 2001-13-45", "a valid timestamp"),
    ("\x00", "printable characters only"),
], ids=lambda v: v if len(v) < 40 else f"{v[:20]}...")
def test_hostile_yaml_is_one_error_at_its_line(value: str, problem: str) -> None:
    lines = SMALL.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("seed:"))
    lines[at] = f"seed: {value}"
    result = _check_config("\n".join(lines))
    assert isinstance(result, ConfigError) and problem in str(result), result
    assert result.key == "<yaml>" and result.line == at + 1


@pytest.mark.parametrize(("old", "new", "key", "expected"), [
    ("rate: 2500/s", "rate: " + "9" * 400, "workloads[0].rate", "finite"),
    ("size: 768MiB", "size: " + "9" * 5000 + "MiB", "workloads[0].size", "at most 40 digits"),
    ("duration: 3s", "duration: 300000000h", "duration", "292 years"),
    ("memory: 256MiB", "present: ['0x0-0x" + "f" * 5000 + "']", "machine.nodes[0].present[0]",
     "below 0x10000000000000"),
    ("memory: 256MiB", "present: ['0100000-01fffff']", "machine.nodes[0].present[0]",
     "page aligned"),
], ids=lambda v: v if len(v) < 40 else f"{v[:20]}...")
def test_hostile_values_are_one_error_naming_their_key(old: str, new: str, key: str,
                                                       expected: str) -> None:
    result = _check_config(SMALL.replace(old, new, 1))
    assert isinstance(result, ConfigError) and result.key == key, result
    assert expected in str(result) and result.line is not None


@pytest.mark.parametrize("key", ["machine.nodes[-1].memory", "a[x]", "]", "a..b", "[0]"])
def test_a_sweep_key_that_is_no_key_path_is_one_error(key: str) -> None:
    """``line_of()`` looked for the line of ``machine.nodes[-1]`` forever (its last step
    never came off): a sweep file with that grid key hung ``allocsim validate``."""
    small = (REPO / "tests" / "data" / "sweep" / "small.yaml").read_text()
    old = "    machine.nodes[0].memory: [48MiB, 64MiB]"
    assert old in small
    result = _check_sweep(small.replace(old, f"    '{key}': [48MiB, 64MiB]"))
    assert isinstance(result, ConfigError), result


def test_every_yaml_read_goes_through_the_strict_loader() -> None:
    """No module loads YAML but :mod:`simcore.config.yamlio` (whose loader is a SafeLoader:
    no tag builds an object), so every file and ``--set`` value gets its limits."""
    readers = re.compile(r"yaml\.(safe_load|load|full_load|unsafe_load|compose|parse|scan)\(|"
                         r"Loader=")
    offenders = [f"{path.relative_to(REPO)}:{n}" for package in
                 ("simcore", "allocsim", "workloads", "reports", "benchmarks")
                 for path in (REPO / package).rglob("*.py") if path.name != "yamlio.py"
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if readers.search(line)]
    assert offenders == []
    assert "yaml.SafeLoader" in (REPO / "simcore" / "config" / "yamlio.py").read_text()
