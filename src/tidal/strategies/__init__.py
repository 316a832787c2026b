"""Selection strategies, registered by name.

Importing this package imports every module in it, so a strategy module registers itself
just by existing here (``@register`` on its class).
"""

import importlib
import pkgutil

from tidal.strategies.base import (
    NEEDS,
    AuxObjective,
    ScoreInputs,
    StepBatch,
    Strategy,
    TrainContext,
    create_strategy,
    list_strategies,
    register,
    select_top_k,
    strategy_class,
)

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base", "scores"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "NEEDS",
    "AuxObjective",
    "ScoreInputs",
    "StepBatch",
    "Strategy",
    "TrainContext",
    "create_strategy",
    "list_strategies",
    "register",
    "select_top_k",
    "strategy_class",
]
