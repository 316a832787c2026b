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


def test_classifier_scores_uncertain_region_higher(tiny_splits) -> None:
    # Uncertain labeled samples (3 and 5) sit at x0 < 0, certain ones (10 and 7) at x0 > 0;
    # x1 is noise. The boundary is x0 = 0, so candidates are ranked by how negative x0 is.
    labeled = torch.tensor([10, 3, 7, 5, 11, 12])
    objective = _objective(tiny_splits, labeled)
    _record(objective, {10: 4, 3: 1, 7: 2, 5: 0, 11: 4, 12: 0})
    labeled_embedding = torch.tensor([[2.0, 0.3], [-2.0, 0.1], [1.5, -0.4], [-1.5, 0.2], [2.5, 0.0], [-2.5, -0.3]])
    candidates = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.5, 0.2], [-0.5, -0.2]])
    scores = create_strategy("cal").score(_inputs(objective, labeled_embedding, candidates, labeled))
    assert torch.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert scores[1] > 0.5 > scores[0]
    assert scores[3] > 0.5 > scores[2]
    assert torch.argsort(scores, descending=True).tolist() == [1, 3, 2, 0]


@pytest.mark.parametrize("correct_epochs, expected", [(4, 0.0), (0, 1.0)])
def test_one_class_split_falls_back_to_the_class_prior(tiny_splits, correct_epochs: int, expected: float) -> None:
    objective = _objective(tiny_splits)
    _record(objective, {int(i): correct_epochs for i in LABELED})
    scores = create_strategy("cal").score(_inputs(objective, torch.randn(4, 3), torch.randn(5, 3)))
    assert scores.tolist() == [expected] * 5


def test_cal_threshold_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"cal_threshold=1\.5"):
        ExperimentConfig(strategy=StrategyConfig(cal_threshold=1.5)).validate()
