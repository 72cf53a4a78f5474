"""Which build of the kernel model runs: the compiled engine or the pure-Python modules.

The hot modules of :mod:`simcore.mm` (:data:`COMPILED_MODULES`) are plain Python. When a
C compiler is present, ``pip install .`` also compiles them with Cython, using the typed
declarations in the ``.pxd`` file beside each module: one source, two builds. Python
imports an extension module in preference to the ``.py`` next to it, so this module
decides, before any of them is imported, whether to let that happen:

* ``ALLOCSIM_PURE_PYTHON=1`` in the environment runs the pure-Python modules even when a
  compiled build is installed (and, at install time, skips compiling them);
* a compiled module whose recorded source hash (``_build_hashes.json``, written by the
  build next to the extension modules) differs from the ``.py``/``.pxd`` it sits beside
  is stale, for example after editing a module in an editable install: then every
  module runs as pure Python and a one-line warning says so, so stale code never runs.

Standard library only: ``setup.py`` loads this file to get the module list and hashes.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

COMPILED_MODULES: tuple[str, ...] = (
    "simcore.mm.tracepoints",
    "simcore.mm.pages",
    "simcore.mm.freelist",
    "simcore.mm.lru",
    "simcore.mm.vmstat",
    "simcore.mm.zone",
    "simcore.mm.pcp",
    "simcore.mm.fallback",
    "simcore.mm.compaction",
    "simcore.mm.vmscan",
    "simcore.mm.page_free",
    "simcore.mm.page_alloc",
    "simcore.sim.tracer",
    "simcore.sim.machine",
)
"""Modules compiled by the build, in dependency order."""
PURE_ENV = "ALLOCSIM_PURE_PYTHON"
"""Set to 1 to run (or install) the pure-Python build."""
HASHES_FILE = "_build_hashes.json"
"""Written by the build into ``simcore/mm/``: module -> sha256 of its .py and .pxd."""
PACKAGE_DIR = Path(__file__).resolve().parent


def pure_requested() -> bool:
    """Whether ``ALLOCSIM_PURE_PYTHON`` asks for the pure-Python build."""
    return os.environ.get(PURE_ENV, "").strip() not in ("", "0")


def module_source(name: str, root: Path = PACKAGE_DIR.parent) -> Path:
    """The ``.py`` file of module ``name`` under ``root`` (the directory holding simcore/)."""
    return root.joinpath(*name.split(".")).with_suffix(".py")


def source_hash(name: str, root: Path = PACKAGE_DIR.parent) -> str:
    """sha256 of module ``name``'s ``.py`` and ``.pxd`` files (what the build compiled)."""
    digest = hashlib.sha256()
    py = module_source(name, root)
    for path in (py, py.with_suffix(".pxd")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def _extension_file(name: str, root: Path = PACKAGE_DIR.parent) -> Path | None:
    py = module_source(name, root)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = py.with_name(py.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def remove_inplace_build(root: Path) -> list[Path]:
    """Delete the compiled modules (and their hash record) built in the tree at ``root``.

    What a pure-Python editable install (``ALLOCSIM_PURE_PYTHON=1 pip install -e .``)
    does first: an extension module left in the source tree by an earlier build would
    otherwise be imported in preference to its ``.py``. Returns the files removed.
    """
    removed = []
    for name in COMPILED_MODULES:
        while (ext := _extension_file(name, root)) is not None:
            ext.unlink()
            removed.append(ext)
    record = root / "simcore" / "mm" / HASHES_FILE
    if record.exists():
        record.unlink()
        removed.append(record)
    return removed


def stale_modules() -> list[str]:
    """Compiled modules whose sources changed since the build (or with no record)."""
    present = [name for name in COMPILED_MODULES if _extension_file(name) is not None]
    if not present:
        return []
    record_path = PACKAGE_DIR / "mm" / HASHES_FILE
    try:
        recorded = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return present
    return [name for name in present if recorded.get(name) != source_hash(name)]


class _PureFinder(importlib.abc.MetaPathFinder):
    """Loads the compiled modules from their ``.py`` files instead of the extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        source = module_source(fullname)
        return importlib.util.spec_from_file_location(fullname, source)


def select_build() -> str | None:
    """Install the pure-Python finder when asked for or when the build is stale.

    Returns why the pure-Python modules were chosen over a compiled build that is
    present, in a few words (None when the compiled build, if any, is used). A stale
    build also gets a one-line warning on stderr that says how to rebuild.
    """
    if any(name in sys.modules for name in COMPILED_MODULES):
        return None  # too late to choose; whatever was imported stays
    reason = None
    if pure_requested():
        reason = f"{PURE_ENV} is set"
    else:
        stale = stale_modules()
        if stale:
            reason = (f"the compiled engine is stale: {', '.join(stale)} changed since it "
                      f"was built")
            print(f"allocsim: warning: {reason}; running pure Python. Rebuild with "
                  f"`pip install -e .` (or `pip install .`)", file=sys.stderr)
    if reason is not None:
        sys.meta_path.insert(0, _PureFinder())
    return reason


def installed_compiled_copy() -> Path | None:
    """The ``simcore`` directory of another, compiled copy on ``sys.path``, if any.

    Set when Python imports an uncompiled source tree (for example a checkout, through
    the current directory with ``python -m``) ahead of a compiled ``pip install .``.
    """
    for entry in sys.path:
        candidate = Path(entry or ".").resolve() / "simcore"
        if candidate == PACKAGE_DIR:
            continue
        page_alloc = candidate / "mm" / "page_alloc"
        if any(page_alloc.with_name(page_alloc.name + suffix).exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES):
            return candidate
    return None


def describe_build(compiled: bool, pure_reason: str | None) -> str:
    """One line naming the running build, for ``--version`` and the run manifest."""
    if compiled:
        return "compiled engine (Cython)"
    if pure_reason:
        return f"pure Python: {pure_reason}"
    elsewhere = installed_compiled_copy()
    if elsewhere is not None:
        return (f"pure Python: the source tree {PACKAGE_DIR} has no compiled engine "
                f"(the installed one in {elsewhere} is not the one imported)")
    return "pure Python: no compiled engine installed"


def is_compiled() -> bool:
    """Whether the imported kernel-model modules are the compiled ones."""
    from simcore.mm import page_alloc

    return not str(page_alloc.__file__).endswith(".py")
