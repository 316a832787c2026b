"""FashionMNIST from the official IDX ``.gz`` files (Xiao et al. 2017), no torchvision.

Files are looked for, in order, in: ``data_dir`` (``--data-dir``), ``$TIDAL_DATA``,
``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), and the
user cache ``~/.cache/tidal/fashion-mnist``. When none holds them they are downloaded
into the cache from the dataset's official location; offline, a ``DatasetError`` says how
to get them.
"""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import numpy as np
import torch

from tidal.data.dataset import DatasetSplits, ImageDataset
from tidal.data.idx import read_idx
from tidal.errors import DatasetError
from tidal.io import atomic_path

__all__ = ["FILES", "CLASS_NAMES", "find_fashion_mnist", "load_fashion_mnist", "SYSTEM_DIR", "URL"]

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# Statistics of the 60,000 training images, in [0, 1] units (computed by load_fashion_mnist
# on the official files; kept fixed so a long-tailed pool uses the same normalisation).
MEAN, STD = (0.2860,), (0.3530,)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tidal" / "fashion-mnist"


def _candidates(data_dir: str | Path | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [Path(data_dir), Path(data_dir) / "fashion-mnist"]
    if os.environ.get("TIDAL_DATA"):
        env = Path(os.environ["TIDAL_DATA"])
        dirs += [env, env / "fashion-mnist"]
    return dirs + [SYSTEM_DIR, _cache_dir()]


def find_fashion_mnist(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The first directory holding all four official files, downloading them if allowed.

    An explicit ``data_dir`` that lacks the files is searched no further than the
    other standard places; the error lists every place that was tried.
    """
    tried = _candidates(data_dir)
    for d in tried:
        if all((d / f).is_file() for f in FILES.values()):
            return d
    if download:
        target = _cache_dir()
        try:
            target.mkdir(parents=True, exist_ok=True)
            for name in FILES.values():
                if not (target / name).is_file():
                    with atomic_path(target / name) as tmp:
                        urllib.request.urlretrieve(URL + name, tmp)  # noqa: S310 (fixed URL)
            return target
        except OSError as exc:
            reason = f"download from {URL} failed ({exc.__class__.__name__}: {exc})"
    else:
        reason = "downloading is disabled"
    raise DatasetError(
        "FashionMNIST files not found in " + ", ".join(str(d) for d in tried) + f"; {reason}. "
        "Fix: `sudo apt-get install dataset-fashion-mnist`, or put "
        + ", ".join(FILES.values())
        + " in a folder and pass --data-dir FOLDER (or set TIDAL_DATA)."
    )


def load_fashion_mnist(data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """Load the 60,000 training and 10,000 test images as uint8 ``[N, 1, 28, 28]`` tensors."""
    root = find_fashion_mnist(data_dir, download)
    arrays = {key: read_idx(root / name) for key, name in FILES.items()}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"{root}: {split} images {images.shape} and labels {labels.shape} do not match "
                "(expected [N, 28, 28] and [N]); fetch the files again"
            )
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise DatasetError(f"{root}: {split} labels go up to {labels.max()}, expected 0..9; fetch the files again")

    def split(prefix: str) -> ImageDataset:
        images = torch.from_numpy(arrays[f"{prefix}_images"]).unsqueeze(1)
        labels = torch.from_numpy(arrays[f"{prefix}_labels"].astype(np.int64))
        return ImageDataset(images, labels, len(CLASS_NAMES), MEAN, STD)

    return DatasetSplits("fashion-mnist", split("train"), split("test"), CLASS_NAMES)
