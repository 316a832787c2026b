"""In-memory image datasets: the whole split lives on one device as uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ImageDataset", "DatasetSplits"]


@dataclass(frozen=True)
class ImageDataset:
    """One split of an image dataset, entirely in memory.

    images: uint8 ``[N, C, H, W]``; labels: int64 ``[N]``. A sample's index in these
    tensors is its *absolute* index, the only index the rest of the package uses.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]  # per-channel mean of the training images, in [0, 1] units
    std: tuple[float, ...]  # per-channel standard deviation, in [0, 1] units

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "ImageDataset":
        """The same split on ``device`` (no copy when it is already there)."""
        return ImageDataset(self.images.to(device), self.labels.to(device), self.num_classes, self.mean, self.std)

    def subset(self, indices: torch.Tensor) -> "ImageDataset":
        """A smaller split holding ``indices`` (re-indexed from 0); used for test slices."""
        return ImageDataset(self.images[indices], self.labels[indices], self.num_classes, self.mean, self.std)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset's training split (the active-learning pool is drawn from it) and test split."""

    name: str
    train: ImageDataset
    test: ImageDataset
    class_names: tuple[str, ...]
