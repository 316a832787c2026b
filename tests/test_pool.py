import pytest
import torch

from tidal.pool import LabelPool


def test_label_and_rounds():
    pool = LabelPool(torch.tensor([30, 10, 20, 40]))
    pool.label(torch.tensor([20]), round=0)
    pool.label(torch.tensor([40, 10]), round=1)
    assert pool.labeled.tolist() == [10, 20, 40] and pool.unlabeled.tolist() == [30]
    assert pool.round_of(torch.tensor([10, 20, 30])).tolist() == [1, 0, -1]


def test_errors():
    with pytest.raises(ValueError, match="duplicates"):
        LabelPool(torch.tensor([1, 1]))
    pool = LabelPool(torch.tensor([1, 2, 3]))
    pool.label(torch.tensor([1]), 0)
    with pytest.raises(ValueError, match="already labeled"):
        pool.label(torch.tensor([1]), 1)
    with pytest.raises(ValueError, match="not in the pool"):
        pool.label(torch.tensor([7]), 1)
    with pytest.raises(ValueError, match="twice"):
        pool.label(torch.tensor([2, 2]), 1)
