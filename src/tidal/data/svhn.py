"""SVHN (Netzer et al. 2011) from the official cropped-digits files ``train_32x32.mat`` and
``test_32x32.mat`` (MATLAB v5, read with ``scipy.io.loadmat``).

Each file holds ``X``: uint8 ``[32, 32, 3, N]`` (height, width, channel, sample) and ``y``:
``[N, 1]`` with labels 1..10, where 10 stands for the digit 0. The ``extra`` file is not used
(the paper trains on the 73,257 ``train`` images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tidal.data.checks import check_splits, image_split
from tidal.data.dataset import DatasetSplits
from tidal.data.download import Resource, cache_dir, ensure_files, search_dirs
from tidal.errors import DatasetError

__all__ = ["CLASS_NAMES", "MEAN", "RESOURCES", "STD", "load_svhn", "read_svhn_mat"]

# URLs and MD5s as published at http://ufldl.stanford.edu/housenumbers/ (the values
# torchvision's SVHN checks).
RESOURCES = {
    "train": Resource("train_32x32.mat", "http://ufldl.stanford.edu/housenumbers/train_32x32.mat",
                      "e26dedcc434d2e4c54c9b2d4a06d8373"),
    "test": Resource("test_32x32.mat", "http://ufldl.stanford.edu/housenumbers/test_32x32.mat",
                     "eb5a983be6a315427106f1b164d9cef3"),
}
CLASS_NAMES = tuple(str(d) for d in range(10))
# Statistics of the 73,257 official training images, every pixel of a channel pooled,
# population std, in [0, 1] units (the widely quoted 0.4377/0.4438/0.4728, 0.1980/0.2010/0.1970).
MEAN, STD = (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, 3, H, W]`` images and int64 ``[N]`` labels (10 -> 0) of one official ``.mat`` file."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # noqa: BLE001 (scipy raises many kinds for a bad file; all mean the same)
        raise DatasetError(f"cannot read {path} ({exc.__class__.__name__}: {exc}); it is truncated or not "
                           "a MATLAB v5 file: delete it and download it again") from None
    if "X" not in mat or "y" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DatasetError(f"{path} holds {keys}, not 'X' and 'y'; it is not an official SVHN file: download it again")
    x, y = mat["X"], mat["y"]
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[2] != 3:
        raise DatasetError(f"{path}: X is {x.dtype} {x.shape}, expected uint8 [H, W, 3, N]; download it again")
    if y.dtype.kind not in "iuf" or y.size != x.shape[3] or (y.dtype.kind == "f" and not np.all(y == np.round(y))):
        raise DatasetError(f"{path}: {x.shape[3]} images but y is {y.dtype} {y.shape}; expected one integer "
                           "label per image ([N, 1]): download it again")
    labels = y.reshape(-1).astype(np.int64)
    labels[labels == 10] = 0  # the official files label the digit 0 as 10
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # [H, W, C, N] -> [N, C, H, W]
    return images, labels


def _locate(data_dir: str | Path | None, download: bool) -> Path:
    resources = tuple(RESOURCES.values())
    dirs = search_dirs("svhn", data_dir)
    for d in dirs:
        if all((d / r.filename).is_file() for r in resources):
            return d
    target = dirs[0] if data_dir is not None else cache_dir("svhn")
    hint = "" if data_dir is not None else " (or pass --data-dir FOLDER, or set TIDAL_DATA)"
    return ensure_files("svhn", resources, target, download, hint)


def load_svhn(data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """SVHN: 73,257 training and 26,032 test images, uint8 ``[N, 3, 32, 32]``, classes "0".."9"."""
    root = _locate(data_dir, download)
    parts = {}
    for split, r in RESOURCES.items():
        x, y = read_svhn_mat(root / r.filename)
        parts[split] = image_split(torch.from_numpy(x), torch.from_numpy(y), 10, MEAN, STD, str(root / r.filename))
    source = f"{root / RESOURCES['train'].filename} and {RESOURCES['test'].filename}"
    return check_splits(DatasetSplits("svhn", parts["train"], parts["test"], CLASS_NAMES), source)
