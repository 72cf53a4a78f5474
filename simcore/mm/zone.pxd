# Compiled-build declarations for zone.py (types only; the rules are in zone.py).
cimport cython

from simcore.mm.freelist cimport FreeArea, PageLists
from simcore.mm.pages cimport PageArray
from simcore.mm.tracepoints cimport Tracer
from simcore.mm.vmstat cimport VmStat

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef int ALLOC_HARDER, ALLOC_HIGH, ALLOC_OOM, ALLOC_WMARK_MASK, MIGRATE_PCPTYPES
cdef int MIGRATE_TYPES, MT_SHIFT, ORDER_MASK, PG_BUDDY, MT_HIGHATOMIC, MT_ISOLATE
cdef int MT_MOVABLE
cdef long long GFP_ATOMIC_BIT

@cython.final
cdef class Zone:
    cdef public int nid, zone_idx
    cdef public str name
    cdef public Py_ssize_t zone_start_pfn, spanned_pages, present_pages, managed_pages
    cdef public Py_ssize_t end_pfn, managed_start_pfn
    cdef public tuple present_ranges
    cdef public PageArray pages
    cdef public unsigned char[:] pageblock_mt
    cdef public int pageblock_order, max_order
    cdef public Tracer tracer
    cdef public bint tracing
    cdef public VmStat vm
    cdef public Py_ssize_t pgalloc_idx
    cdef public PageLists lists
    cdef public FreeArea free_area
    cdef public long long nr_free_pages
    cdef public list watermark
    cdef public long long watermark_boost, watermark_boost_factor
    cdef public list lowmem_reserve
    cdef public long long nr_reserved_highatomic, nr_isolate_pageblock
    cdef public long long highatomic_unreserved
    cdef public bint boosted_watermark, reclaim_active, fell_back
    cdef public list per_cpu_pageset
    cdef public int pcp_high, pcp_batch
    cdef public Py_ssize_t compact_cached_free_pfn, compact_init_migrate_pfn
    cdef public Py_ssize_t compact_init_free_pfn
    cdef public list compact_cached_migrate_pfn
    cdef public int compact_considered, compact_defer_shift, compact_order_failed
    cdef public bint compact_blockskip_flush
    cdef public int capture_order, capture_mt
    cdef public Py_ssize_t captured_pfn
    cdef public list pb_claims
    cdef public long long refcount_underflows

    cpdef int get_pageblock_migratetype(self, Py_ssize_t pfn)
    cpdef void set_pageblock_migratetype(self, Py_ssize_t pfn, int mt)
    cpdef bint spans(self, Py_ssize_t pfn)
    cpdef long long wmark_pages(self, int idx)
    cpdef void free_one_page(self, Py_ssize_t pfn, int order, int mt, bint to_tail=*)
    cpdef bint compaction_capture(self, Py_ssize_t pfn, int mt)
    cpdef bint buddy_merge_likely(self, Py_ssize_t pfn, Py_ssize_t buddy_pfn, int order)
    cpdef void expand(self, Py_ssize_t pfn, int low, int high, int mt)
    cpdef Py_ssize_t rmqueue_smallest(self, int order, int mt)
    cpdef Py_ssize_t rmqueue(self, int order, int mt, int alloc_flags)
    @cython.locals(leaked=cython.longlong)
    cpdef list rmqueue_bulk(self, int order, int count, int mt, int alloc_flags)
    cpdef long long watermark_unusable_free(self, int order, int alloc_flags)
    @cython.locals(lowmem=cython.longlong)
    cpdef bint watermark_ok(self, int order, long long mark, int highest_zoneidx,
                            int alloc_flags, long long free_pages)
    @cython.locals(lowmem=cython.longlong, free_pages=cython.longlong,
                   reserved=cython.longlong, usable=cython.longlong)
    cpdef bint watermark_fast(self, int order, long long mark, int highest_zoneidx,
                              int alloc_flags, long long gfp)
