"""Build hooks: the compiled engine, and the source tree's git commit.

Everything else about the build is in pyproject.toml.

* **Compiled engine.** The modules listed in :data:`simcore.engine.COMPILED_MODULES`
  are compiled with Cython from the same ``.py`` files that run uncompiled, typed by the
  ``.pxd`` file beside each one. If Cython or a C compiler is missing, or compiling
  fails, the install still succeeds and the package runs as pure Python (a warning
  says why). ``ALLOCSIM_PURE_PYTHON=1 pip install .`` skips compiling (and, for an
  editable install, removes compiled modules an earlier build left in the tree). The build
  records the sha256 of each compiled source in ``simcore/mm/_build_hashes.json`` so
  that a compiled module is never used after its source changed (see
  :mod:`simcore.engine`).
* **Commit.** ``pip install .`` from a clone copies the packages out of the checkout,
  where git can no longer be asked which commit they came from; this writes
  ``allocsim/_build_commit.txt`` into the build so that run manifests and
  ``allocsim --version`` can still say.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
EDITABLE_COMMANDS = {"editable_wheel", "develop"}
"""setuptools commands of an editable install (``pip install -e .`` runs ``editable_wheel``)."""


def _engine():  # type: ignore[no-untyped-def]
    path = HERE / "simcore" / "engine.py"
    spec = importlib.util.spec_from_file_location("_allocsim_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ENGINE = _engine()


def _warn(message: str) -> None:
    print(f"allocsim build: warning: {message}; the package will run as pure Python",
          file=sys.stderr)


def _extensions() -> list:  # type: ignore[type-arg]
    if ENGINE.pure_requested():
        print(f"allocsim build: {ENGINE.PURE_ENV} is set: not compiling the engine",
              file=sys.stderr)
        if EDITABLE_COMMANDS & set(sys.argv):
            # An editable install imports from this tree, where an earlier build's
            # extension modules would win over the .py files: remove them.
            for path in ENGINE.remove_inplace_build(HERE):
                print(f"allocsim build: removed {path.relative_to(HERE)} (pure-Python "
                      f"editable install)", file=sys.stderr)
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        _warn("Cython is not installed")
        return []
    sources = [str(ENGINE.module_source(name, Path("."))) for name in ENGINE.COMPILED_MODULES]
    try:
        return cythonize(
            sources,
            compiler_directives={
                "language_level": 3,
                "annotation_typing": False,  # the .pxd files are the only type source
                "infer_types": True,
                "boundscheck": True,
                "wraparound": False,
                "cdivision": False,  # keep Python's floor division and modulo
                "embedsignature": True,
            },
            quiet=True,
        )
    except Exception as exc:  # noqa: BLE001 - any Cython failure means "build pure"
        _warn(f"Cython could not translate the engine ({exc})")
        return []


class OptionalBuildExt(build_ext):
    """``build_ext`` that falls back to pure Python instead of failing the install."""

    def finalize_options(self) -> None:  # noqa: D102
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1  # the modules compile independently

    def run(self) -> None:  # noqa: D102
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - e.g. no C compiler
            _warn(f"compiling the engine failed ({exc})")
            return
        if not self.extensions:
            return
        hashes = {name: ENGINE.source_hash(name, HERE) for name in ENGINE.COMPILED_MODULES}
        first = Path(self.get_ext_fullpath(ENGINE.COMPILED_MODULES[0]))
        record = first.parent / ENGINE.HASHES_FILE
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(hashes, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]  # noqa: D102
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001
            _warn(f"compiling {ext.name} failed ({exc})")
            raise


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


setup(
    cmdclass={"build_py": BuildPyWithCommit, "build_ext": OptionalBuildExt},
    ext_modules=_extensions(),
)
