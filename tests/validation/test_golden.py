"""The three golden runs still produce the content digests stored before the engine work.

``tests/data/golden/digests.json`` was written by ``python -m tests.golden --write`` before
any change to the engine. Every digest is compared, ``events_file_order`` included: the
simulator must write the same events, in the same order, at the same times, and the same
snapshots, summary counters and end-of-run ``/proc`` files. (If a change reorders events
with equal timestamps on purpose, its commit updates the stored ``events_file_order``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden import CONFIGS, GOLDEN, digests, run_and_digest

STORED = json.loads((GOLDEN / "digests.json").read_text())


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_matches_stored_digests(request: pytest.FixtureRequest, tmp_path: Path,
                                    name: str) -> None:
    if name == "quickstart":  # the session's one quickstart run (conftest.py)
        got = digests(request.getfixturevalue("quickstart_run"))
    else:
        got = run_and_digest(name, tmp_path)
    assert got == STORED[name]
