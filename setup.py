"""Build hook: record the source tree's git commit in the installed package.

Everything else about the build is in pyproject.toml. ``pip install .`` from a clone
copies the packages out of the checkout, where git can no longer be asked which commit
they came from; this writes ``allocsim/_build_commit.txt`` into the build so that run
manifests and ``allocsim --version`` can still say.
"""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildPyWithCommit(build_py):
    """``build_py`` that also writes the commit file next to the built package."""

    def run(self) -> None:  # noqa: D102
        super().run()
        sys.path.insert(0, str(HERE))
        try:
            from allocsim.provenance import BUILD_COMMIT_FILE, UNKNOWN, git_commit_of
        finally:
            sys.path.pop(0)
        target = Path(self.build_lib) / "allocsim" / BUILD_COMMIT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((git_commit_of(HERE) or UNKNOWN) + "\n", encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithCommit})
