"""CAL: the correctness record and split on a known answer, the classifier on separable data."""

from __future__ import annotations

import pytest
import torch

from tidal.config import ExperimentConfig, StrategyConfig
from tidal.models import ModelOutput
from tidal.strategies import ScoreInputs, StepBatch, TrainContext, create_strategy
from tidal.strategies.cal import CartographyObjective, cartography_split

LABELED = torch.tensor([10, 3, 7, 5])  # absolute indices, deliberately unsorted
# Epochs (of 4) each sample is classified correctly: 10 -> 4, 3 -> 1, 7 -> 2, 5 -> 0.
CORRECT_EPOCHS = {10: 4, 3: 1, 7: 2, 5: 0}


def _objective(tiny_splits, labeled: torch.Tensor = LABELED) -> CartographyObjective:
    ctx = TrainContext(tiny_splits.train, labeled, torch.arange(20, 30), 2, (2, 4, 8, 16), 16, 4, torch.device("cpu"))
    return CartographyObjective(ctx)


def _record(objective: CartographyObjective, correct_epochs: dict[int, int], epochs: int = 4) -> None:
    """Feed ``epochs`` training passes; sample ``i`` is correct on its first ``correct_epochs[i]``."""
    indices = torch.tensor(list(correct_epochs))
    y = torch.zeros(len(indices), dtype=torch.int64)
    for epoch in range(epochs):
        correct = torch.tensor([epoch < correct_epochs[int(i)] for i in indices])
        logits = torch.stack([correct.float(), (~correct).float()], dim=1)  # argmax 0 (= y) iff correct
        out = ModelOutput(logits, torch.zeros(len(indices), 16), [])
        loss = objective.loss(StepBatch(torch.zeros(len(indices), 1, 4, 4), y, indices, epoch, out,
                                        torch.ones(len(indices))))
        assert loss.item() == 0.0


def test_correctness_record_and_split_known_answer(tiny_splits) -> None:
    objective = _objective(tiny_splits)
    _record(objective, CORRECT_EPOCHS)
    fraction = objective.fraction_correct(LABELED)
    assert fraction.tolist() == [1.0, 0.25, 0.5, 0.0]
    # Threshold 0.5, strict: 0.25 and 0.0 are uncertain, exactly 0.5 is certain.
    assert cartography_split(fraction, 0.5).tolist() == [False, True, False, True]
    assert cartography_split(fraction, 0.6).tolist() == [False, True, True, True]
    assert cartography_split(fraction, 0.0).tolist() == [False, False, False, False]


def _inputs(objective, labeled_embedding, embedding, labeled=LABELED) -> ScoreInputs:
    return ScoreInputs(torch.arange(100, 100 + len(embedding)), labeled, 2, torch.Generator().manual_seed(0),
                       embedding=embedding, labeled_embedding=labeled_embedding, objective=objective)


def _separable(tiny_splits) -> tuple[CartographyObjective, torch.Tensor, torch.Tensor]:
    """Uncertain labeled samples (3, 5, 12) sit at x0 < 0, certain ones (10, 7, 11) at x0 > 0;
    x1 is noise. The fitted boundary is near x0 = 0."""
    labeled = torch.tensor([10, 3, 7, 5, 11, 12])
    objective = _objective(tiny_splits, labeled)
    _record(objective, {10: 4, 3: 1, 7: 2, 5: 0, 11: 4, 12: 0})
    labeled_embedding = torch.tensor([[2.0, 0.3], [-2.0, 0.1], [1.5, -0.4], [-1.5, 0.2], [2.5, 0.0], [-2.5, -0.3]])
    return objective, labeled, labeled_embedding


# Candidates: far certain, far uncertain, near the boundary on the certain side, near it on the
# uncertain side. P(uncertain) ranks them 1, 3, 2, 0; ambiguity (lowest max-softmax) ranks the
# two near the boundary first and the two far ones last: the two top-2 sets do not overlap.
CANDIDATES = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.5, 0.2], [-0.5, -0.2]])


def test_cal_variant_scores_the_uncertain_region_higher(tiny_splits) -> None:
    objective, labeled, labeled_embedding = _separable(tiny_splits)
    scores = create_strategy("cal-uncertain").score(_inputs(objective, labeled_embedding, CANDIDATES, labeled))
    assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert scores[1] > 0.5 > scores[0]
    assert scores[3] > 0.5 > scores[2]
    assert torch.argsort(scores, descending=True).tolist() == [1, 3, 2, 0]


def test_cal_scores_the_least_sure_candidates_higher_as_the_released_code(tiny_splits) -> None:
    # CALEstimator.predict (train_cal_estimator.py) sorts by the max softmax ascending and
    # takes the head: the candidates nearest the boundary, on either side.
    objective, labeled, labeled_embedding = _separable(tiny_splits)
    # Each scoring call draws the classifier's starting point from its generator: same seed, same fit.
    p = create_strategy("cal-uncertain").score(_inputs(objective, labeled_embedding, CANDIDATES, labeled))
    scores = create_strategy("cal").score(_inputs(objective, labeled_embedding, CANDIDATES, labeled))
    max_softmax = torch.maximum(p, 1 - p)
    assert torch.allclose(scores, 1 - max_softmax, rtol=0, atol=1e-12)
    assert ((scores >= 0) & (scores <= 0.5)).all()
    assert torch.argsort(scores, descending=True).tolist() == torch.argsort(max_softmax).tolist()
    top2_cal = set(torch.topk(scores, 2).indices.tolist())
    top2_variant = set(torch.topk(p, 2).indices.tolist())
    assert top2_cal == {2, 3} and top2_variant == {1, 3}


def test_cal_score_keeps_its_precision_far_from_the_boundary(tiny_splits) -> None:
    # sigmoid(-|z|) from the logit: two far candidates still differ where 1 - max(p, 1-p) would round to 0.
    objective, labeled, labeled_embedding = _separable(tiny_splits)
    far = torch.tensor([[400.0, 0.0], [500.0, 0.0], [-400.0, 0.0], [-500.0, 0.0]])
    scores = create_strategy("cal").score(_inputs(objective, labeled_embedding, far, labeled))
    assert (scores > 0).all()
    assert scores[0] > scores[1] and scores[2] > scores[3]


def test_cal_and_variant_disagree_on_a_synthetic_pool(tiny_splits) -> None:
    # Many candidates on both sides of the boundary: the variant takes the far uncertain side,
    # CAL the band around the boundary; their top-10 sets do not overlap.
    objective, labeled, labeled_embedding = _separable(tiny_splits)
    g = torch.Generator().manual_seed(0)
    pool = torch.cat([torch.linspace(-6, 6, 60).unsqueeze(1), 0.1 * torch.randn(60, 1, generator=g)], dim=1)
    cal = create_strategy("cal").score(_inputs(objective, labeled_embedding, pool, labeled))
    variant = create_strategy("cal-uncertain").score(_inputs(objective, labeled_embedding, pool, labeled))
    cal, variant = set(torch.topk(cal, 10).indices.tolist()), set(torch.topk(variant, 10).indices.tolist())
    assert cal.isdisjoint(variant)
    assert all(abs(float(pool[i, 0])) < 2 for i in cal)  # the band around the boundary
    assert all(float(pool[i, 0]) < -3 for i in variant)  # the far uncertain side


@pytest.mark.parametrize("correct_epochs, prior", [(4, 0.0), (0, 1.0)])
def test_one_class_split_gives_every_candidate_the_same_score(tiny_splits, correct_epochs: int, prior: float) -> None:
    objective = _objective(tiny_splits)
    _record(objective, {int(i): correct_epochs for i in LABELED})
    labeled_embedding, embedding = torch.randn(4, 3), torch.randn(5, 3)
    assert create_strategy("cal").score(_inputs(objective, labeled_embedding, embedding)).tolist() == [0.0] * 5
    variant = create_strategy("cal-uncertain").score(_inputs(objective, labeled_embedding, embedding))
    assert variant.tolist() == [prior] * 5


def test_cal_threshold_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"cal_threshold=1\.5"):
        ExperimentConfig(strategy=StrategyConfig(cal_threshold=1.5)).validate()
