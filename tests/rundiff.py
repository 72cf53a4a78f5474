"""What "the same run" means: the one comparison every determinism test uses.

Two run directories made from the same config and seed must hold the same files and
every file must be byte-identical, with three exceptions, each of which records *when*
or *how* a run was made rather than what it computed:

* ``report/`` is not compared. It is drawn from the files that are (its PDF also
  carries a creation date), and the determinism tests run with ``--no-report``.
* Wall-clock fields (:data:`WALL_CLOCK`): ``started``, ``finished``, ``timings`` and
  ``wall_seconds`` in ``manifest.json``; ``wall_seconds`` in ``summary.json``.
* Across the compiled and the pure build only (:data:`BUILD_FIELDS`): ``compiled`` and
  ``versions.engine_build`` in ``manifest.json``, which name the build on purpose.

Nothing else is excluded. The manifest's paths (``config_source``, an
``initial_state`` directory), the git commit, the library versions and the Python
version hold what the run was given and the software it ran on. Every test here gives
both runs the same input path on one host, so these fields must match as well. A JSON
file with excluded fields is compared, once they are removed, in its own key order and
number spelling (``1`` and ``1.0`` differ). Everything else, ``trace/*.parquet``,
``config.yaml``, the ``/proc`` text files and ``proc/*/``, is compared byte for byte.

A sweep directory (:func:`sweep_differences`) is the same sweep when each of its run
directories is the same run, and its tables are equal. ``runs.csv`` and
``summary.csv`` must be byte-identical. ``sweep.parquet`` must be equal without its
wall-clock rows (``wall`` is true). ``sweep.json`` must match without ``started``,
``finished``, ``executor`` (which executor ran it is the point of the comparison) and
``host_pid``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

REPORT_DIR = "report"
WALL_CLOCK: dict[str, tuple[str, ...]] = {
    "manifest.json": ("started", "finished", "timings", "wall_seconds"),
    "summary.json": ("wall_seconds",),
}
"""Per JSON file of a run directory, the top-level keys that hold wall-clock time."""
BUILD_FIELDS: dict[str, tuple[str, ...]] = {"manifest.json": ("compiled",
                                                              "versions.engine_build")}
"""Fields that name the build (compared except across the compiled and pure builds)."""
MIXED_ARGS = ("configs/mixed_callers.yaml", "--set", "duration=300ms",
              "--set", "workloads[12].resize[0].at=250ms",
              "--set", "machine.nodes[0].memory=128MiB",
              "--set", "machine.nodes[1].memory=128MiB")
"""``allocsim run`` arguments (from the checkout's root) of the run the determinism tests
repeat: every caller kind at once (``configs/mixed_callers.yaml``) on a machine small
enough that 300 ms reach kswapd and direct reclaim, compaction with migration, an OOM
kill, failed requests and a hugetlb pool resize. Callers, owners and victims are keyed
by name, so a set or dict of names iterated into the run would show across hash seeds."""
SWEEP_EXCLUDED = ("started", "finished", "executor", "host_pid")
"""``sweep.json`` keys that say when, where and on what executor the sweep ran."""


def run_files(run_dir: Path) -> list[str]:
    """Every file of a run directory that is compared, as sorted relative paths."""
    return sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*")
                  if p.is_file() and p.relative_to(run_dir).parts[0] != REPORT_DIR)


def run_differences(a: Path, b: Path, across_builds: bool = False) -> list[str]:
    """What differs between run directories ``a`` and ``b`` (empty: the same run).

    Args:
        a: One run directory.
        b: The other.
        across_builds: The runs come from the compiled and the pure build: the fields
            naming the build are not compared.
    """
    files_a, files_b = run_files(a), run_files(b)
    if files_a != files_b:
        return [f"files only in {a}: {sorted(set(files_a) - set(files_b))}, "
                f"only in {b}: {sorted(set(files_b) - set(files_a))}"]
    return [f"{rel}: {why}" for rel in files_a
            if (why := _file_difference(a / rel, b / rel, rel, across_builds))]


def assert_same_run(a: Path, b: Path, across_builds: bool = False) -> None:
    """Fail, naming each file that differs, unless ``a`` and ``b`` are the same run."""
    differences = run_differences(a, b, across_builds)
    assert not differences, "\n".join(differences)


def _file_difference(a: Path, b: Path, rel: str, across_builds: bool) -> str | None:
    excluded = WALL_CLOCK.get(rel, ()) + (BUILD_FIELDS.get(rel, ()) if across_builds else ())
    if excluded:
        left, right = _json_without(a, excluded), _json_without(b, excluded)
        return None if left == right else _first_line_difference(left, right)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    if data_a == data_b:
        return None
    if rel.endswith(".parquet"):
        return _table_difference(a, b)
    return _first_line_difference(data_a.decode(errors="replace"),
                                  data_b.decode(errors="replace"))


def _json_without(path: Path, excluded: tuple[str, ...]) -> str:
    """The JSON document without the ``excluded`` keys (dotted paths), in its own order."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    for dotted in excluded:
        *parents, last = dotted.split(".")
        node: Any = doc
        for key in parents:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(doc, indent=1)


def _first_line_difference(a: str, b: str) -> str:
    lines_a, lines_b = a.splitlines(), b.splitlines()
    for n, (x, y) in enumerate(zip(lines_a, lines_b, strict=False), start=1):
        if x != y:
            return f"line {n}: {x.strip()[:120]!r} != {y.strip()[:120]!r}"
    return f"{len(lines_a)} lines != {len(lines_b)} lines"


def _table_difference(a: Path, b: Path) -> str:
    ta, tb = pq.read_table(a), pq.read_table(b)
    if ta.schema != tb.schema:
        return f"schemas differ: {ta.schema} != {tb.schema}"
    if ta.num_rows != tb.num_rows:
        return f"{ta.num_rows} rows != {tb.num_rows} rows"
    for name in ta.column_names:
        if not ta[name].equals(tb[name]):
            x, y = ta[name].to_pylist(), tb[name].to_pylist()
            row = next(i for i, (u, v) in enumerate(zip(x, y, strict=True)) if u != v)
            return f"column {name!r}, first at row {row}: {x[row]!r} != {y[row]!r}"
    return "the same values, different bytes (metadata or encoding)"


def sweep_differences(a: Path, b: Path) -> list[str]:
    """What differs between sweep directories ``a`` and ``b`` (empty: the same sweep)."""
    out = []
    for name in ("runs.csv", "summary.csv"):
        if (a / name).read_bytes() != (b / name).read_bytes():
            out.append(f"{name}: " + _first_line_difference((a / name).read_text(),
                                                           (b / name).read_text()))
    model_a, model_b = _model_rows(a), _model_rows(b)
    if not model_a.equals(model_b):
        out.append(f"sweep.parquet (without wall-clock rows): {len(model_a)} rows != "
                   f"{len(model_b)} rows or different values")
    if _json_without(a / "sweep.json", SWEEP_EXCLUDED) != _json_without(b / "sweep.json",
                                                                          SWEEP_EXCLUDED):
        out.append("sweep.json differs outside " + ", ".join(SWEEP_EXCLUDED))
    runs_a = sorted(p.name for p in (a / "runs").iterdir())
    runs_b = sorted(p.name for p in (b / "runs").iterdir())
    if runs_a != runs_b:
        return [*out, f"run directories {runs_a} != {runs_b}"]
    for name in runs_a:
        out += [f"runs/{name}/{d}" for d in run_differences(a / "runs" / name,
                                                             b / "runs" / name)]
    return out


def assert_same_sweep(a: Path, b: Path) -> None:
    """Fail, naming each difference, unless ``a`` and ``b`` are the same sweep."""
    differences = sweep_differences(a, b)
    assert not differences, "\n".join(differences)


def _model_rows(sweep: Path) -> pd.DataFrame:
    frame = pd.read_parquet(sweep / "sweep.parquet")
    return frame[~frame.wall].reset_index(drop=True)
