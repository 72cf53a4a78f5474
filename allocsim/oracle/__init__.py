"""Validation of the model against real Linux 6.1 data laid out like ``../shared/oracle``."""
