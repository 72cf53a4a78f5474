"""The ``synthetic`` workload: Poisson arrivals of page allocations (placeholder).

SIMPLIFICATION: not written yet; the real generator replaces this file.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from simcore.config_types import WorkloadConfig


def synthetic(
    machine: Any, spec: WorkloadConfig, rng: np.random.Generator
) -> Generator[Any, Any, None]:
    """Run one synthetic workload on ``machine`` (not implemented yet).

    Raises:
        NotImplementedError: Always.
    """
    raise NotImplementedError("workloads.synthetic.synthetic is not written yet")
