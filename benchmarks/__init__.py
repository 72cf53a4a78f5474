"""Benchmarks: speed and memory of the model, each next to a reference measured in the
same process run (this machine is noisy, so only ratios are comparable across runs)."""
