"""A pytest plugin for the fuzz campaign: the tally, written to ``ALLOCSIM_FUZZ_STATS`` as JSON.

Loaded by ``tests/fuzz/campaign.py`` (``-p tests.fuzz.tally_plugin``). It is not a
``conftest.py``: the other test directories import ``conftest`` by that name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.fuzz.fuzzing import TALLY


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the cases per parser, by outcome and by class of input (see fuzzing.TALLY)."""
    path = os.environ.get("ALLOCSIM_FUZZ_STATS")
    if path:
        Path(path).write_text(json.dumps(dict(sorted(TALLY.items())), indent=1) + "\n")
