"""A caller's misuse of its handles: what :class:`~simcore.sim.machine.Machine` passes on.

The machine's handles say what a caller holds; the kernel only sees ``page`` and
``order``. A misuse reaches the allocator as the kernel would see it
(:mod:`simcore.mm.page_misuse` says what 6.1 does), with one refusal the kernel does not
make: a call on pages that now belong to a live block (another owner's, or the caller's
own new one) is ignored with a ``sim_warning``, whose text says what the kernel would do
to that block (SIMPLIFICATION: the model does not corrupt an innocent owner's pages).

* :meth:`Machine.free` of a handle already freed (a double free, :func:`free_again`);
* :meth:`Machine.put_page` (:func:`put_page`): ``put_page(page + index)`` by the owner,
  on any page of its block; on a compound page's tail this is legal (``page_folio()``
  is the head, whose reference it drops);
* :meth:`Machine.touch` (:func:`use_after_free`): the owner reads or writes its block's
  memory; after the free that is a use after free, which a kernel without KASAN or
  debug_pagealloc does not detect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from simcore.formats import trace_schema as ts
from simcore.mm import page_misuse
from simcore.mm.pages import PG_ALLOC, PG_HEAD

if TYPE_CHECKING:
    from simcore.sim.machine import Allocation, Machine


def live_block(machine: Machine, pfn: int, order: int) -> str:
    """The live (allocated) block overlapping ``pfn``'s order-``order`` range, in words.

    "" if there is none. A block with ``PG_ALLOC`` but no handle is held without one (a
    snapshot's owner, the hugetlb pool, a freezer) or was leaked by a bad free.
    """
    pages = machine.mm.pages
    head, have, where = page_misuse.find_block(pages, pfn, machine.mm.max_order)
    if where != page_misuse.ALLOCATED:
        end = min(pfn + (1 << order), pages.nr_pages)
        inside = np.flatnonzero(pages.flags_np[pfn:end] & PG_ALLOC)
        if not inside.size:
            return ""
        head = pfn + int(inside[0])
        have = pages.order_of(head)
    handle = machine.owner_of.get(head)
    holder = f"{handle.owner} holds it" if handle is not None else \
        "held without a handle, or leaked by a bad free"
    return f"in the allocated order-{have} block at {head:#x} ({holder})"


def free_again(machine: Machine, handle: Allocation, cpu: int | None, index: int = -1) -> None:
    """A free (``index`` -1) or ``put_page()`` of page ``index`` of a handle already freed.

    The kernel sees ``__free_pages(page, order)`` or ``put_page(page)`` on a page that is
    now free (the count goes below 0: a ``double free`` warning, and a ``bad_page`` when
    a later check finds it), or in someone's block: refused (see the module notes).
    """
    mm = machine.mm
    cpu = handle.cpu if cpu is None else cpu
    machine.tracer.set_context(handle.owner, cpu)
    machine.stats.free_requests += 1
    pfn, order = handle.pfn, handle.order
    call = f"__free_pages(pfn {pfn:#x}, order {order})"
    if index >= 0:
        pfn, order = pfn + index, 0
        call = f"put_page(pfn {pfn:#x})"
    victim = live_block(machine, pfn, order)
    if victim:
        page_misuse.warn(
            mm, pfn, order, ts.MISUSE_DOUBLE_FREE,
            f"{call} of a block freed before, whose pages are now {victim}: the kernel "
            "would drop a reference of that block, or free pages of it, under its owner; "
            "the model ignores the call")
    elif index >= 0:
        mm.put_page(pfn, cpu)
    else:
        mm.free_pages(pfn, order, cpu)


def _let_go(machine: Machine, handle: Allocation, cpu: int | None) -> int:
    """:meth:`Machine.free`'s bookkeeping when the owner lets go of a live handle; the CPU."""
    cpu = handle.cpu if cpu is None else cpu
    machine.tracer.set_context(handle.owner, cpu)
    handle.alive = False
    machine.owner_of.pop(handle.pfn, None)
    machine.stats.free_requests += 1
    if handle.lru >= 0:
        machine.mm.reclaim.lru_del(handle.pfn)
    machine.owners[handle.owner].pages -= 1 << handle.order
    return cpu


def put_page(machine: Machine, handle: Allocation, index: int, cpu: int | None) -> None:
    """``put_page(page + index)`` by the handle's owner; see :meth:`Machine.put_page`."""
    mm = machine.mm
    if handle.gone or not handle.alive:
        if handle.gone:  # reclaim or the OOM killer took it: as free() (its swap goes)
            machine.free(handle, cpu)
        else:
            free_again(machine, handle, cpu, index)
        return
    pfn = handle.pfn
    if mm.pages.flags[pfn] & PG_HEAD or handle.order == 0:
        machine.free(handle, cpu)  # page_folio() is the head: the owner's reference
    elif index:  # page_folio() of a non-compound tail is that page: its own count
        cpu = handle.cpu if cpu is None else cpu
        machine.tracer.set_context(handle.owner, cpu)
        mm.put_page(pfn + index, cpu)
    else:  # __folio_put_small(): an order-0 free of the first page, the rest leaks
        cpu = _let_go(machine, handle, cpu)
        if mm.free_pages(pfn, 0, cpu):
            machine.stats.pages_freed += 1


def use_after_free(machine: Machine, handle: Allocation) -> None:
    """The owner touched the memory of a block it has freed: a ``use after free`` warning.

    Nothing in the kernel's page state changes and nothing notices (no KASAN, no
    debug_pagealloc unmapping freed pages, no init_on_free or page poisoning to check);
    the data of whoever holds the pages now is silently read or corrupted.
    """
    mm = machine.mm
    pfn, order = handle.pfn, handle.order
    machine.tracer.set_context(handle.owner, handle.cpu)
    now = live_block(machine, pfn, order) or page_misuse.where_text(mm.pages, pfn, mm.max_order)
    page_misuse.warn(
        mm, pfn, order, ts.MISUSE_USE_AFTER_FREE,
        f"access to the order-{order} block at {pfn:#x} after its free; its first page is "
        f"now {now}: the kernel does not detect it (no KASAN, debug_pagealloc or "
        "init_on_free) and changes no page state")
