"""The ``allocsim`` command line.

Subcommands: ``run`` (an experiment, then its report), ``validate`` (configs only),
``describe`` (the keys of an experiment file),
``report`` (rebuild a run's report) and ``proc show`` (a real ``/proc`` snapshot as the
simulator sees it). Bad input gets one line on stderr naming the file and the key or
line, and exit status 2; there is never a traceback for it.
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from simcore.errors import interruption_in

EXIT_USAGE = 2
EXIT_FAILED = 1
"""The run itself failed (the invariant audit found the model in a broken state)."""
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})
"""Errors of the place being written (disk full, quota, read-only): one line, exit 2."""
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EPILOG = """examples:
  allocsim run configs/quickstart.yaml -o runs/
  allocsim validate configs/*.yaml
  allocsim describe workloads.synthetic
  allocsim report runs/quickstart-seed42
  allocsim proc show tests/data/oracle/wmark-recompute/s00-mfk128-wsf10 --recompute
"""


def _version() -> str:
    import simcore
    from allocsim.provenance import source_commit

    return (f"allocsim {simcore.__version__} (models Linux {simcore.KERNEL_VERSION}; "
            f"source commit {source_commit()})\nbuild: {simcore.build_description()}")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a seed >= 0, got {value}")
    return value


AUDIT_EVERY = 1000
"""``--check-invariants`` without a value: a full audit every 1,000 SimPy events."""


def _audit_every(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of events N >= 1 (--check-invariants=N), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of events N >= 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="allocsim", description="Simulate the Linux 6.1 page allocator.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment and write its run directory + report")
    run.add_argument("config", type=Path, nargs="?", help="experiment YAML file")
    run.add_argument("--from", dest="from_manifest", type=Path, default=None,
                     metavar="RUN_DIR/manifest.json",
                     help="re-run a run directory's effective config (same seed: the same "
                          "trace, byte for byte) instead of a file")
    run.add_argument("-o", "--out", type=Path, default=Path("runs"),
                     help="directory that receives the run directory (default: runs/)")
    run.add_argument("--seed", type=_seed, default=None, help="override the config's seed")
    run.add_argument("--no-report", action="store_true", help="skip the PDF/PNG report")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--check-invariants", type=_audit_every, nargs="?", const=AUDIT_EVERY,
                     default=None, metavar="N",
                     help="audit every allocator invariant every N SimPy events (default "
                          f"{AUDIT_EVERY:,}); a violation stops the run, names the first bad "
                          "event and keeps the trace (slow: for debugging the model)")
    _add_set(run)
    val = sub.add_parser("validate", help="check experiment files without running them")
    val.add_argument("configs", type=Path, nargs="+")
    _add_set(val)
    rep = sub.add_parser("report", help="(re)build the report of a run directory")
    rep.add_argument("run_dir", type=Path, help="a run directory, or a sweep directory "
                     "(allocsim sweep -o DIR): its study report")
    rep.add_argument("--overlay", type=Path, default=None, metavar="BUDDYINFO_PERIODIC",
                     help="draw a real host's buddyinfo.periodic (t=SECONDS lines, then "
                          "/proc/buddyinfo rows) against the run, e.g. a replay of its trace")
    cmp_ = sub.add_parser(
        "compare", help="compare runs (baseline first) or a sweep's points: overlaid "
                        "figures and metric differences with confidence intervals",
        description="Runs whose configs differ only in the seed are replicates of one "
                    "variant; the first variant is the baseline. Writes compare.pdf, one "
                    "PNG per figure and compare.csv.")
    cmp_.add_argument("runs", type=Path, nargs="+", metavar="RUN_DIR_OR_SWEEP_DIR")
    cmp_.add_argument("-o", "--out", type=Path, default=None, metavar="DIR",
                      help="output directory (default: SWEEP_DIR/compare for one sweep, "
                           "else ./compare)")
    rp = sub.add_parser(
        "replay", help="replay a real trace's allocations and frees against the model",
        description="Replay the mm_page_alloc/mm_page_free sequence of a real ftrace "
                    "against the model and write a run directory with its report. "
                    "--placement model lets the model choose each block; --placement real "
                    "puts each allocation at its real pfn and counts every disagreement.")
    rp.add_argument("trace", type=Path,
                    help="an imported trace.parquet (allocsim trace import) or ftrace text")
    rp.add_argument("--machine", type=Path, required=True, metavar="DIR_OR_YAML",
                    help="the host's /proc snapshot directory, or a YAML file with a "
                         "machine: section (allocsim proc import writes one)")
    rp.add_argument("-o", "--out", type=Path, required=True, metavar="RUN_DIR",
                    help="the run directory to write (-2, -3 ... is added if it exists)")
    rp.add_argument("--placement", choices=("model", "real"), default="model",
                    help="who picks each block's pfn (default: model)")
    rp.add_argument("--compaction-trace", type=Path, default=None, metavar="FTRACE",
                    help="the host's compaction: events (mm_compaction_begin/_end, e.g. "
                         "slowpath-trace.txt.xz): frees inside a task's compaction run "
                         "are migrations")
    rp.add_argument("--initial-state", choices=("fresh", "from_proc"), default=None,
                    help="the machine's state when the trace starts (default: a snapshot "
                         "directory's own, when it has pagetypeinfo and meminfo; else the "
                         "YAML file's initial_state, or fresh)")
    rp.add_argument("--seed", type=_seed, default=0, help="seed of the model's own "
                    "processes (default: 0)")
    rp.add_argument("--no-report", action="store_true", help="skip the PDF/PNG report")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    from allocsim.sweep.cli import add_parser as add_sweep

    add_sweep(sub, _add_set)
    from allocsim.describe import add_parser as add_describe

    add_describe(sub)
    vo = sub.add_parser(
        "validate-oracle", help="measure the model against real 6.1 data (a directory "
                                "laid out like ../shared/oracle/)")
    vo.add_argument("oracle_dir", type=Path, help="directory of runs, e.g. tests/data/oracle")
    vo.add_argument("--json", action="store_true", help="print a JSON array, one object "
                    "per run, instead of the table")
    proc = sub.add_parser("proc", help="work with real /proc snapshots")
    proc_sub = proc.add_subparsers(dest="proc_command", required=True)
    show = proc_sub.add_parser(
        "show", help="build the machine a snapshot describes and print it as /proc/zoneinfo")
    show.add_argument("snapshot_dir", type=Path,
                      help="directory with zoneinfo, buddyinfo, pagetypeinfo, sysctl_vm, ...")
    show.add_argument("--recompute", action="store_true",
                      help="compute watermarks, protection and pcp sizes from the managed "
                           "pages and sysctls instead of using the observed ones")
    cap = proc_sub.add_parser(
        "capture", help="copy this Linux host's /proc and sysfs allocator state into a new "
                        "snapshot directory (read-only; pagetypeinfo needs root)")
    cap.add_argument("-o", "--out", type=Path, required=True, help="new snapshot directory")
    pimp = proc_sub.add_parser(
        "import", help="write a snapshot's machine as the machine: and sysctl: sections of "
                       "an experiment file")
    pimp.add_argument("snapshot_dir", type=Path, help="a snapshot directory (proc capture)")
    pimp.add_argument("-o", "--out", type=Path, required=True, help="output YAML file")
    trace = sub.add_parser("trace", help="work with real ftrace kmem traces")
    trace_sub = trace.add_subparsers(dest="trace_command", required=True)
    imp = trace_sub.add_parser(
        "import", help="read the kmem: page events of an ftrace text file (.txt, .gz, .xz) "
                       "into a Parquet table")
    imp.add_argument("trace_file", type=Path, help="ftrace text, e.g. trace.txt.xz")
    imp.add_argument("-o", "--out", type=Path, required=True, help="output .parquet file")
    exp = trace_sub.add_parser(
        "export", help="write a run's kmem: page events as ftrace text")
    exp.add_argument("run_dir", type=Path, help="a run directory (with trace/events.parquet)")
    exp.add_argument("-o", "--out", type=Path, required=True, help="output text file")
    return p


def _cmd_trace(args: argparse.Namespace) -> int:
    from simcore.formats import trace_schema as ts
    from simcore.formats.ftrace import export_trace, import_trace

    if args.trace_command == "export":
        events = args.run_dir / ts.EVENTS_FILE
        if not events.is_file():
            raise FileNotFoundError(2, "No such file (a run directory with event tracing "
                                       "on has one)", str(events))
        print(f"{args.out}: {export_trace(events, args.out):,} lines")
        return 0
    report = import_trace(args.trace_file, args.out)
    print(f"{args.out}: {report.summary()}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from allocsim.replay import replay

    progress = None if args.quiet else _progress_bar("replay", 1)
    _note_pure_build()
    try:
        result = replay(args.trace, args.machine, args.out, args.placement, args.seed,
                        progress, report=not args.no_report,
                        compaction_trace=args.compaction_trace,
                        initial_state=args.initial_state)
    finally:
        if progress is not None:
            progress.close()
    s = result.summary
    r = s["replay"]
    manifest = json.loads((result.run_dir / "manifest.json").read_text(encoding="utf-8"))
    state = (manifest.get("initial_state") or {}).get("from_proc")
    print(f"run directory: {result.run_dir}")
    print("  starting state: " + (f"the snapshot's (initial_state from_proc: {state})" if state
                                  else "a freshly booted machine (initial_state fresh)"))
    _print_assumptions(manifest)
    print(f"  replayed {r['allocs']:,} allocations ({r['host_failed']:,} failed on the host) "
          f"and {r['frees']:,} frees over {s['simulated_seconds']:.3f} s, placement "
          f"{r['placement']}, in {s['wall_seconds']:.1f} s wall")
    if r["placement"] == "model":
        print(f"  model failed {r['model_failed']:,} the host served, served "
              f"{r['model_ok_host_failed']:,} the host failed; skipped "
              f"{r['frees_unmatched_skipped']:,} frees of blocks allocated before the trace "
              "or by the bulk allocator")
    else:
        print(f"  disagreements: {r['pfn_busy']:,} pfns busy in the model, "
              f"{r['pfn_no_zone']:,} in no zone, {r['pfn_other_zone']:,} in a zone the "
              f"gfp_mask excludes; frees of blocks allocated before the trace or by the bulk "
              f"allocator: {r['frees_unmatched_applied']:,} applied, "
              f"{r['frees_unmatched_free']:,} already free in the model, "
              f"{r['frees_unmatched_reserved']:,} reserved; moved out of the host's way: "
              f"{r['held_moved']:,} host-owner pages, {r['reserved_moved']:,} guessed "
              f"reservations, {r['unseen_moved']:,} replayed pages")
    if args.compaction_trace is not None:
        print(f"  host compaction: {r['migrations']:,} frees inside its compaction runs "
              f"replayed as migrations")
    if result.report:
        print(f"  report: {result.report[0]}")
    return 0


def _cmd_validate_oracle(args: argparse.Namespace) -> int:
    from allocsim.oracle.validate import LEGEND, format_table, to_json, validate_oracle

    def progress(run: str) -> None:
        print(f"validating {run} ...", file=sys.stderr, flush=True)

    results = validate_oracle(args.oracle_dir, progress=progress)
    print(to_json(results) if args.json else format_table(results) + LEGEND, end="")
    return 0


def _add_set(parser: argparse.ArgumentParser) -> None:
    """``--set KEY.PATH=VALUE``, repeatable: values set before the file is validated."""
    parser.add_argument("--set", dest="set", action="append", default=[], type=_set_arg,
                        metavar="KEY.PATH=VALUE",
                        help="override one value of the experiment file, e.g. "
                             "--set workloads[0].rate=200/s --set machine.nodes[0].memory=8GiB "
                             "(the value is one YAML scalar; repeatable)")


def _set_arg(text: str) -> tuple[str, object]:
    from simcore.config.override import parse_set_arg
    from simcore.errors import ConfigError

    try:
        return parse_set_arg(text)
    except ConfigError as exc:  # argparse's usage error: one line, exit 2
        raise argparse.ArgumentTypeError(_one_line(exc)) from None


def _print_assumptions(manifest: dict[str, Any]) -> None:
    """What a ``from_proc`` state assumed, and where it differs from its snapshot."""
    state = manifest.get("initial_state") or {}
    for text in state.get("assumptions", []):
        print(f"  initial state: {text}")
    mismatches = state.get("mismatches", [])
    if mismatches:
        print(f"  initial state: differs from the snapshot in {len(mismatches)} "
              f"place{'s' if len(mismatches) > 1 else ''} (manifest.json "
              f"initial_state.mismatches), e.g. {mismatches[0]}")


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses

    from allocsim.run import simulate
    from workloads.registry import load_experiment

    if (args.config is None) == (args.from_manifest is None):
        raise UsageError("allocsim run: expected an experiment file or --from "
                         "RUN_DIR/manifest.json (one of them)")
    if args.from_manifest is not None:
        from allocsim.rerun import load_manifest_experiment

        cfg = load_manifest_experiment(args.from_manifest, args.set)
    else:
        cfg = load_experiment(args.config, args.set)
    if args.seed is not None:
        cfg = dataclasses.replace(cfg, seed=args.seed)
    progress = None if args.quiet else _progress_bar(cfg.name, cfg.duration_ns)
    _note_pure_build()
    try:
        result = simulate(cfg, args.out, progress, report=not args.no_report,
                          check_invariants=args.check_invariants)
    finally:
        if progress is not None:
            progress.close()
    manifest = json.loads((result.run_dir / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("invariant_violation"):
        print(f"allocsim: {manifest['error'].removeprefix('InvariantViolation: ')}",
              file=sys.stderr)
        print(f"allocsim: the run stopped there; its trace up to it is in {result.run_dir}",
              file=sys.stderr)
        return EXIT_FAILED
    s = result.summary
    print(f"run directory: {result.run_dir}")
    state = (manifest.get("initial_state") or {}).get("from_proc")
    if state:
        print(f"  starting state: the snapshot's (initial_state from_proc: {state})")
    _print_assumptions(manifest)
    print(f"  simulated {s['simulated_seconds']:.3f} s in {s['wall_seconds']:.1f} s wall; "
          f"{s['alloc_requests']} requests, {sum(s['failures']['by_order'].values())} failed, "
          f"{s['events_traced']} events traced")
    vm = s.get("vmstat") or {}
    stalls = sum(v for k, v in vm.items() if k.startswith("allocstall_"))
    if vm.get("pgsteal_kswapd") or stalls:
        print(f"  reclaim: kswapd {vm.get('pgsteal_kswapd', 0):,} pages; direct "
              f"{vm.get('pgsteal_direct', 0):,} pages in {stalls:,} stalls; PSI some "
              f"{s['stall_ns']['some_percent']:.2f} %")
    if vm.get("compact_stall") or vm.get("compact_daemon_wake") or vm.get("pgmigrate_success"):
        print(f"  compaction: {vm.get('compact_stall', 0):,} direct ("
              f"{vm.get('compact_success', 0):,} success, {vm.get('compact_fail', 0):,} fail); "
              f"kcompactd {vm.get('compact_daemon_wake', 0):,} wakes; "
              f"{vm.get('pgmigrate_success', 0):,} pages migrated")
    for name, counts in (s.get("callers") or {}).items():
        kind = next((k.removeprefix("kind:") for k in counts if k.startswith("kind:")), "")
        text = ", ".join(f"{v:,} {k}" for k, v in counts.items() if not k.startswith("kind:"))
        print(f"  {kind} {name}: {text}")
    for r in (s.get("hugetlb") or {}).get("requests", []):
        node = "" if r["node"] is None else f" node {r['node']}"
        print(f"  hugetlb: {r['by']} nr_hugepages {r['requested']}{node} ({r['size']}) at "
              f"{r['at_s']:.3f} s: {r['obtained']} obtained in {r['seconds']:.6f} s"
              + ("" if r["finished"] else " (still running at the end)"))
    if s.get("actions"):
        print(f"  actions: {len(s['actions'])} applied "
              f"({'; '.join(a['do'] for a in s['actions'])})")
    if s.get("oom_kills"):
        victims = ", ".join(f"{k['victim']} at "
                            f"{k['time_ns'] / 1e9:.3f} s" for k in s["oom_kills"])
        print(f"  OOM killer: {victims}")
    if s.get("panic"):
        print(f"  kernel panic at {s['panic']['time_ns'] / 1e9:.3f} s: {s['panic']['reason']} "
              "(the run stops there; its results up to then are complete)")
    if result.report:
        print(f"  report: {result.report[0]}")
    return 0


def _note_pure_build() -> None:
    """One stderr line when the engine runs as pure Python without having been asked to."""
    import simcore
    from simcore import engine

    if simcore.COMPILED or simcore.PURE_REASON:
        return  # compiled, or pure because ALLOCSIM_PURE_PYTHON or a stale build says so
    elsewhere = engine.installed_compiled_copy()
    if elsewhere is not None:
        print(f"allocsim: note: running the uncompiled source tree {engine.PACKAGE_DIR} "
              f"(Python finds it first, e.g. from the current directory), not the "
              f"installed compiled engine in {elsewhere}; same results, several times "
              "slower. Run outside the checkout, or `pip install -e .` to compile it in "
              "place.", file=sys.stderr)
        return
    print("allocsim: note: no compiled engine is installed (installed with "
          "ALLOCSIM_PURE_PYTHON=1, without a C compiler, or the build failed: "
          "`pip install -v .` shows why), so this run uses the pure-Python engine: same "
          "results, several times slower. To compile it, reinstall with a C compiler "
          "present: `pip install .` (`pip install -e .` in a checkout).", file=sys.stderr)


class _progress_bar:
    """A tqdm bar over simulated time (in simulated milliseconds)."""

    def __init__(self, name: str, duration_ns: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=duration_ns // 1_000_000, unit="sim-ms", desc=name,
                        disable=not sys.stderr.isatty(), leave=False)
        self.done = 0

    def __call__(self, now_ns: int, duration_ns: int) -> None:
        ms = now_ns // 1_000_000
        self.bar.update(ms - self.done)
        self.done = ms

    def close(self) -> None:
        self.bar.close()


def _cmd_validate(args: argparse.Namespace) -> int:
    """Check every file (not only up to the first bad one); exit 2 if any is bad."""
    from allocsim.hostmem import check_fits_host, describe
    from simcore.errors import ConfigError
    from workloads.registry import load_experiment

    bad = 0
    for path in args.configs:
        try:
            if _is_sweep_file(path):
                print(_validate_sweep(path, args.set))
                continue
            cfg = load_experiment(path, args.set)
            footprint = check_fits_host(cfg)
        except ConfigError as exc:
            print(f"allocsim: error: {_one_line(exc)}", file=sys.stderr)
            bad += 1
            continue
        print(f"{path}: ok ({cfg.name}, {len(cfg.workloads)} workloads; the machine needs "
              f"{describe(footprint)})")
    if bad and len(args.configs) > 1:
        print(f"allocsim: {bad} of {len(args.configs)} files failed validation", file=sys.stderr)
    return EXIT_USAGE if bad else 0


def _is_sweep_file(path: Path) -> bool:
    """A file with a ``sweep:`` section (a bad file is left to the ordinary check)."""
    from simcore.config.parse import read_yaml
    from simcore.errors import ConfigError

    try:
        doc = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(doc, dict) and "sweep" in doc


def _validate_sweep(path: Path, overrides: list[tuple[str, object]]) -> str:
    """Plan every run of a sweep file (and of its study's baseline); one line about it."""
    from allocsim.hostmem import check_fits_host, describe
    from allocsim.sweep.plan import task_config
    from allocsim.sweep.runner import plan_sweep
    from allocsim.sweep.studyrun import plan_study

    plan = plan_sweep(path, overrides)
    study = plan_study(plan, overrides)
    largest = max((check_fits_host(task_config(t)) for t in plan.tasks if t.replicate == 0),
                  key=lambda f: f.total)
    extra = "" if study is None else (
        f"; study: {len(study.spec.questions)} questions, a baseline of "
        f"{len(study.baseline.plan.tasks)} runs")
    return (f"{path}: ok (sweep: {len(plan.spec.points)} points x {plan.spec.replicates} "
            f"replicates = {len(plan.tasks)} runs{extra}; the largest machine needs "
            f"{describe(largest)})")


def _cmd_compare(args: argparse.Namespace) -> int:
    from reports.compare import SWEEP_FILE
    from reports.compare_report import build_compare_report

    out = args.out
    if out is None:
        lone_sweep = len(args.runs) == 1 and (args.runs[0] / SWEEP_FILE).is_file()
        out = args.runs[0] / "compare" if lone_sweep else Path("compare")
    if out.exists() and not out.is_dir():
        from reports.load import ReportInputError

        raise ReportInputError(f"{out}: exists and is not a directory (-o names the output "
                               "directory)")
    paths = build_compare_report(args.runs, out)
    print(f"compare report: {paths[0]}")
    for path in paths[1:]:
        print(f"  {path}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from reports import build_report
    from reports.sweep_load import is_sweep_dir

    if is_sweep_dir(args.run_dir):  # a sweep's directory (sweep.json): its study report
        from reports.study import build_study_report

        if args.overlay is not None:
            raise UsageError("allocsim report: --overlay is for a run directory, and "
                             f"{args.run_dir} is a sweep's")
        written = build_study_report(args.run_dir)
    else:
        from allocsim.rundir import unfinished_run

        killed = unfinished_run(args.run_dir)  # a run's hidden temporary directory
        if killed is not None:
            raise UsageError(killed)
        written = build_report(args.run_dir, overlay=args.overlay)
    for path in written:
        print(path)
    return 0


def _cmd_proc(args: argparse.Namespace) -> int:
    if args.proc_command == "capture":
        from allocsim.capture import capture

        missing = capture(args.out)
        print(f"snapshot: {args.out}")
        for line in missing:
            print(f"  not captured: {line}")
        return 0
    if args.proc_command == "import":
        from allocsim.procimport import import_machine

        for note in import_machine(args.snapshot_dir, args.out):
            print(f"allocsim: note: {note}", file=sys.stderr)
        print(f"wrote {args.out}: the machine: and sysctl: sections of {args.snapshot_dir}")
        return 0
    from allocsim.procshow import proc_show

    sys.stdout.write(proc_show(args.snapshot_dir, args.recompute))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from allocsim.sweep.cli import cmd_sweep

    return cmd_sweep(args)


def _cmd_describe(args: argparse.Namespace) -> int:
    from allocsim.describe import cmd_describe

    return cmd_describe(args)


COMMANDS = {"run": _cmd_run, "replay": _cmd_replay, "validate": _cmd_validate,
            "report": _cmd_report, "compare": _cmd_compare, "proc": _cmd_proc, "trace": _cmd_trace,
            "validate-oracle": _cmd_validate_oracle, "sweep": _cmd_sweep,
            "describe": _cmd_describe}


def _user_errors() -> tuple[type[BaseException], ...]:
    from simcore.errors import AllocsimError
    from simcore.formats.procfs import ProcParseError

    errors: tuple[type[BaseException], ...] = (
        AllocsimError, ProcParseError, UsageError, FileNotFoundError, IsADirectoryError,
        NotADirectoryError, PermissionError)
    if "reports.load" in sys.modules:  # only a report can raise it; importing is slow
        errors += (sys.modules["reports.load"].ReportInputError,)
    return errors


class UsageError(Exception):
    """A command line that cannot be run (one line, exit 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled like Ctrl-C (a run records ``interrupted``), exit 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"signal {signum}")


def _on_sigterm(handler: object) -> object:
    """Install ``handler`` for SIGTERM; return the previous one (None off the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, handler)  # type: ignore[arg-type]
    except ValueError:  # not the main thread: leave signals alone
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``allocsim`` console script and ``python -m simcore``.

    SIGTERM is turned into an exception like Ctrl-C, so a run stopped by ``kill`` or a
    job scheduler records ``interrupted`` instead of leaving a directory behind.
    """
    try:
        args = _parser().parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the command line is still being read
        print("allocsim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    previous = _on_sigterm(_raise_terminated)
    try:
        return COMMANDS[args.command](args)
    except _user_errors() as exc:
        print(f"allocsim: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        print(f"allocsim: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException as exc:
        # Ctrl-C or SIGTERM, possibly re-raised as another error by cleanup code.
        interrupt = interruption_in(exc)
        if interrupt is None:
            raise
        terminated = isinstance(interrupt, Terminated)
        print(f"allocsim: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        if previous is not None:
            _on_sigterm(previous)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
