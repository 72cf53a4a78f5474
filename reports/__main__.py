"""Command line: ``python -m reports RUN_DIR [--out DIR]`` builds a run's report.

Exits 0 and prints the files written; exits 2 with a one-line message if the run
directory's inputs are missing or malformed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reports.build import build_report
from reports.load import ReportInputError


def main(argv: list[str] | None = None) -> int:
    """Build the report for the run directory named on the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Build report.pdf and PNG figures from an allocsim run directory.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory")
    parser.add_argument(
        "--out", type=Path, default=None, help="output directory (default: RUN_DIR/report)"
    )
    parser.add_argument("--overlay", type=Path, default=None, metavar="BUDDYINFO_PERIODIC",
                        help="a real host's buddyinfo.periodic to overlay on the run")
    args = parser.parse_args(argv)
    try:
        written = build_report(args.run_dir, args.out, args.overlay)
    except ReportInputError as exc:
        print(f"python -m reports: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
