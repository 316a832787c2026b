"""TiDAL: Training Dynamics for Active Learning (Kye et al., ICCV 2023), in PyTorch.

The public API::

    from tidal import preset, run_experiment, write_report
    cfg = preset("quick", methods=("tidal-entropy", "random"), seeds=(0,))
    run_experiment(cfg, "runs/demo")
    print(write_report("runs/demo"))

One round of labelling your own pool (the `tidal query` command's call)::

    result = tidal.query("auto", dataset, labeled_ids, labels, k=100, method="tidal-entropy")
    result.ids, result.scores    # best first
"""

import os as _os
import sys as _sys

# OpenMP threads that wait for work sleep instead of spinning (unless the user chose otherwise).
# On a loaded machine torch's spinning threads take the cores from the threads that hold work:
# a 60-label round on 2 threads of a busy 2-core machine trained in 146 s spinning and in 8 s
# sleeping (README, "Measured"). The wait policy never changes a number. libgomp reads it
# once, when torch loads, so it applies when tidal is imported first (the `tidal` command always).
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tidal.config import ALConfig, DataConfig, ExperimentConfig, StrategyConfig, TrainConfig, preset  # noqa: E402

__version__ = "0.1.0"

# Names imported on first use, so that `import tidal.config` (the CLI's parser) does not import
# torch: `tidal --help` answers at once.
_LAZY = {
    "TrainingDynamics": "tidal.dynamics",
    "td_kl_loss": "tidal.dynamics",
    "run_experiment": "tidal.experiment",
    "Backend": "tidal.runs",
    "active_learning": "tidal.loop",
    "AuxObjective": "tidal.strategies",
    "Strategy": "tidal.strategies",
    "create_strategy": "tidal.strategies",
    "list_strategies": "tidal.strategies",
    "register": "tidal.strategies",
    "write_report": "tidal.report",
    "analyze_scores": "tidal.analysis",
    "query": "tidal.project.query",
    "QueryResult": "tidal.project.query",
    "QueryConfig": "tidal.project.query",
    "WarmStart": "tidal.project.query",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tidal' has no attribute {name!r}")


__all__ = [
    "ALConfig",
    "AuxObjective",
    "Backend",
    "DataConfig",
    "ExperimentConfig",
    "Strategy",
    "StrategyConfig",
    "TrainConfig",
    "TrainingDynamics",
    "active_learning",
    "analyze_scores",
    "create_strategy",
    "list_strategies",
    "preset",
    "query",
    "QueryConfig",
    "QueryResult",
    "register",
    "run_experiment",
    "td_kl_loss",
    "WarmStart",
    "write_report",
]
