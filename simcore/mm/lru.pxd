# Compiled-build declarations for lru.py (types only; the rules are in the .py).
cimport cython

from simcore.mm.freelist cimport PageLists

# Module constants as C integers, for the ones nothing imports from this module; the
# exported names (LRU_*, KIND_*, DIRTY, HOT, ...) stay Python objects.
cdef int _NR_LISTS, _ENTRY_MASK, _LIST_SHIFT, _ORD, _ZSHIFT, _ZMASK, _DIRTY, _NLRU, _SLAB
cdef int _SLAB_IN_USE
cdef int _REF


@cython.final
cdef class Lruvec:
    cdef public int nid
    cdef public int nr_zone_types
    cdef public PageLists links
    cdef public int[:] lru
    cdef public object heads_np, meta_np, nr_zone_np, nr_entries_np
    cdef public object nr_slab_zone_np, nr_dirty_zone_np, skipped_np
    cdef public int[:] heads
    cdef public int[:] meta
    cdef public long long[:] nr_zone
    cdef public long long[:] nr_entries
    cdef public long long[:] nr_slab_zone
    cdef public long long[:] nr_dirty_zone
    cdef public long long[:] skipped
    cdef public long long nr_deferred
    cdef public long long slab_in_use

    cdef void _link(self, Py_ssize_t pfn, int where, int packed, bint tail)
    @cython.locals(node=cython.int, m=cython.int, where=cython.int, packed=cython.int)
    cdef int _unlink(self, Py_ssize_t pfn)
    @cython.locals(pages=cython.longlong, zone=cython.int)
    cdef void _count(self, int where, int packed, int sign)
    @cython.locals(node=cython.int)
    cpdef int on_list(self, Py_ssize_t pfn)
    cpdef void add(self, Py_ssize_t pfn, int kind, int packed)
    cpdef int delete(self, Py_ssize_t pfn)
    @cython.locals(where=cython.int, node=cython.int, packed=cython.int)
    cpdef long long mark_accessed(self, Py_ssize_t pfn)
    @cython.locals(where=cython.int, node=cython.int, packed=cython.int)
    cpdef bint set_dirty(self, Py_ssize_t pfn, bint dirty)
    cpdef void put(self, Py_ssize_t pfn, int lru, int packed, bint oldest=*)
    @cython.locals(taken=list, skip=list, head=cython.int, pfn=Py_ssize_t, packed=cython.int,
                   pages=cython.longlong, zone=cython.int, scan=cython.longlong,
                   total_scan=cython.longlong, z=cython.int, i=Py_ssize_t)
    cpdef tuple isolate(self, int lru, long long nr_to_scan, int reclaim_idx)
    cpdef tuple isolate_oldest(self, int lru)
    cpdef tuple pop_oldest_slab(self)
    cpdef long long zone_size(self, int zone_idx, int lru)
    @cython.locals(top=cython.int, total=cython.longlong, z=cython.int)
    cpdef long long size(self, int lru, int max_zone_idx=*)
    @cython.locals(total=cython.longlong, z=cython.int)
    cpdef long long slab_pages(self)
    cpdef long long shrinkable_slab_pages(self)
