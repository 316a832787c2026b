"""BALD: the mutual-information score against hand-computed values, and the strategy's wiring."""

import math

import pytest
import torch

from tidal.config import ExperimentConfig, StrategyConfig
from tidal.gather import ScoringPass, gather
from tidal.models.resnet import ResNet18
from tidal.strategies import ScoreInputs, create_strategy, select_top_k
from tidal.strategies.scores import mutual_information


def _h(p):
    return -sum(x * math.log(x) for x in p if x > 0)


def test_zero_when_all_passes_agree():
    p = torch.tensor([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])
    mc = p.expand(5, 3, 3)  # T = 5 identical passes
    mi = mutual_information(mc)
    assert mi.shape == (3,)
    assert torch.allclose(mi, torch.zeros(3), atol=1e-6) and (mi >= 0).all()


def test_confident_passes_that_disagree_reach_log_c():
    # T = 2, one-hot on different classes: H(mean) = log 2, mean H = 0.
    mc2 = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert torch.allclose(mutual_information(mc2), torch.tensor([math.log(2)]), atol=1e-6)
    # T = 3, C = 3, one pass per class: the maximum, log C.
    mc3 = torch.eye(3).unsqueeze(1)  # [3, 1, 3]
    assert torch.allclose(mutual_information(mc3), torch.tensor([math.log(3)]), atol=1e-6)


def test_hand_example():
    # p1 = (0.8, 0.2), p2 = (0.4, 0.6): mean = (0.6, 0.4)
    # I = H(0.6, 0.4) - (H(0.8, 0.2) + H(0.4, 0.6)) / 2 = 0.673012 - (0.500402 + 0.673012) / 2 = 0.086305
    mc = torch.tensor([[[0.8, 0.2]], [[0.4, 0.6]]], dtype=torch.float64)
    expected = _h([0.6, 0.4]) - (_h([0.8, 0.2]) + _h([0.4, 0.6])) / 2
    assert expected == pytest.approx(0.0863046, abs=1e-6)
    assert mutual_information(mc).item() == pytest.approx(expected, abs=1e-12)


def test_rows_are_independent_and_bounded():
    g = torch.Generator().manual_seed(0)
    mc = torch.softmax(torch.randn(4, 6, 5, generator=g) * 3, dim=2)
    mi = mutual_information(mc)
    per_row = torch.stack([mutual_information(mc[:, i : i + 1]) for i in range(6)]).squeeze(1)
    assert torch.allclose(mi, per_row)
    assert (mi >= 0).all() and (mi <= math.log(5) + 1e-6).all()


def test_strategy_reads_mc_samples_and_dropout_from_config():
    s = create_strategy("bald", StrategyConfig(mc_samples=3, dropout=0.25))
    assert (s.mc_samples, s.dropout, s.needs) == (3, 0.25, frozenset({"mc_probs"}))
    default = create_strategy("bald")
    assert (default.mc_samples, default.dropout) == (10, 0.5)


def test_strategy_score_ranks_disagreement_first():
    agree = [[0.5, 0.5], [0.5, 0.5]]  # uncertain but no disagreement: I = 0
    disagree = [[1.0, 0.0], [0.0, 1.0]]  # I = log 2
    partial = [[0.8, 0.2], [0.4, 0.6]]  # I = 0.0863
    mc = torch.tensor([agree, disagree, partial]).permute(1, 0, 2)  # [T=2, n=3, C=2]
    inputs = ScoreInputs(candidates=torch.tensor([10, 20, 30]), labeled=torch.tensor([0]), k=2,
                         generator=torch.Generator(), mc_probs=mc)
    scores = create_strategy("bald").score(inputs)
    assert scores.shape == (3,) and torch.isfinite(scores).all()
    idx, top = select_top_k(scores, inputs.candidates, 2)
    assert idx.tolist() == [20, 30]
    assert torch.allclose(top, torch.tensor([math.log(2), 0.0863046]), atol=1e-6)


def test_gather_draws_different_dropout_masks_for_the_loop_built_model(tiny_splits):
    # The loop builds ResNet18(..., dropout=strategy.dropout) and gathers strategy.mc_samples passes.
    strategy = create_strategy("bald", StrategyConfig(mc_samples=3))
    train = tiny_splits.train
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, width=2, in_channels=train.image_shape[0], dropout=strategy.dropout)
    assert isinstance(model.dropout, torch.nn.Dropout) and model.dropout.p == 0.5
    cands = torch.arange(8)
    model.eval()
    inputs = gather(ScoringPass(model, None, train, cands, torch.arange(8, 12), 2, torch.Generator()),
                    strategy.needs, mc_samples=strategy.mc_samples)
    assert inputs.mc_probs.shape == (3, 8, train.num_classes)
    assert not torch.allclose(inputs.mc_probs[0], inputs.mc_probs[1])  # dropout active at scoring
    assert not model.dropout.training and not model.training  # the previous (eval) mode is restored
    model.train()
    gather(ScoringPass(model, None, train, cands, torch.arange(8, 12), 2, torch.Generator()), strategy.needs,
           mc_samples=1)
    assert model.training and model.dropout.training  # ... and so is train mode
    assert strategy.score(inputs).shape == (8,)


def test_mc_samples_below_one_is_rejected():
    with pytest.raises(ValueError, match="mc_samples=0"):
        ExperimentConfig(strategy=StrategyConfig(mc_samples=0)).validate()


def test_fast_mc_path_matches_full_stochastic_passes(tiny_splits):
    """The one-backbone-pass MC dropout gives the same predictive distribution as T full passes."""
    train = tiny_splits.train
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, width=2, in_channels=1, dropout=0.5).eval()

    class Opaque(torch.nn.Module):  # hides logits_from_embedding: forces the generic path
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    cands = torch.arange(6)
    torch.manual_seed(1)
    fast = gather(ScoringPass(model, None, train, cands, cands, 1, torch.Generator()), frozenset({"mc_probs"}),
                  mc_samples=400)
    torch.manual_seed(2)
    full = gather(ScoringPass(Opaque(model), None, train, cands, cands, 1, torch.Generator()),
                  frozenset({"mc_probs"}), mc_samples=400)
    assert fast.mc_probs.shape == full.mc_probs.shape == (400, 6, train.num_classes)
    assert torch.allclose(fast.mc_probs.mean(0), full.mc_probs.mean(0), atol=0.03)
    assert not torch.allclose(fast.mc_probs[0], fast.mc_probs[1])
