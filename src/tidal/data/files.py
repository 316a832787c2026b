"""A split over image files decoded with Pillow on demand (iNaturalist, large folders).

:class:`FileDataset` implements the split interface of :mod:`tidal.data.dataset`. Its
``batches`` decodes ahead in ``DataLoader`` worker processes (``num_workers``, 0 = in the
calling process), pins host memory when the split lives on a CUDA device, and yields
``(ids on device, float32 inputs [b, 3, size, size] on device)`` in the order of ``batch_ids``.

Determinism: ``batches`` draws ONE 62-bit seed per batch from ``generator`` before decoding
anything, and every random choice of that batch (crop boxes, flips) comes from a
``random.Random(seed)`` inside whichever process decodes it. Results therefore depend on the
generator only, never on the worker count or on timing.

Transforms (no torchvision needed):

* train (``augment`` given): ImageNet-style random resized crop, area scale U(0.08, 1) and
  log-uniform aspect ratio in [3/4, 4/3], 10 tries then a centre crop clamped to that ratio
  range, resized (bilinear) to ``size x size``; then a horizontal flip with probability 1/2 when
  ``augment.flip``. ``augment.crop_padding`` is not used (the crop above replaces it).
* eval (``augment=None``, also ``inputs``): resize the shorter side to ``round(size * 256 / 224)``
  and centre-crop ``size x size``; with ``resize_eval=False`` (small images, e.g. a folder of
  32 px images) resize the shorter side to ``size`` and centre-crop, which is "just resize"
  for square images.

Every image is converted to RGB (grayscale is replicated, palette expanded, alpha dropped;
16-bit greyscale is first scaled to 8 bits, ``round(v * 255 / 65535)``), so ``input_shape`` is
always ``(3, size, size)``, whatever the files hold. Normalisation
``(x / 255 - mean) / std`` happens on the split's device, so workers ship uint8 batches.

A file that cannot be decoded raises :class:`~tidal.errors.DatasetError` naming the file, in
the calling process and as one line, also when it was a worker that failed.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from tidal.data.augment import to_float
from tidal.data.dataset import Augment
from tidal.errors import DatasetError

__all__ = ["DiskSplit", "FileDataset", "decode_ahead", "decode_errors", "describe", "load_rgb", "open_rgb",
           "random_resized_crop", "resize_center_crop", "to_chw"]

SCALE = (0.08, 1.0)  # random resized crop: fraction of the image area kept
RATIO = (3 / 4, 4 / 3)  # random resized crop: width / height range of the box
EVAL_RESIZE = 256 / 224  # eval: resize the shorter side to size * 256/224, then crop size


def _pil():
    """Pillow, imported on first use so that ``import tidal`` does not need it."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib ([report])
        raise DatasetError("decoding image files needs Pillow; fix: `pip install pillow`") from exc
    return Image


def decode_errors() -> tuple[type[BaseException], ...]:
    """The exceptions Pillow raises for a file it cannot read."""
    return (OSError, ValueError, SyntaxError, _pil().DecompressionBombError)


def describe(exc: BaseException, path: str | None = None) -> str:
    """The first line of an exception's message without the quoted ``path`` (class name when empty)."""
    text = str(exc).strip()
    if path is not None:
        text = text.replace(repr(str(path)), "").replace(str(path), "").strip(" :")
    return text.splitlines()[0] if text else exc.__class__.__name__


def load_rgb(path: str, draft: int | None = None):
    """Open and fully decode ``path`` as an RGB PIL image; ``DatasetError`` naming it otherwise.

    ``draft``: let the JPEG decoder downscale by a power of two while both sides stay
    ``>= draft`` pixels (much faster for large photos; used for the eval transform only).
    """
    try:
        return open_rgb(path, draft)
    except decode_errors() as exc:
        reason = describe(exc, path)
        raise DatasetError(f"cannot decode image {path} ({reason}); fix: replace or delete the file") from None


def open_rgb(path: str, draft: int | None = None):
    """``load_rgb`` without the translation of Pillow's exceptions."""
    with _pil().open(path) as img:
        if draft is not None and img.format == "JPEG":
            img.draft("RGB", (draft, draft))
        img.load()
        if img.mode in _GREY16:
            img = _grey16_to_8(img)
        return img.convert("RGB")  # L/LA/P/RGBA/CMYK -> RGB; alpha is dropped


# Pillow's modes of 16-bit greyscale PNGs ("I" in older versions); its convert("RGB") clips them at 255
_GREY16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def _grey16_to_8(img):
    """A 16-bit greyscale image as 8-bit ``L``, scaled: ``round(v * 255 / 65535)`` (32768 -> 128)."""
    v = np.clip(np.asarray(img).astype(np.int64), 0, 65535)  # mode "I" is int32: clip to the 16-bit range
    return _pil().fromarray(((v * 255 + 32767) // 65535).astype(np.uint8))


def resize_center_crop(img, side: int, crop: int):
    """Resize (bilinear) so the shorter side is ``side`` px, then centre-crop ``crop x crop``."""
    Image = _pil()
    w, h = img.size
    if min(w, h) != side:
        s = side / min(w, h)
        img = img.resize((max(crop, round(w * s)), max(crop, round(h * s))), Image.BILINEAR)
        w, h = img.size
    left, top = (w - crop) // 2, (h - crop) // 2
    return img.crop((left, top, left + crop, top + crop)) if (w, h) != (crop, crop) else img


def random_resized_crop(img, size: int, rng: random.Random):
    """ImageNet-style random resized crop of a PIL image to ``size x size`` (see module doc)."""
    Image = _pil()
    w, h = img.size
    area = w * h
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
            break
    else:  # centre crop of the whole image, clamped to the ratio range
        cw, ch = w, h
        if w / h < RATIO[0]:
            ch = round(w / RATIO[0])
        elif w / h > RATIO[1]:
            cw = round(h * RATIO[1])
        left, top = (w - cw) // 2, (h - ch) // 2
    return img.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch))


def to_chw(img) -> torch.Tensor:
    """RGB PIL image -> uint8 ``[3, H, W]``."""
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class _Batches(TorchDataset):
    """Item ``i`` = ``(batch_ids[i], decode(batch_ids[i], seeds[i]), error)``: one whole batch.

    A decode error is returned as a message (with an empty tensor) rather than raised, so that
    a worker's failure reaches the caller as one line instead of a wrapped traceback.
    """

    def __init__(self, decode: Callable[[torch.Tensor, int | None], torch.Tensor],
                 batch_ids: Sequence[torch.Tensor], seeds: Sequence[int | None]):
        self.decode, self.batch_ids, self.seeds = decode, batch_ids, seeds

    def __len__(self) -> int:
        return len(self.batch_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        try:
            return self.batch_ids[i], self.decode(self.batch_ids[i], self.seeds[i]), ""
        except DatasetError as exc:
            return self.batch_ids[i], torch.empty(0, dtype=torch.uint8), str(exc)


class DiskSplit:
    """What the disk-backed splits share (:class:`FileDataset`, ``TorchSourceDataset``): labels on
    the split's device, inputs from the workers' batches, and ``to``/``subset``/``with_labels``,
    which rebuild the split with ``_with(keep, labels)``: its per-sample sources (files, dataset
    positions) indexed by ``keep`` (``None``: all of them, as they are) and ``labels``."""

    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def inputs(self, ids: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Un-augmented float32 ``[b, *input_shape]`` of ``ids`` on ``device``: the workers'
        ``batches`` of ``chunk`` ids, concatenated."""
        ids = torch.as_tensor(ids, dtype=torch.int64).cpu()
        if len(ids) == 0:
            return torch.empty((0, *self.input_shape), device=self.device)
        return torch.cat([x for _, x in self.batches(ids.split(chunk))])

    def to(self, device: torch.device | str) -> DiskSplit:
        """The same split with its outputs (and labels) on ``device``."""
        return self._with(None, self.labels.to(device))

    def subset(self, indices: torch.Tensor) -> DiskSplit:
        """A smaller split holding ``indices`` (re-indexed from 0)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return self._with(indices.cpu().numpy(), self.labels[indices.to(self.device)])

    def with_labels(self, labels: torch.Tensor) -> DiskSplit:
        """The same split with ``labels`` (int64 ``[N]``) in place of its own, on its device."""
        return self._with(None, labels.to(self.device))


def decode_ahead(decode: Callable[[torch.Tensor, int | None], torch.Tensor], batch_ids: Iterable[torch.Tensor],
                 augment: bool, generator: torch.Generator | None, num_workers: int,
                 device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Run ``decode(ids, seed)`` for every batch in ``num_workers`` processes, in order.

    ``seed`` is one draw per batch from ``generator`` (the global torch generator when it is
    ``None``) when ``augment``, else ``None``. Yields ``(ids on device, decoded batch on
    device)``; a ``DatasetError`` message from a worker is raised here, as one line.
    """
    batches = [torch.as_tensor(ids, dtype=torch.int64).cpu() for ids in batch_ids]
    seeds: list[int | None] = [None] * len(batches)
    if augment and batches:
        seeds = torch.randint(2**62, (len(batches),), generator=generator).tolist()
    loader = DataLoader(_Batches(decode, batches, seeds), batch_size=None, shuffle=False,
                        num_workers=num_workers, pin_memory=device.type == "cuda",
                        prefetch_factor=2 if num_workers > 0 else None)
    for ids, x, error in loader:
        if error:
            raise DatasetError(error)
        yield ids.to(device, non_blocking=True), x.to(device, non_blocking=True)


def _decode_files(paths: np.ndarray, size: int, resize_eval: bool, ids: torch.Tensor, seed: int | None,
                  flip: bool = True) -> torch.Tensor:
    """``FileDataset.decode`` as a function of plain data, for worker processes."""
    out = torch.empty((len(ids), 3, size, size), dtype=torch.uint8)
    if seed is None:
        side = round(size * EVAL_RESIZE) if resize_eval else size
        for k, i in enumerate(ids.tolist()):
            out[k] = to_chw(resize_center_crop(load_rgb(os.fsdecode(paths[i]), draft=side), side, size))
        return out
    rng = random.Random(seed)
    for k, i in enumerate(ids.tolist()):
        img = random_resized_crop(load_rgb(os.fsdecode(paths[i])), size, rng)
        if flip and rng.random() < 0.5:
            img = img.transpose(_pil().FLIP_LEFT_RIGHT)
        out[k] = to_chw(img)
    return out


class FileDataset(DiskSplit):
    """One split of images stored as files, decoded on demand (see the module docstring).

    Args:
        paths: ``N`` image file paths; a file's position is its absolute id.
        labels: int64 ``[N]`` (``-1`` = unknown); its device is the split's device.
        num_classes: ``C``.
        size: side in pixels of the square model input (``input_shape = (3, size, size)``).
        mean, std: per-channel statistics in [0, 1] units, 3 values each.
        resize_eval: eval transform resizes to ``size * 256/224`` before the centre crop
            (ImageNet style); ``False`` resizes straight to ``size`` (small images).
        num_workers: decoding processes for ``batches`` (0 = decode in the calling process).
    """

    def __init__(self, paths: Sequence[str | Path] | np.ndarray, labels: torch.Tensor, num_classes: int, size: int,
                 mean: Sequence[float], std: Sequence[float], resize_eval: bool = True, num_workers: int = 2):
        # Paths are kept as one numpy array of bytes (os.fsencode) rather than a list of str: worker
        # processes share it copy-on-write without touching a refcount per path.
        self.paths = paths if isinstance(paths, np.ndarray) else np.array([os.fsencode(str(p)) for p in paths],
                                                                          dtype=bytes)
        self.labels = labels
        self.num_classes = num_classes
        self.size = size
        self.mean, self.std = tuple(mean), tuple(std)
        self.resize_eval = resize_eval
        self.num_workers = num_workers
        if len(self.paths) != len(labels):
            raise ValueError(f"{len(self.paths)} paths but {len(labels)} labels; give one label per file")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean={self.mean} and std={self.std} need 3 values each (images are decoded as RGB)")

    def __repr__(self) -> str:
        return (f"FileDataset(n={len(self)}, num_classes={self.num_classes}, size={self.size}, "
                f"num_workers={self.num_workers}, device={self.device})")

    def path(self, i: int) -> str:
        """The file of absolute id ``i``."""
        return os.fsdecode(self.paths[i])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.size, self.size)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(3, size, size)``, as ``ImageDataset.image_shape``."""
        return (3, self.size, self.size)

    def decode(self, ids: torch.Tensor, seed: int | None, flip: bool = True) -> torch.Tensor:
        """uint8 ``[b, 3, size, size]`` of ``ids``: the train transform (random crop, then a flip
        when ``flip``) with randomness from ``seed``, or the eval transform when ``seed`` is ``None``."""
        return _decode_files(self.paths, self.size, self.resize_eval, ids, seed, flip)

    def batches(self, batch_ids: Iterable[torch.Tensor], augment: Augment | None = None,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(ids, inputs)`` per id tensor: float32 ``[b, 3, size, size]`` on ``device``."""
        # what the workers get: the paths and the transform, not the labels (which may be on a GPU)
        decode = partial(_decode_files, self.paths, self.size, self.resize_eval, flip=augment is None or augment.flip)
        for ids, x in decode_ahead(decode, batch_ids, augment is not None, generator, self.num_workers, self.device):
            yield ids, to_float(x, self.mean, self.std)

    def _with(self, keep: np.ndarray | None, labels: torch.Tensor) -> FileDataset:
        return FileDataset(self.paths if keep is None else self.paths[keep], labels, self.num_classes, self.size,
                           self.mean, self.std, self.resize_eval, self.num_workers)

