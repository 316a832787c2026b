"""FashionMNIST from the official IDX ``.gz`` files (Xiao et al. 2017), no torchvision.

An explicit ``data_dir`` (``--data-dir``) is the only place searched: the files must be in
``data_dir`` or ``data_dir/fashion-mnist``, else they are downloaded into ``data_dir`` (when
allowed) or a ``DatasetError`` lists the files expected there. Without ``data_dir`` they are
looked for, in order, in ``$TIDAL_DATA``, ``/usr/share/datasets/fashion-mnist`` (Debian
package ``dataset-fashion-mnist``) and the user cache ``~/.cache/tidal/fashion-mnist``, and
downloaded into the cache when none holds them. Downloads are checked against the
published MD5s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tidal.data.checks import check_splits
from tidal.data.dataset import DatasetSplits, ImageDataset
from tidal.data.download import cache_dir, fetch, search_dirs
from tidal.data.idx import read_idx
from tidal.errors import DatasetError

__all__ = ["FILES", "CLASS_NAMES", "MD5", "find_fashion_mnist", "load_fashion_mnist", "SYSTEM_DIR", "URL"]

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
# MD5s of the official .gz files, as published in github.com/zalandoresearch/fashion-mnist
# (README, "Get the Data") and checked by torchvision's FashionMNIST. Only downloads are
# checked: the Debian package recompresses the files, so its copies have other sums.
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# Statistics of the 60,000 training images, in [0, 1] units (computed by load_fashion_mnist
# on the official files; kept fixed so a long-tailed pool uses the same normalisation).
MEAN, STD = (0.2860,), (0.3530,)


def _cache_dir() -> Path:
    return cache_dir("fashion-mnist")


def _candidates(data_dir: str | Path | None) -> list[Path]:
    return search_dirs("fashion-mnist", data_dir, (SYSTEM_DIR,))


def find_fashion_mnist(data_dir: str | Path | None = None, download: bool = True) -> Path:
    """The first directory holding all four official files, downloading them if allowed.

    An explicit ``data_dir`` is used alone (never the system copy or the cache): missing
    files are downloaded into it, or the error lists the files expected there.
    """
    tried = _candidates(data_dir)
    for d in tried:
        if all((d / f).is_file() for f in FILES.values()):
            return d
    target = Path(data_dir) if data_dir is not None else _cache_dir()
    if download:
        try:
            for name in FILES.values():
                if not (target / name).is_file():
                    fetch(URL + name, target / name, MD5[name])
            return target
        except DatasetError as exc:
            reason = str(exc)
    else:
        reason = "downloading is disabled"
    files = ", ".join(FILES.values())
    if data_dir is not None:
        fix = (f"put {files} (from {URL}) in {target}, or allow downloading into it, "
               "or drop --data-dir to use the copy from `sudo apt-get install dataset-fashion-mnist`")
    else:
        fix = (f"`sudo apt-get install dataset-fashion-mnist`, or put {files} (from {URL}) in a folder and "
               "pass --data-dir FOLDER (or set TIDAL_DATA)")
    raise DatasetError(f"FashionMNIST files not found in {', '.join(str(d) for d in tried)}; {reason}. Fix: {fix}.")


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

    return check_splits(DatasetSplits("fashion-mnist", split("train"), split("test"), CLASS_NAMES), str(root))
