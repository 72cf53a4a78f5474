"""Steady-state occupancy of the synthetic workload against Little's law, L = lambda * W.

Poisson arrivals at rate lambda, each allocation held for W (fixed or exponential), on a
machine large enough that nothing fails: this is an M/G/inf system, so the number of live
allocations N(t) is Poisson with mean lambda*W in steady state, whatever the lifetime
distribution (only its mean enters).

Tolerance. We compare the time average of N(t) over [t0, t0 + T] with lambda*W. For
M/G/inf the autocovariance of N is C(s) = lambda * E[(S - s)^+] (S the lifetime), and
for T >> W the variance of the time average is about (2/T) * integral_0^inf C(s) ds:

* fixed W:        integral = lambda W^2 / 2   -> Var = lambda W^2 / T,
  relative sd = 1 / sqrt(lambda T);
* exponential W:  integral = lambda W^2       -> Var = 2 lambda W^2 / T,
  relative sd = sqrt(2 / (lambda T)).

With lambda = 10000/s and T = 3 s (lambda T = 30000 requests) the relative sd is 0.58 %
(fixed) and 0.82 % (exponential); we allow 5 sd, i.e. 2.9 % and 4.1 %, so a correct
model fails with probability < 1e-6 (and the seed is fixed anyway), while an off-by-one
lifetime unit, a lost free or a wrong rate (all >= 10 % effects) cannot pass. Sampling
``owner_of`` every 0.5 ms adds a negligible second source of noise (W = 20 ms spans 40
samples), and the exact integral computed from alloc/free instants is checked too.
Measurement starts at t0 = 10 W, after which the initial transient (exactly W for fixed
lifetimes, ~e^-10 for exponential ones) is gone.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from simcore.machine import Allocation, Machine
from workloads.registry import WORKLOADS, load_experiment

RATE_PER_S = 10_000
W_NS = 20_000_000
T0_NS = 10 * W_NS
T_NS = 3_000_000_000
SAMPLE_NS = 500_000
SIGMAS = 5

CONFIG = """\
# Little's law test: {kind} lifetime.
name: little
seed: 5
duration: 4s
machine:
  nodes:
    - memory: 256MiB
      cpus: 2
trace:
  events: false
workloads:
  - name: poisson
    type: synthetic
    rate: {rate}/s
    order: 0
    lifetime: {{{kind}: 20ms}}
    gfp: GFP_KERNEL
"""


@pytest.mark.parametrize(("kind", "variance_factor"), [("fixed", 1.0), ("exponential", 2.0)])
def test_time_average_occupancy_is_lambda_w(
    tmp_path: Path, kind: str, variance_factor: float
) -> None:
    path = tmp_path / "little.yaml"
    path.write_text(CONFIG.format(kind=kind, rate=RATE_PER_S))
    cfg = load_experiment(path)
    (spec,) = cfg.workloads
    m = Machine.from_config(cfg)
    env = m.env
    t1 = T0_NS + T_NS

    # Exact occupancy integral over [T0, t1] from the alloc and free instants.
    born: dict[int, int] = {}
    area = 0
    real_alloc_now, real_free = m.alloc_now, m.free

    def alloc_now(*args: Any, **kwargs: Any) -> Allocation | None:
        h = real_alloc_now(*args, **kwargs)
        assert h is not None, "the machine must be large enough never to fail"
        born[id(h)] = m.now_ns
        return h

    def free(h: Allocation, cpu: int | None = None) -> None:
        nonlocal area
        start, end = max(born.pop(id(h)), T0_NS), min(m.now_ns, t1)
        area += max(0, end - start)
        real_free(h, cpu)

    m.alloc_now = alloc_now  # type: ignore[method-assign]
    m.free = free  # type: ignore[method-assign]

    samples: list[int] = []

    def sampler() -> Generator[Any, Any, None]:
        yield env.timeout(T0_NS)
        while env.now < t1:
            samples.append(len(m.owner_of))
            yield env.timeout(SAMPLE_NS)

    (rng,) = m.spawn_rngs(1)
    env.process(WORKLOADS[spec.kind].run(m, spec, rng))
    env.process(sampler())
    env.run(until=t1)
    area += sum(t1 - max(t, T0_NS) for t in born.values())  # still live at t1

    expected = RATE_PER_S * W_NS / 1e9  # L = lambda W = 200 live allocations
    rel_sd = math.sqrt(variance_factor / (RATE_PER_S * T_NS / 1e9))
    tolerance = SIGMAS * rel_sd * expected
    exact = area / T_NS
    sampled = sum(samples) / len(samples)
    assert len(samples) == T_NS // SAMPLE_NS
    assert abs(exact - expected) < tolerance, (exact, expected, tolerance)
    assert abs(sampled - expected) < tolerance, (sampled, expected, tolerance)
    assert m.stats.failures_by_order == {}
    # Arrivals themselves: Poisson count over [0, t1], sd = sqrt(lambda t1).
    arrivals = m.stats.alloc_requests
    mean_arrivals = RATE_PER_S * t1 / 1e9
    assert abs(arrivals - mean_arrivals) < SIGMAS * math.sqrt(mean_arrivals)
