"""Which source tree this allocsim was built from: the git commit in every manifest.

Also the digests of a ``/proc`` snapshot a run starts from (:func:`snapshot_digests`).

A run must say what code produced it. From a git checkout (an editable install, or
``python -m simcore`` in the repository) the commit is asked of git directly. A regular
``pip install .`` copies the package out of the checkout, so ``setup.py`` records the
commit at build time in ``allocsim/_build_commit.txt``. A tree with uncommitted changes
to tracked files gets a ``-dirty`` suffix. When neither is known: ``"unknown"``.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

UNKNOWN = "unknown"
BUILD_COMMIT_FILE = "_build_commit.txt"
PACKAGE_DIR = Path(__file__).resolve().parent


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit_of(repo: Path) -> str | None:
    """``HEAD`` of the checkout whose top level is ``repo`` (``-dirty`` if modified).

    Returns None unless ``repo`` is itself the top of a git work tree, so a package
    installed inside some other repository (a virtualenv in a project) is not mistaken
    for allocsim's own checkout.
    """
    top = _git(repo, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != repo.resolve():
        return None
    head = _git(repo, "rev-parse", "HEAD")
    if not head:
        return None
    status = _git(repo, "status", "--porcelain", "--untracked-files=no")
    return f"{head}-dirty" if status else head


def source_commit() -> str:
    """The commit of the running code: live git, else the build-time record, else unknown."""
    live = git_commit_of(PACKAGE_DIR.parent)
    if live is not None:
        return live
    try:
        recorded = (PACKAGE_DIR / BUILD_COMMIT_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        recorded = ""
    return recorded or UNKNOWN


def snapshot_digests(directory: Path) -> dict[str, str]:
    """The sha256 of every regular file of a ``/proc`` snapshot directory, by file name.

    A run that starts from a snapshot (``initial_state: {from_proc: DIR}``) records
    these, so a later look can tell whether the directory still holds what it ran from.
    """
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(directory).iterdir()) if path.is_file()}
