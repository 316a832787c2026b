"""Selection strategies, registered by name.

A strategy module registers itself just by existing in this package (``@register`` on its
class): the first registry lookup imports every module here.
"""

from tidal.strategies.base import (
    NEEDS,
    AuxObjective,
    RunningTopK,
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

__all__ = [
    "NEEDS",
    "AuxObjective",
    "RunningTopK",
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
