"""One run of an experiment, a (dataset, imbalance, method, seed) trained cycle by cycle and
resumable at every cycle boundary. :func:`run_one` is the body every way of running executes
(serial, ``--jobs`` workers, Ray tasks, torchrun processes): from a :class:`~tidal.loop.Resume` it
yields each cycle's outputs. :class:`RunWriter` is the one writer of a run directory (lock,
store, checkpoints, resume read); :func:`train_run` joins the two."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tidal.config import ALConfig, ExperimentConfig
from tidal.data import DatasetSplits, Split, load_source, longtail_indices
from tidal.errors import RunDirectoryError
from tidal.io import atomic_path
from tidal.loop import CycleEnv, Resume, active_learning, derive_seed
from tidal.results import ANALYSIS_DIR, DB_NAME, CycleRecord, EpochKL, ResultStore, RunKey
from tidal.rundir import RunDirLock, is_tidal_leftover, remove_stale_temp_files
from tidal.strategies import create_strategy
from tidal.td_tracking import TDTrackerFactory

__all__ = ["BACKENDS", "Backend", "CycleOutput", "RunKey", "RunOptions", "RunWriter", "checkpoint_path", "cpu_platform",
           "experiment_runs", "load_splits", "make_pool", "platform_difference", "prepare_out", "resolve_device",
           "run_one", "set_deterministic", "train_run"]

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


def checkpoint_path(out: Path, key: RunKey, cycle: int) -> Path:
    """The one naming of a run's checkpoint file after ``cycle`` (``--retrain continue``)."""
    return out / "checkpoints" / f"{key.dataset}-ir{key.imbalance:g}-{key.method}-seed{key.seed}-cycle{cycle}.pt"


def _is_weights(state: object) -> bool:
    return isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                           for k, v in state.items())


def _load_checkpoint(path: Path, key: RunKey, cycle: int) -> tuple[dict, dict | None]:
    """``(backbone weights, carried objective weights or None)`` after ``cycle``.

    Also reads the older backbone-only files (a bare state dict), whose objective starts afresh.
    A missing, unreadable or foreign file raises ``RunDirectoryError`` (one line; the file is
    only ever read with ``weights_only=True``).
    """
    what = (f"cannot resume {key.method} seed {key.seed} with --retrain continue: its checkpoint after cycle "
            f"{cycle + 1} ({path})")
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


def experiment_runs(config: ExperimentConfig) -> list[RunKey]:
    """Every run of ``config``, seed by seed (then dataset, imbalance, method), so that an
    experiment stopped part-way holds whole seeds of every setting and method."""
    return [RunKey(n, float(ir), m, s) for s in config.seeds for n in config.datasets for ir in config.imbalances
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


BACKENDS = ("local", "ray")  # where runs train: this machine (serially or --jobs processes), or Ray tasks


@dataclass(frozen=True)
class Backend:
    """Where an experiment's runs train (``tidal run --backend``, ``--address``, ``--dist-backend``)."""

    name: str = "local"  # one of BACKENDS
    address: str | None = None  # "ray": HOST:PORT of a running cluster (None: a local Ray started and stopped here)
    dist: str | None = None  # under torchrun: torch.distributed's "nccl" or "gloo" (None: nccl on CUDA, gloo on CPU)


@dataclass(frozen=True)
class RunOptions:
    """How an experiment's runs are trained beyond its configuration (run_experiment's checked arguments)."""

    device: torch.device  # where this process trains (under Ray: the CPU; it only checks and writes)
    progress: bool  # progress bars (on the main process only)
    log: Callable[[str], None]  # where log lines go
    splits: dict[str, DatasetSplits] | None  # preloaded datasets by name
    trackers: tuple[str, ...]  # also log each cycle there (tidal.tracking.TRACKERS)
    track_td: bool  # store Figure 7's per-epoch rows
    jobs: int | None  # worker processes (Ray: CPUs of a local Ray)
    model: object  # the user's model, else config.train.model
    backend: Backend  # where runs train
    device_spec: torch.device | str  # the device as given (each Ray task resolves its own)


@dataclass(frozen=True)
class CycleOutput:
    """What one finished cycle of a run leaves to be written."""

    record: CycleRecord  # the cycle's stored row
    td_tracking: tuple[EpochKL, ...]  # its Figure 7 rows (--track-td), else empty
    # retrain="continue": {"model": backbone weights, "objective": carried module's or None}, else None
    checkpoint: dict[str, dict[str, torch.Tensor] | None] | None


def run_one(key: RunKey, config: ExperimentConfig, split: DatasetSplits, env: CycleEnv, resume: Resume,
            track_td: bool = False) -> Iterator[CycleOutput]:
    """Train the cycles of run ``key`` after ``resume`` (:meth:`RunWriter.resume`), yielding each
    finished cycle's outputs; it owns no store and no folder. ``split``: the run's dataset on
    ``env.device``; ``track_td``: also the Figure 7 rows (:class:`tidal.td_tracking.TDTrackerFactory`)."""
    hooks = TDTrackerFactory(split.test, config.train.eval_batch_size) if track_td else None
    pool = make_pool(split.train, key.imbalance, config.data.pool_limit, key.seed)
    for r in active_learning(split.train, split.test, pool, create_strategy(key.method, config.strategy), key.seed,
                             env, resume, hooks):
        record = CycleRecord(
            key.dataset, key.imbalance, key.method, key.seed, r.cycle, len(r.labeled), r.accuracy, r.class_counts,
            r.labeled.tolist(), r.selected.tolist(), r.scores.tolist(), r.train_seconds, r.score_seconds,
            r.eval_seconds, r.final_loss, time.time())
        checkpoint = None if r.model_state is None else {"model": r.model_state, "objective": r.objective_state}
        yield CycleOutput(record, tuple(hooks.take(r.cycle)) if hooks is not None else (), checkpoint)


@dataclass
class RunWriter:
    """The one writer of a run directory: its lock and store, where a run resumes from, and each
    finished cycle (checkpoint, then row, then the older checkpoints go). The serial loop,
    ``--jobs`` workers, the Ray driver and torchrun's rank 0 all write through it."""

    out: Path  # the run directory
    store: ResultStore  # its database, bound to the experiment
    al: ALConfig  # the experiment's protocol (its cycles; retrain="continue" keeps checkpoints)
    lock: RunDirLock | None = None  # the directory's lock (None in a --jobs worker: its parent holds it)

    @classmethod
    def open(cls, out: Path, al: ALConfig) -> "RunWriter":
        """Take the run directory ``out``: create or accept it (:func:`prepare_out`), lock it,
        remove stale temporary files and open its store."""
        prepare_out(out)
        lock = RunDirLock(out)  # released by close, or by the OS if this process dies
        try:
            remove_stale_temp_files(out)
            return cls(out, ResultStore(out / DB_NAME), al, lock)
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        self.store.close()
        if self.lock is not None:
            self.lock.release()

    def resume(self, key: RunKey) -> Resume:
        """Where ``key`` goes on from: after its stored cycles, with their labeled set and, with
        ``retrain="continue"``, the checkpoint of the last one."""
        done = self.store.records(dataset=key.dataset, imbalance=key.imbalance, method=key.method, seed=key.seed)
        if not done or len(done) >= self.al.cycles:
            return Resume(len(done))
        last = done[-1]
        labeled = torch.tensor(sorted(last.labeled + last.selected), dtype=torch.int64)
        states = (None, None)
        if self.al.retrain == "continue":
            states = _load_checkpoint(checkpoint_path(self.out, key, last.cycle), key, last.cycle)
        return Resume(len(done), labeled, *states)

    def write(self, output: CycleOutput) -> None:
        """Store one finished cycle: the checkpoint first, then the row; then the run's older checkpoints go."""
        r = output.record
        key = RunKey(r.dataset, r.imbalance, r.method, r.seed)
        if output.checkpoint is not None:  # retrain="continue": the next cycle starts from these weights
            path = checkpoint_path(self.out, key, r.cycle)
            path.parent.mkdir(exist_ok=True)
            with atomic_path(path) as tmp:
                torch.save(output.checkpoint, tmp)
        self.store.add_cycle(r, td_tracking=output.td_tracking)
        if output.checkpoint is not None:
            for cycle in range(r.cycle):
                checkpoint_path(self.out, key, cycle).unlink(missing_ok=True)


def train_run(key: RunKey, config: ExperimentConfig, split: DatasetSplits, env: CycleEnv, writer: RunWriter | None,
              track_td: bool, on_cycle: Callable[[CycleRecord], None]) -> None:
    """Train the cycles of ``key`` that ``writer``'s store lacks, committing each as it finishes;
    ``on_cycle(record)`` runs after each commit. Under torchrun every rank calls it; the main
    rank alone holds the writer (the others pass None), reads the resume state and sends it."""
    comm = env.comm
    resume = comm.from_main(lambda: writer.resume(key))
    for output in run_one(key, config, split, env, resume, track_td and comm.is_main):
        if comm.is_main:
            writer.write(output)
            on_cycle(output.record)
