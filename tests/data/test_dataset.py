"""The Split protocol: every kind of split relabels with ``with_labels`` and keeps its samples."""

import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from tidal.data.dataset import FeatureDataset, ImageDataset, Split
from tidal.data.files import FileDataset
from tidal.data.torch_source import from_torch_datasets

N = 6


class _Tensors(Dataset):
    """``(float image [3, 8, 8] in [0, 1], label i % 2)`` of uint8 ``images``."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i].float() / 255, i % 2


def _images():
    return torch.randint(0, 256, (N, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def _split(kind, tmp_path):
    labels = torch.arange(N) % 2
    if kind == "image":
        return ImageDataset(_images(), labels, 2, (0.5,) * 3, (0.25,) * 3)
    if kind == "feature":
        return FeatureDataset(torch.randn(N, 5, generator=torch.Generator().manual_seed(0)), labels, 2)
    if kind == "file":
        paths = []
        for i, x in enumerate(_images()):
            paths.append(tmp_path / f"{i}.png")
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(paths[-1])
        return FileDataset(paths, labels, 2, 8, (0.5,) * 3, (0.25,) * 3, resize_eval=False, num_workers=0)
    return from_torch_datasets(_Tensors(_images()), _Tensors(_images()[:2]), workers=0).train


@pytest.mark.parametrize("kind", ["image", "feature", "file", "torch"])
def test_every_split_kind_relabels_with_with_labels(kind, tmp_path):
    split = _split(kind, tmp_path)
    before = split.labels.clone()
    new = torch.tensor([1, -1, 0, 1, -1, 0])
    out = split.with_labels(new)
    assert isinstance(out, Split) and type(out) is type(split)
    assert out.labels.tolist() == new.tolist() and out.labels.device == split.device
    assert torch.equal(split.labels, before)  # the original keeps its labels
    ids = torch.arange(N)
    assert torch.equal(out.inputs(ids), split.inputs(ids)) and out.input_shape == split.input_shape
    assert out.num_classes == split.num_classes and len(out) == N
    sub = out.subset(torch.tensor([4, 1])).to("cpu")
    assert sub.labels.tolist() == [-1, -1] and torch.equal(sub.inputs(torch.arange(2)), split.inputs(ids[[4, 1]]))
