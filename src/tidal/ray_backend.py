"""The runs of an experiment as Ray tasks (``tidal run --backend ray [--address HOST:PORT]``).

Each (dataset, imbalance, seed, method) run is one Ray task. The task trains the run with
:func:`tidal.runs.run_one`, the body the serial loop and the ``--jobs`` workers execute, into
a scratch store in a temporary folder of the node it runs on, and returns the run's new cycles
to the driver: their records, their Figure 7 rows (``--track-td``) and, with
``retrain="continue"``, the last checkpoint. The driver alone writes the run directory, so
resume, the refusal of a different experiment and the report work as for a serial run. A
run that was interrupted part-way is sent with its stored cycles (and checkpoint), and its
task continues after the last one.

Where a run's numbers come from: its seed and its thread count only (:mod:`tidal.workers`).
A task trains with ``threads`` torch threads (default 1) and asks Ray for as many CPUs, so the
stored numbers equal a serial run's with ``OMP_NUM_THREADS=1``, whichever node trains a run.

Failures: a task whose worker process dies (killed, out of memory, a node lost) is run again
from its start, up to ``max_retries`` times; it is the same computation, so the result is
the same. An error raised by the training itself (e.g. ``TrainingDivergedError``) is not
retried; it stops the experiment and is raised in the driver as it was raised in the task.
The cycles of runs that finished are stored; those of runs in flight are not (a run reaches
the driver whole): re-running the same command continues from the stored cycles.

GPUs: with ``device`` ``cuda`` every task asks Ray for ``1 / runs_per_gpu`` of a GPU, and Ray
makes the one it assigns the task's ``cuda`` device (``CUDA_VISIBLE_DEVICES``); with
``auto`` the tasks use CUDA when the cluster has GPUs.

Ray is an optional extra (``pip install -e '.[ray]'``): this module imports it only when
a function here is called.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from tidal.config import ExperimentConfig
from tidal.data import DatasetSplits
from tidal.errors import RunDirectoryError, TidalError
from tidal.io import atomic_path
from tidal.results import DB_NAME, CycleRecord, EpochKL, ResultStore
from tidal.runs import RunKey, load_splits, resolve_device, run_one, set_deterministic
from tidal.runs import _checkpoint_path as checkpoint_path  # the one naming of checkpoint files
from tidal.workers import WorkerError

__all__ = ["INSTALL", "MAX_RETRIES", "RayNotInstalledError", "check_address", "check_ray_device", "require_ray",
           "run_in_ray"]

INSTALL = "pip install 'ray[default]>=2.9' (or pip install -e '.[ray]' in the tidal checkout)"  # what errors quote
MAX_RETRIES = 3  # times a run whose worker process died is started again (Ray's max_retries)


class RayNotInstalledError(TidalError, ImportError):
    """``--backend ray`` without Ray installed."""


def require_ray() -> ModuleType:
    """The ``ray`` module, or a one-line :class:`RayNotInstalledError` with the install command."""
    try:
        import ray
    except ImportError as exc:  # not installed, or an install that cannot load
        raise RayNotInstalledError(f"--backend ray needs Ray, which cannot be imported here ({exc}); install it "
                                   f"with: {INSTALL}") from None
    return ray


def check_ray_device(device: str | torch.device) -> str:
    """The device type the tasks train on: ``"cpu"``, ``"cuda"`` or ``"auto"`` (decided by the
    cluster's GPUs). A ``cuda:N`` index is dropped: Ray assigns each task its GPU. Raises
    ``ValueError`` for anything else."""
    text = str(device)
    if text == "auto":
        return "auto"
    try:
        kind = torch.device(text).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"device={text!r} cannot be used with --backend ray; use cpu, cuda or auto")
    return kind


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse, before anything is written, an ``address`` that is not ``HOST:PORT``,
    ``ray://HOST:PORT`` or ``auto``, or whose port does not answer within ``timeout`` seconds
    (``ray.init`` itself would retry for minutes). Raises ``ValueError`` / ``ConnectionError``."""
    if address == "auto":
        return
    m = re.fullmatch(r"(?:ray://)?\[?([^\s\[\]/]+?)\]?:(\d{1,5})", address)
    if m is None:
        raise ValueError(f"address={address!r} must be HOST:PORT (the head node's `ray start --head --port` port, "
                         "e.g. 10.0.0.5:6379), ray://HOST:PORT or auto")
    host, port = m.group(1), int(m.group(2))
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start it there "
                              f"with `ray start --head --port {port}`, or fix --address") from None


def run_in_ray(
    keys: list[RunKey],
    config: ExperimentConfig,
    out: Path,
    store: ResultStore,
    device: str | torch.device = "auto",
    jobs: int | None = None,
    address: str | None = None,
    splits: dict[str, DatasetSplits] | None = None,
    track_td: bool = False,
    on_cycle: Callable[[CycleRecord], None] | None = None,
    model: object = None,
    threads: int = 1,
    max_retries: int = MAX_RETRIES,
    log: Callable[[str], None] = print,
) -> None:
    """Train the runs ``keys`` as Ray tasks and store their cycles in ``store`` (bound to
    ``config``, the database of ``out``); ``on_cycle(record)`` runs after each stored cycle.

    Ray: the one this process is already connected to (``ray.init`` called before, e.g. by a
    test or a notebook), else the cluster at ``address`` (``HOST:PORT``, ``ray://HOST:PORT`` or
    ``auto``), else a local Ray of ``jobs`` CPUs (default: every CPU) started here and shut
    down before returning. ``jobs`` also sets how many runs share one GPU (default 1).

    Raises:
        the first error a task raised (as raised there); :class:`tidal.workers.WorkerError`
        when a run's worker process died more than ``max_retries`` times.
    """
    ray = require_ray()
    kind = check_ray_device(device)
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
        if address is None:
            options["num_cpus"] = jobs or os.cpu_count() or 1
        else:
            options["address"] = address
        log(f"starting a local Ray of {options['num_cpus']} CPUs" if address is None
            else f"connecting to the Ray cluster at {address}")
        ray.init(**options)
    pending: dict[Any, tuple[RunKey, list[CycleRecord]]] = {}
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if kind == "auto":
            kind = "cuda" if gpus > 0 else "cpu"
        if kind == "cuda" and gpus <= 0:
            raise ValueError("device='cuda' but the Ray cluster has no GPU; use --device cpu or add GPU nodes")
        task = ray.remote(_train_run).options(
            num_cpus=threads, num_gpus=1.0 / (jobs or 1) if kind == "cuda" else 0, max_retries=max_retries,
            retry_exceptions=False)
        shared = ray.put(splits) if splits else None  # sent to the object store once, not once per task
        for key in keys:
            name, ir, seed, method = key
            prior = store.records(dataset=name, imbalance=ir, method=method, seed=seed)
            checkpoint = None
            if prior and config.al.retrain == "continue":
                path = checkpoint_path(out, name, ir, method, seed, prior[-1].cycle)
                if not path.is_file():
                    raise RunDirectoryError(f"cannot resume {method} seed {seed} with --retrain continue: its "
                                            f"checkpoint after cycle {prior[-1].cycle + 1} ({path}) is missing; use a "
                                            "new --out directory")
                checkpoint = (path.name, path.read_bytes())
            ref = task.remote(key, config, kind, shared, track_td, model, prior, checkpoint, threads)
            pending[ref] = (key, prior)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                key, prior = pending.pop(ref)
                records, tracking, checkpoints = _result(ray, ref, key, max_retries)
                _store(out, store, key, prior, records, tracking, checkpoints, on_cycle)
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or already gone: nothing to stop
                pass
        if started:
            ray.shutdown()


def _result(ray: ModuleType, ref: Any, key: RunKey, max_retries: int) -> tuple:
    """``ray.get(ref)``; the task's own error re-raised as it was, a lost worker as WorkerError."""
    name, ir, seed, method = key
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from None
        raise WorkerError(f"{name} IR={ir:g} {method} seed={seed} failed in Ray: {str(exc).splitlines()[0]}") from None
    except ray.exceptions.RayError as exc:
        raise WorkerError(f"the Ray worker training {name} IR={ir:g} {method} seed={seed} was lost "
                          f"{max_retries + 1} times ({type(exc).__name__}); the runs that finished are stored: run "
                          "the same command again to continue (with fewer --jobs if memory ran out)") from None


def _store(out: Path, store: ResultStore, key: RunKey, prior: list[CycleRecord], records: list[CycleRecord],
           tracking: dict[int, list[EpochKL]], checkpoints: dict[str, bytes],
           on_cycle: Callable[[CycleRecord], None] | None) -> None:
    """Write one finished run as :func:`tidal.runs.run_one` would have: the last checkpoint
    first, then each cycle in its own transaction, then the checkpoint it continued from goes."""
    for file_name, data in checkpoints.items():
        path = out / "checkpoints" / file_name
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    for record in records:
        store.add_cycle(record, td_tracking=tracking.get(record.cycle, ()))
        if on_cycle is not None:
            on_cycle(record)
    if prior and records:
        name, ir, seed, method = key
        old = checkpoint_path(out, name, ir, method, seed, prior[-1].cycle)
        if old.name not in checkpoints:
            old.unlink(missing_ok=True)


def _train_run(key: RunKey, config: ExperimentConfig, device: str, splits: dict[str, DatasetSplits] | None,
               track_td: bool, model: object, prior: list[CycleRecord], checkpoint: tuple[str, bytes] | None,
               threads: int) -> tuple[list[CycleRecord], dict[int, list[EpochKL]], dict[str, bytes]]:
    """The Ray task: train the cycles of ``key`` after ``prior`` in a scratch run directory.

    Returns ``(new cycle records, {cycle: Figure 7 rows}, {checkpoint file name: bytes})``."""
    torch.set_num_threads(threads)
    dev = resolve_device(device)
    set_deterministic(dev)
    name, ir, seed, method = key
    loaded = load_splits(dataclasses.replace(config, datasets=(name,)), dev, splits)
    with tempfile.TemporaryDirectory(prefix="tidal-ray-") as tmp:
        scratch = Path(tmp)
        with ResultStore(scratch / DB_NAME) as local:
            local.bind(config)
            for record in prior:
                local.add_cycle(record)
            if checkpoint is not None:
                (scratch / "checkpoints").mkdir()
                (scratch / "checkpoints" / checkpoint[0]).write_bytes(checkpoint[1])
            run_one(key, config, scratch, loaded[name], dev, local, track_td, model=model)
            where = dict(dataset=name, imbalance=ir, method=method, seed=seed)
            records = [r for r in local.records(**where) if r.cycle >= len(prior)]
            tracking: dict[int, list[EpochKL]] = {}
            for t in local.td_tracking(**where):
                if t.cycle >= len(prior):
                    tracking.setdefault(t.cycle, []).append(EpochKL(t.epoch, t.kl_module, t.kl_snapshot))
        kept = {p.name: p.read_bytes() for p in (scratch / "checkpoints").glob("*.pt")}
    if checkpoint is not None and records:
        kept.pop(checkpoint[0], None)  # the file it continued from: the driver has it
    return records, tracking, kept
