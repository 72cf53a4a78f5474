# Compiled-build declarations for vmstat.py (types only).
cdef class VmStat:
    cdef public object values
    cdef public long long[:] v
