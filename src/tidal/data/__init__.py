"""Datasets read from their official file formats, long-tail sampling and batch augmentation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tidal.data.augment import augment, to_float
from tidal.data.dataset import DatasetSplits, ImageDataset
from tidal.data.fashion_mnist import load_fashion_mnist
from tidal.data.files import FileDataset
from tidal.data.folder import load_folder
from tidal.data.inat import load_inat2018
from tidal.data.longtail import longtail_counts, longtail_indices
from tidal.data.torch_source import from_torch_datasets

__all__ = [
    "DATASETS",
    "DatasetSplits",
    "FileDataset",
    "ImageDataset",
    "augment",
    "from_torch_datasets",
    "load_dataset",
    "load_folder",
    "load_inat2018",
    "longtail_counts",
    "longtail_indices",
    "to_float",
]

# name -> loader(data_dir, download) -> DatasetSplits
DATASETS: dict[str, Callable[[str | Path | None, bool], DatasetSplits]] = {
    "fashion-mnist": load_fashion_mnist,
}


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """Load a registered dataset by name; unknown names raise a ``ValueError`` listing the valid ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](data_dir, download)
