"""The slab objects a fork allocates (``copy_process()`` in kernel/fork.c of 6.1).

A thread (``CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD``, what
``pthread_create()`` passes) shares its parent's mm, files, fs, signal handlers, signal
struct and credentials, so ``copy_process()`` allocates only its ``task_struct``
(``dup_task_struct()``) and its ``struct pid`` (``alloc_pid()``). A process fork
allocates those plus new credentials (``copy_creds()`` → ``prepare_creds()``:
``cred_jar``), ``files_cache`` (``dup_fd()``), ``sighand_cache``, ``signal_cache``, an
``mm_struct`` (``dup_mm()``) and, in ``dup_mmap()``, one ``vm_area_struct`` per parent
VMA, the maple-tree nodes of the child's VMA tree (``mas_expected_entries()`` preallocates
them with ``GFP_NOWAIT | __GFP_NOWARN``; a failure fails the fork; ``mas_destroy()``
frees the ones the tree did not use) and, per anonymous VMA, a new ``anon_vma`` with two
``anon_vma_chain`` links (the one ``anon_vma_clone()`` copies from the parent's chain,
tried with ``GFP_NOWAIT | __GFP_NOWARN`` first, and the child's own,
``anon_vma_fork()``).

The objects come from machine-wide SLUB caches (:class:`workloads.slub.KmemCache`),
created on first use and shared by every ``threads`` workload, as the kernel's caches
are. Each cache is a caller of its own in ``summary.json`` (its slab pages are charged to
it, not to the forking workload) and is kernel memory the OOM killer never picks.
Object sizes are the ``<objsize>`` column of the oracle host's ``/proc/slabinfo`` (Linux
6.1, x86_64, ``tests/data/oracle/boot-idle/end/slabinfo``).

The ``task_struct`` comes from the node the caller asks for (``nid``: the node a
``kthread_create_on_node()`` fork passes; a user fork passes ``NUMA_NO_NODE``), the other
objects from the forking CPU's node (plain ``kmem_cache_alloc()``).

SIMPLIFICATIONS: ``fs_struct`` is not allocated (on the oracle host its cache is merged
into a kmalloc cache and absent from slabinfo); nor are the fd table beyond
``files_struct``'s embedded one, the ``seccomp``/``audit``/``io_context`` objects or the
LSM blobs (``security_task_alloc()``, ``security_prepare_creds()``), which depend on the
kernel configuration; the maple tree keeps a leaf per 14 slots and an internal node per 8
leaves (the bulk load's estimate) and its preallocation is one object at a time (the
kernel uses ``kmem_cache_alloc_bulk()``); the parent has ``vmas`` VMAs of which
``ANON_VMAS`` (heap and stack) are anonymous; every object is freed when the task exits
(the kernel frees ``task_struct`` after an RCU grace period and the mm at the last
``mmput()``).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from simcore.mm.gfp import GFP, GFP_KERNEL, GFP_NOWAIT
from simcore.sim.machine import Machine
from workloads.slab import kmem_cache_alloc, kmem_cache_free
from workloads.slub import KmemCache
from workloads.stats import caller_stats

CACHES_KEY = "fork_caches"
"""Where the caches live in :attr:`Machine.extras`: cache name -> KmemCache."""
OBJECT_SIZES = {
    "task_struct": 6208, "pid": 128, "cred_jar": 192, "files_cache": 704,
    "sighand_cache": 2112, "signal_cache": 1152, "mm_struct": 1152,
    "vm_area_struct": 152, "anon_vma": 104, "anon_vma_chain": 64, "maple_node": 256,
}
"""``<objsize>`` in bytes, from the oracle host's slabinfo."""
ANON_VMAS = 2
"""Anonymous VMAs of the parent (heap and stack): one ``anon_vma`` each in the child."""
FORK_GFP = int(GFP_KERNEL)
"""``GFP_KERNEL``: most of these allocations may sleep (``SLAB_ACCOUNT`` adds only
``__GFP_ACCOUNT``, which slab pages do not pass on)."""
NOWAIT_GFP = int(GFP_NOWAIT | GFP.NOWARN)
"""``GFP_NOWAIT | __GFP_NOWARN``: the maple-tree preallocation and the first try of a
cloned ``anon_vma_chain``."""
MAPLE_LEAF_SLOTS = 14
"""``MAPLE_RANGE64_SLOTS - 2``: entries per leaf in a bulk load (64-bit)."""
MAPLE_NONLEAF_CAP = 8
"""``MAPLE_ARANGE64_SLOTS - 2``: leaves per internal node of an allocation tree."""
TaskObjects = list[tuple[KmemCache, int]]
"""``(cache, slab row)`` of every object a task holds."""


def maple_nodes(vmas: int) -> tuple[int, int]:
    """``(preallocated, kept)`` maple nodes for a tree of ``vmas`` VMAs.

    ``mas_expected_entries()``: a gap around every entry, leaves of 14 slots, one
    internal node per 8 leaves, plus 3 for splits; the tree keeps its leaves and
    internal nodes.
    """
    leaves = -(-max(vmas, 2 * vmas + 1) // MAPLE_LEAF_SLOTS)
    kept = leaves + -(-leaves // MAPLE_NONLEAF_CAP)
    return kept + 3, kept


def fork_objects(new_mm: bool, vmas: int) -> list[tuple[str, int]]:
    """``(cache, gfp)`` of every object ``copy_process()`` allocates, in its order.

    A gfp of :data:`NOWAIT_GFP` on a cloned ``anon_vma_chain`` falls back to
    ``GFP_KERNEL``; on a maple node it does not (the fork fails).
    """
    objects = [("task_struct", FORK_GFP), ("pid", FORK_GFP)]
    if new_mm:
        objects += [(name, FORK_GFP) for name in (
            "cred_jar", "files_cache", "sighand_cache", "signal_cache", "mm_struct")]
        objects += [("maple_node", NOWAIT_GFP)] * maple_nodes(vmas)[0]
        objects += [("vm_area_struct", FORK_GFP)] * vmas
        objects += [("anon_vma_chain", NOWAIT_GFP), ("anon_vma", FORK_GFP),
                    ("anon_vma_chain", FORK_GFP)] * min(ANON_VMAS, vmas)
    return objects


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
    """Every slab object of one fork, or None (the ones obtained are freed: -ENOMEM).

    ``nid`` is the ``task_struct``'s node (None: ``NUMA_NO_NODE``).
    """
    held: TaskObjects = []
    for name, gfp in fork_objects(new_mm, vmas):
        cache = fork_cache(machine, name)
        node = nid if name == "task_struct" else None
        sid = yield from kmem_cache_alloc(machine, cache, gfp, cpu, node)
        if sid < 0 and name == "anon_vma_chain" and gfp == NOWAIT_GFP:
            sid = yield from kmem_cache_alloc(machine, cache, FORK_GFP, cpu, node)
        if sid < 0:
            free_task_objects(machine, held)
            return None
        cache.stats["objects"] += 1
        held.append((cache, sid))
    if new_mm:  # dup_mmap() → mas_destroy(): the unused preallocated nodes
        spare, kept = maple_nodes(vmas)
        nodes = [i for i, (cache, _) in enumerate(held) if cache.name == "maple_node"]
        for i in reversed(nodes[kept:spare]):
            cache, sid = held.pop(i)
            kmem_cache_free(machine, cache, sid)
    return held


def free_task_objects(machine: Machine, held: TaskObjects) -> None:
    """``kmem_cache_free()`` of every object, last allocated first."""
    for cache, sid in reversed(held):
        kmem_cache_free(machine, cache, sid)
