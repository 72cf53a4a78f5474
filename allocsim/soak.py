"""Soak the shipped experiments with the invariant audit on, for a bounded number of events.

``python -m allocsim.soak [CONFIG ...] [--every N] [--events K]`` runs each experiment
(for a study file, its most demanding run: the last point of its plan) exactly as
``allocsim run`` would, with :class:`simcore.sim.audit.Audit` checking every allocator
invariant every ``N`` SimPy events, and stops after ``K`` events (or at the end of the
run). Event tracing is off (the audit does not need it); nothing is written.
The test suite soaks the small configs (``tests/integration/test_invariant_audit.py``);
``benchmarks/soak.py`` soaks them all for longer.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from allocsim.run import _Run
from simcore.config.types import ExperimentConfig
from simcore.config.yamlio import read_yaml
from simcore.sim.audit import Audit, InvariantViolation, WindowDone

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SoakResult:
    """One soaked experiment: how far it ran and how often it was checked."""

    name: str
    events: int
    checks: int
    simulated_ns: int
    seconds: float
    violation: str | None
    migrated: int
    """Pages compaction migrated (``pgmigrate_success``): handles the audit followed."""

    def line(self) -> str:
        """One line for the terminal."""
        verdict = "ok" if self.violation is None else f"VIOLATION: {self.violation}"
        return (f"{self.name:<32} {self.events:>9,} events {self.checks:>6,} checks "
                f"{self.simulated_ns / 1e9:8.3f} s simulated {self.migrated:>8,} migrated "
                f"{self.seconds:7.1f} s wall  {verdict}")


def soak_config(path: Path) -> ExperimentConfig:
    """The experiment a config file soaks: itself, or a study's last planned run."""
    from allocsim.sweep.plan import task_config
    from allocsim.sweep.runner import plan_sweep
    from workloads.registry import load_experiment

    doc = read_yaml(path)
    if not isinstance(doc, dict) or "sweep" not in doc:
        return load_experiment(path)
    return task_config(plan_sweep(path).tasks[-1])


def soak(cfg: ExperimentConfig, every: int, max_events: int) -> SoakResult:
    """Run ``cfg`` audited every ``every`` events, for at most ``max_events`` events."""
    cfg = dataclasses.replace(cfg, trace=dataclasses.replace(cfg.trace, events=False))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="allocsim-soak-") as tmp:
        run = _Run(cfg, Path(tmp), report=False)
        audit = Audit(run.machine, every, last=max_events)
        run.audit = audit
        audit.install()
        run.start_processes()
        violation = None
        try:
            with contextlib.suppress(WindowDone):
                run.simulate(None)
        except InvariantViolation as exc:  # pragma: no cover - simulate() catches it
            violation = exc.violation.describe()
        if run.violation is not None:
            violation = run.violation.describe()
        return SoakResult(cfg.name, audit.events, audit.checks, int(run.machine.env.now),
                          time.perf_counter() - t0, violation,
                          run.machine.mm.vm["pgmigrate_success"])


def main(argv: Sequence[str] | None = None) -> int:
    """Soak the given configs (default: every ``configs/*.yaml``); exit 1 on a violation."""
    p = argparse.ArgumentParser(prog="python -m allocsim.soak", description=__doc__)
    p.add_argument("configs", type=Path, nargs="*")
    p.add_argument("--every", type=int, default=100, help="audit every N events (100)")
    p.add_argument("--events", type=int, default=200_000,
                   help="stop each run after K events (200,000)")
    args = p.parse_args(argv)
    paths = args.configs or sorted((REPO / "configs").glob("*.yaml"))
    bad = 0
    for path in paths:
        result = soak(soak_config(path), args.every, args.events)
        print(f"{path.name}: {result.line()}", flush=True)
        bad += result.violation is not None
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
