"""A dataset from a folder of images, one sub-folder per class.

Two layouts are read::

    PATH/<class name>/*.png|jpg|jpeg              (a test split is held out, see below)
    PATH/train/<class name>/*.png|jpg|jpeg
    PATH/test/<class name>/*.png|jpg|jpeg         (``val`` is accepted in place of ``test``)

Extensions are matched case-insensitively; hidden files (``.DS_Store``) are skipped, and so
are other files directly in ``PATH`` (a README). Class names are the folder names, sorted;
label ``k`` is the ``k``-th name. Absolute ids are the files sorted by their path relative
to the split's folder (``<class>/<file>``), so they do not change between loads.

Without a test folder, a stratified 20% of every class (``round(0.2 n)``, at least 1 and at
most ``n - 1`` for a class of ``n >= 2`` images) is held out as the test split: the files
of a class are ranked by the CRC-32 of their relative path and the first ones are taken. The
choice is fixed (no seed to pass) and adding files to a class moves no other file.

Images are decoded as RGB (3 channels, whatever the files hold; 16-bit greyscale is scaled
to 8 bits, see :mod:`tidal.data.files`). They must all share one
size unless ``image_size`` is given; then each is resized (shorter side to ``image_size``,
bilinear) and centre-cropped to ``image_size x image_size``. A dataset whose decoded size
``N * 3 * H * W`` bytes is under 1 GiB is loaded into an in-memory
:class:`~tidal.data.dataset.ImageDataset` (uint8 ``[N, 3, H, W]``, the fast path with batch
augmentation: padded crop + flip); a larger one (or ``in_memory=False``) becomes a
:class:`~tidal.data.files.FileDataset` that decodes on demand (square ``size x size`` inputs;
train: random resized crop + flip; eval: shorter side to ``size`` + centre crop). Mean and
standard deviation come from at most 2,000 training images, evenly spaced over the ids.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from tidal.data.checks import IN_MEMORY_BYTES, MIN_IMAGE_SIZE, channel_stats, stats_ids
from tidal.data.dataset import DatasetSplits, ImageDataset
from tidal.data.files import FileDataset, decode_ahead, decode_errors, describe, open_rgb, resize_center_crop, to_chw
from tidal.errors import DatasetError

__all__ = ["EXTENSIONS", "TEST_FRACTION", "load_folder"]

EXTENSIONS = (".png", ".jpg", ".jpeg")  # image files, compared lower-case
TEST_FRACTION = 0.2  # share of each class held out as test when there is no test folder
_CHUNK = 64  # files per worker task


def _fix(path: Path) -> str:
    return (f"fix: lay the images out as {path}/<class name>/*.png|jpg|jpeg "
            f"(or {path}/train/<class name>/... and {path}/test/<class name>/...)")


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in EXTENSIONS


def _layout(root: Path) -> tuple[Path, Path | None]:
    """``(train folder, test folder or None)``."""
    if not root.is_dir():
        raise DatasetError(f"image folder {str(root)!r} does not exist or is not a folder; {_fix(root)}")
    dirs = {d.name: d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    if "train" not in dirs:
        return root, None
    extra = sorted(set(dirs) - {"train", "test", "val"})
    if extra:
        raise DatasetError(f"{root} holds train/ and also {', '.join(extra[:5])}/: is it split or not? "
                           f"fix: move the class folders into {root}/train/ (and {root}/test/)")
    return dirs["train"], dirs.get("test") or dirs.get("val")


def _scan(root: Path) -> dict[str, list[str]]:
    """``{class name: sorted relative paths}`` of one split folder, checking the layout."""
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and _is_image(p))
    classes = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if loose:
        raise DatasetError(f"{root} holds images directly ({', '.join(loose[:3])}) instead of class folders; "
                           f"{_fix(root)}")
    if not classes:
        raise DatasetError(f"{root} has no class folders; {_fix(root)}")
    out: dict[str, list[str]] = {}
    for d in classes:
        files = sorted(p for p in d.iterdir() if not p.name.startswith("."))
        for p in files:
            if p.is_dir():
                raise DatasetError(f"{p} is a folder inside class folder {d.name!r}; fix: put the images directly "
                                   f"in {d}/ (one folder level per class)")
            if not _is_image(p):
                raise DatasetError(f"{p} is not an image ({'/'.join(EXTENSIONS)}); fix: remove it from {d}/")
        if not files:
            raise DatasetError(f"class folder {d} holds no images; fix: add .png/.jpg images or delete the folder")
        out[d.name] = [f"{d.name}/{p.name}" for p in files]
    return out


def _hold_out(by_class: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Split each class into (train, test) with the fixed CRC-32 ranking (module docstring)."""
    train, test = {}, {}
    for name, files in by_class.items():
        n = len(files)
        k = min(n - 1, max(1, round(TEST_FRACTION * n))) if n >= 2 else 0
        held = set(sorted(files, key=lambda f: (zlib.crc32(f.encode()), f))[:k])
        train[name] = [f for f in files if f not in held]
        test[name] = [f for f in files if f in held]
    return train, test


class _Tasks(TorchDataset):
    """Item ``i`` = ``fn(chunks[i])``: lets a ``DataLoader`` run ``fn`` in worker processes."""

    def __init__(self, fn: Callable, chunks: Sequence):
        self.fn, self.chunks = fn, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int):
        return self.fn(self.chunks[i])


def _map(fn: Callable, items: Sequence, workers: int) -> list:
    """``fn`` over chunks of ``items`` in ``workers`` processes; the chunks' results in order."""
    chunks = [items[i:i + _CHUNK] for i in range(0, len(items), _CHUNK)]
    workers = min(workers, len(chunks))
    return list(DataLoader(_Tasks(fn, chunks), batch_size=None, num_workers=workers,
                           prefetch_factor=4 if workers > 0 else None))


def _headers(paths: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(width, height, "")`` per file, or ``(-1, -1, reason)`` when it cannot be opened."""
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as img:
                out.append((img.size[0], img.size[1], ""))
        except decode_errors() as exc:
            out.append((-1, -1, describe(exc, p)))
    return out


class _Decode:
    """Decode a chunk of files to uint8 ``[b, 3, H, W]`` (resized when ``size``); errors kept apart."""

    def __init__(self, hw: tuple[int, int], size: int | None):
        self.hw, self.size = hw, size

    def __call__(self, paths: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
        out = torch.zeros((len(paths), 3, *self.hw), dtype=torch.uint8)
        errors = []
        for k, p in enumerate(paths):
            try:
                img = open_rgb(p)
                out[k] = to_chw(img if self.size is None else resize_center_crop(img, self.size, self.size))
                errors.append("")
            except decode_errors() as exc:
                errors.append(describe(exc, p))
        return out, errors


def _refuse_unreadable(root: Path, bad: list[tuple[str, str]], total: int) -> None:
    if bad:
        shown = "; ".join(f"{p} ({why})" for p, why in bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise DatasetError(f"{len(bad)} of {total} images under {root} cannot be read: {shown}; "
                           "fix: replace or delete them")


def load_folder(path: str | Path, *, image_size: int | None = None, workers: int = 2,
                in_memory: bool | None = None) -> DatasetSplits:
    """Load an image folder (layout in the module docstring) as train and test splits.

    Args:
        path: the dataset folder.
        image_size: resize every image (shorter side, then centre crop) to this many pixels
            square; needed when the images differ in size.
        workers: processes that read and decode images (0 = this process only); also the
            ``num_workers`` of a disk-backed split.
        in_memory: ``True``/``False`` forces an in-memory ``ImageDataset`` / a disk-backed
            ``FileDataset``; ``None`` picks by decoded size (under 1 GiB: in memory).
    Raises:
        DatasetError: bad layout, non-image or unreadable files, empty class folders, fewer
            than two classes, images under 8 px or of mixed sizes without ``image_size``.
    """
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size={image_size} is too small; use at least {MIN_IMAGE_SIZE} pixels")
    root = Path(path).expanduser().absolute()
    train_root, test_root = _layout(root)
    by_class = _scan(train_root)
    classes = tuple(by_class)
    if test_root is not None:
        test_by_class = _scan(test_root)
        unknown = sorted(set(test_by_class) - set(classes))
        if unknown:
            raise DatasetError(f"{test_root} has class folders missing from {train_root}: {', '.join(unknown[:5])}; "
                               "fix: use the same class folder names in train/ and test/")
        split_files = [(train_root, by_class), (test_root, test_by_class)]
    else:
        split_files = [(root, part) for part in _hold_out(by_class)]
    if len(classes) < 2:
        raise DatasetError(f"{train_root} has a single class folder ({classes[0]!r}); classification needs "
                           "at least 2; fix: add a folder per class")
    if not any(files for _, part in split_files[1:] for files in part.values()):
        raise DatasetError(f"{root} gives no test images (every class has a single image, or the test folder is "
                           "empty); fix: add images to the classes or a test/ folder")
    index = {c: k for k, c in enumerate(classes)}
    splits = []
    for folder, part in split_files:
        rel = sorted(f for files in part.values() for f in files)
        splits.append(([str(folder / f) for f in rel], torch.tensor([index[f.split("/")[0]] for f in rel],
                                                                     dtype=torch.int64)))
    all_paths = splits[0][0] + splits[1][0]

    sizes = [s for chunk in _map(_headers, all_paths, workers) for s in chunk]
    _refuse_unreadable(root, [(p, why) for p, (_, _, why) in zip(all_paths, sizes) if why], len(all_paths))
    for p, (w, h, _) in zip(all_paths, sizes):
        if min(w, h) < MIN_IMAGE_SIZE:
            raise DatasetError(f"{p} is {w}x{h} px; images must be at least {MIN_IMAGE_SIZE} px on each side; "
                               "fix: remove it or enlarge it")
    if image_size is None:
        odd = next(((p, s) for p, s in zip(all_paths, sizes) if s[:2] != sizes[0][:2]), None)
        if odd is not None:
            raise DatasetError(f"images under {root} differ in size ({all_paths[0]} is {sizes[0][0]}x{sizes[0][1]}, "
                               f"{odd[0]} is {odd[1][0]}x{odd[1][1]}); fix: pass image_size (--image-size N) to "
                               "resize them all to N x N")
        hw = (sizes[0][1], sizes[0][0])
    else:
        hw = (image_size, image_size)
    if in_memory is None:
        in_memory = len(all_paths) * 3 * hw[0] * hw[1] < IN_MEMORY_BYTES
    if in_memory:
        train, test = _in_memory(root, splits, hw, image_size, len(classes), workers)
    else:
        train, test = _on_disk(root, splits, hw, len(classes), workers)
    return DatasetSplits(root.name, train, test, classes)


def _in_memory(root: Path, splits, hw: tuple[int, int], image_size: int | None, num_classes: int,
               workers: int) -> tuple[ImageDataset, ImageDataset]:
    decoded, bad = [], []
    for paths, labels in splits:
        chunks = _map(_Decode(hw, image_size), paths, workers)
        errors = [e for _, errs in chunks for e in errs]
        bad += [(p, e) for p, e in zip(paths, errors) if e]
        images = torch.cat([x for x, _ in chunks]) if chunks else torch.zeros((0, 3, *hw), dtype=torch.uint8)
        decoded.append((images, labels))
    _refuse_unreadable(root, bad, sum(len(paths) for paths, _ in splits))
    (x_train, y_train), (x_test, y_test) = decoded
    mean, std = channel_stats(x_train[stats_ids(len(x_train))].split(256), floor=1 / 255, digits=4)
    return (ImageDataset(x_train, y_train, num_classes, mean, std),
            ImageDataset(x_test, y_test, num_classes, mean, std))


def _on_disk(root: Path, splits, hw: tuple[int, int], num_classes: int,
             workers: int) -> tuple[FileDataset, FileDataset]:
    if hw[0] != hw[1]:
        raise DatasetError(f"images under {root} are {hw[1]}x{hw[0]} (not square) and too many to hold in memory; "
                           "fix: pass image_size (--image-size N) to crop them to N x N")
    (p_train, y_train), (p_test, y_test) = splits
    probe = FileDataset(p_train, y_train, num_classes, hw[0], (0.5,) * 3, (0.25,) * 3, resize_eval=False,
                        num_workers=workers)
    batches = decode_ahead(probe.decode, stats_ids(len(p_train)).split(_CHUNK), False, None, workers,
                           torch.device("cpu"))
    mean, std = channel_stats((x for _, x in batches), floor=1 / 255, digits=4)

    def make(paths, labels) -> FileDataset:
        return FileDataset(paths, labels, num_classes, hw[0], mean, std, resize_eval=False, num_workers=workers)

    return make(probe.paths, y_train), make(p_test, y_test)
