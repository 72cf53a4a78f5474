"""The kernel model: a pure mirror of Linux 6.1's ``mm/`` page allocator.

No SimPy, no I/O, no randomness: zones, free lists, per-CPU lists, fallback and
stealing, watermarks, GFP semantics, the allocation and freeing paths, and the vmstat
counters. The compiled engine is built from these modules (see ``setup.py``).
"""
