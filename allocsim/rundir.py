"""A run directory's hidden temporary name, and what finding one means.

:func:`allocsim.run.simulate` builds a run's directory as ``.<final name>.tmp-<pid>`` and
renames it only once it is complete (or ``.failed``/``.interrupted`` when the run stops
and can still say why). A directory left with the temporary name belongs to a run still
going, or to one killed outright (SIGKILL, the OOM killer, power loss), which could
record nothing. Kept apart from :mod:`allocsim.run` so ``allocsim report`` can tell
without importing the model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from simcore.formats.trace_schema import MANIFEST_FILE

TMP_DIR_MARK = ".tmp-"
_TMP_DIR_NAME = re.compile(r"\.(?P<final>.+)\.tmp-(?P<pid>\d+)")
_FINISHED = ("ok", "panic")
"""Statuses of a run whose results are complete (``allocsim.run.STATUS_OK``, ``_PANIC``)."""


def tmp_dir_name(final_name: str, pid: int) -> str:
    """The hidden name a run's directory has until it is complete."""
    return f".{final_name}{TMP_DIR_MARK}{pid}"


def unfinished_run(run_dir: Path) -> str | None:
    """Why ``run_dir`` holds no results if it is a run's temporary directory, else None.

    Its manifest, when it has one, says how far the run got: ``status: running`` and the
    ``stage``, or ``ok`` once only the report was left to build. One line, for
    ``allocsim report``.
    """
    match = _TMP_DIR_NAME.fullmatch(Path(run_dir).name)
    if match is None:
        return None
    try:
        manifest = json.loads((Path(run_dir) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None
    pid, stage = int(match["pid"]), _stage_reached(manifest)
    if _alive(pid):
        how = f"the run is still going (pid {pid}), {stage}, and has no complete results yet"
    else:
        how = (f"the run was killed outright (SIGKILL, out of memory, power loss) while "
               f"{stage}, so it has no complete results to report; delete it and run the "
               "experiment again")
    return f"{run_dir}: a run's temporary directory: {how} (a complete run is renamed " \
           f"{match['final']})"


def _stage_reached(manifest: object) -> str:
    """The stage a temporary directory's manifest records (see :func:`unfinished_run`)."""
    if not isinstance(manifest, dict):
        return "starting"
    if manifest.get("status") in _FINISHED:
        return "building the report" if manifest.get("report_requested") else "finishing"
    return str(manifest.get("stage") or "simulating")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True
