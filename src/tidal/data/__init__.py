"""Datasets read from their official file formats, long-tail sampling and batch augmentation."""

from __future__ import annotations

from pathlib import Path

from tidal.data.arrays import from_arrays, load_npz
from tidal.data.augment import augment, to_float
from tidal.data.checks import check_splits
from tidal.data.dataset import Augment, DatasetSplits, FeatureDataset, ImageDataset, Split
from tidal.data.files import FileDataset
from tidal.data.folder import load_folder
from tidal.data.inat import load_inat2018
from tidal.data.longtail import longtail_counts, longtail_indices
from tidal.data.sources import (SourceInfo, check_source_spec, is_source, list_sources, load_source, register_source,
                                source_info)
from tidal.data.torch_source import from_torch_datasets

__all__ = [
    "DatasetSplits",
    "Augment",
    "FeatureDataset",
    "FileDataset",
    "ImageDataset",
    "SourceInfo",
    "Split",
    "augment",
    "check_source_spec",
    "check_splits",
    "from_arrays",
    "from_torch_datasets",
    "is_source",
    "list_sources",
    "load_dataset",
    "load_folder",
    "load_inat2018",
    "load_npz",
    "load_source",
    "longtail_counts",
    "longtail_indices",
    "register_source",
    "source_info",
    "to_float",
]


def load_dataset(name: str, data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """``load_source(name, data_dir, download)``; unknown names raise a ``ValueError`` listing the valid ones."""
    return load_source(name, data_dir=data_dir, download=download)
