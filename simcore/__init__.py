"""allocsim core: a discrete-event model of the Linux 6.1 physical page allocator.

The pinned kernel is Linux 6.1 (behaviour read from the 6.1.20 tree). Everything in
``simcore`` mirrors ``mm/page_alloc.c`` and friends from that version; where the model
simplifies the kernel, the code says so with a ``SIMPLIFICATION:`` comment.

``simcore`` never imports pandas, matplotlib, ``workloads`` or ``reports``.
"""

KERNEL_VERSION = "6.1"
"""The Linux version whose page-allocator semantics this package models."""

__version__ = "0.1.0"

from simcore.engine import describe_build, is_compiled, select_build  # noqa: E402

PURE_REASON = select_build()
"""Why the pure-Python modules run although a compiled build is present (else None)."""


def build_description() -> str:
    """The running build in one line: compiled, or pure Python and why."""
    return describe_build(is_compiled(), PURE_REASON)


def __getattr__(name: str) -> object:
    if name == "COMPILED":
        return is_compiled()  # True when the Cython-compiled engine is running
    raise AttributeError(f"module 'simcore' has no attribute {name!r}")


__all__ = ["COMPILED", "KERNEL_VERSION", "PURE_REASON", "__version__", "build_description"]
