"""``allocsim describe`` and the README's reference section, both from the schema catalog."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from allocsim.cli import main
from allocsim.config_reference import generated_readme
from workloads.registry import WORKLOADS

REPO = Path(__file__).resolve().parents[2]


def _describe(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["describe", *argv]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def _entries(text: str) -> dict[str, str]:
    """Path -> its head line (``path: type; default: X``)."""
    return {line.split(": ", 1)[0]: line for line in text.splitlines()
            if not line.startswith(" ")}


def test_the_readme_reference_is_the_catalogs() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme == generated_readme(readme), (
        "README.md's config reference is stale: run python -m allocsim.config_reference")


def test_describe_lists_every_key_with_type_default_and_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    entries = _entries(_describe(capsys))
    assert entries["sysctl.min_free_kbytes"].endswith("; default: auto")
    assert entries["sysctl.watermark_scale_factor"] == (
        "sysctl.watermark_scale_factor: integer 1..3000; default: 10")
    assert entries["machine.nodes[].cpus"] == "machine.nodes[].cpus: integer 0..8192; default: 1"
    assert entries["duration"].endswith("; required")
    assert "[bytes: 64MiB" in entries["machine.swap"]
    for kind in WORKLOADS:
        assert f"workloads[type={kind}]" in entries
    for section in ("trace.events", "cost.buddy", "limits.nofail_stall", "actions[].at",
                    "actions[].do.nr_hugepages.size", "initial_state", "sweep.replicates"):
        assert section in entries


@pytest.mark.parametrize(("path", "first", "has", "lacks"), [
    ("machine.nodes", "machine.nodes", "machine.nodes[].memory", "machine.max_order"),
    ("machine.nodes[0]", "machine.nodes", "machine.nodes[].reserved.DMA32", "machine.layout"),
    ("workloads.synthetic", "workloads[type=synthetic]",
     "workloads[type=synthetic].lifetime.lognormal.sigma", "workloads[type=vmalloc].rate"),
    ("workloads[0].rate", "workloads[type=synthetic].rate", "workloads[type=slab].rate",
     "workloads[type=hugetlb].size"),
    ("sysctl.swappiness", "sysctl.swappiness", "sysctl.swappiness", "sysctl.extfrag_threshold"),
])
def test_describe_a_key_path_prints_its_subtree(capsys: pytest.CaptureFixture[str], path: str,
                                                 first: str, has: str, lacks: str) -> None:
    entries = list(_entries(_describe(capsys, path)))
    assert entries[0] == first
    assert has in entries and lacks not in entries


def test_describe_an_unknown_path_is_one_line_naming_the_nearest(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["describe", "workloads.synthetc"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("allocsim: error: allocsim describe: workloads.synthetc: no "
                               "such key; did you mean 'workloads.synthetic'?")


def test_json_schema_output_checks_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    schema = json.loads(_describe(capsys, "--json-schema"))
    validator = jsonschema.Draft7Validator(schema)
    doc = yaml.safe_load((REPO / "configs" / "quickstart.yaml").read_text())
    assert list(validator.iter_errors(doc)) == []
    doc["workloads"][0]["rat"] = doc["workloads"][0].pop("rate")
    assert list(validator.iter_errors(doc))
