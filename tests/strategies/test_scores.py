import math

import pytest
import torch

from tidal.strategies import select_top_k
from tidal.strategies.scores import entropy, least_confidence, margin

P = torch.tensor([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])


def test_entropy_hand_values():
    expected = [0.0, math.log(3), -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)),
                -(0.1 * math.log(0.1) + 0.6 * math.log(0.6) + 0.3 * math.log(0.3))]
    assert torch.allclose(entropy(P), torch.tensor(expected), atol=1e-6)


def test_margin_top1_minus_top2():
    assert torch.allclose(margin(P), torch.tensor([1.0, 0.0, 0.2, 0.3]), atol=1e-6)


def test_margin_with_external_prediction_can_be_negative():
    # ŷ from the classifier; p̃ from the TD module (Eq. 11)
    y_hat = torch.tensor([0, 2, 1, 0])
    # row 2: p(1)=0.3 - max(0.5, 0.2) = -0.2 ; row 3: p(0)=0.1 - 0.6 = -0.5
    assert torch.allclose(margin(P, y_hat), torch.tensor([1.0, 0.0, -0.2, -0.5]), atol=1e-6)


def test_least_confidence():
    assert torch.allclose(least_confidence(P), torch.tensor([0.0, 2 / 3, 0.5, 0.4]), atol=1e-6)


def test_select_top_k_is_descending_stable_and_nan_last():
    cands = torch.tensor([10, 11, 12, 13, 14])
    scores = torch.tensor([0.5, float("nan"), 0.9, 0.5, 0.1])
    idx, s = select_top_k(scores, cands, 3)
    assert idx.tolist() == [12, 10, 13] and torch.allclose(s, torch.tensor([0.9, 0.5, 0.5]))
    assert select_top_k(scores, cands, 5)[0].tolist()[-1] == 11
    with pytest.raises(ValueError, match="k=6"):
        select_top_k(scores, cands, 6)
    with pytest.raises(ValueError, match="shape"):
        select_top_k(scores[:2], cands, 1)
