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

Lognormal lifetimes, ``{lognormal: {median: m, sigma: s}}``: S = m e^(s Z), so
W = E[S] = m e^(s^2/2) and E[S^2] = m^2 e^(2 s^2). In general the integral of C is
lambda E[S^2] / 2, so Var = lambda E[S^2] / T and the relative sd is
sqrt((E[S^2] / W^2) / (lambda T)) = sqrt(e^(s^2) / (lambda T)) (fixed: factor 1,
exponential: 2, as above).

* Default: m = 15 ms, s = 0.8: W = 15 e^0.32 = 20.657 ms, L = 206.57, factor
  e^0.64 = 1.896, relative sd 0.80 %, 5 sd = 4.0 %. Reading ``sigma`` as the variance
  (W = 18.4 ms) or the median as the mean (15 ms) is 11 % or 27 % off. The transient
  at t0 = 10 W: E[N(t)] = lambda (W - E[(S - t)^+]), and E[(S - t0)^+] / W
  = Phi(d2 + s) - (t0 / W) Phi(d2) with d2 = ln(m / t0) / s = -3.28: 0.14 %.
* ``slow``: s = 1.5 (the quickstart's shape): W = 15 e^1.125 = 46.20 ms, factor
  e^2.25 = 9.49. The tail is heavy, so t0 = 6 s (d2 = ln(15 / 6000) / 1.5 = -3.99,
  residual transient 0.2 %) and T = 60 s (relative sd 0.40 %, 5 sd = 2.0 %).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from simcore.sim.machine import Allocation
from workloads.registry import WORKLOADS, load_experiment

RATE_PER_S = 10_000
W_NS = 20_000_000
T_NS = 3_000_000_000
SAMPLE_NS = 500_000
SIGMAS = 5
LOGNORMAL_MEDIAN_NS = 15_000_000

CONFIG = """\
# Little's law test: {lifetime} lifetime.
name: little
seed: 5
duration: {duration_ns}ns
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
    lifetime: {lifetime}
    gfp: GFP_KERNEL
"""


def _occupancy(tmp_path: Path, lifetime: str, t0_ns: int, t_ns: int) -> tuple[float, float]:
    """Run the workload; return the exact and the sampled time average of N over [t0, t1].

    Also checks that nothing failed and that the arrivals are Poisson(lambda t1).
    """
    t1 = t0_ns + t_ns
    path = tmp_path / "little.yaml"
    path.write_text(CONFIG.format(lifetime=lifetime, rate=RATE_PER_S, duration_ns=t1))
    cfg = load_experiment(path)
    (spec,) = cfg.workloads
    from conftest import SpyMachine

    m = SpyMachine.from_config(cfg)
    env = m.env

    # Exact occupancy integral over [t0, t1] from the alloc and free instants.
    born: dict[int, int] = {}
    area = 0

    def on_alloc(h: Allocation | None) -> None:
        assert h is not None, "the machine must be large enough never to fail"
        born[id(h)] = m.now_ns

    def on_free(handle: Allocation) -> None:
        nonlocal area
        start, end = max(born.pop(id(handle)), t0_ns), min(m.now_ns, t1)
        area += max(0, end - start)

    m.on_alloc = on_alloc
    m.on_free = on_free

    samples: list[int] = []

    def sampler() -> Generator[Any, Any, None]:
        yield env.timeout(t0_ns)
        while env.now < t1:
            m.apply_pending_frees()  # owner_of still holds frees due but not yet applied
            samples.append(len(m.owner_of))
            yield env.timeout(SAMPLE_NS)

    (rng,) = m.spawn_rngs(1)
    env.process(WORKLOADS[spec.kind].run(m, spec, rng))
    env.process(sampler())
    env.run(until=t1)
    m.apply_pending_frees()
    area += sum(t1 - max(t, t0_ns) for t in born.values())  # still live at t1

    assert len(samples) == t_ns // SAMPLE_NS
    assert m.stats.failures_by_order == {}
    # Arrivals themselves: Poisson count over [0, t1], sd = sqrt(lambda t1).
    mean_arrivals = RATE_PER_S * t1 / 1e9
    assert abs(m.stats.alloc_requests - mean_arrivals) < SIGMAS * math.sqrt(mean_arrivals)
    return area / t_ns, sum(samples) / len(samples)


def _check_littles_law(
    tmp_path: Path, lifetime: str, mean_ns: float, variance_factor: float,
    t0_ns: int, t_ns: int,
) -> None:
    expected = RATE_PER_S * mean_ns / 1e9  # L = lambda W
    rel_sd = math.sqrt(variance_factor / (RATE_PER_S * t_ns / 1e9))
    tolerance = SIGMAS * rel_sd * expected
    exact, sampled = _occupancy(tmp_path, lifetime, t0_ns, t_ns)
    assert abs(exact - expected) < tolerance, (exact, expected, tolerance)
    assert abs(sampled - expected) < tolerance, (sampled, expected, tolerance)


def _lognormal(sigma: float) -> tuple[str, float, float]:
    """(lifetime YAML, W = m e^(s^2/2), variance factor e^(s^2)) of a lognormal."""
    yaml = f"{{lognormal: {{median: {LOGNORMAL_MEDIAN_NS}ns, sigma: {sigma}}}}}"
    return yaml, LOGNORMAL_MEDIAN_NS * math.exp(sigma**2 / 2), math.exp(sigma**2)


@pytest.mark.parametrize(("lifetime", "mean_ns", "variance_factor"), [
    ("{fixed: 20ms}", W_NS, 1.0),
    ("{exponential: 20ms}", W_NS, 2.0),
    _lognormal(0.8),
], ids=["fixed", "exponential", "lognormal"])
def test_time_average_occupancy_is_lambda_w(
    tmp_path: Path, lifetime: str, mean_ns: float, variance_factor: float
) -> None:
    _check_littles_law(tmp_path, lifetime, mean_ns, variance_factor, int(10 * mean_ns), T_NS)


@pytest.mark.slow
def test_heavy_tailed_lognormal_occupancy_is_lambda_w(tmp_path: Path) -> None:
    # sigma 1.5: long warm-up and a long window (module docstring); about 10 s.
    lifetime, mean_ns, variance_factor = _lognormal(1.5)
    _check_littles_law(tmp_path, lifetime, mean_ns, variance_factor, 6_000_000_000,
                       60_000_000_000)
