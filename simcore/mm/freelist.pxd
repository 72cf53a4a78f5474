# Compiled-build declarations for freelist.py (types only; the rules are in the .py).
cimport cython

from simcore.mm.pages cimport PageArray

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef int MIGRATE_TYPES, MT_SHIFT, PG_BUDDY, CLEAR_PG_BUDDY, _NO_PFN

@cython.final
cdef class PageLists:
    cdef public PageArray pages
    cdef public int[:] lru
    cdef public Py_ssize_t capacity
    cdef public int free_node
    cdef public object nxt_np, prv_np, pfn_np
    cdef public int[:] nxt
    cdef public int[:] prv
    cdef public long long[:] pfn

    cpdef int new_list(self)
    cpdef void add(self, int head, Py_ssize_t pfn)
    cpdef void add_tail(self, int head, Py_ssize_t pfn)
    cpdef void unlink(self, Py_ssize_t pfn)
    cpdef Py_ssize_t first(self, int head)
    cpdef Py_ssize_t last(self, int head)
    cdef int _node(self) except -1


@cython.final
cdef class FreeArea:
    cdef public int max_order
    cdef public PageLists lists
    cdef public object nr_free_np, count_np, heads_np
    cdef public long long[:] nr_free
    cdef public long long[:] count
    cdef public int[:] heads
    cdef public PageArray pages
    cdef public unsigned char[:] _info
    cdef public unsigned char[:] _flags

    cpdef long long count_of(self, int order, int mt)
    cpdef void add(self, Py_ssize_t pfn, int order, int mt, bint tail=*)
    cpdef void remove(self, Py_ssize_t pfn, int order, int mt)
    cpdef void move_tail(self, Py_ssize_t pfn, int order, int old_mt, int new_mt)
    cpdef Py_ssize_t head(self, int order, int mt)
    cpdef bint empty(self, int order, int mt)
