"""The ``allocsim`` command line: bad input gets one line, exit 2, no traceback, no files.

Most cases run in-process through :func:`allocsim.cli.main` (a subprocess costs ~2 s of
imports); a few representative ones also go through ``python -m simcore`` in parallel
subprocesses, so that the real exit status and the whole of stderr are checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from allocsim.cli import main

REPO = Path(__file__).resolve().parents[2]
ORACLE = REPO / "tests" / "data" / "oracle"
SNAPSHOT = ORACLE / "wmark-recompute" / "s00-mfk128-wsf10"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

GOOD = """\
# A tiny machine for CLI tests.
name: tiny
seed: 1
duration: 20ms
machine:
  nodes:
    - memory: 256MiB
      cpus: 2
trace:
  events: true
  snapshot_interval: 10ms
workloads:
  - name: w
    type: synthetic
    rate: 1000/s
    order: 0
    lifetime: 5ms
    gfp: GFP_KERNEL
"""


def _sub(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


# label -> (config text, what the error line names right after the file name: the line
# of the key in the file, when it is there, and the key path)
BAD_CONFIGS: dict[str, tuple[str, str]] = {
    "yaml-syntax": (_sub("seed: 1", "seed: [1, 2"), ":4: <yaml>: expected valid YAML (column"),
    "yaml-duplicate-key": (_sub("seed: 1", "seed: 1\nseed: 2"),
                           ":4: <yaml>: expected valid YAML (column"),
    "unknown-top-key": (_sub("seed: 1", "seed: 1\ncolour: red"), ":4: colour: unknown key"),
    "unknown-node-key": (_sub("cpus: 2", "cpus: 2\n      colour: red"),
                         ":9: machine.nodes[0].colour: unknown key"),
    "unknown-workload-key": (_sub("order: 0", "order: 0\n    colour: red"),
                             ":17: workloads[0].colour: unknown key"),
    "misspelt-workload-key": (_sub("rate: 1000/s", "rat: 1000/s"),
                              ":15: workloads[0].rat: unknown key; did you mean 'rate'? "
                              "(expected one of the keys rate, order,"),
    "missing-required": (_sub("seed: 1\n", ""), ": seed: expected a value"),  # no line
    "missing-required-nested": (_sub("lifetime: 5ms", "lifetime: {lognormal: {median: 1ms}}"),
                                ":17: workloads[0].lifetime.lognormal.sigma"),  # its parent's
    "bad-duration-unit": (_sub("duration: 20ms", "duration: 20parsecs"), ":4: duration"),
    "bad-size-unit": (_sub("memory: 256MiB", "memory: 256MiBs"),
                      ":7: machine.nodes[0].memory"),
    "size-not-pageblock-multiple": (_sub("memory: 256MiB", "memory: 255MiB"),
                                    ":7: machine.nodes[0].memory"),
    "bad-rate": (_sub("rate: 1000/s", "rate: fast"),
                 ":15: workloads[0].rate: expected a rate like '200/s'"),
    "wrong-type-seed": (_sub("seed: 1", "seed: one"), ":3: seed"),
    "wrong-type-events": (_sub("events: true", "events: 3"), ":10: trace.events"),
    "wrong-type-cpus": (_sub("cpus: 2", "cpus: [2]"), ":8: machine.nodes[0].cpus"),
    "sysctl-out-of-range": (_sub("seed: 1", "seed: 1\nsysctl:\n  watermark_scale_factor: 0"),
                            ":5: sysctl.watermark_scale_factor"),
    "unknown-workload-type": (_sub("type: synthetic", "type: nonsense"),
                              ":14: workloads[0].type"),
    "bad-gfp-token": (_sub("gfp: GFP_KERNEL", "gfp: GFP_KERNEL|__GFP_BOGUS"),
                      ":18: workloads[0].gfp"),
    # Checked against the machine the same file describes.
    "cpus-the-machine-lacks": (_sub("gfp: GFP_KERNEL", "gfp: GFP_KERNEL\n    cpus: [0, 5]"),
                               ":19: workloads[0].cpus"),
    "nid-the-machine-lacks": (_sub("gfp: GFP_KERNEL", "gfp: GFP_KERNEL\n    nid: 3"),
                              ":19: workloads[0].nid"),
}


def _assert_one_error_line(err: str, must_name: list[str]) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("allocsim: error: "), line
    for text in must_name:
        assert text in line, f"{text!r} not in {line!r}"
    return line


def _assert_empty(out: Path) -> None:
    assert not out.exists() or not any(out.rglob("*")), sorted(out.rglob("*"))


def _run_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, key: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    out = tmp_path / "runs"
    for argv in (["run", str(cfg), "-o", str(out), "-q"], ["validate", str(cfg)]):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "", argv
        _assert_one_error_line(captured.err, [f"{cfg}{key}"])
        _assert_empty(out)


@pytest.mark.parametrize("label", sorted(BAD_CONFIGS))
def test_bad_config_is_one_line_exit_2_nothing_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str
) -> None:
    text, key = BAD_CONFIGS[label]
    _run_bad(tmp_path, capsys, text, key)


def test_good_config_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The base of every bad config above is itself fine: each failure is the edit's.
    cfg = tmp_path / "good.yaml"
    cfg.write_text(GOOD)
    assert main(["validate", str(cfg)]) == 0
    assert capsys.readouterr().out.startswith(f"{cfg}: ok")


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    out = tmp_path / "runs"
    assert main(["run", str(missing), "-o", str(out)]) == 2
    _assert_one_error_line(capsys.readouterr().err, [str(missing)])
    _assert_empty(out)


def test_directory_instead_of_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "adir.yaml"
    folder.mkdir()
    out = tmp_path / "runs"
    assert main(["run", str(folder), "-o", str(out)]) == 2
    _assert_one_error_line(capsys.readouterr().err, [str(folder)])
    _assert_empty(out)
    assert main(["validate", str(folder)]) == 2
    _assert_one_error_line(capsys.readouterr().err, [str(folder)])


def test_validate_every_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    configs = sorted((REPO / "configs").glob("*.yaml"))
    assert configs
    assert main(["validate", *map(str, configs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(configs)
    assert all(": ok (" in line for line in out)


def test_help_shows_examples() -> None:
    r = subprocess.run([sys.executable, "-m", "simcore", "--help"], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    assert "examples:" in r.stdout
    assert "allocsim run configs/quickstart.yaml -o runs/" in r.stdout
    assert "allocsim proc show" in r.stdout


def _garble(tmp_path: Path, key: str) -> tuple[Path, int]:
    """Copy the snapshot and garble the number on the first ``key`` line of zoneinfo."""
    snap = tmp_path / "snap"
    shutil.copytree(SNAPSHOT, snap)
    zoneinfo = snap / "zoneinfo"
    lines = zoneinfo.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) == 2 and fields[0] == key:
            lines[i] = re.sub(r"\d+", "12x4", line, count=1)
            zoneinfo.write_text("".join(lines))
            return snap, i + 1
    raise AssertionError(f"no {key} line")


@pytest.mark.parametrize("key", ["min", "managed", "nr_free_pages"])
def test_proc_show_garbled_zoneinfo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    snap, lineno = _garble(tmp_path, key)
    for extra in ([], ["--recompute"]):
        assert main(["proc", "show", str(snap), *extra]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        _assert_one_error_line(captured.err, [f"{snap / 'zoneinfo'}:{lineno}:"])


def test_proc_show_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-snapshot"
    assert main(["proc", "show", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    _assert_one_error_line(captured.err, [str(missing)])


def test_subprocess_exit_codes_and_stderr(tmp_path: Path) -> None:
    """The real process: exit status 2, one stderr line, nothing written, for each kind."""
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text(BAD_CONFIGS["yaml-syntax"][0])
    gfp = tmp_path / "gfp.yaml"
    gfp.write_text(BAD_CONFIGS["bad-gfp-token"][0])
    snap, lineno = _garble(tmp_path, "min")
    out = tmp_path / "runs"
    cases = [
        (["run", "syntax.yaml", "-o", "runs"], ["syntax.yaml:4: <yaml>"]),
        (["run", "missing.yaml", "-o", "runs"], ["missing.yaml"]),
        (["validate", "gfp.yaml"], ["gfp.yaml:18: workloads[0].gfp"]),
        (["proc", "show", "snap"], [f"snap/zoneinfo:{lineno}:"]),
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "simcore", *argv], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv, _ in cases]
    for p, (argv, names) in zip(procs, cases, strict=True):
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 2, (argv, stderr)
        assert stdout == "", argv
        _assert_one_error_line(stderr, names)
    _assert_empty(out)


def test_validate_refuses_gfp_zone_modifiers_run_would_refuse(
        capsys: pytest.CaptureFixture[str]) -> None:
    """__GFP_DMA|__GFP_DMA32 is a GFP_ZONE_BAD combination: validate says so, naming the
    key, instead of passing a config that run then rejects."""
    quickstart = str(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml")
    assert main(["validate", quickstart, "--set", "workloads[4].gfp=__GFP_DMA|__GFP_DMA32"]) == 2
    err = capsys.readouterr().err
    assert "workloads[4].gfp: expected gfp flags with zone modifiers" in err
