"""Methods x seeds x settings, each cycle stored durably, resumable at cycle boundaries."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tidal.comm import LOCAL, Comm
from tidal.config import ExperimentConfig, adapt_train
from tidal.data import DatasetSplits
from tidal.loop import CycleEnv, check_pool_fits, configured_model
from tidal.results import DB_NAME, CycleRecord, ResultStore, RunKey
from tidal.rundir import check_unlocked
from tidal.runs import (BACKENDS, Backend, RunOptions, RunWriter, experiment_runs, load_splits, make_pool,
                        prepare_out, resolve_device, run_one, set_deterministic, train_run)
from tidal.tracking import check_trackers, make_trackers

__all__ = ["BACKENDS", "Backend", "RunKey", "RunSummary", "experiment_runs", "load_splits", "make_pool", "prepare_out",
           "resolve_device", "run_experiment", "run_one", "set_deterministic", "validate_experiment"]


@dataclass
class RunSummary:
    out: Path  # the run directory
    ran_cycles: int  # cycles trained in this call
    skipped_cycles: int  # cycles already stored and skipped
    seconds: float
    rank: int = 0  # under torchrun, this process's rank (rank 0 writes and reports; see tidal.distributed)


def run_experiment(
    config: ExperimentConfig,
    out: str | Path,
    device: str | torch.device = "cpu",
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    splits: dict[str, DatasetSplits] | None = None,
    jobs: int | None = None,
    dataset: object = None,
    model: object = None,
    backend: str | Backend = "local",
    trackers: Sequence[str] = (),
    track_td: bool = False,
) -> RunSummary:
    """Run every (dataset, imbalance, seed, method) of ``config``, storing each cycle in ``out``.

    Cycles already stored are skipped; an interrupted (method, seed) continues from its last
    stored cycle with the same numbers an uninterrupted run gives. Runs go seed by seed
    (:func:`experiment_runs`). ``trackers`` (``["mlflow"]``, ``["tensorboard"]`` or both) also
    log each cycle's numbers there (optional packages).

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
    threads (``OMP_NUM_THREADS``), whatever the order the runs finish in. With ``device``
    ``cuda`` every worker trains on that one GPU (each with its own CUDA context).

    ``backend="ray"`` sends each run as a Ray task (:mod:`tidal.ray_backend`, an optional
    extra: ``pip install -e '.[ray]'``) to a local Ray of ``jobs`` CPUs (default: all) started
    and stopped here, or with ``Backend("ray", address="HOST:PORT")`` to that cluster; each
    task trains with one torch thread, and this process alone writes ``out``. With CUDA, ``jobs`` runs
    share each GPU.

    ``track_td`` (the paper's Figure 7) also stores, for every cycle of a method whose
    objective predicts TD, one ``td_tracking`` row per epoch: the test-set means of
    KL(p̄(T) || p̃_m(t)) and KL(p̄(T) || p(t)) (see :class:`tidal.td_tracking.TDTracker`). It
    costs one test-set inference per epoch and keeps two float32 ``[epochs, test, C]`` arrays
    on the CPU while a cycle trains; it changes no accuracy or selection, so it is not part
    of the configuration and may differ between calls on the same directory (cycles already
    stored are not re-tracked).

    Under ``torchrun --nproc-per-node N`` (``WORLD_SIZE`` > 1 in the environment) every
    process calls this with the same arguments and the N ranks train each run together
    (:mod:`tidal.distributed`; ``Backend(dist="gloo")`` or ``"nccl"``, default nccl on
    CUDA, gloo on the CPU); rank 0 alone takes the lock, writes the store and logs.

    Raises ``ValueError`` / ``DatasetError`` / ``RunDirectoryError`` before any training when
    the configuration, the data or the output directory is wrong.
    """
    from tidal.distributed import launched

    if isinstance(out, str) and not out.strip():  # Path("") is the current directory: never meant
        raise ValueError(f"--out {out!r} is empty; pass a directory path (`.` for the current directory)")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs={jobs!r} must be a whole number >= 1 (parallel training runs)")
    where = backend if isinstance(backend, Backend) else Backend(backend)
    if where.name not in BACKENDS:
        raise ValueError(f"backend={where.name!r} must be one of {', '.join(BACKENDS)}")
    if where.address is not None and where.name != "ray":
        raise ValueError(f"address={where.address!r} is the address of a Ray cluster; add --backend ray or drop it")
    launch = launched()
    if launch is not None and where.name != "local":
        raise ValueError(f"backend={where.name!r} cannot run under torchrun (WORLD_SIZE={launch.world_size}): the "
                         "ranks already train each run together; start tidal run without torchrun to use Ray")
    if where.name == "ray":
        from tidal.ray_backend import check_address, check_ray_device, require_ray

        require_ray()  # one line with the install command, before anything is loaded
        check_ray_device(device)
        if where.address is not None:
            check_address(where.address)
        dev = torch.device("cpu")  # this process only checks and writes; each task resolves its own device
    else:
        jobs = jobs or 1
        dev = resolve_device(device)
    if launch is not None:
        launch.check(config.train.batch_size, config.al.initial, jobs)
    if where.name == "local" and jobs > 1 and model is not None and not isinstance(model, str):
        _check_picklable(model)
    config, splits = _with_user_objects(config, splits, dataset, model)
    validate_experiment(config, datasets=tuple(splits or ()), model=model)
    check_trackers(trackers)
    comm: Comm = LOCAL
    if launch is not None:  # the one place ranks are started
        from tidal.distributed import rank_device, start

        dev, dist = rank_device(launch, dev, where.dist)
        comm = start(launch, dev, dist)
    opts = RunOptions(dev, progress and comm.is_main, log, splits, tuple(trackers), track_td, jobs, model, where,
                      device)
    try:
        return _run_experiment(config, Path(out), comm, opts)
    finally:
        comm.close()


def _run_experiment(config: ExperimentConfig, out: Path, comm: Comm, opts: RunOptions) -> RunSummary:
    """:func:`run_experiment` after its arguments are checked (on every rank under torchrun)."""
    dev, log, al = opts.device, opts.log, config.al
    set_deterministic(dev)

    def check_out() -> None:
        check_unlocked(out)  # a second run on the same directory is refused before it loads anything
        if (out / DB_NAME).is_file():
            ResultStore.check(out / DB_NAME)  # refuses another program's database, changing nothing

    comm.from_main(check_out)
    # Check everything that can be checked before the first epoch (the main process loads first: it may download).
    loaded = comm.main_first(lambda: load_splits(config, dev, opts.splits))
    for name in config.datasets:
        for ir in config.imbalances:
            for seed in config.seeds:
                pool = make_pool(loaded[name].train, ir, config.data.pool_limit, seed)
                check_pool_fits(al, len(pool), f"the {name} pool at imbalance {ir:g}")
    for line in check_models(config, loaded, opts.model):  # once per run: what TiDAL reads from a model of yours
        if comm.is_main:
            log(line)
    for name in config.datasets:  # say when the training settings are fitted to the data (loop._cycle applies them)
        _, notes = adapt_train(config.train, al.initial, tuple(loaded[name].train.input_shape),
                               min_batch=2 * comm.world_size)
        if notes and comm.is_main:
            log(f"note: {name}: the first cycle trains with {'; '.join(notes)}; re-checked every cycle "
                "(README, \"Presets\")")

    def open_out() -> tuple[RunWriter, list]:
        writer = RunWriter.open(out, al)  # closed in the `finally` below (the lock: by the OS if this process dies)
        try:
            return writer, make_trackers(out, opts.trackers)
        except BaseException:
            writer.close()
            raise

    writer, trackers = comm.from_main(open_out, share=False) or (None, [])
    start, ran = time.perf_counter(), 0
    try:
        runs = experiment_runs(config)

        def stored_cycles() -> dict[RunKey, int]:
            writer.store.bind(config)
            writer.store.set_class_names({name: loaded[name].class_names for name in config.datasets})
            counts = writer.store.cycle_counts()
            return {key: counts.get(key, 0) for key in runs}

        stored = comm.from_main(stored_cycles)
        skipped = sum(min(n, al.cycles) for n in stored.values())
        todo = [key for key in runs if stored[key] < al.cycles]
        bar = tqdm(total=len(runs) * al.cycles, initial=skipped, desc="cycles", unit="cycle",
                   disable=not opts.progress)

        def on_cycle(record: CycleRecord) -> None:
            nonlocal ran
            for tracker in trackers:
                tracker.log_cycle(record)
            ran += 1
            bar.update(1)
            if not opts.progress:
                log(f"{record.dataset} IR={record.imbalance:g} {record.method} seed={record.seed} cycle "
                    f"{record.cycle + 1}/{al.cycles}: {record.n_labeled} labeled, "
                    f"accuracy {100 * record.accuracy:.2f}%")

        if opts.backend.name == "ray":
            if todo:
                from tidal.ray_backend import run_in_ray

                bar.set_postfix_str("Ray tasks")
                run_in_ray(todo, config, writer, opts, on_cycle)
        elif opts.jobs == 1:
            env = CycleEnv(config.train, al, dev, configured_model(config.train, opts.model), comm,
                           progress=opts.progress)
            for key in todo:
                bar.set_postfix_str(f"{key.dataset} IR={key.imbalance:g} {key.method} seed={key.seed}")
                train_run(key, config, loaded[key.dataset], env, writer, opts.track_td, on_cycle)
        elif todo:
            from tidal.workers import run_in_workers

            bar.set_postfix_str(f"{opts.jobs} jobs")
            run_in_workers(todo, config, out, opts, max(1, torch.get_num_threads() // opts.jobs), on_cycle)
        bar.close()
    finally:
        for tracker in trackers:
            tracker.close()
        if writer is not None:
            writer.close()
    return RunSummary(out, ran, skipped, time.perf_counter() - start, comm.rank)


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


def check_models(config: ExperimentConfig, loaded: dict[str, DatasetSplits], model: object = None) -> list[str]:
    """Build each dataset's model once and refuse, before any training, a method that needs what
    the model cannot give (multi-scale features for TiDAL's and Learning Loss's modules, an
    embedding for Core-Set, BADGE and CAL): one ``ValueError`` naming the method and the fix.
    A method that needs neither (random, entropy, ...) runs on any classifier.

    Returns, for a model of yours (wrapped in :class:`tidal.models.HookedModel`), one line per
    dataset saying its input shape and the layers the hooks read; nothing for the built-ins."""
    from tidal.models.factory import describe_layers, model_capabilities
    from tidal.strategies import create_strategy, strategy_class

    factory = configured_model(config.train, model)
    lines = []
    for name in config.datasets:
        split = loaded[name].train
        with torch.random.fork_rng(devices=[]):
            built = factory(split.num_classes, split.input_shape, 0.0)
        have = model_capabilities(built)
        layers = describe_layers(built)
        if layers is not None:
            lines.append(f"{name}: model {config.train.model} ({type(built.module).__name__}) on inputs "
                         f"{tuple(split.input_shape)}, {split.num_classes} classes; hooked {layers}")
        why = getattr(built, "unavailable", {})
        for method in config.methods:
            cls = strategy_class(method)
            wanted = cls.model_needs | ({"embedding"} if cls.needs & {"embedding", "labeled_embedding"} else set())
            missing = sorted(wanted - have)
            if "embedding" in why and create_strategy(method, config.strategy).dropout > 0:
                missing.append("classifier (an nn.Linear to put MC dropout before)")  # BALD
            if missing:
                found = "; ".join(why[m] for m in missing if m in why)
                raise ValueError(f"method {method!r} needs the model's {' and '.join(missing)}, which model "
                                 f"{config.train.model!r} does not give on {name}" + (f" ({found})" if found else "")
                                 + "; name the layers with --feature-layers NAME ... / --embedding-layer NAME (in "
                                 "Python: TrainConfig(feature_layers=..., embedding_layer=...)) or drop the method")
    return lines
