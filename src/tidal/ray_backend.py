"""The runs of an experiment as Ray tasks (``tidal run --backend ray [--address HOST:PORT]``).

Each (dataset, imbalance, method, seed) run is one Ray task: :func:`tidal.runs.run_one` from the
:class:`~tidal.loop.Resume` the driver's :class:`tidal.runs.RunWriter` read, returning its outputs
(records, Figure 7 rows, the last checkpoint). The driver alone writes them, with the writer a
serial run uses. A task trains with :data:`THREADS` torch threads, so the stored numbers equal a
serial run's with ``OMP_NUM_THREADS=1``, whichever node trains a run (:mod:`tidal.workers`).

Failures: a task whose worker process dies (killed, out of memory, a node lost) is run again
from its start, up to :data:`MAX_RETRIES` times; it is the same computation, so the result is
the same. An error raised by the training itself (e.g. ``TrainingDivergedError``) is not
retried; it stops the experiment and is raised in the driver as it was raised in the task.
The cycles of runs that finished are stored; those of runs in flight are not (a run reaches
the driver whole): re-running the same command continues from the stored cycles.

GPUs: with ``device`` ``cuda`` every task asks Ray for ``1 / jobs`` of a GPU, and Ray
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
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from tidal.config import ExperimentConfig
from tidal.data import DatasetSplits
from tidal.errors import TidalError
from tidal.loop import CycleEnv, Resume, configured_model
from tidal.results import CycleRecord, RunKey
from tidal.runs import CycleOutput, RunOptions, RunWriter, load_splits, resolve_device, run_one, set_deterministic
from tidal.workers import WorkerError

__all__ = ["INSTALL", "MAX_RETRIES", "RayNotInstalledError", "check_address", "check_ray_device",
           "require_ray", "run_in_ray"]

INSTALL = "pip install 'ray[default]>=2.9' (or pip install -e '.[ray]' in the tidal checkout)"  # what errors quote
MAX_RETRIES = 3  # times a run whose worker process died is started again (Ray's max_retries)
THREADS = 1  # torch threads (and Ray CPUs) of a task: a serial run's numbers with OMP_NUM_THREADS=1


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


def run_in_ray(keys: list[RunKey], config: ExperimentConfig, writer: RunWriter, plan: RunOptions,
               on_cycle: Callable[[CycleRecord], None]) -> None:
    """Train the runs ``keys`` as Ray tasks and write their cycles with ``writer`` (its store bound
    to ``config``); ``on_cycle(record)`` runs after each stored cycle.

    Ray: the one this process is already connected to (``ray.init`` called before, e.g. by a
    test or a notebook), else the cluster at ``plan.backend.address``, else a local Ray of
    ``plan.jobs`` CPUs (default: every CPU) started here and shut down before returning.

    Raises:
        the first error a task raised (as raised there); :class:`tidal.workers.WorkerError`
        when a run's worker process died more than ``MAX_RETRIES`` times.
    """
    ray = require_ray()
    kind, log, address = check_ray_device(plan.device_spec), plan.log, plan.backend.address
    started = not ray.is_initialized()
    if started:
        options: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING)
        if address is None:
            options["num_cpus"] = plan.jobs or os.cpu_count() or 1
        else:
            options["address"] = address
        log(f"starting a local Ray of {options['num_cpus']} CPUs" if address is None
            else f"connecting to the Ray cluster at {address}")
        ray.init(**options)
    pending: dict[Any, RunKey] = {}
    try:
        gpus = ray.cluster_resources().get("GPU", 0)
        if kind == "auto":
            kind = "cuda" if gpus > 0 else "cpu"
        if kind == "cuda" and gpus <= 0:
            raise ValueError("device='cuda' but the Ray cluster has no GPU; use --device cpu or add GPU nodes")
        task = ray.remote(_train_run).options(
            num_cpus=THREADS, num_gpus=1.0 / (plan.jobs or 1) if kind == "cuda" else 0,
            max_retries=MAX_RETRIES, retry_exceptions=False)
        shared = ray.put(plan.splits) if plan.splits else None  # sent to the object store once, not once per task
        for key in keys:  # a run interrupted part-way goes on after its stored cycles (and checkpoint)
            pending[task.remote(key, config, kind, shared, plan.model, plan.track_td, writer.resume(key))] = key
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                for output in _result(ray, ref, pending.pop(ref)):
                    writer.write(output)
                    on_cycle(output.record)
    finally:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or already gone: nothing to stop
                pass
        if started:
            ray.shutdown()


def _result(ray: ModuleType, ref: Any, key: RunKey) -> list[CycleOutput]:
    """``ray.get(ref)``; the task's own error re-raised as it was, a lost worker as WorkerError."""
    name, ir, method, seed = key
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception) and not isinstance(cause, ray.exceptions.RayError):
            raise cause from None
        raise WorkerError(f"{name} IR={ir:g} {method} seed={seed} failed in Ray: {str(exc).splitlines()[0]}") from None
    except ray.exceptions.RayError as exc:
        raise WorkerError(f"the Ray worker training {name} IR={ir:g} {method} seed={seed} was lost "
                          f"{MAX_RETRIES + 1} times ({type(exc).__name__}); the runs that finished are stored: run "
                          "the same command again to continue (with fewer --jobs if memory ran out)") from None


def _train_run(key: RunKey, config: ExperimentConfig, device: str, splits: dict[str, DatasetSplits] | None,
               model: object, track_td: bool, resume: Resume) -> list[CycleOutput]:
    """The Ray task: train the cycles of ``key`` after ``resume`` and return their outputs (the
    checkpoint of the last one only: it is the one the driver keeps)."""
    torch.set_num_threads(THREADS)
    dev = resolve_device(device)
    set_deterministic(dev)
    loaded = load_splits(dataclasses.replace(config, datasets=(key.dataset,)), dev, splits)
    env = CycleEnv(config.train, config.al, dev, configured_model(config.train, model))
    outputs = list(run_one(key, config, loaded[key.dataset], env, resume, track_td))
    return [dataclasses.replace(o, checkpoint=None) for o in outputs[:-1]] + outputs[-1:]
