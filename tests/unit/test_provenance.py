"""Provenance: the commit a run records, from git, from the build, or 'unknown'."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import allocsim.provenance as prov
import simcore
from allocsim.cli import main

REPO = Path(__file__).resolve().parents[2]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "a.txt").write_text("one\n")
    _git(root, "add", "a.txt")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return root


def test_commit_of_a_clean_and_a_dirty_checkout(repo: Path) -> None:
    head = _git(repo, "rev-parse", "HEAD")
    assert prov.git_commit_of(repo) == head and len(head) == 40
    (repo / "untracked.txt").write_text("not part of the build\n")
    assert prov.git_commit_of(repo) == head
    (repo / "a.txt").write_text("two\n")
    assert prov.git_commit_of(repo) == f"{head}-dirty"


def test_only_the_top_of_a_checkout_counts(repo: Path, tmp_path: Path) -> None:
    """A package installed somewhere inside another repository is not that repository."""
    (repo / "venv" / "site-packages").mkdir(parents=True)
    assert prov.git_commit_of(repo / "venv" / "site-packages") is None
    assert prov.git_commit_of(tmp_path) is None


def test_installed_copy_reads_the_build_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site-packages" / "allocsim"
    package.mkdir(parents=True)
    monkeypatch.setattr(prov, "PACKAGE_DIR", package)
    assert prov.source_commit() == "unknown"
    (package / prov.BUILD_COMMIT_FILE).write_text("0123abcd\n")
    assert prov.source_commit() == "0123abcd"


def test_build_records_the_source_commit(tmp_path: Path) -> None:
    """``setup.py build_py`` (what ``pip install .`` runs) writes the commit file."""
    build_lib = tmp_path / "build"
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib",
                        str(build_lib)], cwd=REPO, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    recorded = (build_lib / "allocsim" / prov.BUILD_COMMIT_FILE).read_text().strip()
    assert recorded == (prov.git_commit_of(REPO) or "unknown")
    assert (build_lib / "allocsim" / "provenance.py").is_file()


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("allocsim 0.1.0 (models Linux 6.1; source commit ")
    first, second = out.splitlines()
    assert first.endswith(f"source commit {prov.source_commit()})")
    build = "compiled engine (Cython)" if simcore.COMPILED else "pure Python: "
    assert second == f"build: {simcore.build_description()}"
    assert build in second


@pytest.mark.parametrize(("compiled", "reason", "noted"), [
    (False, None, True),  # nothing compiled is installed: say so, and how to build it
    (False, "ALLOCSIM_PURE_PYTHON is set", False),  # asked for: no note
    (True, None, False),
])
def test_run_notes_a_missing_compiled_engine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    compiled: bool, reason: str | None, noted: bool,
) -> None:
    from allocsim import cli

    monkeypatch.setattr(simcore, "COMPILED", compiled, raising=False)
    monkeypatch.setattr(simcore, "PURE_REASON", reason)
    cli._note_pure_build()
    err = capsys.readouterr().err
    assert ("no compiled engine is installed" in err) is noted
    assert err.count("\n") == (1 if noted else 0)
