"""Atomic file writes for run directories.

A run directory must never hold a half-written file under its final name: a reader that
sees ``summary.json`` or ``report/report.pdf`` may trust that it is complete. Every writer
goes through a temporary file in the same directory, named so it can never be mistaken for
the final file (``.<name>.tmp-<pid>-<random>``), which is fsynced and then renamed onto the
final name with :func:`os.replace` (atomic on POSIX within one filesystem).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _temp_path_for(path: Path) -> Path:
    """Return a fresh temporary path next to ``path`` that no reader would take for it."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def _fsync_file(path: Path) -> None:
    """Flush ``path``'s data to stable storage before it is renamed into place."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Persist a rename in ``directory``; best effort, as not every filesystem allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically becomes ``path``.

    The caller writes the whole file to the yielded path. On normal exit the file is
    fsynced and renamed onto ``path``. On any exception (including ``KeyboardInterrupt``)
    the temporary file is deleted, ``path`` is left as it was, and the exception propagates.

    Args:
        path: The final file name. Its directory must exist.

    Yields:
        The temporary path, in the same directory as ``path``.

    Raises:
        FileNotFoundError: If the block exits normally without creating the yielded file.
    """
    final = Path(path)
    tmp = _temp_path_for(final)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (all of it or, on failure, nothing)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (all of it or nothing)."""
    atomic_write_bytes(path, text.encode("utf-8"))
