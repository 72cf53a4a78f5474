# Compiled-build declarations for tracer.py (types only; the recorder is in the .py).
from simcore.mm.tracepoints cimport Tracer
from simcore.mm.zone cimport Zone

cdef class RecordingTracer(Tracer):
    cdef public object path, clock, _writer, _tmp, _mt_lut
    cdef public Py_ssize_t flush_rows, _n
    cdef public long long events_traced
    cdef public dict _strings, _caller_codes, _event_codes, _zone_codes
    cdef public dict _outcome_codes, _path_codes, _reason_codes, _stage_codes
    cdef public int _caller, _cpu, _no_stage
    cdef public list _arrays
    cdef public long long[:] c_time, c_gfp, c_pfn, c_latency
    cdef public int[:] c_event, c_caller, c_zone, c_outcome, c_path, c_reason, c_stage
    cdef public short[:] c_cpu, c_nid, c_order, c_mt, c_fb_order, c_fb_mt, c_change, c_refill

    cpdef Py_ssize_t _row(self, str event, Zone zone, int nid, Py_ssize_t pfn, int order,
                          long long gfp, int mt, str outcome, str path, str reason) except -1
    cpdef void _done(self)



cpdef int _intern(dict codes, str value) except -1
