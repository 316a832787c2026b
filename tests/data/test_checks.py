import pytest
import torch

from tidal.data import DatasetSplits, FeatureDataset, ImageDataset, check_splits
from tidal.data.checks import channel_stats
from tidal.errors import DatasetError


def _img(n=4, size=8, c=1, labels=None, classes=3):
    labels = torch.arange(n) % classes if labels is None else torch.tensor(labels)
    n = len(labels)
    return ImageDataset(torch.zeros(n, c, size, size, dtype=torch.uint8), labels, classes, (0.5,) * c, (0.2,) * c)


def _check(train, test, names=("a", "b", "c"), **kw) -> str:
    with pytest.raises(DatasetError) as err:
        check_splits(DatasetSplits("d", train, test, names), "SRC", **kw)
    msg = str(err.value)
    assert msg.startswith("SRC: ") and "\n" not in msg
    return msg


def test_good_splits_pass_unchanged():
    s = DatasetSplits("d", _img(), _img(2), ("a", "b", "c"))
    assert check_splits(s, "SRC") is s


def test_each_refusal_quotes_the_value():
    assert "train split holds 0 samples" in _check(_img(0), _img())
    assert "test split holds 0 samples" in _check(_img(), _img(0))
    assert "1x8x8 but test inputs are 1x9x9" in _check(_img(), _img(size=9))
    assert "images are 7x7 pixels, smaller than 8x8" in _check(_img(size=7), _img(size=7))
    assert "1 class(es)" in _check(_img(classes=1, labels=[0, 0]), _img(classes=1, labels=[0]), names=("a",))
    assert "3 classes but 2 class names" in _check(_img(), _img(), names=("a", "b"))
    assert "train has 3 classes but test has 4" in _check(_img(), _img(classes=4), names=("a", "b", "c"))
    assert "train label 3 at index 1 is outside 0..2" in _check(_img(labels=[0, 3]), _img())
    assert "test label -2 at index 0" in _check(_img(), _img(labels=[-2]))


def test_unlabelled_train_samples_need_the_flag():
    assert "allow_unlabeled" in _check(_img(labels=[0, -1, 2]), _img())
    s = DatasetSplits("d", _img(labels=[0, -1, 2]), _img(), ("a", "b", "c"))
    assert check_splits(s, "SRC", allow_unlabeled=True) is s
    assert "test label -1" in _check(_img(), _img(labels=[-1]), allow_unlabeled=True)


def test_features_must_be_finite():
    good = FeatureDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]), 2)
    bad = FeatureDataset(torch.tensor([[0.0, float("nan")]]), torch.tensor([1]), 2)
    assert "test features hold NaN" in _check(good, bad, names=("a", "b"))


def test_split_constructors_check_dtype_and_shape_cheaply():
    labels = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8 tensor"):
        ImageDataset(torch.zeros(2, 1, 8, 8), labels, 2, (0.5,), (0.2,))
    with pytest.raises(ValueError, match=r"got torch.uint8 \(2, 8, 8\)"):
        ImageDataset(torch.zeros(2, 8, 8, dtype=torch.uint8), labels, 2, (0.5,), (0.2,))
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        ImageDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), 2, (0.5,), (0.2,))
    with pytest.raises(ValueError, match="int64 tensor"):
        ImageDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), labels.int(), 2, (0.5,), (0.2,))
    with pytest.raises(ValueError, match="one mean and one std per channel"):
        ImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), labels, 2, (0.5,), (0.2,))
    with pytest.raises(ValueError, match="float tensor"):
        FeatureDataset(torch.zeros(2, 3, dtype=torch.int64), labels, 2)
    with pytest.raises(ValueError, match="float tensor"):
        FeatureDataset(torch.zeros(2, 3, 1), labels, 2)
    with pytest.raises(ValueError, match="2 feature vectors but 1 labels"):
        FeatureDataset(torch.zeros(2, 3), labels[:1], 2)


def test_subset_and_to_still_work():
    d = _img(6)
    assert len(d.subset(torch.tensor([1, 2]))) == 2 and d.to("cpu") is not None


def test_channel_stats_match_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (9, 3, 5, 4), generator=g, dtype=torch.uint8)
    mean, std = channel_stats(x.split(4))
    ref = x.double().div(255).permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), ref.mean(1))
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), ref.std(1, unbiased=False))


def test_train_split_needs_samples_of_two_classes():
    """issue 21 case 7: a training split of one class trained and stored 100% (or 33.3%)."""
    msg = _check(_img(labels=[0, 0, 0]), _img(labels=[0, 1, 2]))
    assert "samples of 1 of its 3 classes" in msg and "[3, 0, 0]" in msg and "fix:" in msg
    assert "[0, 2]" in _check(_img(classes=2, labels=[1, 1]), _img(classes=2, labels=[0, 1]), names=("a", "b"))
    names = tuple(f"c{k}" for k in range(30))
    wide = _check(_img(classes=30, labels=[7, 7]), _img(classes=30, labels=[0]), names=names)
    assert "{7: 2} of 30 classes" in wide
    # a labelling project may start with labels of one class (or none)
    s = DatasetSplits("d", _img(labels=[0, -1, -1]), _img(), ("a", "b", "c"))
    assert check_splits(s, "SRC", allow_unlabeled=True) is s
