# Compiled-build declarations for page_free.py (types only; the rules are in the .py).
cimport cython

from simcore.mm.pages cimport PageArray
from simcore.mm.tracepoints cimport Tracer
from simcore.mm.pcp cimport PerCpuPages
from simcore.mm.vmstat cimport VmStat
from simcore.mm.zone cimport Zone

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef int MIGRATE_PCPTYPES, CLEAR_ORDER, ORDER_MASK, PG_ALLOC, PG_HEAD, PG_RESERVED
cdef int PG_TAIL, CLEAR_PG_MOVABLE_OWNER, MT_MOVABLE, MT_ISOLATE, _VM_PGFREE, _VM_BAD_PAGE
cdef int _VM_BAD_PAGE_LEAKED

cdef class FreePagesMixin:
    cdef public PageArray pages
    cdef public Tracer tracer
    cdef public bint tracing
    cdef public VmStat vm
    cdef public int max_order

    cpdef Zone page_zone(self, Py_ssize_t pfn)
    cpdef bint pcp_allowed_order(self, int order)
    cpdef bint _check_pfn(self, Py_ssize_t pfn, int order, str what)
    cpdef bint free_pages(self, Py_ssize_t pfn, int order, int cpu)
    cpdef void free_the_page(self, Py_ssize_t pfn, int order, int cpu)
    cpdef bint free_pages_prepare(self, Py_ssize_t pfn, int order, Zone zone,
                                  bint check_free)
    @cython.locals(pcp=PerCpuPages)
    cpdef void free_unref_page(self, Py_ssize_t pfn, int order, int cpu, Zone zone)
    cpdef void free_pages_ok(self, Py_ssize_t pfn, int order, Zone zone)
