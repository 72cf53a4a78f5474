# Compiled-build declarations for page_alloc.py (types only; the rules are in the .py).
cimport cython

from simcore.mm.page_free cimport FreePagesMixin
from simcore.mm.pcp cimport PerCpuPages
from simcore.mm.zone cimport Zone

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef int ALLOC_HARDER, ALLOC_KSWAPD, ALLOC_NO_WATERMARKS, ALLOC_NOFRAGMENT
cdef int ALLOC_WMARK_LOW, ALLOC_WMARK_MASK, MIGRATE_TYPES, PAGE_ALLOC_COSTLY_ORDER
cdef int MT_SHIFT, PG_ALLOC, PG_HEAD, PG_MOVABLE_OWNER, PG_RESERVED, PG_TAIL
cdef long long GFP_THISNODE, GFP_COMP, GFP_KSWAPD_RECLAIM, GFP_ACCOUNT
cdef int MT_MOVABLE, MT_HIGHATOMIC, MT_ISOLATE, _VM_PGFREE, _VM_HIGHATOMIC_RESERVED
cdef int PATH_IDX_PCP, PATH_IDX_BUDDY, PATH_IDX_FALLBACK, NEED_SLOWPATH
cdef tuple _PATH_NAMES
cdef str _STAGE_FAST
cdef int _VM_NUMA_HIT, _VM_NUMA_MISS, _VM_NUMA_FOREIGN, _VM_NUMA_LOCAL
cdef int _VM_NUMA_OTHER

@cython.final
cdef class AllocContext:
    cdef public tuple zonelist
    cdef public int highest_zoneidx, migratetype, preferred_nid
    cdef public object nodemask
    cdef public int fast_flags
    cdef public Zone preferred_zone

cdef class PageAllocator(FreePagesMixin):
    cdef public object cfg, sysctl
    cdef public int pageblock_order
    cdef public bint thp, cma, order_warned, last_path_pcp
    cdef public tuple migratetypes
    cdef public object pageblock_mt, pb_zone
    cdef public list pb_claims
    cdef unsigned char[:] _pb_zone
    cdef public int nr_cpus, nr_online_nodes
    cdef public list nodes, cpu_to_node, zones, _managed_start, _ac_cache, managed_ranges
    cdef public dict _zonelist_cache
    cdef public long long min_free_kbytes
    cdef public Zone last_zone
    cdef public str current_comm
    cdef public long long[:] path_cost, fast_hits
    cdef public AllocContext last_ac
    cdef public object last_request, reclaim

    cpdef Zone page_zone(self, Py_ssize_t pfn)
    cpdef bint pcp_allowed_order(self, int order)
    @cython.locals(cache=dict)
    cpdef AllocContext prepare_alloc_pages(self, long long gfp, int nid, object nodemask=*)
    @cython.locals(zone=Zone, preferred=Zone, mark=cython.longlong)
    cpdef Py_ssize_t get_page_from_freelist(self, long long gfp, int order, int alloc_flags,
                                            AllocContext ac, int cpu)
    @cython.locals(pcp=PerCpuPages, cpu_nid=cython.int)
    cpdef Py_ssize_t rmqueue(self, Zone preferred, Zone zone, int order, int alloc_flags,
                             int mt, int cpu)
    cpdef Py_ssize_t rmqueue_buddy(self, Zone zone, int order, int alloc_flags, int mt)
    cpdef void prep_new_page(self, Py_ssize_t pfn, int order, long long gfp, int mt)
    cpdef void alloc_captured(self, Py_ssize_t pfn, long long gfp, int order, int mt)
    cpdef int served_path(self)
    @cython.locals(ac=AllocContext, path=cython.int)
    cpdef Py_ssize_t alloc_pages_fast(self, long long gfp, int order, int nid, int cpu,
                                      object nodemask=*)
    @cython.locals(path=cython.int)
    cpdef Py_ssize_t alloc_pages_done(self, Py_ssize_t pfn, long long gfp, int order, int nid,
                                      AllocContext ac, str stage, long long stall_ns,
                                      str why=*)
    @cython.locals(ac=AllocContext)
    cpdef Py_ssize_t alloc_pages(self, long long gfp, int order, int nid, int cpu,
                                 object nodemask=*)
