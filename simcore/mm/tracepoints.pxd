# Compiled-build declarations for tracepoints.py (types only; the interface is in the .py).
# The allocator's modules type their tracer as Tracer, so a tracepoint is a C-level call;
# a Python subclass (tests) still overrides the methods, as cpdef allows.

cdef class Tracer:
    cpdef void set_context(self, str caller, int cpu)
    cpdef void set_migratetype_numbers(self, tuple numbers)
    cpdef void mm_page_alloc(self, object zone, Py_ssize_t pfn, int order, long long gfp,
                             int mt, str path, int nid, str stage, long long latency_ns)
    cpdef void mm_page_free(self, object zone, Py_ssize_t pfn, int order)
    cpdef void mm_page_alloc_zone_locked(self, object zone, Py_ssize_t pfn, int order, int mt,
                                         bint percpu_refill)
    cpdef void mm_page_pcpu_drain(self, object zone, Py_ssize_t pfn, int order, int mt)
    cpdef void mm_page_alloc_extfrag(self, object zone, Py_ssize_t pfn, int alloc_order,
                                     int fallback_order, int alloc_mt, int fallback_mt,
                                     bint change_ownership)
    cpdef void mm_page_alloc_fail(self, int nid, int order, long long gfp, int mt, str reason)
    cpdef void bad_page(self, object zone, Py_ssize_t pfn, int order, str reason)
    cpdef void alloc_order_warn(self, int nid, int order, long long gfp, str reason)
    cpdef void sim_warning(self, object zone, Py_ssize_t pfn, int order, str reason)
    cpdef void close(self)

cdef class NullTracer(Tracer):
    pass
