"""Any ``torch.utils.data.Dataset`` of ``(image, label)`` pairs as a pair of splits.

:func:`from_torch_datasets` wraps a user's train and test datasets in
:class:`TorchSourceDataset`, which implements the split interface of
:mod:`tidal.data.dataset`. A sample's image may be

* a PIL image (mode ``L`` gives 1 channel, ``RGB`` 3; any other mode is converted to RGB),
* a numpy array, ``[H, W]`` or ``[H, W, C]`` (HWC, as PIL and OpenCV give it),
* a torch tensor, ``[H, W]`` or ``[C, H, W]`` (CHW, as ``ToTensor`` gives it);

uint8 values are divided by 255, floating-point values are taken as already in [0, 1]
(so give ``ToTensor()`` output, not normalised tensors: this split normalises with the mean
and standard deviation of at most 2,000 training images, evenly spaced over the ids). Every
sample must have the shape of the first training sample. Labels are read once, at wrap time:
from ``dataset.targets`` when it has one entry per sample, otherwise by iterating the
dataset once (in ``workers`` processes). ``-1`` means "unknown".

Samples are fetched and converted in ``DataLoader`` worker processes. Training augmentation
is the paper's, on the decoded ``[b, C, H, W]`` tensor: random crop after zero-padding by
``augment.crop_padding`` pixels, then a horizontal flip when ``augment.flip``; its randomness
comes from one seed per batch drawn from the generator up front, so results do not depend
on the worker count. Any augmentation inside the user's dataset happens on top of it (and
with its own randomness); leave it out to keep runs reproducible.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from tidal.data.augment import augment as augment_batch
from tidal.data.checks import channel_stats, stats_ids
from tidal.data.dataset import Augment, DatasetSplits
from tidal.data.files import DiskSplit, decode_ahead
from tidal.errors import DatasetError

__all__ = ["TorchSourceDataset", "as_chw", "from_torch_datasets"]


def as_chw(image, where: str) -> torch.Tensor:
    """A sample's image as float32 ``[C, H, W]`` in [0, 1]; ``where`` names it in errors."""
    if type(image).__module__.startswith("PIL."):
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image = np.array(image)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise DatasetError(f"{where} is a numpy array of shape {image.shape}; fix: return [H, W] or [H, W, C]")
        t = torch.from_numpy(np.ascontiguousarray(image))
        t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        if image.ndim not in (2, 3):
            raise DatasetError(f"{where} is a tensor of shape {list(image.shape)}; fix: return [C, H, W] or [H, W]")
        t = image[None] if image.ndim == 2 else image
    else:
        raise DatasetError(f"{where} is a {type(image).__name__}; fix: return a PIL image, an HWC numpy array or "
                           "a CHW tensor as the sample's first element")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.is_floating_point():
        raise DatasetError(f"{where} has dtype {t.dtype}; fix: return uint8 (0-255) or float (0-1) pixels")
    return t.float()


def _sample(dataset: TorchDataset, i: int):
    """``dataset[i]`` as ``(image, label)``; a failing ``__getitem__`` becomes a one-line DatasetError."""
    try:
        sample = dataset[i]
    except Exception as exc:  # the user's code: report which sample, in one line
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise DatasetError(f"dataset[{i}] raised {exc.__class__.__name__}: {text}; fix: check the dataset's "
                           "__getitem__ for that index") from None
    if not isinstance(sample, (tuple, list)) or len(sample) < 2:
        raise DatasetError(f"dataset[{i}] is a {type(sample).__name__}, not an (image, label) pair; fix: return "
                           "(image, label) from __getitem__")
    return sample


class _Labels(TorchDataset):
    def __init__(self, dataset: TorchDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> int:
        return int(_sample(self.dataset, i)[1])


def read_labels(dataset: TorchDataset, workers: int) -> torch.Tensor:
    """int64 ``[N]``: ``dataset.targets`` when it has ``N`` entries, else one pass over the dataset."""
    n = len(dataset)
    targets = getattr(dataset, "targets", None)
    if targets is not None and len(targets) == n:
        return torch.as_tensor(np.asarray(targets), dtype=torch.int64).flatten()
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    loader = DataLoader(_Labels(dataset), batch_size=256, num_workers=workers, collate_fn=list)
    return torch.tensor([y for batch in loader for y in batch], dtype=torch.int64)


def _fetch(dataset: TorchDataset, index: np.ndarray, shape: tuple[int, ...], mean: Sequence[float],
           std: Sequence[float], ids: torch.Tensor, seed: int | None, augment: Augment | None = None) -> torch.Tensor:
    """``TorchSourceDataset.decode`` as a function of plain data, for worker processes."""
    out = torch.empty((len(ids), *shape))
    for k, i in enumerate(index[ids.numpy()].tolist()):
        x = as_chw(_sample(dataset, i)[0], f"dataset[{i}]'s image")
        if tuple(x.shape) != shape:
            raise DatasetError(f"dataset[{i}]'s image is {list(x.shape)} but the first sample's is {list(shape)}; "
                               "fix: make every sample the same size (e.g. resize in the dataset's transform)")
        out[k] = x
    out = out.sub_(torch.tensor(mean).view(1, -1, 1, 1)).div_(torch.tensor(std).view(1, -1, 1, 1))
    if augment is not None and seed is not None:
        out = augment_batch(out, augment.crop_padding, augment.flip, torch.Generator().manual_seed(seed))
    return out


class TorchSourceDataset(DiskSplit):
    """One split over a user's ``Dataset`` (see the module docstring).

    dataset: the wrapped dataset; index: int64 ``[N]`` positions in it (absolute id ``i`` is
    ``dataset[index[i]]``); labels: int64 ``[N]`` on the split's device; shape: ``(C, H, W)``;
    mean, std: per-channel statistics in [0, 1] units; num_workers: fetching processes.
    """

    def __init__(self, dataset: TorchDataset, index: np.ndarray, labels: torch.Tensor, num_classes: int,
                 shape: tuple[int, int, int], mean: Sequence[float], std: Sequence[float], num_workers: int = 2):
        self.dataset, self.index, self.labels, self.num_classes = dataset, index, labels, num_classes
        self.shape, self.mean, self.std, self.num_workers = tuple(shape), tuple(mean), tuple(std), num_workers

    def __repr__(self) -> str:
        return (f"TorchSourceDataset({type(self.dataset).__name__}, n={len(self)}, shape={self.shape}, "
                f"num_workers={self.num_workers}, device={self.device})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.shape  # type: ignore[return-value]

    def decode(self, ids: torch.Tensor, seed: int | None, augment: Augment | None = None) -> torch.Tensor:
        """Normalised float32 ``[b, C, H, W]`` of ``ids``, augmented with randomness from ``seed``."""
        return _fetch(self.dataset, self.index, self.shape, self.mean, self.std, ids, seed, augment)

    def batches(self, batch_ids: Iterable[torch.Tensor], augment: Augment | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(ids, inputs)`` per id tensor: float32 ``[b, C, H, W]`` on ``device``."""
        # what the workers get: the dataset and the transform, not the labels (which may be on a GPU)
        fetch = partial(_fetch, self.dataset, self.index, self.shape, self.mean, self.std, augment=augment)
        return decode_ahead(fetch, batch_ids, augment is not None, generator,
                            self.num_workers, self.device)

    def _with(self, keep: np.ndarray | None, labels: torch.Tensor) -> TorchSourceDataset:
        return TorchSourceDataset(self.dataset, self.index if keep is None else self.index[keep], labels,
                                  self.num_classes, self.shape, self.mean, self.std, self.num_workers)


def from_torch_datasets(train: TorchDataset, test: TorchDataset, num_classes: int | None = None,
                        class_names: Sequence[str] | None = None, name: str = "custom",
                        workers: int = 2) -> DatasetSplits:
    """Wrap two ``(image, label)`` datasets as train and test splits (module docstring).

    Args:
        num_classes: ``C``; by default the largest label + 1 (over both datasets).
        class_names: ``C`` names; by default ``train.classes`` when it has ``C`` entries, else
            ``"0" .. "C-1"``.
        name: the dataset's name in results and reports.
        workers: processes that fetch samples (0 = the calling process).
    Raises:
        DatasetError: an empty train set, a bad image type or shape, labels out of range.
    """
    if len(train) == 0:
        raise DatasetError(f"the training dataset ({type(train).__name__}) is empty; fix: pass one with samples")
    labels = [read_labels(d, workers) for d in (train, test)]
    found = max(int(y.max()) for y in labels if len(y)) + 1
    num_classes = found if num_classes is None else num_classes
    for part, y in zip(("train", "test"), labels):
        bad = ((y < -1) | (y >= num_classes)).nonzero().flatten()
        if len(bad):
            raise DatasetError(f"{part} label {int(y[bad[0]])} at index {int(bad[0])} is outside "
                               f"0..{num_classes - 1} (num_classes={num_classes}); fix: pass num_classes or "
                               "relabel to 0..C-1 (-1 = unknown)")
    if class_names is None:
        classes = getattr(train, "classes", None)
        class_names = classes if classes is not None and len(classes) == num_classes else range(num_classes)
    class_names = tuple(str(c) for c in class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class_names for num_classes={num_classes}; give one name per class")
    shape = tuple(as_chw(_sample(train, 0)[0], "train dataset[0]'s image").shape)

    def wrap(dataset: TorchDataset, y: torch.Tensor, mean, std) -> TorchSourceDataset:
        return TorchSourceDataset(dataset, np.arange(len(dataset)), y, num_classes, shape, mean, std, workers)

    ones = (0.0,) * shape[0], (1.0,) * shape[0]
    probe = wrap(train, labels[0], *ones)  # inputs in [0, 1]: mean 0, std 1
    mean, std = channel_stats((x for _, x in probe.batches(stats_ids(len(train)).split(256))), shape[0], scale=1.0,
                              floor=1 / 255, digits=4)
    return DatasetSplits(name, wrap(train, labels[0], mean, std), wrap(test, labels[1], mean, std), class_names)
