"""The long invariant soak: every ``configs/*.yaml``, audited, for 100,000 events each.

``python -m benchmarks.soak [--every N] [--events K] [CONFIG ...]`` runs
:func:`allocsim.soak.main` with longer defaults than the test suite's soak
(``tests/integration/test_invariant_audit.py`` soaks the configs of machines up to
1 GiB for 4,000 events, every 50). It is not one of ``python -m benchmarks``'s timed
figures: it measures correctness, and prints one line per config with the events run,
the checks made and the verdict; it exits 1 if any invariant broke. On this 2-core
machine the 16 GiB study machines take a few minutes each (a full audit costs about
0.3 s on a million-page machine with 80,000 live allocations).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from allocsim.soak import main as soak_main

EVERY = 200
EVENTS = 100_000


def main(argv: Sequence[str] | None = None) -> int:
    """Soak with this script's defaults unless the command line gives others."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a.startswith("--every") for a in args):
        args += ["--every", str(EVERY)]
    if not any(a.startswith("--events") for a in args):
        args += ["--events", str(EVENTS)]
    return soak_main(args)


if __name__ == "__main__":
    sys.exit(main())
