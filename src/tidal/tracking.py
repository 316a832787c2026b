"""Optional experiment trackers (MLflow, TensorBoard) fed the same per-cycle numbers as the store.

Neither package is a dependency: asking for a tracker whose package is missing raises a
``ValueError`` that says what to install. The SQLite store stays the source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tidal.results import CycleRecord

__all__ = ["TRACKERS", "Tracker", "MlflowTracker", "TensorBoardTracker", "check_trackers", "make_trackers"]

TRACKERS = ("mlflow", "tensorboard")  # run_experiment(trackers=...)'s names (tidal run --mlflow / --tensorboard)

TENSORBOARD_MISSING = "--tensorboard needs the tensorboard package: pip install tensorboard"
MLFLOW_MISSING = "--mlflow needs the mlflow package: pip install mlflow"


class Tracker(Protocol):
    def log_cycle(self, record: CycleRecord) -> None: ...

    def close(self) -> None: ...


def _metrics(r: CycleRecord) -> dict[str, float]:
    return {"accuracy": r.accuracy, "n_labeled": float(r.n_labeled), "train_seconds": r.train_seconds,
            "score_seconds": r.score_seconds, "eval_seconds": r.eval_seconds, "final_loss": r.final_loss}


def _run_name(r: CycleRecord) -> str:
    return f"{r.dataset}/IR{r.imbalance:g}/{r.method}/seed{r.seed}"


class TensorBoardTracker:
    """Scalars under ``<dataset>/IR<ir>/<method>/seed<seed>/<metric>``, step = labeled-set size."""

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ValueError(TENSORBOARD_MISSING) from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_cycle(self, record: CycleRecord) -> None:
        for key, value in _metrics(record).items():
            self.writer.add_scalar(f"{_run_name(record)}/{key}", value, global_step=record.n_labeled)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MlflowTracker:
    """One MLflow run per (setting, method, seed), metrics stepped by cycle.

    Uses ``$MLFLOW_TRACKING_URI`` when set, else a file store in the run directory.
    """

    def __init__(self, out: str | Path, experiment: str = "tidal") -> None:
        try:
            import mlflow
        except ImportError as exc:
            raise ValueError(MLFLOW_MISSING) from exc
        import os

        self.mlflow = mlflow
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri(Path(out, "mlruns").resolve().as_uri())
        mlflow.set_experiment(experiment)
        self._active: str | None = None

    def log_cycle(self, record: CycleRecord) -> None:
        name = _run_name(record)
        if self._active != name:
            if self._active is not None:
                self.mlflow.end_run()
            self.mlflow.start_run(run_name=name, tags={"dataset": record.dataset, "method": record.method,
                                                      "seed": str(record.seed), "imbalance": str(record.imbalance)})
            self._active = name
        self.mlflow.log_metrics(_metrics(record), step=record.cycle)

    def close(self) -> None:
        if self._active is not None:
            self.mlflow.end_run()
            self._active = None


def check_trackers(names: Sequence[str]) -> None:
    """Raise a ``ValueError`` for an unknown tracker name or one whose package is missing, before
    anything is created."""
    if not isinstance(names, (list, tuple, set, frozenset)) or any(name not in TRACKERS for name in names):
        raise ValueError(f"trackers={names!r} must be a list of names from {', '.join(TRACKERS)}, e.g. ['mlflow']")
    if "tensorboard" in names:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError as exc:
            raise ValueError(TENSORBOARD_MISSING) from exc
    if "mlflow" in names:
        try:
            import mlflow as _  # noqa: F401
        except ImportError as exc:
            raise ValueError(MLFLOW_MISSING) from exc


def make_trackers(out: str | Path, names: Sequence[str]) -> list[Tracker]:
    """The trackers ``names`` (of :data:`TRACKERS`), logging into ``out`` (``out/tensorboard``, ``out/mlruns``)."""
    trackers: list[Tracker] = []
    if "tensorboard" in names:
        trackers.append(TensorBoardTracker(Path(out) / "tensorboard"))
    if "mlflow" in names:
        trackers.append(MlflowTracker(out))
    return trackers
