"""TiDAL ablations: the exact-TD record on known probabilities, the self-referenced margin."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tidal.data import ImageDataset
from tidal.models import ModelOutput
from tidal.strategies import ScoreInputs, TrainContext, create_strategy
from tidal.strategies.tidal import TDPredictionObjective

# Candidates 5 and 2 (in that order), C = 3, two epochs:
#   sample 5: p(1) = [0.6, 0.2, 0.2], p(2) = [0.2, 0.6, 0.2]   -> p̄ = [0.4, 0.4, 0.2]
#   sample 2: p(1) = [0.7, 0.2, 0.1], p(2) = [0.9, 0.05, 0.05] -> p̄ = [0.8, 0.125, 0.075]
# H̄(p̄_5) = -(2 * 0.4 ln 0.4 + 0.2 ln 0.2) = 1.0549
# H̄(p̄_2) = -(0.8 ln 0.8 + 0.125 ln 0.125 + 0.075 ln 0.075) = 0.6328
CANDIDATES = torch.tensor([5, 2])
EPOCH_PROBS = [
    {5: [0.6, 0.2, 0.2], 2: [0.7, 0.2, 0.1]},
    {5: [0.2, 0.6, 0.2], 2: [0.9, 0.05, 0.05]},
]


class TableModel(nn.Module):
    """Returns ``log(probs[i])`` for the image of sample ``i`` (its first pixel holds ``i``)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.zeros(8, 3)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        assert not self.training, "the exact TD must be measured in eval mode"
        idx = (x[:, 0, 0, 0] * 255).round().long()  # to_float with mean 0, std 1 gives x / 255
        logits = torch.log(self.table[idx])
        return ModelOutput(logits, torch.zeros(len(x), 4), [])


def test_exact_td_is_the_mean_of_the_per_epoch_softmax() -> None:
    images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 1, 2, 2).contiguous()
    dataset = ImageDataset(images, torch.zeros(8, dtype=torch.int64), 3, (0.0,), (1.0,))
    ctx = TrainContext(dataset, torch.tensor([0, 1]), CANDIDATES, 3, (2,), 4, 2, torch.device("cpu"),
                       eval_batch_size=1)
    strategy = create_strategy("tidal-exact")
    objective = strategy.make_objective(ctx)
    model = TableModel().train()
    for epoch, probs in enumerate(EPOCH_PROBS):
        for i, p in probs.items():
            model.table[i] = torch.tensor(p)
        objective.end_epoch(epoch, model)
    assert model.training  # restored after the inference pass
    td = objective.td(CANDIDATES)
    assert torch.allclose(td, torch.tensor([[0.4, 0.4, 0.2], [0.8, 0.125, 0.075]]), atol=1e-6)
    inputs = ScoreInputs(CANDIDATES, torch.tensor([0, 1]), 1, torch.Generator(), objective=objective)
    expected = [-(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2)),
                -(0.8 * math.log(0.8) + 0.125 * math.log(0.125) + 0.075 * math.log(0.075))]
    assert strategy.score(inputs).tolist() == pytest.approx(expected, abs=1e-5)
    assert expected == pytest.approx([1.0549, 0.6328], abs=1e-4)
    assert strategy.needs == frozenset()


def test_tidal_exact_trains_with_cross_entropy_only(tiny_splits) -> None:
    ctx = TrainContext(tiny_splits.train, torch.arange(4), torch.arange(4, 8), 4, (2, 4, 8, 16), 16, 1,
                       torch.device("cpu"))
    objective = create_strategy("tidal-exact").make_objective(ctx)
    assert list(objective.parameters()) == []  # no module: nothing but CE is optimised


# Hand-made predicted TD p̃ and classifier softmax p:
#   row 0: p̃ = [0.5, 0.3, 0.2]    top-1 minus top-2 = 0.2;  classifier ŷ = 2 -> 0.2 - 0.5 = -0.3
#   row 1: p̃ = [0.4, 0.35, 0.25]  0.05;                     classifier ŷ = 0 -> 0.05
#   row 2: p̃ = [0.1, 0.1, 0.8]    0.7;                      classifier ŷ = 0 -> 0.1 - 0.8 = -0.7
# Scores are minus the margins: self (0.2 -> -0.2, -0.05, -0.7), classifier (0.3, -0.05, 0.7).
TD = torch.tensor([[0.5, 0.3, 0.2], [0.4, 0.35, 0.25], [0.1, 0.1, 0.8]])
PROBS = torch.tensor([[0.1, 0.2, 0.7], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])


def test_margin_self_uses_the_module_top_class() -> None:
    inputs = ScoreInputs(torch.arange(3), torch.arange(3, 6), 1, torch.Generator(), probs=PROBS, aux={"td": TD})
    self_scores = create_strategy("tidal-margin-self").score(inputs)
    assert self_scores.tolist() == pytest.approx([-0.2, -0.05, -0.7])
    classifier_scores = create_strategy("tidal-margin").score(inputs)
    assert classifier_scores.tolist() == pytest.approx([0.3, -0.05, 0.7])
    assert create_strategy("tidal-margin-self").needs == frozenset({"aux"})


def test_margin_self_trains_like_tidal(tiny_splits) -> None:
    ctx = TrainContext(tiny_splits.train, torch.arange(4), torch.arange(4, 8), 4, (2, 4, 8, 16), 16, 1,
                       torch.device("cpu"))
    assert isinstance(create_strategy("tidal-margin-self").make_objective(ctx), TDPredictionObjective)
