"""from_torch_datasets: any (image, label) Dataset as a split; PIL, numpy and tensor images."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from tidal.data.dataset import Augment, Split
from tidal.data.torch_source import from_torch_datasets
from tidal.errors import DatasetError


class Toy(Dataset):
    """Sample ``i``: an ``8 x 8`` image whose pixels are all ``(7 * i) % 256``, label ``i % 3``."""

    def __init__(self, n=12, kind="pil", targets=False, channels=3, odd=None):
        self.n, self.kind, self.channels, self.odd = n, kind, channels, odd
        if targets:
            self.targets = [i % 3 for i in range(n)]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.odd:
            return torch.zeros(3, 9, 9), 0
        a = np.full((8, 8, self.channels), (7 * i) % 256, dtype=np.uint8)
        a[0, 0] = 0  # not constant, so std > 0
        if self.kind == "pil":
            img = Image.fromarray(a[..., 0] if self.channels == 1 else a)
        elif self.kind == "numpy":
            img = a
        elif self.kind == "tensor":
            img = torch.from_numpy(a).permute(2, 0, 1).float() / 255
        else:
            img = "not an image"
        return img, i % 3


@pytest.mark.parametrize("kind", ["pil", "numpy", "tensor"])
def test_images_labels_and_normalisation(kind):
    s = from_torch_datasets(Toy(kind=kind), Toy(n=4, kind=kind), name="toy", workers=0)
    assert s.name == "toy" and s.class_names == ("0", "1", "2")
    assert isinstance(s.train, Split) and s.train.input_shape == (3, 8, 8) and s.train.num_classes == 3
    assert s.train.labels.tolist() == [i % 3 for i in range(12)] and len(s.test) == 4
    x = s.train.inputs(torch.tensor([5]))
    mean, std = torch.tensor(s.train.mean), torch.tensor(s.train.std)
    torch.testing.assert_close(x[0, :, 3, 3], (35 / 255 - mean) / std)


def test_grayscale_pil_keeps_one_channel_and_targets_are_used():
    ds = Toy(kind="pil", channels=1, targets=True)
    ds.targets = [2 - t for t in ds.targets]  # differs from what __getitem__ says: proves .targets is read
    s = from_torch_datasets(ds, Toy(n=3, channels=1), workers=0)
    assert s.train.input_shape == (1, 8, 8) and s.train.labels[:3].tolist() == [2, 1, 0]


def test_augmented_batches_identical_with_0_and_2_workers():
    s = from_torch_datasets(Toy(n=20), Toy(n=4), workers=0)
    batch_ids = [torch.arange(0, 7), torch.arange(7, 14), torch.arange(14, 20)]

    def run(split):
        g = torch.Generator().manual_seed(3)
        return [(ids, x) for ids, x in split.batches(batch_ids, Augment(crop_padding=2), g)]

    a = run(s.train)
    s.train.num_workers = 2
    b = run(s.train)
    for (ia, xa), (ib, xb) in zip(a, b, strict=True):
        assert torch.equal(ia, ib) and torch.equal(xa, xb)
    assert not torch.equal(a[0][1], s.train.inputs(batch_ids[0]))  # augmentation changed something


def test_subset_keeps_samples():
    s = from_torch_datasets(Toy(), Toy(n=4), workers=0)
    sub = s.train.subset(torch.tensor([9, 2]))
    assert sub.labels.tolist() == [0, 2]
    torch.testing.assert_close(sub.inputs(torch.tensor([0])), s.train.inputs(torch.tensor([9])))


@pytest.mark.parametrize("case", ["type", "shape", "label", "raises"])
def test_bad_samples_give_one_line(case):
    train, kw = Toy(), {}
    if case == "type":
        train = Toy(kind="str")
    elif case == "shape":
        train = Toy(odd=3)
    elif case == "label":
        kw = {"num_classes": 2}
    else:
        train = Toy()
        train.__class__ = type("Broken", (Toy,), {"__getitem__": lambda self, i: 1 / 0})
    with pytest.raises(DatasetError) as err:
        s = from_torch_datasets(train, Toy(n=2), workers=0, **kw)
        s.train.inputs(torch.arange(len(s.train)))
    msg = str(err.value)
    assert "\n" not in msg and "fix" in msg
    assert {"type": "str", "shape": "dataset[3]", "label": "label 2", "raises": "ZeroDivisionError"}[case] in msg
