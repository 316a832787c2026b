import math

import pytest
import torch

from tidal.dynamics import TrainingDynamics, td_kl_loss


def test_running_mean_equals_hand_computed_mean():
    td = TrainingDynamics(torch.tensor([40, 7, 12]), num_classes=2)
    epochs = [
        {7: [0.9, 0.1], 12: [0.2, 0.8], 40: [0.5, 0.5]},
        {7: [0.7, 0.3], 12: [0.4, 0.6], 40: [0.1, 0.9]},
        {7: [0.2, 0.8], 12: [0.6, 0.4], 40: [0.3, 0.7]},
    ]
    for e, probs in enumerate(epochs):
        order = [12, 40, 7] if e % 2 else [7, 12, 40]  # batches arrive in any order
        for idx in order:  # one sample per batch
            td.update(torch.tensor([idx]), torch.tensor([probs[idx]]))
        for idx in (7, 12, 40):
            expected = torch.tensor([epochs[i][idx] for i in range(e + 1)]).mean(0)
            assert torch.allclose(td.targets(torch.tensor([idx]))[0], expected)
    # p̄ of sample 7 after 3 epochs = ((0.9+0.7+0.2)/3, (0.1+0.3+0.8)/3) = (0.6, 0.4)
    assert torch.allclose(td.targets(torch.tensor([7])), torch.tensor([[0.6, 0.4]]))


def test_unknown_and_duplicate_indices():
    with pytest.raises(ValueError, match="duplicates"):
        TrainingDynamics(torch.tensor([1, 1]), 3)
    td = TrainingDynamics(torch.tensor([1, 5]), 3)
    with pytest.raises(KeyError, match=r"\[4\]"):
        td.update(torch.tensor([4]), torch.ones(1, 3) / 3)


def test_kl_direction_and_value():
    target = torch.tensor([[0.5, 0.5, 0.0]])  # p̄
    logits = torch.log(torch.tensor([[0.25, 0.25, 0.5]]))  # softmax(m(x)) = (0.25, 0.25, 0.5)
    # KL(p̄ || p̃) = 0.5 log(0.5/0.25) * 2 + 0 = log 2 ; the reverse KL(p̃ || p̄) is infinite
    assert math.isclose(td_kl_loss(logits, target).item(), math.log(2), rel_tol=1e-6)
    batch_t = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]])
    batch_l = torch.log(torch.tensor([[0.25, 0.25, 0.5], [0.25, 0.25, 0.5]]))
    assert math.isclose(td_kl_loss(batch_l, batch_t).item(), math.log(2) / 2, rel_tol=1e-6)  # batch mean


def test_kl_gradient_reaches_the_module_not_the_target():
    logits = torch.zeros(1, 2, requires_grad=True)
    target = torch.tensor([[0.9, 0.1]], requires_grad=True)
    td_kl_loss(logits, target).backward()
    assert logits.grad is not None and target.grad is None
    assert logits.grad[0, 0] < 0  # pushes the module towards the target's larger class
