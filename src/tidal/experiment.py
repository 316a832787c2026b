"""Methods x seeds x settings, each cycle stored durably, resumable at cycle boundaries."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from tidal.config import ExperimentConfig
from tidal.data import DatasetSplits
from tidal.loop import check_pool_fits, configured_model
from tidal.results import DB_NAME, CycleRecord, ResultStore
from tidal.rundir import RunDirLock, check_unlocked, remove_stale_temp_files
from tidal.runs import (RunKey, experiment_runs, load_splits, make_pool, prepare_out, resolve_device, run_one,
                        set_deterministic)
from tidal.tracking import check_trackers, make_trackers

__all__ = ["RunKey", "RunSummary", "experiment_runs", "load_splits", "make_pool", "prepare_out", "resolve_device",
           "run_experiment", "run_one", "set_deterministic", "validate_experiment"]


@dataclass
class RunSummary:
    out: Path  # the run directory
    ran_cycles: int  # cycles trained in this call
    skipped_cycles: int  # cycles already stored and skipped
    seconds: float


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
    KL(p̄(T) || p̃_m(t)) and KL(p̄(T) || p(t)) (see :class:`tidal.td_tracking.TDTracker`). It
    costs one test-set inference per epoch and keeps two float32 ``[epochs, test, C]`` arrays
    on the CPU while a cycle trains; it changes no accuracy or selection, so it is not part
    of the configuration and may differ between calls on the same directory (cycles already
    stored are not re-tracked).

    Raises ``ValueError`` / ``DatasetError`` / ``RunDirectoryError`` before any training when
    the configuration, the data or the output directory is wrong.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a whole number >= 1 (parallel training runs)")
    if jobs > 1 and model is not None and not isinstance(model, str):
        _check_picklable(model)
    config, splits = _with_user_objects(config, splits, dataset, model)
    validate_experiment(config, datasets=tuple(splits or ()), model=model)
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


def validate_experiment(config: ExperimentConfig, datasets: tuple[str, ...] = (),
                        model: object = None) -> ExperimentConfig:
    """Everything that can be checked without data: the fields (:meth:`ExperimentConfig.validate`),
    then the names against their registries: each dataset is a source spec (or one of
    ``datasets``, passed in from Python), each method a registered strategy whose options make
    sense, the model a known spec (or ``model``, the object passed in from Python). Raises
    ``ValueError`` quoting the bad value; returns ``config``."""
    from tidal.data.sources import check_source_spec
    from tidal.embedstore import StoreSpec
    from tidal.models.factory import check_model_spec
    from tidal.strategies import strategy_class

    config.validate()
    for name in config.datasets:
        if name not in datasets:
            check_source_spec(name)
    for name in config.methods:
        strategy_class(name).check_config(config.strategy)  # unknown names raise with the valid ones
    check_model_spec(config.train.model if model is None else model)
    StoreSpec(config.al.embedding_store, config.al.embedding_dtype, config.al.store_dir).check_directory()
    return config


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
