# Compiled-build declarations for vmstat.py (types only).
cimport cython


@cython.final
cdef class VmStat:
    cdef public object values
    cdef public long long[:] v
