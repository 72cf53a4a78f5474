"""The allocsim application layer: experiment runs, the command line and reports glue.

``simcore`` is the model, ``workloads`` the callers, ``reports`` the plots; this package
wires them together (it is the only one that imports all three).
"""
