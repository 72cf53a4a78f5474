"""Every single-run config at full length: compiled build against pure build, and hash seeds.

Not part of the test suite (it takes minutes; the suite's determinism tests use cut-down
runs). For each ``configs/*.yaml`` without a ``sweep:`` section it runs ``allocsim run``
twice at once: on the compiled build with ``PYTHONHASHSEED=0`` and on the pure build
with ``PYTHONHASHSEED=1``. It then compares the two run directories with
:func:`tests.rundiff.run_differences`, and prints one line per config and a total. With
no compiled engine, both runs are pure and only the hash seeds differ.

Run it from the checkout's root: ``python -m tests.determinism_matrix [NAME ...]``.
Exit status 1 if any pair differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from simcore.engine import PURE_ENV
from tests.rundiff import run_differences

REPO = Path(__file__).resolve().parents[1]


def single_run_configs() -> list[Path]:
    """``configs/*.yaml`` that are one run (no ``sweep:`` section), sorted."""
    return [p for p in sorted((REPO / "configs").glob("*.yaml"))
            if not any(line.startswith("sweep:") for line in p.read_text().splitlines())]


def _compiled_available() -> bool:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    r = subprocess.run([sys.executable, "-c", "import simcore; print(simcore.COMPILED)"],
                       env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True,
                       text=True, check=True)
    return r.stdout.strip() == "True"


def compare(config: Path, out: Path, compiled: bool) -> tuple[list[str], list[float]]:
    """Run ``config`` on both sides at once; the differences and each side's simulate
    wall seconds (``summary.json``)."""
    sides = (("a", "0", not compiled), ("b", "1", True))
    procs = []
    for name, hash_seed, pure in sides:
        env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
        env.update(PYTHONPATH=str(REPO), PYTHONHASHSEED=hash_seed)
        if pure:
            env[PURE_ENV] = "1"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "allocsim", "run", str(config.relative_to(REPO)), "-o",
             str(out / name), "-q", "--no-report"], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            return [f"exit {proc.returncode}: {err.strip()[-300:]}"], [0.0, 0.0]
    (a,) = (out / "a").iterdir()
    (b,) = (out / "b").iterdir()
    walls = [float(json.loads((d / "summary.json").read_text())["wall_seconds"])
             for d in (a, b)]
    return run_differences(a, b, across_builds=compiled), walls


def main() -> int:
    """Run the matrix; print a line per config."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="config names (default: every single run)")
    args = ap.parse_args()
    configs = [c for c in single_run_configs() if not args.names or c.stem in args.names]
    compiled = _compiled_available()
    print("compiled PYTHONHASHSEED=0 vs pure PYTHONHASHSEED=1" if compiled else
          "no compiled engine: pure PYTHONHASHSEED=0 vs pure PYTHONHASHSEED=1")
    print(f"{'config':24s} {'a':>8s} {'b':>8s}  (simulate wall seconds)")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            differences, walls = compare(config, Path(tmp) / config.stem, compiled)
            failed += bool(differences)
            verdict = "same run" if not differences else "DIFFERENT: " + differences[0]
            print(f"{config.stem:24s} {walls[0]:6.1f} s {walls[1]:6.1f} s  {verdict}",
                  flush=True)
    print(f"{len(configs) - failed} of {len(configs)} configs gave the same run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
