"""Your own data as arrays: :func:`from_arrays` in Python, ``npz:PATH`` on the command line.

The layout rule (one rule, no guessing from sizes):

* **images** must be uint8 with values 0..255:

  - 3-D ``[N, H, W]``: grey images, numpy array or torch tensor;
  - 4-D **numpy** array: ``[N, H, W, C]`` (channels last, the numpy/PIL convention);
  - 4-D **torch** tensor: ``[N, C, H, W]`` (channels first, the torch convention);

  ``C`` must be 1..4. Float images are refused: pass uint8 0..255 (``(x * 255).round()``),
  or, if they are features, 2-D arrays.
* **feature vectors**: a 2-D float array ``[N, D]`` becomes a :class:`FeatureDataset`,
  used as given (no normalisation, no augmentation).
* **labels**: integer ``[N]`` (or ``[N, 1]``), class indices ``0..C-1``; ``-1`` marks an
  unlabelled training sample only with ``allow_unlabeled=True``.

Images are normalised by the per-channel mean/std of the training images.

An ``.npz`` file (``np.savez``) holds ``x_train``, ``y_train``, ``x_test``, ``y_test`` and
optionally ``class_names`` (strings); its arrays follow the numpy rule above. An array of
dtype ``object`` is refused (loading it would unpickle), and so is any file that is not an
``.npz`` archive (a single ``np.save`` array, a text file, a pickle).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tidal.data.checks import channel_stats, check_splits, feature_split, image_split
from tidal.data.dataset import DatasetSplits, FeatureDataset, ImageDataset
from tidal.errors import DatasetError

__all__ = ["NPZ_KEYS", "from_arrays", "load_npz"]

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_IMPLIED_CLASSES = 100_000  # classes implied by labels without class names (largest label + 1); iNat 2018: 8,142
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # what np.load reads as an .npz archive (a zip, or an empty one)
_NPY_MAGIC = b"\x93NUMPY"  # a single array written by np.save
_ACCEPTED = ("x_train/x_test as uint8 images or float features, y_train/y_test as integer labels, class_names as "
             "strings (np.array(names, dtype=str))")


def _images_or_features(x: Any, part: str, source: str) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` images, or float32 ``[N, D]`` features, from ``x`` (see the module rule)."""
    is_torch = isinstance(x, torch.Tensor)
    if not is_torch:
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise DatasetError(f"{source}: {part} has dtype {x.dtype}; pass uint8 images or float features")
    shape = tuple(x.shape)
    floating = x.dtype.is_floating_point if is_torch else x.dtype.kind == "f"
    uint8 = x.dtype == (torch.uint8 if is_torch else np.uint8)
    if len(shape) == 2:
        if not floating:
            raise DatasetError(f"{source}: {part} is 2-D {x.dtype} {shape}, read as feature vectors [N, D], which "
                               "must be float; convert it to float32, or pass images as [N, H, W]")
        t = x if is_torch else torch.from_numpy(np.ascontiguousarray(x))
        return t.detach().cpu().to(torch.float32).contiguous()
    if len(shape) not in (3, 4):
        raise DatasetError(f"{source}: {part} has shape {shape}; expected images [N, H, W], "
                           f"{'[N, C, H, W]' if is_torch else '[N, H, W, C]'} or features [N, D]")
    if floating:
        raise DatasetError(f"{source}: {part} holds float images ({x.dtype} {shape}); pass uint8 images with values "
                           "0..255 (e.g. (x * 255).round().astype(uint8)), or, if they are features, 2-D arrays [N, D]")
    if not uint8:
        raise DatasetError(f"{source}: {part} images are {x.dtype}; pass uint8 images with values 0..255 "
                           "(convert with .astype(np.uint8) after checking the range)")
    t = x.detach().cpu() if is_torch else torch.from_numpy(np.ascontiguousarray(x))
    if len(shape) == 3:
        return t.unsqueeze(1).contiguous()
    channels = shape[1] if is_torch else shape[3]
    if not 1 <= channels <= 4:
        rule = ("torch tensors are [N, C, H, W]; permute(0, 3, 1, 2) a channels-last tensor" if is_torch
                else "numpy arrays are [N, H, W, C]; np.moveaxis(x, 1, -1) a channels-first array")
        raise DatasetError(f"{source}: {part} has shape {shape}, so {channels} channels; {rule}")
    return (t if is_torch else t.permute(0, 3, 1, 2)).contiguous()


def _labels(y: Any, part: str, source: str) -> torch.Tensor:
    """int64 ``[N]`` from integer ``[N]`` or ``[N, 1]``."""
    if isinstance(y, torch.Tensor) and y.dtype in (torch.uint32, torch.uint64):
        y = y.detach().cpu().numpy()  # compared below before any cast to int64 can wrap it round
    if not isinstance(y, torch.Tensor):
        y = np.asarray(y)
        if y.dtype.kind == "u" and y.size and int(y.max()) > np.iinfo(np.int64).max:
            i = int(np.argmax(y.reshape(-1)))
            raise DatasetError(f"{source}: {part} holds label {int(y.reshape(-1)[i])} at index {i}, beyond any class "
                               "index; labels must be class indices 0..C-1; fix: correct the label (or renumber the "
                               "labels with np.unique(y, return_inverse=True))")
    t = y.detach().cpu() if isinstance(y, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(y))
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() != 1 or t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise DatasetError(f"{source}: {part} is {t.dtype} {tuple(t.shape)}; labels must be integer class "
                           "indices [N]")
    return t.to(torch.int64).contiguous()


def from_arrays(x_train: Any, y_train: Any, x_test: Any, y_test: Any, class_names: Sequence[str] | None = None,
                name: str = "custom", allow_unlabeled: bool = False) -> DatasetSplits:
    """Splits from in-memory arrays (numpy or torch); the layout rule is in the module docstring.

    ``class_names`` default to ``"0".."C-1"`` with ``C`` = the largest label + 1 (at most
    ``MAX_IMPLIED_CLASSES``; given, they need one name per label value). Images give
    :class:`ImageDataset` splits (uint8 ``[N, C, H, W]``, normalised by the training images'
    per-channel statistics); 2-D float arrays give :class:`FeatureDataset` splits. Every
    problem raises a one-line ``DatasetError`` naming ``name``.
    """
    return _build(x_train, y_train, x_test, y_test, class_names, name, allow_unlabeled, source=name)


def _build(x_train: Any, y_train: Any, x_test: Any, y_test: Any, class_names: Sequence[str] | None, name: str,
           allow_unlabeled: bool, source: str, names_from: str = "class_names") -> DatasetSplits:
    xs = {p: _images_or_features(x, f"x_{p}", source) for p, x in (("train", x_train), ("test", x_test))}
    ys = {p: _labels(y, f"y_{p}", source) for p, y in (("train", y_train), ("test", y_test))}
    if xs["train"].dim() != xs["test"].dim():
        raise DatasetError(f"{source}: x_train is {tuple(xs['train'].shape)} but x_test is {tuple(xs['test'].shape)}; "
                           "give both as images or both as features")
    for p in ("train", "test"):
        if len(xs[p]) != len(ys[p]):
            raise DatasetError(f"{source}: x_{p} has {len(xs[p])} samples but y_{p} has {len(ys[p])} labels; "
                               "give one label per sample")
    if class_names is None:
        # C = the largest label + 1: check it before building C names from it
        top, part = max(((int(y.max()), p) for p, y in ys.items() if len(y)), default=(-1, "train"))
        if top >= MAX_IMPLIED_CLASSES:
            i = int(torch.argmax(ys[part]))
            raise DatasetError(f"{source}: y_{part} holds label {top} at index {i}, which would make {top + 1:,} "
                               f"classes (at most {MAX_IMPLIED_CLASSES:,} without class names); labels must be class "
                               "indices 0..C-1; fix: renumber them (np.unique(y, return_inverse=True)) or correct "
                               "the label")
        class_names = tuple(str(c) for c in range(top + 1))
    else:
        class_names = tuple(str(c) for c in class_names)
        for p, y in ys.items():
            if len(y) and int(y.max()) >= len(class_names):
                i = int(torch.argmax(y))
                listed = f"{list(class_names)[:5]}{'...' if len(class_names) > 5 else ''}"
                raise DatasetError(f"{source}: y_{p} label {int(y[i])} at index {i} has no class name: "
                                   f"{names_from} lists {len(class_names)} names {listed} (label k is name k); fix: "
                                   f"give one name per class in {names_from}, or correct the label")
    c = len(class_names)
    split: dict[str, ImageDataset | FeatureDataset] = {}
    if xs["train"].dim() == 2:
        for p in ("train", "test"):
            split[p] = feature_split(xs[p], ys[p], c, source)
    else:
        if len(xs["train"]) == 0:
            raise DatasetError(f"{source}: x_train holds 0 images; give at least one training image")
        mean, std = channel_stats(xs["train"])
        std = tuple(s if s > 0 else 1.0 for s in std)  # a constant channel: avoid dividing by 0
        for p in ("train", "test"):
            split[p] = image_split(xs[p], ys[p], c, mean, std, source)
    return check_splits(DatasetSplits(name, split["train"], split["test"], class_names), source,
                        allow_unlabeled=allow_unlabeled)


def load_npz(path: str | Path, allow_unlabeled: bool = False) -> DatasetSplits:
    """Splits from an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (see the module rule)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"npz:{path}: no such file; write one with np.savez(PATH, x_train=..., y_train=..., "
                           "x_test=..., y_test=...)")
    save = "np.savez(PATH, x_train=..., y_train=..., x_test=..., y_test=...)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise DatasetError(f"cannot read {path} ({exc.__class__.__name__}: {exc}); fix: check the file") from None
    # np.load would read anything else as a pickle (refused), or a single array: say what the file is instead
    if head.startswith(_NPY_MAGIC):
        raise DatasetError(f"{path} is a single array written by np.save, not an .npz archive of the four arrays; "
                           f"fix: write it with {save}")
    if not head.startswith(_ZIP_MAGIC):
        raise DatasetError(f"{path} is not an .npz archive (it starts with {head!r}, not a zip signature); "
                           f"fix: write it with {save}")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in NPZ_KEYS if k not in f.files]
            if missing:
                raise DatasetError(f"{path} lacks {missing} (it holds {sorted(f.files)}); save it with {save}")
            keys = (*NPZ_KEYS, "class_names") if "class_names" in f.files else NPZ_KEYS
            for k in keys:
                if _holds_objects(f, k):
                    raise DatasetError(f"{path}: array {k!r} holds Python objects (dtype object), which tidal "
                                       f"refuses to load for safety (unpickling can run code); fix: save {_ACCEPTED}")
            arrays = {k: f[k] for k in NPZ_KEYS}
            names = [str(n) for n in f["class_names"].tolist()] if "class_names" in f.files else None
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        # numpy's own text may advise loading the file unsafely (allow_pickle, pickle.load): never pass that on
        why = "it holds pickled objects" if "pickle" in str(exc) else f"{exc.__class__.__name__}: {exc}"
        raise DatasetError(f"cannot read {path} ({why}); it is truncated or not an .npz archive of arrays: write it "
                           f"again with {save}") from None
    return _build(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"], names, path.stem,
                  allow_unlabeled, source=str(path), names_from=f"the class_names array of {path.name}")


def _holds_objects(f: np.lib.npyio.NpzFile, key: str) -> bool:
    """Whether the member ``key`` of an open ``.npz`` has an object dtype, from its header alone."""
    fmt = np.lib.format
    if f"{key}.npy" not in f.zip.namelist():
        return False
    with f.zip.open(f"{key}.npy") as fp:
        version = fmt.read_magic(fp)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read_header is None:  # a rarer header version: np.load's own refusal is caught by the caller
            return False
        _, _, dtype = read_header(fp)
    return bool(dtype.hasobject)
