"""The ``allocsim sweep`` command line (see :mod:`allocsim.sweep.runner`)."""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from allocsim.sweep.runner import SweepPlan, SweepResult

DEFAULT_SHOWN = ("failure_rate.*", "first_failure_s.*", "hugetlb*", "free_pageblocks.*",
                 "stall_some_percent", "oom_kill")
"""Metrics the closing table shows unless ``--metric`` says otherwise."""


def add_parser(sub: Any, add_set: Any) -> None:
    """The ``sweep`` subcommand's arguments."""
    sw = sub.add_parser("sweep", help="run an experiment over a grid of values with "
                                      "replicates; write sweep.parquet and summary.csv")
    sw.add_argument("config", type=Path, help="experiment YAML file with a sweep: section")
    sw.add_argument("-o", "--out", type=Path, required=True,
                    help="sweep directory (run again on the same one to resume)")
    sw.add_argument("--jobs", type=_jobs, default=None, metavar="N",
                    help=f"local worker processes (default: the number of cores, "
                         f"{os.cpu_count() or 1} here)")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="run on a Dask cluster instead, e.g. tcp://host:8786")
    sw.add_argument("--metric", action="append", default=[], metavar="PATTERN",
                    help="metrics the closing table shows (shell patterns; repeatable; "
                         "summary.csv has them all)")
    sw.add_argument("--no-report", action="store_true",
                    help="skip the study report (report/study.pdf and PNGs; build it later "
                         "with allocsim report DIR)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_set(sw)


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes >= 1, got {text!r}")
    return value


def cmd_sweep(args: argparse.Namespace) -> int:
    """Plan, run (or resume) and summarize a sweep; answer its study; build its report.

    The study is answered if the file has one; the report (:mod:`reports.study`) is
    built unless ``--no-report``.
    """
    from allocsim.sweep.runner import plan_sweep
    from allocsim.sweep.studyrun import plan_study

    plan = plan_sweep(args.config, args.set)
    study = plan_study(plan, args.set)
    jobs = args.jobs or os.cpu_count() or 1
    where = (f"Dask scheduler {args.scheduler}" if args.scheduler
             else f"{jobs} local process{'es' if jobs > 1 else ''}")
    extra = "" if study is None else (f" (and a fresh-box baseline of "
                                      f"{len(study.baseline.plan.tasks)} runs)")
    print(f"sweep {args.config}: {len(plan.spec.points)} points x {plan.spec.replicates} "
          f"replicates = {len(plan.tasks)} runs{extra} on {where}", file=sys.stderr)
    result = _run(plan, args.out, jobs, args)
    base = None
    if study is not None:
        from allocsim.sweep.studyrun import baseline_dir

        base = _run(study.baseline.plan, baseline_dir(args.out), jobs, args)
    failed = [*result.failed, *([] if base is None else base.failed)]
    print(f"sweep directory: {args.out}")
    print(f"  {len(result.records) - len(result.failed)} runs complete "
          f"({result.skipped} from an earlier attempt), {len(result.failed)} failed")
    if base is not None:
        print(f"  baseline: {len(base.records) - len(base.failed)} runs complete "
              f"({base.skipped} from an earlier attempt), {len(base.failed)} failed")
    for record in result.failed:
        print(f"  failed: runs/{record.dir_name}: {record.error}")
    for record in [] if base is None else base.failed:
        print(f"  failed: baseline/runs/{record.dir_name}: {record.error}")
    print(format_summary(result.summary, list(plan.spec.keys), args.metric or DEFAULT_SHOWN))
    print("  (mean and 95 % CI over replicates; every metric is in summary.csv, "
          "every run's value in sweep.parquet)")
    if study is not None and base is not None:
        from allocsim.sweep.studyrun import write_study

        print()
        print(write_study(study, result, base), end="")
    if not args.no_report:
        from reports.study import build_study_report

        print(f"  report: {build_study_report(args.out)[0]}")
    return 0 if not failed else 1


def _run(plan: SweepPlan, out: Path, jobs: int, args: argparse.Namespace) -> SweepResult:
    from allocsim.sweep.runner import run_sweep

    bar = None if args.quiet else _Bar(len(plan.tasks))
    try:
        return run_sweep(plan, out, jobs, args.scheduler, None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()


def format_summary(summary: pd.DataFrame, keys: list[str], patterns: Any) -> str:
    """The closing table: one line per point and shown metric."""
    if summary.empty:
        return "  (no completed runs)"
    shown = summary[summary.metric.map(
        lambda m: any(fnmatch.fnmatchcase(m, p) for p in patterns))]
    if shown.empty:
        return "  (no metric matches " + ", ".join(patterns) + ")"
    table = shown[["point", *keys, "metric", "n", "mean", "ci_low", "ci_high", "method"]]
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


class _Bar:
    """tqdm over runs: done/total, ETA, failures."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="run", desc="sweep", file=sys.stderr,
                        dynamic_ncols=True)

    def update(self, record: Any, done: int, failed: int) -> None:
        if record is None:  # the runs an earlier attempt completed: not this one's rate
            self.bar.initial = done
        self.bar.n = done
        self.bar.set_postfix(failed=failed, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
