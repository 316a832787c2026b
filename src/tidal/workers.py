"""The runs of an experiment spread over worker processes (``tidal run --jobs N``).

Each worker is a spawned process with a fixed number of torch threads. It takes (dataset,
imbalance, seed, method) runs from a shared queue, trains each with
:func:`tidal.runs.train_run` and commits every finished cycle to the run directory itself,
through a :class:`tidal.runs.RunWriter` (SQLite's WAL mode lets several processes write one
file), so what a worker finished is stored whatever happens to the others. The parent hands out the runs and
passes each stored cycle to ``on_cycle`` (progress bar, log lines, trackers).

A run's numbers depend on its seed and the thread count only, so N jobs of T threads give
exactly what a serial run with T threads gives, whichever worker trains a run and in
whatever order the runs finish. On CPUs with few cores, several one-thread jobs train
faster in total than one job using every core (the README gives measured numbers).

Stopping: Ctrl-C reaches the parent, which stops the workers (they ignore SIGINT); a
worker's error stops the others and is raised in the parent; on Linux a worker also dies
with its parent (``kill -9`` of ``tidal run``), so nothing trains on unseen. Re-running
the same command continues from the stored cycles.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import queue
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from tidal.config import ExperimentConfig
from tidal.errors import TidalError
from tidal.loop import CycleEnv, configured_model
from tidal.results import DB_NAME, CycleRecord, ResultStore, RunKey
from tidal.runs import RunOptions, RunWriter, load_splits, resolve_device, set_deterministic, train_run

__all__ = ["WorkerError", "run_in_workers"]

_POLL_SECONDS = 0.5  # how often the parent checks that its workers are alive while it waits
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): signal this process when its parent dies


class WorkerError(TidalError, RuntimeError):
    """A worker process died without reporting an error (killed, out of memory)."""


@dataclass(frozen=True)
class _WorkerSpec:
    """What a worker needs to train runs; pickled into each spawned process."""

    config: ExperimentConfig
    out: str  # the run directory
    opts: RunOptions  # device, preloaded datasets, TD tracking, the user's model (picklable); log: print
    threads: int  # torch threads of the worker
    parent_pid: int


def run_in_workers(keys: list[RunKey], config: ExperimentConfig, out: Path, opts: RunOptions, threads: int,
                   on_cycle: Callable[[CycleRecord], None]) -> None:
    """Train the runs ``keys`` (in this order of hand-out) on ``min(opts.jobs, len(keys))`` worker
    processes with ``threads`` torch threads each; ``on_cycle(record)`` runs in this process
    after each cycle a worker stored. ``out`` must already be bound to ``config``
    (:meth:`tidal.results.ResultStore.bind`).

    Raises:
        the first error a worker raised (e.g. ``TrainingDivergedError``), after stopping the
        other workers; :class:`WorkerError` when a worker dies without a word.
    """
    jobs = opts.jobs or 1
    if jobs < 1 or threads < 1:
        raise ValueError(f"jobs={jobs} and threads={threads} must be >= 1")
    ctx = mp.get_context("spawn")  # fork is unsafe once torch has started its thread pools
    tasks, events = ctx.Queue(), ctx.Queue()
    n = min(jobs, len(keys))
    for key in keys:
        tasks.put(key)
    for _ in range(n):
        tasks.put(None)  # one stop sign per worker
    spec = _WorkerSpec(config, str(out), replace(opts, log=print), threads, os.getpid())
    procs = [ctx.Process(target=_worker, args=(spec, tasks, events), name=f"tidal-worker-{i}", daemon=True)
             for i in range(n)]
    try:
        for p in procs:
            p.start()
        remaining = len(keys)
        while remaining:
            try:
                kind, payload = events.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                _check_alive(procs)
                continue
            if kind == "cycle":
                on_cycle(payload)
            elif kind == "done":
                remaining -= 1
            else:  # "error": the worker's exception, already picklable
                raise payload
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            if p.pid is not None:
                p.join(timeout=30)
        tasks.cancel_join_thread()
        events.cancel_join_thread()


def _check_alive(procs: list[mp.process.BaseProcess]) -> None:
    """Raise :class:`WorkerError` if a worker ended abnormally (it reports its own errors, so
    a non-zero exit code without one means a signal: kill, out-of-memory killer)."""
    for p in procs:
        if p.exitcode not in (None, 0):
            how = f"signal {-p.exitcode}" if p.exitcode < 0 else f"exit code {p.exitcode}"
            raise WorkerError(f"worker process {p.name} (pid {p.pid}) died with {how}; the cycles it finished are "
                              "stored: run the same command again to continue (with fewer --jobs if memory ran out)")


def _worker(spec: _WorkerSpec, tasks: mp.Queue, events: mp.Queue) -> None:
    """A worker's main loop: train runs from ``tasks`` until a stop sign, report on ``events``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    signal.signal(signal.SIGTERM, _stop)  # the parent stopping us: unwind and exit normally
    _die_with_parent(spec.parent_pid)
    torch.set_num_threads(spec.threads)
    store = None
    try:
        device = resolve_device(spec.opts.device)
        set_deterministic(device)
        loaded = load_splits(spec.config, device, spec.opts.splits)
        store = ResultStore(Path(spec.out) / DB_NAME)
        writer = RunWriter(Path(spec.out), store, spec.config.al)
        env = CycleEnv(spec.config.train, spec.config.al, device, configured_model(spec.config.train, spec.opts.model))
        while (key := tasks.get()) is not None:
            if os.getppid() != spec.parent_pid:  # orphaned (where the kernel does not end us): stop
                return
            train_run(key, spec.config, loaded[key.dataset], env, writer, spec.opts.track_td,
                      on_cycle=lambda record: events.put(("cycle", record)))
            events.put(("done", key))
    except _Stopped:
        return
    except BaseException as exc:  # noqa: BLE001 - every failure goes to the parent, which re-raises it
        events.put(("error", _picklable(exc)))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a late terminate() must not interrupt the exit's cleanup
        if store is not None:
            store.close()


class _Stopped(BaseException):
    """SIGTERM (the parent's ``Process.terminate()`` after Ctrl-C or another worker's error).
    The worker unwinds and exits like a finished one, so that the semaphores it made (tqdm's
    lock) are released; killed outright, they are left to the resource tracker, which warns of
    "leaked semaphore objects"."""


def _stop(signum: int, frame: object) -> None:
    """Raise :class:`_Stopped` once. Later SIGTERMs are ignored: raised again while the worker
    unwinds or exits (a worker that took its stop sign is still alive when the parent's
    ``terminate()`` comes), it would break off a semaphore's cleanup between unlinking it and
    telling the resource tracker, which then warns of a leaked semaphore at shutdown."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stopped


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (library errors do), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _die_with_parent(parent_pid: int) -> None:
    """On Linux, have the kernel kill this worker when the parent dies (e.g. ``kill -9`` of
    ``tidal run``), so no orphan keeps training. Elsewhere an orphan stops before its next run."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request above
        os._exit(1)
