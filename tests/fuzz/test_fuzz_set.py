"""Fuzz ``--set KEY.PATH=VALUE``: every key path of the schema catalog, with hostile values.

The argument is parsed (:func:`parse_set_arg`: a key path and one YAML scalar, never
evaluated) and set in ``configs/quickstart.yaml`` before it is validated, as ``allocsim
validate --set`` does. Each must give a config or one error; an error in the value names
the ``--set`` argument, not the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from allocsim.hostmem import check_fits_host
from simcore.config.override import parse_set_arg
from simcore.config.schema import flatten
from simcore.config.types import ExperimentConfig
from simcore.errors import ConfigError
from tests.fuzz.fuzzing import fuzz_settings, note_class, outcome
from tests.fuzz.hostile import HOSTILE_NUMBERS, YAML_TAGS, alias_bomb
from workloads.registry import experiment_schema, load_experiment

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
KINDS_AT = {"page_cache": 0, "anon": 1, "pinned": 2, "slab": 3, "atomic_bursts": 4,
            "hugetlb": 5}
"""The index of each kind's workload in quickstart.yaml (other kinds: 0, retyped)."""
CATALOG = tuple(path for path, _ in flatten(experiment_schema())
                if not path.startswith(("sweep", "study")))
VALUES = st.one_of(
    st.sampled_from(HOSTILE_NUMBERS), st.sampled_from(YAML_TAGS),
    st.sampled_from(("null", "~", "true", "no", "[1, 2]", "{a: 1}", "- a", "a: b", "&x 1",
                     "*x", "'quoted'", '"\\u0000"', "4GiB", "200/s", "GFP_KERNEL",
                     "GFP_KERNEL|__GFP_NOPE", "0x0-0xfffffffff", "auto", "fresh", "from_proc",
                     "drop_caches", alias_bomb(6, 6), "[" * 100, "'", "#", "%", "@")),
    st.text(max_size=20),
)


def _concrete(path: str, index: int) -> str:
    """A catalog path (``workloads[type=anon].size``, ``machine.nodes[].memory``) made a
    key path of quickstart.yaml."""
    path = re.sub(r"\[type=(\w+)\]", lambda m: f"[{KINDS_AT.get(m[1], index)}]", path)
    return path.replace("[]", f"[{index}]")


def _check(arg: str) -> object:
    def load() -> ExperimentConfig:
        cfg = load_experiment(QUICKSTART, [parse_set_arg(arg)])
        check_fits_host(cfg)
        return cfg
    return outcome("set", f"--set {arg}", load, also=(str(QUICKSTART),))


@fuzz_settings(90)
@given(st.sampled_from(CATALOG), st.integers(0, 7), VALUES)
def test_set_every_key_path_to_a_hostile_value(path: str, index: int, value: str) -> None:
    note_class("set", "schema key path, hostile value")
    key = _concrete(path, index)
    result = _check(f"{key}={value}")
    if isinstance(result, ConfigError) and result.key.startswith(key):
        assert result.source.startswith("--set "), str(result)  # the argument, not the file


@fuzz_settings(30)
@given(st.text(max_size=60) | st.builds(lambda a, b: f"{a}={b}", st.text(max_size=30),
                                        st.text(max_size=30)))
def test_set_arbitrary_arguments(arg: str) -> None:
    note_class("set", "arbitrary argument")
    _check(arg)


@pytest.mark.parametrize("arg", [
    "seed=!!python/object/apply:os.system ['true']", "seed=!!python/name:os.system",
    "seed=!!binary aGk=", "seed=2001-01-01", "seed=!!set {a}", "seed=" + "[" * 5000,
    "seed=" + "9" * 5000, "a[" + "9" * 5000 + "]=1", "seed=*a",
], ids=lambda a: a[:30])
def test_set_values_that_are_not_one_plain_scalar(arg: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_set_arg(arg)
    text = str(info.value)
    assert text.startswith("--set ") and "expected " in text and len(text) < 1000
    assert "\n" not in text
