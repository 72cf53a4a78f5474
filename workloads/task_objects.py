"""The slab objects a fork allocates (``copy_process()`` in kernel/fork.c of 6.1).

A thread (``CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD``, what
``pthread_create()`` passes) shares its parent's mm, files, fs, signal handlers, signal
struct and credentials, so ``copy_process()`` allocates only its ``task_struct``
(``dup_task_struct()``) and its ``struct pid`` (``alloc_pid()``). A process fork
allocates those plus new credentials (``copy_creds()`` → ``prepare_creds()``:
``cred_jar``), ``files_cache`` (``dup_fd()``), ``sighand_cache``, ``signal_cache``, an
``mm_struct`` (``dup_mm()``) and, in ``dup_mmap()``, one ``vm_area_struct`` per parent
VMA and, per anonymous VMA, a new ``anon_vma`` with two ``anon_vma_chain`` links (its
own and the one cloned from the parent's chain, ``anon_vma_fork()``).

The objects come from machine-wide SLUB caches (:class:`workloads.slub.KmemCache`),
created on first use and shared by every ``threads`` workload, as the kernel's caches
are. Each cache is a caller of its own in ``summary.json`` (its slab pages are charged to
it, not to the forking workload) and is kernel memory the OOM killer never picks.
Object sizes are the ``<objsize>`` column of the oracle host's ``/proc/slabinfo`` (Linux
6.1, x86_64, ``tests/data/oracle/boot-idle/end/slabinfo``).

SIMPLIFICATIONS: ``fs_struct`` is not allocated (on the oracle host its cache is merged
into a kmalloc cache and absent from slabinfo); nor are the fd table beyond
``files_struct``'s embedded one, the ``seccomp``/``audit``/``io_context`` objects, or the
kmalloc buffers of ``dup_mmap()``'s VMA tree; the parent has ``vmas`` VMAs of which
``ANON_VMAS`` (heap and stack) are anonymous; every object is freed when the task exits
(the kernel frees ``task_struct`` after an RCU grace period and the mm at the last
``mmput()``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from simcore.mm.gfp import GFP_KERNEL
from simcore.sim.machine import Machine
from workloads.slab import kmem_cache_alloc, kmem_cache_free
from workloads.slub import KmemCache
from workloads.stats import caller_stats

CACHES_KEY = "fork_caches"
"""Where the caches live in :attr:`Machine.extras`: cache name -> KmemCache."""
OBJECT_SIZES = {
    "task_struct": 6208, "pid": 128, "cred_jar": 192, "files_cache": 704,
    "sighand_cache": 2112, "signal_cache": 1152, "mm_struct": 1152,
    "vm_area_struct": 152, "anon_vma": 104, "anon_vma_chain": 64,
}
"""``<objsize>`` in bytes, from the oracle host's slabinfo."""
ANON_VMAS = 2
"""Anonymous VMAs of the parent (heap and stack): one ``anon_vma`` each in the child."""
FORK_GFP = int(GFP_KERNEL)
"""``GFP_KERNEL``: every one of these allocations may sleep (``SLAB_ACCOUNT`` adds only
``__GFP_ACCOUNT``, which slab pages do not pass on)."""
TaskObjects = list[tuple[KmemCache, int]]
"""``(cache, slab row)`` of every object a task holds."""


def fork_objects(new_mm: bool, vmas: int) -> list[str]:
    """The caches ``copy_process()`` allocates from, one entry per object."""
    names = ["task_struct", "pid"]
    if new_mm:
        names += ["cred_jar", "files_cache", "sighand_cache", "signal_cache", "mm_struct"]
        names += ["vm_area_struct"] * vmas
        names += ["anon_vma", "anon_vma_chain", "anon_vma_chain"] * min(ANON_VMAS, vmas)
    return names


def fork_cache(machine: Machine, name: str) -> KmemCache:
    """The machine's cache ``name`` (``kmem_cache_create()`` at boot, here on first use)."""
    caches: dict[str, KmemCache] = machine.extras.setdefault(CACHES_KEY, {})
    cache = caches.get(name)
    if cache is None:
        machine.register_owner(name, killable=False)
        stats = caller_stats(machine, name, "slab")
        node_order = [list(node.node_order) for node in machine.mm.nodes]
        cache = KmemCache(name, OBJECT_SIZES[name], machine.nr_cpus, node_order, False,
                          stats, page_max_order=machine.mm.max_order)
        stats["objsize"] = cache.size
        stats["objperslab"] = cache.oo[1]
        stats["pagesperslab"] = 1 << cache.oo[0]
        caches[name] = cache
    return cache


def alloc_task_objects(machine: Machine, cpu: int, nid: int | None, new_mm: bool,
                       vmas: int) -> Generator[Any, Any, TaskObjects | None]:
    """Every slab object of one fork, or None (the ones obtained are freed: -ENOMEM)."""
    held: TaskObjects = []
    for name in fork_objects(new_mm, vmas):
        cache = fork_cache(machine, name)
        sid = yield from kmem_cache_alloc(machine, cache, FORK_GFP, cpu, nid)
        if sid < 0:
            free_task_objects(machine, held)
            return None
        cache.stats["objects"] += 1
        held.append((cache, sid))
    return held


def free_task_objects(machine: Machine, held: TaskObjects) -> None:
    """``kmem_cache_free()`` of every object, last allocated first."""
    for cache, sid in reversed(held):
        kmem_cache_free(machine, cache, sid)
