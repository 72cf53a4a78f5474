"""The static checks of style.md, run as part of the suite: ruff (lint + Google
docstrings) and mypy (type hints everywhere)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)


def test_ruff_is_clean() -> None:
    result = _run("ruff", "check", "simcore", "workloads", "reports", "allocsim", "benchmarks",
                  "tests", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_package_is_installed_by_a_plain_pip_install() -> None:
    """``pip install .`` (not editable) installs only the packages pyproject lists."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = {str(p.parent.relative_to(root)).replace("/", ".")
             for top in ("allocsim", "simcore", "workloads", "reports", "benchmarks")
             for p in (root / top).rglob("__init__.py")}
    assert found <= listed, f"not in pyproject.toml's packages: {sorted(found - listed)}"
