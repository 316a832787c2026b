"""CIFAR-10 and CIFAR-100 from the official "python version" (Krizhevsky 2009), no torchvision.

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``_5``,
``test_batch`` and ``batches.meta``; ``cifar-100-python.tar.gz`` holds ``cifar-100-python/``
with ``train``, ``test`` and ``meta``. Each is a pickled dict with bytes keys: ``b'data'``
uint8 ``[N, 3072]`` (per row the 1024 red, then green, then blue values of a 32x32 image in
row-major order), ``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100), and in the
meta file ``b'label_names'`` / ``b'fine_label_names'``.

The extracted folder or the tarball itself may sit in the data folder (members are read
from the tar directly). The pickles are read by a restricted unpickler that admits only
numpy's array reconstruction: any other global (e.g. ``os.system``) is refused, never run.
"""

from __future__ import annotations

import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tidal.data.checks import check_splits, image_split
from tidal.data.dataset import DatasetSplits
from tidal.data.download import Resource, cache_dir, ensure_files, search_dirs
from tidal.errors import DatasetError

try:  # numpy >= 2 moved the module; the files name either path (see _ALLOWED)
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover (numpy 1.x)
    from numpy.core.multiarray import _reconstruct

__all__ = ["CIFAR10", "CIFAR100", "CifarFormat", "load_cifar", "load_cifar10", "load_cifar100", "read_pickle"]

# Everything an official CIFAR pickle refers to by name (dicts, lists, bytes, str and int
# need no class). Names map to the objects themselves, so nothing is imported by name.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def read_pickle(raw: bytes, where: str) -> Any:
    """Unpickle ``raw`` (the bytes of file ``where``) admitting only numpy arrays and plain data.

    ``encoding="bytes"`` as the official files need (they were written by Python 2).
    Raises ``DatasetError`` naming ``where`` when the pickle is corrupt or asks for any
    other class or function (which is never called).
    """
    try:
        return _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DatasetError(f"{where}: refused to unpickle {exc} (an official CIFAR file holds only numpy arrays, "
                           "lists and strings); this is not an official file: delete it and download it again"
                           ) from None
    except Exception as exc:  # noqa: BLE001 (a corrupt pickle raises many kinds; all mean the same)
        raise DatasetError(f"{where} is truncated or corrupt ({exc.__class__.__name__}: {exc}); "
                           "delete it and download it again") from None


@dataclass(frozen=True)
class CifarFormat:
    """What tells CIFAR-10 and CIFAR-100 apart."""

    name: str  # source name, also the download subfolder
    resource: Resource  # the official tarball
    folder: str  # the folder inside the tarball
    train_members: tuple[str, ...]
    test_member: str
    meta_member: str
    label_key: bytes  # key of the labels in a batch
    names_key: bytes  # key of the class names in the meta file
    mean: tuple[float, ...]  # per-channel training-set mean, in [0, 1] units
    std: tuple[float, ...]  # per-channel training-set (population) standard deviation

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train_members, self.test_member, self.meta_member)


# URLs and MD5s as published on https://www.cs.toronto.edu/~kriz/cifar.html (also the values
# torchvision's CIFAR10/CIFAR100 check). Statistics: the 50,000 official training images,
# every pixel of a channel pooled, population std, in [0, 1] units (the widely quoted
# 0.4914/0.4822/0.4465 and 0.2470/0.2435/0.2616 for CIFAR-10); fixed, so a long-tailed
# pool is normalised exactly like the full training set. CIFAR-100: 0.50708/0.48655/0.44092
# and 0.26733/0.25643/0.27615 as computed the same way in weiaicunzai/pytorch-cifar100's
# settings.py (the also-quoted 0.4867/0.4408, 0.2675/... are a different rounding/method).
CIFAR10 = CifarFormat(
    name="cifar10",
    resource=Resource("cifar-10-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                      "c58f30108f718f92721af3b95e74349a"),
    folder="cifar-10-batches-py",
    train_members=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_member="test_batch",
    meta_member="batches.meta",
    label_key=b"labels",
    names_key=b"label_names",
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarFormat(
    name="cifar100",
    resource=Resource("cifar-100-python.tar.gz", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                      "eb9058c3a382ffc7106e4002c42a8d85"),
    folder="cifar-100-python",
    train_members=("train",),
    test_member="test",
    meta_member="meta",
    label_key=b"fine_labels",
    names_key=b"fine_label_names",
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


def _locate(fmt: CifarFormat, data_dir: str | Path | None, download: bool) -> Path:
    """The extracted folder or the tarball of ``fmt``, downloading the tarball if allowed."""
    dirs = search_dirs(fmt.name, data_dir)
    for d in dirs:
        for folder in (d / fmt.folder, d):
            if all((folder / m).is_file() for m in fmt.members):
                return folder
        if (d / fmt.resource.filename).is_file():
            return d / fmt.resource.filename
    target = dirs[0] if data_dir is not None else cache_dir(fmt.name)
    hint = "" if data_dir is not None else " (or pass --data-dir FOLDER, or set TIDAL_DATA)"
    hint += f"; the extracted {fmt.folder}/ folder is accepted too"
    ensure_files(fmt.name, (fmt.resource,), target, download, hint)
    return target / fmt.resource.filename


def _read_members(path: Path, fmt: CifarFormat) -> dict[str, tuple[bytes, str]]:
    """member name -> (bytes, a name for error messages), from the folder or the tarball ``path``."""
    if path.is_dir():
        out = {}
        for m in fmt.members:
            try:
                out[m] = ((path / m).read_bytes(), str(path / m))
            except OSError as exc:
                raise DatasetError(f"cannot read {path / m}: {exc}; download {fmt.resource.url} again") from exc
        return out
    wanted = {f"{fmt.folder}/{m}": m for m in fmt.members}
    out = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for info in tar:
                member = wanted.get(info.name.removeprefix("./"))
                if member is not None and info.isfile():
                    out[member] = (tar.extractfile(info).read(), f"{path}:{info.name}")  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetError(f"{path} is truncated or corrupt ({exc.__class__.__name__}: {exc}); "
                           f"delete it and download {fmt.resource.url} again") from None
    missing = [f"{fmt.folder}/{m}" for m in fmt.members if m not in out]
    if missing:
        raise DatasetError(f"{path} lacks {', '.join(missing)}; it is not the official {fmt.resource.filename}: "
                           f"delete it and download {fmt.resource.url} again")
    return out


def _batch(obj: Any, where: str, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, 3, 32, 32]`` images and int64 ``[N]`` labels of one unpickled batch."""
    if not isinstance(obj, dict) or b"data" not in obj or label_key not in obj:
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise DatasetError(f"{where}: expected a dict with keys b'data' and {label_key!r}, found {keys}; "
                           "this is not an official CIFAR batch: download the dataset again")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{where}: b'data' is {got}, expected uint8 [N, 3072]; download the dataset again")
    labels = np.asarray(obj[label_key])
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(data):
        raise DatasetError(f"{where}: {len(data)} images but {label_key!r} is {labels.dtype} {labels.shape}; "
                           "expected one integer label per image: download the dataset again")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _class_names(obj: Any, where: str, names_key: bytes) -> tuple[str, ...]:
    names = obj.get(names_key) if isinstance(obj, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetError(f"{where}: expected a list of class names under {names_key!r}; download the dataset again")
    out = []
    for k, n in enumerate(names):
        try:
            out.append(n.decode("utf-8") if isinstance(n, bytes) else n)
        except UnicodeDecodeError as exc:
            raise DatasetError(f"{where}: class name {k} under {names_key!r} is not UTF-8 text ({n[:40]!r}: "
                               f"{exc.reason} at byte {exc.start}); the official names are ASCII: download the "
                               "dataset again") from None
    return tuple(out)


def load_cifar(fmt: CifarFormat, data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """Load ``fmt``'s training and test images as uint8 ``[N, 3, 32, 32]`` splits."""
    path = _locate(fmt, data_dir, download)
    raw = _read_members(path, fmt)
    parts = {m: read_pickle(*raw[m]) for m in fmt.members}
    train = [_batch(parts[m], raw[m][1], fmt.label_key) for m in fmt.train_members]
    test_x, test_y = _batch(parts[fmt.test_member], raw[fmt.test_member][1], fmt.label_key)
    names = _class_names(parts[fmt.meta_member], raw[fmt.meta_member][1], fmt.names_key)
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    test_x = np.require(test_x, requirements=["C", "W"])  # unpickled arrays may be read-only views
    source = str(path)
    splits = DatasetSplits(
        fmt.name,
        image_split(torch.from_numpy(train_x), torch.from_numpy(train_y), len(names), fmt.mean, fmt.std, source),
        image_split(torch.from_numpy(test_x), torch.from_numpy(test_y), len(names), fmt.mean, fmt.std, source),
        names,
    )
    return check_splits(splits, source)


def load_cifar10(data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """CIFAR-10: 50,000 training and 10,000 test images, uint8 ``[N, 3, 32, 32]``, 10 classes."""
    return load_cifar(CIFAR10, data_dir, download)


def load_cifar100(data_dir: str | Path | None = None, download: bool = True) -> DatasetSplits:
    """CIFAR-100: 50,000 training and 10,000 test images, uint8 ``[N, 3, 32, 32]``, 100 fine classes."""
    return load_cifar(CIFAR100, data_dir, download)
