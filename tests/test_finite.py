"""tidal.finite: what is non-finite in weights and inputs, and which cause a diagnosis names."""

import pytest
import torch
from torch import nn

from tidal.data.dataset import FeatureDataset
from tidal.errors import NonFiniteError
from tidal.finite import check_weights, diagnose, input_problem, weight_problem


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def test_weight_problems_name_the_tensor():
    net = _net()
    assert weight_problem(net) is None
    net[1].running_var[1] = -0.5
    assert weight_problem(net) == "negative batch-norm variances in '1.running_var'"
    net[2].weight.data[0, 0] = float("nan")
    assert weight_problem(net) == "NaN or infinite values in '2.weight'"
    with pytest.raises(NonFiniteError, match=r"weights before training \(from --weights w.pth\) hold NaN or infinite "
                                             r"values in '2.weight'; the checkpoint is corrupt"):
        check_weights(net, "from --weights w.pth")


def test_input_problems_name_the_first_sample_and_the_fix():
    x = torch.randn(20, 4)
    data = FeatureDataset(x.clone(), torch.arange(20) % 2, 2)
    assert input_problem(data, torch.arange(20), 8, "test") is None
    data.features[13, 2] = 5e7
    assert input_problem(data, torch.arange(20), 8, "test") == (
        "the test inputs reach |x| = 5e+07 (sample 13), too large for float32 layers; scale or standardise the data")
    data.features[9, 0] = float("inf")
    assert input_problem(data, torch.arange(20), 8, "test").startswith(
        "the test inputs hold NaN or infinite values (first: sample 9); clean the data")


def test_diagnosis_order_data_then_trained_weights_then_the_model():
    data = FeatureDataset(torch.randn(10, 4), torch.arange(10) % 2, 2)
    ids = torch.arange(10)
    net = _net()
    assert "eval-mode forward gives them although its inputs and weights are finite" in \
        diagnose(net, [(data, ids, "test")], 4, 0.1)
    net[0].weight.data.mul_(1e9)
    assert diagnose(net, [(data, ids, "test")], 4, 0.1).startswith(
        "training grew the weights to |w| = ") and "lower the learning rate (lr=0.1)" in \
        diagnose(net, [(data, ids, "test")], 4, 0.1)
    net[1].running_var.fill_(float("inf"))
    assert diagnose(net, [(data, ids, "test")], 4, 0.1) == (
        "training left NaN or infinite values in '1.running_var'; lower the learning rate (lr=0.1)")
    data.features[3] = float("nan")
    assert diagnose(net, [(data, ids, "test")], 4, 0.1).startswith("the test inputs hold NaN")
