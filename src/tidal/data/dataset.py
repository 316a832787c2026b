"""The split interface every data source returns, and its in-memory implementations.

A *split* is one part (train or test) of a dataset. Everything downstream (the training
step, evaluation, gathering, the strategies) asks a split for model inputs of given
absolute ids and never looks at how it holds its samples:

``labels``        int64 ``[N]`` on the split's device; ``-1`` = not labelled (yet)
``num_classes``   ``C``
``input_shape``   one model input's shape: ``(C_in, H, W)`` for images, ``(D,)`` for vectors
``device``        where ``inputs``/``batches`` put their tensors
``inputs(ids)``   float model inputs ``[b, *input_shape]`` of ``ids`` (no augmentation)
``batches(batch_ids, augment=None, generator=None)``
                  yields ``(ids on device, inputs)`` for each id tensor of ``batch_ids`` in
                  order; with ``augment`` (training) the inputs are augmented with randomness
                  from ``generator`` (a CPU ``torch.Generator``). A disk-backed split decodes
                  ahead in worker processes here.
``to(device)``, ``subset(ids)``, ``with_labels(labels)`` (the same samples, other labels), ``len()``

Implementations: :class:`ImageDataset` (uint8 images in memory, augmentation on whole
batches: the fast path for FashionMNIST, CIFAR and SVHN), :class:`FeatureDataset` (float
feature vectors in memory, e.g. embeddings from a foundation model) and the disk-backed
``tidal.data.files.DiskSplit`` kinds: ``FileDataset`` (images decoded from disk on demand:
iNaturalist, large folders) and ``TorchSourceDataset`` (a user's torch ``Dataset``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch

from tidal.data.augment import augment as augment_batch
from tidal.data.augment import to_float

__all__ = ["Augment", "DatasetSplits", "FeatureDataset", "ImageDataset", "Split"]


@dataclass(frozen=True)
class Augment:
    """Training-time augmentation (paper §5.1): random crop after zero-padding, horizontal flip.

    A disk-backed image split applies its own ImageNet-style crop and uses ``flip`` only;
    a feature split applies none.
    """

    crop_padding: int = 4  # pixels of zero padding before the random crop (0 = no crop)
    flip: bool = True  # mirror left-right with probability 1/2


@runtime_checkable
class Split(Protocol):
    """What the package asks of a split (see the module docstring)."""

    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def device(self) -> torch.device: ...

    def inputs(self, ids: torch.Tensor) -> torch.Tensor: ...

    def batches(self, batch_ids: Iterable[torch.Tensor], augment: Augment | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def to(self, device: torch.device | str) -> "Split": ...

    def subset(self, ids: torch.Tensor) -> "Split": ...

    def with_labels(self, labels: torch.Tensor) -> "Split": ...


def _check_labels(labels: torch.Tensor, n: int, what: str, cls: str) -> None:
    """``labels`` must be int64 ``[n]``."""
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"{cls} labels must be an int64 tensor [N], got {got}; convert with .long().flatten()")
    if labels.shape[0] != n:
        raise ValueError(f"{cls} has {n} {what} but {labels.shape[0]} labels; give one label per sample")


@dataclass(frozen=True)
class ImageDataset:
    """One split of an image dataset, entirely in memory.

    images: uint8 ``[N, C, H, W]``; labels: int64 ``[N]`` (``-1`` = unknown). A sample's
    index in these tensors is its *absolute* index, the only index the rest of the package
    uses. Construction checks dtypes and shapes only (``ValueError``); the loaders check
    values (``tidal.data.checks.check_splits``).
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per-channel mean of the training images, in [0, 1] units
    std: tuple[float, ...]  # per-channel standard deviation, in [0, 1] units

    def __post_init__(self) -> None:
        # Cheap shape/dtype checks only (no pass over the pixels): the loaders check values.
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = (f"{self.images.dtype} {tuple(self.images.shape)}" if isinstance(self.images, torch.Tensor)
                   else type(self.images).__name__)
            raise ValueError(f"ImageDataset images must be a uint8 tensor [N, C, H, W] with values 0..255, got {got}; "
                             "convert float images with (x * 255).round().to(torch.uint8)")
        _check_labels(self.labels, int(self.images.shape[0]), "images", "ImageDataset")
        c = int(self.images.shape[1])
        if len(self.mean) != c or len(self.std) != c:
            raise ValueError(f"ImageDataset has {c} channels but mean={self.mean} and std={self.std}; "
                             "give one mean and one std per channel")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.image_shape

    @property
    def device(self) -> torch.device:
        return self.images.device

    def inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """Normalised float32 ``[b, C, H, W]`` of ``ids``: ``(x / 255 - mean) / std``."""
        return to_float(self.images[ids.to(self.images.device)], self.mean, self.std)

    def batches(self, batch_ids: Iterable[torch.Tensor], augment: Augment | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for ids in batch_ids:
            ids = ids.to(self.images.device)
            x = to_float(self.images[ids], self.mean, self.std)
            if augment is not None:
                x = augment_batch(x, augment.crop_padding, augment.flip, generator)
            yield ids, x

    def to(self, device: torch.device | str) -> "ImageDataset":
        """The same split on ``device`` (no copy when it is already there)."""
        return ImageDataset(self.images.to(device), self.labels.to(device), self.num_classes, self.mean, self.std)

    def subset(self, indices: torch.Tensor) -> "ImageDataset":
        """A smaller split holding ``indices`` (re-indexed from 0); used for test slices."""
        return ImageDataset(self.images[indices], self.labels[indices], self.num_classes, self.mean, self.std)

    def with_labels(self, labels: torch.Tensor) -> "ImageDataset":
        """The same images with ``labels`` (int64 ``[N]``) in place of their own, on the split's device."""
        return replace(self, labels=labels.to(self.device))


@dataclass(frozen=True)
class FeatureDataset:
    """One split of feature vectors in memory (e.g. a foundation model's embeddings).

    features: float32 ``[N, D]``, used as they are (standardise them beforehand if needed);
    labels: int64 ``[N]`` (``-1`` = unknown). No augmentation.
    """

    features: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        f = self.features
        if not isinstance(f, torch.Tensor) or not f.dtype.is_floating_point or f.dim() != 2:
            got = f"{f.dtype} {tuple(f.shape)}" if isinstance(f, torch.Tensor) else type(f).__name__
            raise ValueError(f"FeatureDataset features must be a float tensor [N, D], got {got}; "
                             "convert with .float() and flatten each sample to one vector")
        _check_labels(self.labels, int(f.shape[0]), "feature vectors", "FeatureDataset")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.features.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.features.device

    def inputs(self, ids: torch.Tensor) -> torch.Tensor:
        return self.features[ids.to(self.features.device)]

    def batches(self, batch_ids: Iterable[torch.Tensor], augment: Augment | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for ids in batch_ids:
            ids = ids.to(self.features.device)
            yield ids, self.features[ids]

    def to(self, device: torch.device | str) -> "FeatureDataset":
        return FeatureDataset(self.features.to(device), self.labels.to(device), self.num_classes)

    def subset(self, indices: torch.Tensor) -> "FeatureDataset":
        return FeatureDataset(self.features[indices], self.labels[indices], self.num_classes)

    def with_labels(self, labels: torch.Tensor) -> "FeatureDataset":
        """The same features with ``labels`` (int64 ``[N]``) in place of their own, on the split's device."""
        return replace(self, labels=labels.to(self.device))


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's training split (the active-learning pool is drawn from it) and test split."""

    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]
