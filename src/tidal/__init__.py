"""TiDAL: Training Dynamics for Active Learning (Kye et al., ICCV 2023), in PyTorch.

The public API::

    from tidal import preset, run_experiment, write_report
    cfg = preset("quick", methods=("tidal-entropy", "random"), seeds=(0,))
    run_experiment(cfg, "runs/demo")
    print(write_report("runs/demo"))
"""

from tidal.config import ALConfig, DataConfig, ExperimentConfig, StrategyConfig, TrainConfig, preset
from tidal.dynamics import TrainingDynamics, td_kl_loss
from tidal.experiment import run_experiment
from tidal.loop import active_learning
from tidal.strategies import AuxObjective, Strategy, create_strategy, list_strategies, register

__version__ = "0.1.0"


def __getattr__(name: str):  # the report package is imported on first use only
    if name == "write_report":
        from tidal.report import write_report

        return write_report
    if name == "analyze_scores":
        from tidal.analysis import analyze_scores

        return analyze_scores
    raise AttributeError(f"module 'tidal' has no attribute {name!r}")

__all__ = [
    "ALConfig",
    "AuxObjective",
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
    "register",
    "run_experiment",
    "td_kl_loss",
    "write_report",
]
