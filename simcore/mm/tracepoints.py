"""The ``kmem:`` tracepoints the model fires: the tracer interface.

Mirrors the tracepoints of include/trace/events/kmem.h (6.1): ``mm_page_alloc``,
``mm_page_free``, ``mm_page_alloc_zone_locked``, ``mm_page_pcpu_drain`` and
``mm_page_alloc_extfrag``, plus three simulator events for kernel messages:
``mm_page_alloc_fail`` (the kernel's warn_alloc), ``bad_page`` ("BUG: Bad page state",
with the kernel's reason) and ``alloc_order_warn`` (the ``WARN_ON_ONCE_GFP`` of an order
>= MAX_ORDER), and one simulator-only event, ``sim_warning`` (a caller's misuse the
kernel does not report; its reason is ``"<kind>: <text>"``, see
``trace_schema.MISUSE_KINDS``). Method arguments are the tracepoints' fields; time, caller
and CPU come from the tracer's context, which the allocator sets.

:class:`NullTracer` costs one attribute test on the hot path (``tracer.enabled``). The
recording tracer is :class:`simcore.sim.tracer.RecordingTracer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simcore.mm.zone import Zone


class Tracer:
    """The tracer interface. The base class records nothing."""

    enabled = False
    events_traced = 0

    def set_context(self, caller: str, cpu: int) -> None:
        """Set the caller and CPU stamped on the following events."""

    def set_migratetype_numbers(self, numbers: tuple[int, ...]) -> None:
        """Internal migratetype -> the number written out (``kernel_migratetype_numbers``).

        The allocator calls this once, when it is built, with its machine's config.
        """

    def mm_page_alloc(
        self, zone: Zone | None, pfn: int, order: int, gfp: int, mt: int, path: str, nid: int,
        stage: str, latency_ns: int,
    ) -> None:
        """``kmem:mm_page_alloc`` (``pfn == -1`` and ``zone is None`` on failure).

        ``stage`` and ``latency_ns`` are the simulator's: the step that produced the
        page (``trace_schema.STAGES``) and the request's modelled latency.
        """

    def mm_page_free(self, zone: Zone, pfn: int, order: int) -> None:
        """``kmem:mm_page_free``."""

    def mm_page_alloc_zone_locked(
        self, zone: Zone, pfn: int, order: int, mt: int, percpu_refill: bool
    ) -> None:
        """``kmem:mm_page_alloc_zone_locked``: one block taken from a buddy list."""

    def mm_page_pcpu_drain(self, zone: Zone, pfn: int, order: int, mt: int) -> None:
        """``kmem:mm_page_pcpu_drain``: one block returned from a pcp list."""

    def mm_page_alloc_extfrag(
        self,
        zone: Zone,
        pfn: int,
        alloc_order: int,
        fallback_order: int,
        alloc_mt: int,
        fallback_mt: int,
        change_ownership: bool,
    ) -> None:
        """``kmem:mm_page_alloc_extfrag``: a fallback steal."""

    def mm_page_alloc_fail(self, nid: int, order: int, gfp: int, mt: int, reason: str) -> None:
        """An allocation returned NULL (the kernel's ``warn_alloc``)."""

    def bad_page(self, zone: Zone | None, pfn: int, order: int, reason: str) -> None:
        """``bad_page()``: "BUG: Bad page state", with the reason."""

    def alloc_order_warn(self, nid: int, order: int, gfp: int, reason: str) -> None:
        """``WARN_ON_ONCE_GFP(order >= MAX_ORDER)`` in ``__alloc_pages()`` (returns NULL)."""

    def sim_warning(self, zone: Zone | None, pfn: int, order: int, reason: str) -> None:
        """A simulator-only warning: a misuse the kernel lets pass silently.

        ``reason`` is ``"<kind>: <text>"``, the kind one of ``trace_schema.MISUSE_KINDS``.
        """

    def close(self) -> None:
        """Flush and finish any output."""


class NullTracer(Tracer):
    """Records nothing; ``enabled`` is False so hot paths skip the calls."""
