# Compiled-build declarations for pcp.py (types only; the rules are in pcp.py).
cimport cython

from simcore.mm.freelist cimport PageLists
from simcore.mm.pages cimport PageArray
from simcore.mm.zone cimport Zone

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef int MIGRATE_PCPTYPES, PAGE_ALLOC_COSTLY_ORDER, CLEAR_PG_PCP, MT_SHIFT, PG_PCP

cpdef int order_to_pindex(int mt, int order)

@cython.final
cdef class PerCpuPages:
    cdef public int cpu
    cdef public Zone zone
    cdef public long long count
    cdef public int high, batch, free_factor
    cdef public PageLists page_lists
    cdef public object heads_np
    cdef public int[:] heads
    cdef public PageArray pages

    cpdef int pindex_to_order(self, int pindex)
    cpdef Py_ssize_t rmqueue(self, int order, int mt, int alloc_flags)
    cpdef Py_ssize_t rmqueue_pcplist(self, int order, int mt, int alloc_flags)
    cpdef void free_commit(self, Py_ssize_t pfn, int order, int pcp_mt, int cached_mt)
    cpdef int nr_pcp_high(self, bint free_high)
    cpdef long long nr_pcp_free(self, int high, bint free_high)
    @cython.locals(check=cython.bint)
    cpdef void free_bulk(self, long long count, int pindex)
    cpdef void drain(self)
