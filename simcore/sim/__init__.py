"""The timed layer: the SimPy machine, the recording tracer and periodic snapshots."""
