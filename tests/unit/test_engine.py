"""Choosing the build: stale compiled modules are refused, hashes cover .py and .pxd."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import simcore
from simcore import engine

REPO = Path(__file__).resolve().parents[2]


def test_source_hash_covers_the_py_and_the_pxd(tmp_path: Path) -> None:
    pkg = tmp_path / "simcore" / "mm"
    pkg.mkdir(parents=True)
    (pkg / "zone.py").write_text("x = 1\n")
    before = engine.source_hash("simcore.mm.zone", tmp_path)
    (pkg / "zone.pxd").write_text("cdef int y\n")
    with_pxd = engine.source_hash("simcore.mm.zone", tmp_path)
    (pkg / "zone.py").write_text("x = 2\n")
    assert len({before, with_pxd, engine.source_hash("simcore.mm.zone", tmp_path)}) == 3


def test_every_compiled_module_has_its_declarations() -> None:
    for name in engine.COMPILED_MODULES:
        assert engine.module_source(name).is_file(), name
    # fallback.py is compiled untyped (it is off the hot path); the others are typed.
    typed = [n for n in engine.COMPILED_MODULES if n != "simcore.mm.fallback"]
    assert all(engine.module_source(n).with_suffix(".pxd").is_file() for n in typed)


@pytest.mark.skipif(not simcore.COMPILED, reason="no compiled engine is installed")
def test_an_edited_module_makes_the_whole_engine_run_as_pure_python(tmp_path: Path) -> None:
    shutil.copytree(REPO / "simcore", tmp_path / "simcore")
    zone = tmp_path / "simcore" / "mm" / "zone.py"
    probe = ("import simcore, simcore.mm.zone as z, simcore.mm.pcp as p; "
             "print(simcore.COMPILED, z.__file__.endswith('.py'), p.__file__.endswith('.py'))")

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", probe], cwd=tmp_path,
                              env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)},
                              capture_output=True, text=True, check=True)

    fresh = run()
    assert fresh.stdout.split() == ["True", "False", "False"] and not fresh.stderr
    zone.write_text(zone.read_text() + "\n# edited after the build\n")
    stale = run()
    assert stale.stdout.split() == ["False", "True", "True"]
    assert "compiled engine is stale: simcore.mm.zone changed" in stale.stderr


def test_a_pure_editable_install_removes_the_in_tree_build(tmp_path: Path) -> None:
    """What ``ALLOCSIM_PURE_PYTHON=1 pip install -e .`` runs first (setup.py)."""
    suffix = engine.importlib.machinery.EXTENSION_SUFFIXES[0]
    built = []
    for name in engine.COMPILED_MODULES:
        py = engine.module_source(name, tmp_path)
        py.parent.mkdir(parents=True, exist_ok=True)
        py.write_text("x = 1\n")
        ext = py.with_name(py.stem + suffix)
        ext.write_bytes(b"not really a shared object")
        built.append(ext)
    record = tmp_path / "simcore" / "mm" / engine.HASHES_FILE
    record.write_text("{}\n")
    removed = engine.remove_inplace_build(tmp_path)
    assert sorted(removed) == sorted([*built, record])
    assert not any(p.exists() for p in removed)
    assert all(engine.module_source(n, tmp_path).exists() for n in engine.COMPILED_MODULES)
    assert engine.remove_inplace_build(tmp_path) == []


def test_a_compiled_install_shadowed_by_a_source_tree_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``python -m simcore`` in a checkout after ``pip install .`` imports the checkout:
    the build line must say so instead of "no compiled engine installed"."""
    site = tmp_path / "site-packages"
    (site / "simcore" / "mm").mkdir(parents=True)
    monkeypatch.setattr(sys, "path", [str(REPO), str(site)])
    assert engine.installed_compiled_copy() is None  # a pure copy there: nothing to name
    assert engine.describe_build(False, None) == "pure Python: no compiled engine installed"

    suffix = engine.importlib.machinery.EXTENSION_SUFFIXES[0]
    (site / "simcore" / "mm" / f"page_alloc{suffix}").write_bytes(b"")
    assert engine.installed_compiled_copy() == (site / "simcore").resolve()
    line = engine.describe_build(False, None)
    assert line.startswith(f"pure Python: the source tree {engine.PACKAGE_DIR} has no")
    assert str((site / "simcore").resolve()) in line
