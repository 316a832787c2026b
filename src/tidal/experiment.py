"""Methods x seeds x settings, each cycle stored durably, resumable at cycle boundaries."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from tidal.config import ExperimentConfig
from tidal.data import DatasetSplits, Split, load_source, longtail_indices
from tidal.errors import RunDirectoryError
from tidal.io import atomic_path
from tidal.loop import active_learning, check_pool_fits, configured_model, derive_seed
from tidal.results import ANALYSIS_DIR, DB_NAME, CycleRecord, ResultStore
from tidal.rundir import LOCK_NAME, RunDirLock, check_unlocked, remove_stale_temp_files
from tidal.strategies import create_strategy
from tidal.tracking import check_trackers, make_trackers

__all__ = ["RunKey", "RunSummary", "experiment_runs", "load_splits", "make_pool", "prepare_out", "resolve_device",
           "run_experiment", "run_one", "set_deterministic"]

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


@dataclass
class RunSummary:
    out: Path  # the run directory
    ran_cycles: int  # cycles trained in this call
    skipped_cycles: int  # cycles already stored and skipped
    seconds: float


def prepare_out(out: Path) -> None:
    """Create the run directory ``out``, or accept it when it is empty or already a tidal run
    directory: one that holds ``results.sqlite`` or ``analysis/*.npz`` (``tidal analyze-scores``
    may use a directory alone). Any other non-empty directory is refused."""
    if out.exists() and not out.is_dir():
        raise RunDirectoryError(f"--out {out} is a file; pass a directory path")
    is_run = (out / DB_NAME).exists() or any((out / ANALYSIS_DIR).glob("*.npz"))
    if out.is_dir() and not is_run and any(p.name != LOCK_NAME for p in out.iterdir()):
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
) -> None:
    """Train the cycles of one run that ``store`` lacks, committing each as it finishes.

    ``split`` is the run's dataset on ``device``; ``model`` the user's model (see
    :func:`tidal.loop.configured_model`; None: ``config.train.model``); ``on_cycle(record)`` is called after each
    cycle's commit. A run with cycles stored continues after the last one (its labeled set,
    and with ``retrain="continue"`` its checkpointed model and objective module), with the
    numbers an uninterrupted run gives.
    """
    name, ir, seed, method = key
    al = config.al
    done = store.records(dataset=name, imbalance=ir, method=method, seed=seed)
    if len(done) >= al.cycles:
        return
    labeled, model_state, objective_state = None, None, None
    if done:  # resume after the last stored cycle
        last = done[-1]
        labeled = torch.tensor(sorted(last.labeled + last.selected), dtype=torch.int64)
        if al.retrain == "continue":
            model_state, objective_state = _load_checkpoint(out, name, ir, method, seed, last.cycle)
    hooks = None
    if track_td:
        from tidal.analysis import TDTrackerFactory  # imported here: tidal.analysis imports this module

        hooks = TDTrackerFactory(split.test, config.train.eval_batch_size)
    pool = make_pool(split.train, ir, config.data.pool_limit, seed)
    for r in active_learning(split.train, split.test, pool, create_strategy(method, config.strategy), al,
                             config.train, seed, device, start_cycle=len(done), labeled=labeled, progress=progress,
                             epoch_hooks=hooks, model_state=model_state, objective_state=objective_state,
                             model_factory=configured_model(config.train, model)):
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


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    device: str | torch.device = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = print,
    splits: dict[str, DatasetSplits] | None = None,
    mlflow: bool = False,
    tensorboard: bool = False,
    track_td: bool = False,
    jobs: int = 1,
    dataset: object = None,
    model: object = None,
) -> RunSummary:
    """Run every (dataset, imbalance, seed, method) of ``config``, storing each cycle in ``out``.

    Cycles already stored are skipped; an interrupted (method, seed) continues from its last
    stored cycle with the same numbers an uninterrupted run gives. Runs go seed by seed
    (:func:`experiment_runs`). ``mlflow`` / ``tensorboard`` also log each cycle's numbers there
    (optional packages).

    Your data and your model (the simulation needs the true labels of the pool):

    * ``dataset``: a :class:`tidal.data.DatasetSplits` (e.g. from :func:`tidal.data.from_arrays`
      or :func:`tidal.data.from_torch_datasets`) or a source spec string (``"cifar10"``,
      ``"folder:PATH"``, ``"npz:PATH"``); it replaces ``config.datasets``. ``splits`` may also
      pass preloaded datasets by name.
    * ``model``: a spec string (``"resnet18"``, ``"resnet50"``, ``"mlp"``,
      ``"package.module:function"``), a callable ``f(num_classes) -> nn.Module`` or an
      ``nn.Module`` (re-initialised every cycle); it replaces ``config.train.model``. The
      layers TiDAL reads are found by forward hooks (:class:`tidal.models.HookedModel`). With
      ``jobs > 1`` the callable must be importable (a module-level function).

    ``jobs > 1`` trains that many runs at once in worker processes (:mod:`tidal.workers`),
    each with ``max(1, torch.get_num_threads() // jobs)`` torch threads. A run's numbers
    depend on its seed and its thread count only, so they equal a serial run's with that many
    threads (``OMP_NUM_THREADS``), whatever the order the runs finish in.

    ``track_td`` (the paper's Figure 7) also stores, for every cycle of a method whose
    objective predicts TD, one ``td_tracking`` row per epoch: the test-set means of
    KL(p̄(T) || p̃_m(t)) and KL(p̄(T) || p(t)) (see :class:`tidal.analysis.TDTracker`). It
    costs one test-set inference per epoch and keeps two float32 ``[epochs, test, C]`` arrays
    on the CPU while a cycle trains; it changes no accuracy or selection, so it is not part
    of the configuration and may differ between calls on the same directory (cycles already
    stored are not re-tracked).

    Raises ``ValueError`` / ``DatasetError`` / ``RunDirectoryError`` before any training when
    the configuration, the data or the output directory is wrong.
    """
    config, splits = _with_user_objects(config, splits, dataset, model)
    config.validate(datasets=tuple(splits or ()))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a whole number >= 1 (parallel training runs)")
    if jobs > 1 and model is not None and not isinstance(model, str):
        _check_picklable(model)
    check_trackers(mlflow=mlflow, tensorboard=tensorboard)
    dev = resolve_device(device)
    set_deterministic(dev)
    out = Path(out)
    check_unlocked(out)  # a second run on the same directory is refused before it loads anything
    if (out / DB_NAME).is_file():
        ResultStore.check(out / DB_NAME)  # refuses another program's database, changing nothing
    # Check everything that can be checked before the first epoch.
    loaded = load_splits(config, dev, splits)
    al = config.al
    for name in config.datasets:
        for ir in config.imbalances:
            for seed in config.seeds:
                pool = make_pool(loaded[name].train, ir, config.data.pool_limit, seed)
                check_pool_fits(al, len(pool), f"the {name} pool at imbalance {ir:g}")
    check_models(config, loaded, model)
    prepare_out(out)
    lock = RunDirLock(out)  # released in the `finally` below, or by the OS if this process dies
    remove_stale_temp_files(out)
    trackers = make_trackers(out, mlflow=mlflow, tensorboard=tensorboard)
    store = ResultStore(out / DB_NAME)
    start, ran = time.perf_counter(), 0
    try:
        store.bind(config)
        store.set_class_names({name: loaded[name].class_names for name in config.datasets})
        runs = experiment_runs(config)
        counts = store.cycle_counts()
        stored = {key: counts.get((key[0], key[1], key[3], key[2]), 0) for key in runs}
        skipped = sum(min(n, al.cycles) for n in stored.values())
        todo = [key for key in runs if stored[key] < al.cycles]
        bar = tqdm(total=len(runs) * al.cycles, initial=skipped, desc="cycles", unit="cycle",
                   disable=not progress)

        def on_cycle(record: CycleRecord) -> None:
            nonlocal ran
            for tracker in trackers:
                tracker.log_cycle(record)
            ran += 1
            bar.update(1)
            if not progress:
                log(f"{record.dataset} IR={record.imbalance:g} {record.method} seed={record.seed} cycle "
                    f"{record.cycle + 1}/{al.cycles}: {record.n_labeled} labeled, "
                    f"accuracy {100 * record.accuracy:.2f}%")

        if jobs == 1:
            for key in todo:
                bar.set_postfix_str(f"{key[0]} IR={key[1]:g} {key[3]} seed={key[2]}")
                run_one(key, config, out, loaded[key[0]], dev, store, track_td, progress, on_cycle, model)
        elif todo:
            from tidal.workers import run_in_workers

            bar.set_postfix_str(f"{jobs} jobs")
            run_in_workers(todo, config, out, dev, jobs=jobs, threads=max(1, torch.get_num_threads() // jobs),
                           splits=splits, track_td=track_td, on_cycle=on_cycle, model=model)
        bar.close()
    finally:
        store.close()
        for tracker in trackers:
            tracker.close()
        lock.release()
    return RunSummary(out, ran, skipped, time.perf_counter() - start)


def _with_user_objects(config: ExperimentConfig, splits: dict[str, DatasetSplits] | None, dataset: object,
                       model: object) -> tuple[ExperimentConfig, dict[str, DatasetSplits] | None]:
    """``config`` with ``datasets`` / ``train.model`` replaced by what the caller passed in Python."""
    import dataclasses

    if dataset is not None:
        if isinstance(dataset, str):
            config = dataclasses.replace(config, datasets=(dataset,))
        elif isinstance(dataset, DatasetSplits):
            config = dataclasses.replace(config, datasets=(dataset.name,))
            splits = {**(splits or {}), dataset.name: dataset}
        else:
            raise ValueError(f"dataset={type(dataset).__name__} is not a dataset; pass a DatasetSplits (e.g. "
                             "tidal.data.from_arrays(x_train, y_train, x_test, y_test)) or a source name such as "
                             "'cifar10' or 'folder:PATH'")
    if model is not None:
        from tidal.models.factory import model_name

        config = dataclasses.replace(config, train=dataclasses.replace(config.train, model=model_name(model)))
    return config, splits


def _check_picklable(model: object) -> None:
    import pickle

    try:
        pickle.dumps(model)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means it cannot reach a worker
        raise ValueError(f"model={model!r} cannot be sent to --jobs worker processes ({exc}); pass a module-level "
                         "function (or its 'package.module:function' name) instead of a lambda or a local "
                         "function, or use jobs=1") from None


def check_models(config: ExperimentConfig, loaded: dict[str, DatasetSplits], model: object = None) -> None:
    """Build each dataset's model once and refuse, before any training, a method that needs what
    the model cannot give (multi-scale features for TiDAL's and Learning Loss's modules, an
    embedding for Core-Set, BADGE and CAL): one ``ValueError`` naming the method and the fix."""
    from tidal.models.factory import model_capabilities
    from tidal.strategies import strategy_class

    factory = configured_model(config.train, model)
    for name in config.datasets:
        split = loaded[name].train
        with torch.random.fork_rng(devices=[]):
            built = factory(split.num_classes, split.input_shape, 0.0)
        have = model_capabilities(built)
        for method in config.methods:
            cls = strategy_class(method)
            wanted = cls.model_needs | ({"embedding"} if cls.needs & {"embedding", "labeled_embedding"} else set())
            missing = sorted(wanted - have)
            if missing:
                raise ValueError(f"method {method!r} needs the model's {' and '.join(missing)}, which model "
                                 f"{config.train.model!r} does not give on {name}; name the layers with "
                                 "HookedModel(feature_layers=..., embedding_layer=...) or drop the method")
