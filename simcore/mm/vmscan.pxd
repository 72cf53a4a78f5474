# Compiled-build declarations for vmscan.py (types only; the rules are in the .py).
# Reclaim's hot loop (shrink_lruvec down to the per-entry decisions of
# shrink_inactive_list) is typed and runs in C; Reclaim's other methods are compiled
# without type declarations.
cimport cython

from simcore.mm.lru cimport Lruvec
from simcore.mm.vmstat cimport VmStat

cdef int DEACTIVATE_ANON, DEACTIVATE_FILE
cdef long long GFP_IO, GFP_FS


@cython.final
cdef class ScanControl:
    cdef public long long nr_to_reclaim
    cdef public long long gfp
    cdef public int reclaim_idx, order, priority
    cdef public bint may_writepage, may_swap
    cdef public int may_deactivate
    cdef public bint force_deactivate, skipped_deactivate, cache_trim_mode, file_is_tiny
    cdef public bint compaction_ready, kswapd
    cdef public int cpu
    cdef public long long nr_scanned, nr_reclaimed, cost_ns, throttled_ns


@cython.final
cdef class Reclaim:
    cdef public object mm
    cdef public VmStat vm
    cdef public list lruvecs, kswapd
    cdef public long long swap_pages, swap_used
    cdef public int swappiness
    cdef public object cost, release, span, compaction, oom_candidates, oom_kill
    cdef public bint oom_lock_held, oom_progress

    cpdef void lru_add(self, Py_ssize_t pfn, int order, int kind, bint dirty=*,
                       bint referenced=*)
    cpdef bint lru_del(self, Py_ssize_t pfn)
    cpdef bint can_reclaim_anon_pages(self)
    cpdef bint inactive_is_low(self, Lruvec lv, int inactive_lru)
    cpdef void prepare_scan_count(self, Lruvec lv, ScanControl sc)
    cpdef list get_scan_count(self, Lruvec lv, ScanControl sc)
    @cython.locals(nr=list, chunk=cython.longlong)
    cpdef void shrink_lruvec(self, Lruvec lv, ScanControl sc)
    cpdef void shrink_list(self, int lru, long long nr_to_scan, Lruvec lv, ScanControl sc)
    cpdef tuple _isolate(self, long long nr_to_scan, Lruvec lv, ScanControl sc, int lru)
    @cython.locals(taken=list, free_folios=list, pfn=Py_ssize_t, packed=cython.int,
                   pages=cython.longlong, reclaimed=cython.longlong, nr_taken=cython.longlong,
                   total_scan=cython.longlong, file=bint, kind=cython.int, i=Py_ssize_t,
                   referenced=cython.int, ref=cython.short[:])
    cpdef void shrink_inactive_list(self, long long nr_to_scan, Lruvec lv, ScanControl sc,
                                    int lru)
    @cython.locals(taken=list, packed=cython.int, pages=cython.longlong, i=Py_ssize_t)
    cpdef void shrink_active_list(self, long long nr_to_scan, Lruvec lv, ScanControl sc,
                                  int lru)
