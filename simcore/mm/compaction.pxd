# Compiled-build declarations for compaction.py (types only; the rules are in the .py).
# The scanners and migration (per-page loops) are typed and run in C.
cimport cython

from simcore.mm.lru cimport Lruvec
from simcore.mm.pages cimport PageArray
from simcore.mm.vmstat cimport VmStat
from simcore.mm.zone cimport Zone

# Module constants as C integers (the .py binds them; nothing imports them from here).
cdef int PB_SKIP, _LRU_SLAB, MT_SHIFT, ORDER_MASK, PG_ALLOC, PG_BUDDY, PG_HEAD
cdef int MT_ISOLATE, MT_MOVABLE, MIGRATE_PCPTYPES, WMARK_MIN, ALLOC_CMA
cdef long long GFP_FS


@cython.final
cdef class CompactControl:
    cdef public int order, migratetype, mode, alloc_flags, highest_zoneidx, cpu
    cdef public long long gfp
    cdef public Zone zone
    cdef public bint direct_compaction, whole_zone, ignore_skip_hint
    cdef public bint ignore_block_suitable, proactive_compaction, rescan, no_set_skip_hint
    cdef public Py_ssize_t migrate_pfn, free_pfn, nr_migratepages
    cdef public list migratepages, freepages
    cdef public long long total_migrate_scanned, total_free_scanned, nr_migrated, nr_failed


@cython.final
cdef class Compaction:
    cdef public object mm, cost, reclaimable, moved, span, kswapd_running
    cdef public VmStat vm
    cdef public int extfrag_threshold, proactiveness
    cdef public list kcompactd
    cdef public long long kcompactd_wakeups

    cpdef bint _block_skip(self, Zone zone, Py_ssize_t pfn)
    cpdef void _set_block_skip(self, Zone zone, Py_ssize_t pfn)
    cpdef bint isolation_suitable(self, CompactControl cc, Py_ssize_t pfn)
    cpdef void update_pageblock_skip(self, CompactControl cc, Py_ssize_t pfn)
    @cython.locals(pages=PageArray, mt=cython.int, mark=cython.longlong, block=Py_ssize_t,
                   nr=Py_ssize_t)
    cpdef long long _isolate_free_page(self, Zone zone, Py_ssize_t pfn, int order)
    @cython.locals(pages=PageArray, flags=cython.uchar[:], info=cython.uchar[:],
                   ref=cython.short[:], nr_scanned=cython.longlong,
                   total_isolated=cython.longlong, blockpfn=Py_ssize_t,
                   nr_migrate=Py_ssize_t, f=cython.int, order=cython.int,
                   isolated=cython.longlong, p=Py_ssize_t, pfn=Py_ssize_t,
                   isolated_blocks=list, freepages=list)
    cpdef tuple _isolate_freepages_block(self, CompactControl cc, Py_ssize_t start_pfn,
                                         Py_ssize_t end_pfn, int stride)
    @cython.locals(pages=PageArray)
    cpdef bint suitable_migration_target(self, CompactControl cc, Py_ssize_t pfn)
    @cython.locals(zone=Zone, nr=Py_ssize_t, isolate_start_pfn=Py_ssize_t,
                   block_start_pfn=Py_ssize_t, block_end_pfn=Py_ssize_t,
                   low_pfn=Py_ssize_t, stride=cython.int, nr_isolated=cython.longlong)
    cpdef void isolate_freepages(self, CompactControl cc)
    @cython.locals(pages=PageArray, block_mt=cython.int, head=Py_ssize_t)
    cpdef bint suitable_migration_source(self, CompactControl cc, Py_ssize_t pfn)
    @cython.locals(pages=PageArray, flags=cython.uchar[:], info=cython.uchar[:],
                   ref=cython.short[:], zone=Zone, lruvec=Lruvec, nr_scanned=cython.longlong,
                   nr_isolated=cython.longlong, block_isolated=list, valid=bint,
                   skip_updated=bint, skip_on_failure=bint, next_skip_pfn=Py_ssize_t,
                   nr_pb=Py_ssize_t, f=cython.int, order=cython.int, failed=bint,
                   where=cython.int, file=bint, pfn=Py_ssize_t)
    cpdef void _isolate_migratepages_block(self, CompactControl cc, Py_ssize_t low_pfn,
                                           Py_ssize_t end_pfn)
    @cython.locals(zone=Zone, nr=Py_ssize_t, low_pfn=Py_ssize_t,
                   block_start_pfn=Py_ssize_t, block_end_pfn=Py_ssize_t)
    cpdef bint isolate_migratepages(self, CompactControl cc)
    @cython.locals(pages=PageArray, flags=cython.uchar[:], info=cython.uchar[:],
                   ref=cython.short[:], lruvec=Lruvec, todo=list, putback=list,
                   succeeded=cython.longlong, failed=cython.longlong, enomem=bint,
                   src=Py_ssize_t, dst=Py_ssize_t, where=cython.int, packed=cython.int)
    cpdef long long migrate_pages(self, CompactControl cc)
    cpdef Py_ssize_t compaction_alloc(self, CompactControl cc)
