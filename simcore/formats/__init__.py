"""Kernel text and trace formats: ``/proc`` readers and printers, the trace schema."""
