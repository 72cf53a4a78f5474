"""Where a sweep's runs execute: this process, local processes, or a Dask cluster.

Each executor calls :func:`run_task` on every task and yields its :class:`RunRecord` as
runs finish, in whatever order they finish; the runner sorts. Nothing in the model knows
which executor it runs on: a run depends only on its config and seed.

``--jobs 1``
    This process, one run after another.
``--jobs N``
    ``N`` worker processes (:class:`concurrent.futures.ProcessPoolExecutor`, started with
    ``spawn``).
``--scheduler tcp://HOST:PORT``
    A Dask distributed cluster (:class:`distributed.Client`). Its workers must have
    allocsim installed and see the sweep's output directory at the same path (a shared
    file system, or one machine); start them with ``--nthreads 1``, as a run holds the
    GIL for its whole length.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from allocsim.sweep.plan import RunTask, task_config
from simcore.errors import AllocsimError
from simcore.parent_death import exit_with_parent

OK_STATUSES = ("ok", "panic")
"""A run directory with one of these statuses is complete (a kernel panic is a result)."""


@dataclass(frozen=True)
class RunRecord:
    """What a run gave: its status, and its metrics if it completed."""

    point: int
    replicate: int
    seed: int
    config_hash: str
    dir_name: str
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def run_task(task: RunTask, runs: str) -> RunRecord:
    """Run one task into ``runs/<task.dir_name>`` (no report) and read its metrics.

    A run that fails is recorded with its error (its directory is ``<name>.failed``);
    an interruption propagates.
    """
    from allocsim.run import simulate
    from allocsim.sweep.metrics import run_metrics

    if _stopping:  # this worker was interrupted: start nothing more
        raise KeyboardInterrupt
    root = Path(runs)
    for tmp in root.glob(f".{task.dir_name}.tmp-*"):  # a run killed while it ran
        shutil.rmtree(tmp, ignore_errors=True)
    for stale in (root / f"{task.dir_name}.failed", root / f"{task.dir_name}.interrupted",
                  root / task.dir_name):  # an earlier attempt's remains (the last one only
        shutil.rmtree(stale, ignore_errors=True)  # when the runner found it unreadable)
    try:
        cfg = task_config(task)
        result = simulate(cfg, root, None, report=False, dir_name=task.dir_name)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - any crash of one run is recorded, not fatal
        return _record(task, "failed", f"{type(exc).__name__}: {exc}")
    return _record(task, result.status, None, run_metrics(result.summary))


def _record(task: RunTask, status: str, error: str | None,
            metrics: dict[str, float] | None = None) -> RunRecord:
    return RunRecord(task.point, task.replicate, task.seed, task.config_hash, task.dir_name,
                     status, error, metrics or {})


def run_inline(tasks: Sequence[RunTask], runs: Path) -> Iterator[RunRecord]:
    """Each task in this process, in order."""
    for task in tasks:
        yield run_task(task, str(runs))


def run_local(tasks: Sequence[RunTask], runs: Path, jobs: int) -> Iterator[RunRecord]:
    """The tasks on ``jobs`` local worker processes, yielded as they finish."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                               initializer=_worker_signals, initargs=(os.getpid(),))
    try:
        # The workers start (in submit) with the stop signals blocked, and unblock them
        # once their handler is in (_worker_signals): Ctrl-C as they import would
        # otherwise end each with a traceback.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            futures = [pool.submit(_run_in_worker, task, str(runs)) for task in tasks]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        _interrupt_workers(pool)  # Ctrl-C reaches them too; SIGTERM only reached us
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_stopping = False
"""Set in a worker process once it has been interrupted (:func:`_worker_signals`)."""
_in_task = False
"""True in a worker process while it runs a task (:func:`_run_in_worker`)."""


def _run_in_worker(task: RunTask, runs: str) -> RunRecord:
    """:func:`run_task` in a local worker, which a stop signal interrupts only meanwhile."""
    global _in_task
    _in_task = True
    try:
        return run_task(task, runs)
    finally:
        _in_task = False


def _worker_signals(parent: int) -> None:
    """In a worker: SIGINT or SIGTERM interrupts the run, and the worker starts no more.

    The pool hands a worker its next queued task after an interrupted one; with this
    flag set, :func:`run_task` refuses it at once, so an interrupted sweep stops within
    the run each worker was in. A sweep killed outright (SIGKILL) takes its workers
    with it: one left running would write its run beside the resumed sweep's.
    """
    exit_with_parent(parent)
    signal.signal(signal.SIGINT, _on_stop_signal)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by run_local


def _on_stop_signal(signum: int, frame: object) -> None:
    """Interrupt the task under way, once; an idle worker only remembers the signal.

    Ctrl-C in a terminal reaches the workers, and the sweep's process then sends them
    SIGINT too (:func:`_interrupt_workers`): a second KeyboardInterrupt would cut
    short the run's own cleanup, which names its directory ``.interrupted``. One
    raised in the pool's own loop would end the worker with a traceback.
    """
    global _stopping, _in_task
    _stopping = True
    if _in_task:
        _in_task = False
        raise KeyboardInterrupt


def _interrupt_workers(pool: ProcessPoolExecutor) -> None:
    """SIGINT each live worker, so its run records ``interrupted`` and it stops."""
    processes = getattr(pool, "_processes", None) or {}
    for proc in list(processes.values()):
        try:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGINT)
        except (OSError, ValueError):
            pass


def run_dask(tasks: Sequence[RunTask], runs: Path, address: str) -> Iterator[RunRecord]:
    """The tasks on the Dask cluster whose scheduler is at ``address``.

    Raises:
        SchedulerError: dask.distributed is not installed, or the scheduler cannot be
            reached.
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise SchedulerError(address, "dask.distributed installed (pip install "
                             "'allocsim[dask]')", "not installed") from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(address, "a Dask scheduler listening there", str(exc)) from None
    try:
        root = str(runs.resolve())
        sweep_id = hashlib.sha256(root.encode()).hexdigest()[:10]  # keys are cluster-wide
        futures = [client.submit(run_task, task, root, pure=False,
                                 key=f"allocsim-{sweep_id}-{task.dir_name}")
                   for task in tasks]
        for future in dask_completed(futures):
            try:
                record = future.result()
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # noqa: BLE001 - run_task records its own errors
                raise SchedulerError(address, "a scheduler and workers that import "
                                     "allocsim from the same installation as this one",
                                     " ".join(str(exc).split())[:300]) from None
            yield record
    finally:
        client.close()


class SchedulerError(AllocsimError):
    """A ``--scheduler`` address that cannot be used (one line, exit 2)."""

    def __init__(self, address: str, expected: str, got: str) -> None:
        super().__init__(f"--scheduler {address}: expected {expected}, got {got}")
