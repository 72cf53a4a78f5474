"""Workloads: generator functions ``(machine, spec, rng)`` that drive the allocator.

Each kind is registered by name in :data:`workloads.registry.WORKLOADS` together with the
parser and dumper of its YAML parameters. ``workloads`` imports ``simcore``, never the
other way round.
"""

from workloads.registry import WORKLOADS, WorkloadKind, dump_experiment, load_experiment

__all__ = ["WORKLOADS", "WorkloadKind", "dump_experiment", "load_experiment"]
