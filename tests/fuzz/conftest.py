"""The fuzz tests' tally: with ``ALLOCSIM_FUZZ_STATS=FILE``, written to FILE as JSON at the end."""

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
