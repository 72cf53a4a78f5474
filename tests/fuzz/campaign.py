"""A long fuzz campaign: every fuzz test with many random examples, then the tally.

Run from the repository root (one process, so the machine stays usable)::

    ALLOCSIM_PURE_PYTHON=1 python tests/fuzz/campaign.py --examples 2000

It runs ``pytest tests/fuzz`` with ``ALLOCSIM_FUZZ_EXAMPLES`` (examples per test, random
rather than the regular suite's fixed ones) and prints how many cases each parser ran,
how many gave a valid object and how many one clear error, and the classes of hostile
input fed to it, with hypothesis's own statistics per test before that
(``--hypothesis-show-statistics``). Extra arguments go to pytest (``-k proc``, ``-x``).
The exit status is pytest's: 0 when no input broke a parser.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.fuzz.fuzzing import tally_table  # noqa: E402


def main() -> int:
    """Run the campaign; print the tally; return pytest's exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per fuzz test")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "tally.json"
        env = {**os.environ, "ALLOCSIM_FUZZ_EXAMPLES": str(args.examples),
               "ALLOCSIM_FUZZ_STATS": str(stats), "PYTHONPATH": str(REPO)}
        start = time.monotonic()
        status = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
             "-p", "tests.fuzz.tally_plugin", "--hypothesis-show-statistics", "tests/fuzz",
             *pytest_args], cwd=REPO, env=env)
        minutes = (time.monotonic() - start) / 60
        tally = json.loads(stats.read_text()) if stats.exists() else {}
    print(f"\nfuzz campaign: {args.examples} examples per test, {minutes:.1f} min, "
          f"pytest exit status {status}\n")
    print(tally_table(tally))
    return status


if __name__ == "__main__":
    sys.exit(main())
