"""One run of an experiment: a (dataset, imbalance, seed, method) trained cycle by cycle into
the run directory's store, resumable at every cycle boundary.

:func:`run_one` is the one body every way of running executes: the serial loop of
:func:`tidal.experiment.run_experiment` and each ``--jobs`` worker process
(:mod:`tidal.workers`). This module imports neither of them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from tidal.config import ExperimentConfig
from tidal.data import DatasetSplits, Split, load_source, longtail_indices
from tidal.errors import RunDirectoryError
from tidal.io import atomic_path
from tidal.loop import active_learning, configured_model, derive_seed
from tidal.results import ANALYSIS_DIR, DB_NAME, CycleRecord, ResultStore
from tidal.rundir import is_tidal_leftover
from tidal.strategies import create_strategy
from tidal.td_tracking import TDTrackerFactory

if TYPE_CHECKING:
    from tidal.distributed import Ranks

__all__ = ["RunKey", "cpu_platform", "experiment_runs", "load_splits", "make_pool", "platform_difference",
           "prepare_out", "resolve_device", "run_one", "set_deterministic"]

_POOL_STREAM = 2_000_003  # stream id for the pool draw (long-tail sampling and slicing)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other strings are checked."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device; use cpu, cuda, cuda:1 or auto") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} asked for CUDA but torch sees no GPU; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: torch sees {torch.cuda.device_count()} GPU(s), numbered from 0; "
                             "use --device cuda:0 or auto")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device={device!r}: torch sees no Apple MPS device here; use --device cpu or auto")
    elif dev.type != "cpu":  # meta, xpu, ...: no device this package trains on
        raise ValueError(f"device={device!r} is not supported; use cpu, cuda, cuda:N or auto")
    return dev


def make_pool(train: Split, imbalance: float, pool_limit: int | None, seed: int) -> torch.Tensor:
    """Absolute indices of the training samples that make up the pool of one (setting, seed).

    Long-tailed subsampling at ``imbalance`` (1 = every sample), then, if ``pool_limit`` is
    set, a random slice of that size. Seeded by ``seed``, so every method of a trial sees
    the same pool.
    """
    g = torch.Generator().manual_seed(derive_seed(seed, _POOL_STREAM))
    idx = longtail_indices(train.labels, imbalance, g, train.num_classes)
    if pool_limit is not None and pool_limit < len(idx):
        idx = torch.sort(idx[torch.randperm(len(idx), generator=g)[:pool_limit]]).values
    return idx


def _checkpoint_path(out: Path, dataset: str, ir: float, method: str, seed: int, cycle: int) -> Path:
    return out / "checkpoints" / f"{dataset}-ir{ir:g}-{method}-seed{seed}-cycle{cycle}.pt"


def _save_checkpoint(out: Path, dataset: str, ir: float, method: str, seed: int, cycle: int,
                     model: dict[str, torch.Tensor], objective: dict[str, torch.Tensor] | None) -> None:
    """``{"model": backbone weights, "objective": the objective's carried module or None}`` after
    ``cycle`` (``--retrain continue`` only), written before the cycle's row is committed; the
    previous cycle's file is removed after the commit."""
    path = _checkpoint_path(out, dataset, ir, method, seed, cycle)
    path.parent.mkdir(exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"model": model, "objective": objective}, tmp)


def _is_weights(state: object) -> bool:
    return isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in state.items())


def _load_checkpoint(out: Path, dataset: str, ir: float, method: str, seed: int,
                     cycle: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``(backbone weights, carried objective weights or None)`` after ``cycle``.

    Also reads the older backbone-only files (a bare state dict), whose objective starts afresh.
    A missing, unreadable or foreign file raises ``RunDirectoryError`` (one line; the file is
    only ever read with ``weights_only=True``).
    """
    path = _checkpoint_path(out, dataset, ir, method, seed, cycle)
    what = (f"cannot resume {method} seed {seed} with --retrain continue: its checkpoint after cycle {cycle + 1} "
            f"({path})")
    if not path.is_file():
        raise RunDirectoryError(f"{what} is missing; use a new --out directory")
    fix = "delete it and this run's stored cycles to retrain them, or use a new --out directory"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle means a corrupt or foreign file
        # Not the exception's text: torch's suggests loading with weights_only=False, i.e. running the file's code.
        raise RunDirectoryError(f"{what} is corrupt or not a tidal checkpoint ({type(exc).__name__}); {fix}") from None
    if isinstance(state, dict) and set(state) == {"model", "objective"}:
        model, objective = state["model"], state["objective"]
    else:  # the backbone-only format written before the objective was checkpointed
        model, objective = state, None
    if not _is_weights(model) or not (objective is None or _is_weights(objective)):
        raise RunDirectoryError(f"{what} does not hold tidal's weights; {fix}")
    return model, objective


def prepare_out(out: Path) -> None:
    """Create the run directory ``out``, or accept it when it is empty or already a tidal run
    directory: one that holds tidal's ``results.sqlite`` or ``analysis/*.npz`` (``tidal
    analyze-scores`` may use a directory alone). Any other non-empty directory is refused, and so
    is a ``results.sqlite`` tidal did not make (:meth:`ResultStore.check`)."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"--out {out} is a file; pass a directory path")
    db = out / DB_NAME
    if db.exists():
        ResultStore.check(db)  # a file of that name is no pass: another program's is refused
    is_run = (db.is_file() and db.stat().st_size > 0) or any((out / ANALYSIS_DIR).glob("*.npz"))
    # tidal's lock and temporary files, and a 0-byte results.sqlite (no database yet), leave a directory empty
    if out.is_dir() and not is_run and not all(is_tidal_leftover(p.name) or p == db for p in out.iterdir()):
        raise RunDirectoryError(f"--out {out} exists and is not a tidal run directory; pass a new or empty directory")
    out.mkdir(parents=True, exist_ok=True)


RunKey = tuple[str, float, int, str]  # one run of an experiment: (dataset, imbalance, seed, method)


def experiment_runs(config: ExperimentConfig) -> list[RunKey]:
    """Every run of ``config``, seed by seed (then dataset, imbalance, method), so that an
    experiment stopped part-way holds whole seeds of every setting and method."""
    return [(n, float(ir), s, m) for s in config.seeds for n in config.datasets for ir in config.imbalances
            for m in config.methods]


def load_splits(config: ExperimentConfig, device: torch.device,
                splits: dict[str, DatasetSplits] | None = None) -> dict[str, DatasetSplits]:
    """The datasets of ``config`` by name, on ``device``, the test split cut to ``data.test_limit``.
    ``splits`` may pass preloaded datasets by name."""
    loaded = {}
    for name in config.datasets:
        d = config.data
        s = (splits or {}).get(name) or load_source(name, d.data_dir, d.download, d.image_size, d.workers)
        test = s.test
        if config.data.test_limit is not None:
            test = test.subset(torch.arange(min(config.data.test_limit, len(test))))
        loaded[name] = DatasetSplits(s.name, s.train.to(device), test.to(device), s.class_names)
    return loaded


def set_deterministic(device: torch.device) -> None:
    """Same seed, same numbers: on CUDA, ask for deterministic kernels (CPU kernels already are)."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def cpu_platform() -> dict[str, str]:
    """What the floating-point numbers of a CPU run depend on besides the code, the seed and the thread
    count: the CPU model, the instruction set torch's CPU kernels dispatch to, torch's version and the
    architecture. Runs that agree on these (and on the threads) give bit-identical numbers; another CPU
    sums in another order and changes them (README, "Measured")."""
    import platform

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:  # not Linux
        pass
    return {"cpu": model or platform.processor() or "unknown", "isa": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "machine": platform.machine()}


def platform_difference(recorded: dict[str, str] | None, here: dict[str, str]) -> str | None:
    """None when ``here`` is the ``recorded`` platform (:func:`cpu_platform`), else what differs, in words."""
    if recorded is None:
        return (f"the stored numbers' CPU was not recorded; this machine: {here['cpu']} ({here['isa']}, "
                f"torch {here['torch']})")
    diffs = [f"{key} {recorded.get(key)!r} there, {here.get(key)!r} here" for key in sorted(here)
             if recorded.get(key) != here.get(key)]
    return "; ".join(diffs) or None


def run_one(
    key: RunKey,
    config: ExperimentConfig,
    out: Path,
    split: DatasetSplits,
    device: torch.device,
    store: ResultStore,
    track_td: bool = False,
    progress: bool = False,
    on_cycle: Callable[[CycleRecord], None] | None = None,
    model: object = None,
    ranks: "Ranks | None" = None,
) -> None:
    """Train the cycles of one run that ``store`` lacks, committing each as it finishes.

    ``split`` is the run's dataset on ``device``; ``model`` the user's model (see
    :func:`tidal.loop.configured_model`; None: ``config.train.model``); ``on_cycle(record)`` is called after each
    cycle's commit. A run with cycles stored continues after the last one (its labeled set,
    and with ``retrain="continue"`` its checkpointed model and objective module), with the
    numbers an uninterrupted run gives.

    Under torchrun (``ranks``) every rank calls it for the same runs; rank 0 reads the store
    and the checkpoint and sends the resume state, and alone writes, tracks TD and calls
    ``on_cycle`` (the other ranks pass ``store=None``).
    """
    name, ir, seed, method = key
    al = config.al

    def resume() -> tuple[int, torch.Tensor | None, dict | None, dict | None]:
        """``(stored cycles, labeled set, backbone weights, objective weights)`` to go on from."""
        done = store.records(dataset=name, imbalance=ir, method=method, seed=seed)
        labeled, model_state, objective_state = None, None, None
        if done and len(done) < al.cycles:  # resume after the last stored cycle
            last = done[-1]
            labeled = torch.tensor(sorted(last.labeled + last.selected), dtype=torch.int64)
            if al.retrain == "continue":
                model_state, objective_state = _load_checkpoint(out, name, ir, method, seed, last.cycle)
        return len(done), labeled, model_state, objective_state

    n_done, labeled, model_state, objective_state = resume() if ranks is None else ranks.from_main(resume)
    if n_done >= al.cycles:
        return
    main = ranks is None or ranks.is_main
    hooks = None
    if track_td and main:
        hooks = TDTrackerFactory(split.test, config.train.eval_batch_size)
    pool = make_pool(split.train, ir, config.data.pool_limit, seed)
    for r in active_learning(split.train, split.test, pool, create_strategy(method, config.strategy), al,
                             config.train, seed, device, start_cycle=n_done, labeled=labeled,
                             progress=progress and main, epoch_hooks=hooks, model_state=model_state,
                             objective_state=objective_state, model_factory=configured_model(config.train, model),
                             ranks=ranks):
        if not main:
            continue
        if r.model_state is not None:  # retrain="continue": the next cycle starts from these weights
            _save_checkpoint(out, name, ir, method, seed, r.cycle, r.model_state, r.objective_state)
        record = CycleRecord(
            name, ir, method, seed, r.cycle, len(r.labeled), r.accuracy, r.class_counts,
            r.labeled.tolist(), r.selected.tolist(), r.scores.tolist(), r.train_seconds, r.score_seconds,
            r.eval_seconds, r.final_loss, time.time())
        store.add_cycle(record, td_tracking=hooks.take(r.cycle) if hooks is not None else ())
        if r.model_state is not None:
            _checkpoint_path(out, name, ir, method, seed, r.cycle - 1).unlink(missing_ok=True)
        if on_cycle is not None:
            on_cycle(record)
