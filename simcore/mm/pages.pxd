# Compiled-build declarations for pages.py (Cython "augmenting .pxd"): the types of
# PageArray's fields. The rules live in pages.py; this file only types them.
cimport cython


@cython.final
cdef class PageArray:
    cdef public Py_ssize_t nr_pages
    cdef public object ref_np, info_np, flags_np, lru_np
    cdef public short[:] ref
    cdef public unsigned char[:] info
    cdef public unsigned char[:] flags
    cdef public int[:] lru

    cpdef void fill_flags(self, Py_ssize_t start, Py_ssize_t end, int value)
    cpdef bint any_ref(self, Py_ssize_t start, Py_ssize_t end)
