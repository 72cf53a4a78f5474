"""Benchmarks: speed and memory of the model. Each speed figure is divided by R, the event
rate of a raw SimPy loop measured interleaved with it in the same process run (this machine
is noisy, so only ratios are comparable across runs). See :mod:`benchmarks.run`."""
