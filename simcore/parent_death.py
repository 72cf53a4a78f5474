"""Helper processes that end when the process they work for dies.

A report's forked renderer (:mod:`reports.render`) and a sweep's worker processes
(:mod:`allocsim.sweep.executors`) only ever work for their parent. When the parent is
killed outright (SIGKILL, the OOM killer) nobody reaps or stops them: the renderer
would go on drawing into a directory nobody will rename, and a worker would go on
running, then write a run directory beside the one a resumed sweep writes again. On
Linux the kernel kills them with their parent (``prctl(PR_SET_PDEATHSIG)``); elsewhere
they stay as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
"""``prctl()`` option, from ``include/uapi/linux/prctl.h``."""


def _load_prctl() -> Callable[..., int] | None:
    """The C library's ``prctl``, looked up once, at import.

    A forked child must not ``dlopen``: another thread of its parent may have held the
    loader's lock at the fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()


def exit_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when ``parent_pid``, its parent, exits.

    Call it first thing in the child. If the parent has already gone by then (the
    request only covers a parent still alive), the child exits at once, status 1.
    The kernel sends it when the parent's *thread* that created the child exits; both
    callers' threads outlive their children (each waits for them before it returns).
    """
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
