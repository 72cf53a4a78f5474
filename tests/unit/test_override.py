"""Key paths and the values ``--set`` and sweeps put at them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from simcore.config.override import (
    apply_overrides,
    format_key_path,
    parse_key_path,
    parse_set_arg,
    set_value,
)
from simcore.errors import ConfigError

DOC = {"name": "x", "machine": {"nodes": [{"memory": "1GiB"}, {"memory": "2GiB"}]},
       "workloads": [{"name": "a", "rate": "10/s"}]}


def test_paths_parse_as_error_messages_print_them() -> None:
    assert parse_key_path("machine.nodes[1].memory") == ("machine", "nodes", 1, "memory")
    assert parse_key_path("workloads[0].size.16KiB".replace("16KiB", "x")) == (
        "workloads", 0, "size", "x")
    assert format_key_path(("machine", "nodes", 1, "memory")) == "machine.nodes[1].memory"


@given(st.lists(st.one_of(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True),
                          st.integers(0, 99)), min_size=1).filter(
    lambda s: isinstance(s[0], str)))
def test_format_and_parse_are_inverses(steps: list[str | int]) -> None:
    assert parse_key_path(format_key_path(steps)) == tuple(steps)


def test_set_value_copies_and_creates_missing_mappings() -> None:
    out = set_value(DOC, "machine.nodes[1].memory", "4GiB", "f.yaml")
    assert out["machine"]["nodes"][1]["memory"] == "4GiB"  # type: ignore[index]
    assert DOC["machine"]["nodes"][1]["memory"] == "2GiB"  # type: ignore[index]
    out = apply_overrides(DOC, {"sysctl.min_free_kbytes": 4096, "seed": 3}, "f.yaml")
    assert out["sysctl"] == {"min_free_kbytes": 4096} and out["seed"] == 3  # type: ignore[index]


@pytest.mark.parametrize(("path", "expected"), [
    ("workloads[3].rate", "an index below 1"),
    ("name.first", "a mapping at name"),
    ("machine[0]", "a list at machine"),
])
def test_paths_that_do_not_fit_the_document_are_refused(path: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        set_value(DOC, path, 1, "--set x")
    assert info.value.source == "--set x" and expected in info.value.expected


@pytest.mark.parametrize(("arg", "value"), [
    ("workloads[0].rate=200/s", "200/s"), ("seed=7", 7), ("trace.events=false", False),
    ("machine.nodes[0].memory=4GiB", "4GiB"), ("sysctl.x=null", None), ("name=", ""),
    ("name=!!python/object:os.system ls", None),
])
def test_set_args_are_yaml_scalars_never_evaluated(arg: str, value: object) -> None:
    if "python" in arg:
        with pytest.raises(ConfigError, match="one YAML scalar"):
            parse_set_arg(arg)
        return
    assert parse_set_arg(arg)[1] == value


@pytest.mark.parametrize(("arg", "expected"), [
    ("seed", "KEY.PATH=VALUE"), ("a..b=1", "a key path"), ("seed=[1, 2]", "not a list"),
    ("seed={a: 1}", "not a list or a mapping"),
])
def test_bad_set_args_name_the_argument(arg: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_set_arg(arg)
    assert info.value.source == f"--set {arg}" and expected in info.value.expected
