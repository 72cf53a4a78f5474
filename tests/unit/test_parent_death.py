"""simcore.parent_death: a helper process ends with its parent (Linux: PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from simcore.parent_death import exit_with_parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        exit_with_parent(os.getppid() + 1)  # not its parent: as if that one had died
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 1


def test_a_child_is_killed_when_its_parent_dies() -> None:
    """A middle process forks a child that asks to die with it, then exits."""
    read, write = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the middle process
        child = os.fork()
        if child == 0:
            exit_with_parent(os.getppid())
            os.write(write, b"%d\n" % os.getpid())
            time.sleep(60)
            os._exit(0)
        time.sleep(0.2)
        os._exit(0)
    os.close(write)
    child = int(os.read(read, 64))
    os.close(read)
    os.waitpid(middle, 0)
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child), "the child outlived its parent"


def _alive(pid: int) -> bool:
    """Running, not a zombie its new parent has yet to reap."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
