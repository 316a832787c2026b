"""Learning Loss: the ranking loss by hand, the stop-gradient switch, scoring, a tiny loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tidal.config import StrategyConfig
from tidal.models import ResNet18
from tidal.strategies import ScoreInputs, StepBatch, TrainContext, create_strategy
from tidal.strategies.lloss import LossPredictionObjective, ranking_loss

# Pairs are (0, 3) and (1, 2).
#   pair (0, 3): l_0 - l_3 = 3.0 - 0.5 = 2.5 > 0 -> s = +1; l̂_0 - l̂_3 = 0.5 - 0.0 = 0.5
#                L = max(0, -(+1)(0.5) + ξ)
#   pair (1, 2): l_1 - l_2 = 1.0 - 2.0 = -1 -> s = -1;     l̂_1 - l̂_2 = 2.0 - 1.0 = 1.0
#                L = max(0, -(-1)(1.0) + ξ)
# ξ = 1:    (max(0, 0.5) + max(0, 2.0)) / 2 = 1.25
# ξ = 0.25: (max(0, -0.25) + max(0, 1.25)) / 2 = 0.625
PRED = [0.5, 2.0, 1.0, 0.0]
TARGET = [3.0, 1.0, 2.0, 0.5]


@pytest.mark.parametrize("margin, expected", [(1.0, 1.25), (0.25, 0.625)])
def test_ranking_loss_matches_hand_computation(margin: float, expected: float) -> None:
    loss = ranking_loss(torch.tensor(PRED), torch.tensor(TARGET), margin)
    assert loss.item() == pytest.approx(expected)


def test_ranking_loss_gradient_and_detached_target() -> None:
    pred = torch.tensor(PRED, requires_grad=True)
    target = torch.tensor(TARGET, requires_grad=True)
    ranking_loss(pred, target, 1.0).backward()
    # Both hinges active; d/dl̂_i of -s(l̂_i - l̂_j)/2 is -s/2 for i and +s/2 for j.
    assert pred.grad.tolist() == pytest.approx([-0.5, 0.5, -0.5, 0.5])
    assert target.grad is None


def test_ranking_loss_odd_batch_drops_last_sample_and_tiny_batch_is_zero() -> None:
    odd = ranking_loss(torch.tensor(PRED + [100.0]), torch.tensor(TARGET + [-100.0]), 1.0)
    assert odd.item() == pytest.approx(1.25)
    one = torch.tensor([0.3], requires_grad=True)
    zero = ranking_loss(one, torch.tensor([1.0]), 1.0)
    zero.backward()
    assert zero.item() == 0.0 and one.grad.tolist() == [0.0]


def test_ranking_loss_tie_counts_as_minus_one() -> None:
    # l_0 = l_1 -> s = -1: L = max(0, (l̂_0 - l̂_1) + 1) = max(0, 0.5 + 1)
    assert ranking_loss(torch.tensor([0.5, 0.0]), torch.tensor([1.0, 1.0]), 1.0).item() == pytest.approx(1.5)


def _context(tiny_splits, epochs: int) -> tuple[ResNet18, TrainContext]:
    torch.manual_seed(0)
    model = ResNet18(4, width=2, in_channels=1)
    ctx = TrainContext(tiny_splits.train, torch.arange(8), torch.arange(8, 16), 4, model.feature_channels,
                       model.embedding_dim, epochs, torch.device("cpu"))
    return model, ctx


@pytest.mark.parametrize("epoch, reaches_backbone", [(5, True), (6, False), (9, False)])
def test_module_gradient_into_backbone_stops_at_switch_epoch(tiny_splits, epoch: int, reaches_backbone: bool) -> None:
    model, ctx = _context(tiny_splits, epochs=10)
    objective = LossPredictionObjective(ctx, weight=1.0, margin=1.0, stop_at=0.6)
    assert objective.stop_epoch == 6  # floor(0.6 * 10); 120 for 200 epochs
    x = torch.randn(8, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    y = torch.arange(8) % 4
    out = model(x)
    ce = F.cross_entropy(out.logits, y, reduction="none")
    loss = objective.loss(StepBatch(x=x, y=y, indices=torch.arange(8), epoch=epoch, out=out, ce=ce))
    assert loss.item() > 0
    loss.backward()  # the module loss alone: the target loss is detached inside ranking_loss
    grad = model.stages[0][0].conv1.weight.grad
    if reaches_backbone:
        assert grad is not None and grad.abs().sum() > 0
    else:
        assert grad is None
        assert model.linear.weight.grad is None
    assert all(p.grad is not None for p in objective.parameters())


def test_lloss_scores_the_predicted_loss(tiny_splits) -> None:
    model, ctx = _context(tiny_splits, epochs=10)
    strategy = create_strategy("lloss", StrategyConfig(lloss_margin=0.5, lloss_stop_at=0.2))
    objective = strategy.make_objective(ctx)
    assert objective.margin == 0.5 and objective.stop_epoch == 2
    with torch.no_grad():
        aux = objective.predict(model(torch.randn(5, 1, 12, 12)))
    assert aux["loss"].shape == (5,)
    inputs = ScoreInputs(torch.arange(5), torch.arange(5, 8), 2, torch.Generator(), aux=aux)
    assert torch.equal(strategy.score(inputs), aux["loss"])
