# Compiled-build declarations for machine.py (types only; the behaviour is in the .py).
cimport cython

from simcore.mm.page_alloc cimport PageAllocator
from simcore.mm.tracepoints cimport Tracer

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef Py_ssize_t NEED_SLOWPATH, _KILLED
cdef long long GFP_NOFAIL
cdef int MT_SHIFT, _VM_EXTFRAG_STEAL

cdef class Allocation:
    cdef public Py_ssize_t pfn
    cdef public int order, cpu
    cdef public str owner
    cdef public long long gfp
    cdef public bint alive, gone, swapped
    cdef public int lru

cdef class Owner:
    cdef public str name
    cdef public int lru, oom_score_adj
    cdef public bint killable, exited
    cdef public long long pages, swap_pages, killed_ns, stall_ns
    cdef public int idx
    cdef public long long requests, extfrag, polluted
    cdef public long long[:] requests_by_order, failures_by_order
    cdef public long long first_failure_ns

cdef class CallerStats:
    cdef public long long alloc_requests, pages_allocated, pages_freed, free_requests
    cdef public long long pages_reclaimed, pages_oom_killed
    cdef public object failures_by_order, failures_by_caller

cdef class Machine:
    cdef public object env, seed_sequence
    cdef public Tracer tracer
    cdef public PageAllocator mm
    cdef public CallerStats stats
    cdef public dict owner_of, _pending_at, extra_refs
    cdef public object held
    cdef public list _pending
    cdef public long long _nr_pending, _stamp_ns
    cdef public object limits, spans, latency, stalls
    cdef public dict owners, in_slowpath, extras
    cdef public list nofail_stalls, _kswapd_wait, _kcompactd_wait
    cdef public str _context
    cdef public list _owner_list
    cdef public object pb_polluter
    cdef int[:] _polluter
    cdef unsigned char[:] _pb_mt
    cdef int _pb_order
    cdef public long long _steals_seen

    cpdef long long trace_now(self)
    cpdef Allocation alloc_now(self, str owner, long long gfp, int order, int cpu,
                               object nid=*, int lru_flags=*)
    cpdef void _enter(self, str owner, int cpu)
    cpdef void charge_context(self)
    cpdef void _pollute(self, Owner who, Py_ssize_t pfn)
    @cython.locals(blk=Py_ssize_t, now=cython.longlong)
    cpdef void _charge(self, Owner who, Py_ssize_t pfn)
    cpdef Owner _owner(self, str name)
    cpdef tuple _fast_path(self, str owner, long long gfp, int order, int cpu, object nid)
    @cython.locals(blk=Py_ssize_t, lru=cython.int)
    cpdef Allocation _account(self, Owner who, Py_ssize_t pfn, long long gfp, int order,
                              int cpu, int lru_flags)
    cpdef void free(self, Allocation handle, object cpu=*)
    cpdef void defer_free(self, Allocation handle, object expiry_ns)
    cpdef void apply_pending_frees(self)
