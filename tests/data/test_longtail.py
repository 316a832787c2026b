import pytest
import torch

from tidal.data import longtail_counts, longtail_indices


def test_counts_follow_the_exponential_profile():
    # 5000 * 10^(-c/9): 5000, 3871.3, 2997.4, 2320.8, 1796.9, 1391.3, 1077.2, 834.05, 645.8, 500
    assert longtail_counts(5000, 10, 10) == [5000, 3871, 2997, 2320, 1796, 1391, 1077, 834, 645, 500]
    c = longtail_counts(6000, 10, 100)
    assert c[0] == 6000 and c[-1] == 60 and c == sorted(c, reverse=True)
    assert longtail_counts(100, 3, 1) == [100, 100, 100]


@pytest.mark.parametrize("bad", [0.5, 0, -3, float("nan")])
def test_imbalance_below_one_is_rejected(bad):
    with pytest.raises(ValueError, match="must be >= 1"):
        longtail_counts(10, 3, bad)


def test_indices_are_a_seeded_subset_with_the_right_counts():
    labels = torch.arange(1000) % 10
    a = longtail_indices(labels, 10, torch.Generator().manual_seed(1))
    b = longtail_indices(labels, 10, torch.Generator().manual_seed(1))
    c = longtail_indices(labels, 10, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert labels[a].bincount(minlength=10).tolist() == longtail_counts(100, 10, 10)
    assert len(torch.unique(a)) == len(a)
    assert torch.equal(longtail_indices(labels, 1, torch.Generator()), torch.arange(1000))


def test_num_classes_argument_keeps_the_default_numbers():
    labels = torch.arange(1000) % 10
    a = longtail_indices(labels, 100, torch.Generator().manual_seed(3))
    b = longtail_indices(labels, 100, torch.Generator().manual_seed(3), num_classes=10)
    assert torch.equal(a, b)


def test_num_classes_notices_empty_and_out_of_range_classes():
    labels = torch.arange(100) % 4  # class 4 of 5 has no sample
    with pytest.raises(ValueError, match=r"classes \[4\] have no training sample"):
        longtail_indices(labels, 10, torch.Generator(), num_classes=5)
    with pytest.raises(ValueError, match="num_classes=3"):
        longtail_indices(labels, 10, torch.Generator(), num_classes=3)
    with pytest.raises(ValueError, match="unlabelled"):
        longtail_indices(torch.tensor([0, 1, -1, 1]), 10, torch.Generator(), num_classes=2)
    assert len(longtail_indices(torch.tensor([0, 1, -1, 1]), 1, torch.Generator(), num_classes=2)) == 4
