"""Checks every data source runs on what it read, before anything trains on it.

One function, :func:`check_splits`, holds the checks shared by all sources (FashionMNIST,
CIFAR, SVHN, ``npz:`` files, user arrays), so a bad file fails the same way whichever
source read it: a :class:`~tidal.errors.DatasetError` of one line that names the file or
source, quotes the bad value and says the fix. :func:`image_split` builds an in-memory
split and turns the split's own shape checks into the same kind of error. The data constants
every source shares (the smallest image, the in-memory threshold, the statistics sample) and
the per-channel statistics live here too.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from tidal.data.dataset import DatasetSplits, FeatureDataset, ImageDataset
from tidal.errors import DatasetError

__all__ = ["IN_MEMORY_BYTES", "MIN_IMAGE_SIZE", "STATS_SAMPLE", "channel_stats", "check_splits", "feature_split",
           "image_split", "stats_ids"]

MIN_IMAGE_SIZE = 8  # pixels: the smallest height/width a CIFAR-style ResNet can downsample usefully
IN_MEMORY_BYTES = 1 << 30  # decoded uint8 size below which a folder (or a folder pool) is held in memory (1 GiB)
STATS_SAMPLE = 2000  # training (or pool) images the per-channel mean and std are computed from


def image_split(images: torch.Tensor, labels: torch.Tensor, num_classes: int, mean: tuple[float, ...],
                std: tuple[float, ...], source: str) -> ImageDataset:
    """``ImageDataset(images uint8 [N, C, H, W], labels int64 [N], ...)``; shape errors name ``source``."""
    try:
        return ImageDataset(images, labels, num_classes, mean, std)
    except ValueError as exc:
        raise DatasetError(f"{source}: {exc}") from exc


def feature_split(features: torch.Tensor, labels: torch.Tensor, num_classes: int, source: str) -> FeatureDataset:
    """``FeatureDataset(features float [N, D], labels int64 [N], ...)``; shape errors name ``source``."""
    try:
        return FeatureDataset(features, labels, num_classes)
    except ValueError as exc:
        raise DatasetError(f"{source}: {exc}") from exc


def stats_ids(n: int, most: int = STATS_SAMPLE) -> torch.Tensor:
    """int64 ids of at most ``most`` of ``n`` samples, evenly spaced: those the statistics read."""
    return torch.linspace(0, n - 1, min(n, most)).round().long().unique()


def channel_stats(batches: torch.Tensor | Iterable[torch.Tensor], channels: int = 3, scale: float = 255.0,
                  floor: float = 0.0, digits: int | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of ``[b, C, H, W]`` batches (or of
    uint8 ``[N, C, H, W]``, read in chunks of about 2**24 values, 128 MiB), in [0, 1] units: uint8
    values divided by ``scale`` (1 for floats already in [0, 1]), summed in float64.

    The std is at least ``floor`` (``1 / 255``: constant images divide by nothing tiny); both
    are rounded to ``digits`` when given. No batch at all gives NaN.
    """
    if isinstance(batches, torch.Tensor):
        channels = batches.shape[1]
        batches = batches.split(max(1, (1 << 24) // max(1, batches[0].numel() if len(batches) else 1)))
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    count = 0
    for x in batches:
        x = x.double().div_(scale)
        total += x.sum((0, 2, 3))
        squares += x.square().sum((0, 2, 3))
        count += x.numel() // channels
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(floor)
    values = [[float(v) if digits is None else round(float(v), digits) for v in t] for t in (mean, std)]
    return tuple(values[0]), tuple(values[1])


def check_splits(splits: DatasetSplits, source: str, allow_unlabeled: bool = False) -> DatasetSplits:
    """Refuse splits no experiment can use; return ``splits`` unchanged when they pass.

    Checks: both splits hold samples; one label per sample; train and test have the same
    input shape and number of classes; images are at least ``MIN_IMAGE_SIZE`` pixels high
    and wide; there are at least 2 classes and one name per class; every label lies in
    ``0..C-1``; the training split holds samples of at least 2 classes (unless
    ``allow_unlabeled``: a labelling project may start with few labels). ``-1`` (not
    labelled yet) is accepted in the training split only when ``allow_unlabeled`` is set;
    the test split must always be fully labelled. Feature
    vectors must be finite. Raises ``DatasetError`` naming ``source``.
    """
    train, test = splits.train, splits.test
    for part, split in (("train", train), ("test", test)):
        n = len(split)
        if n == 0:
            raise DatasetError(f"{source}: the {part} split holds 0 samples; give at least one {part} sample")
        if split.labels.shape != (n,):
            raise DatasetError(f"{source}: the {part} split has {n} samples but labels of shape "
                               f"{tuple(split.labels.shape)}; give one label per sample")
    if train.input_shape != test.input_shape:
        raise DatasetError(f"{source}: train inputs are {_shape(train.input_shape)} but test inputs are "
                           f"{_shape(test.input_shape)}; every sample must have the same size (resize them first)")
    if len(train.input_shape) == 3:
        h, w = train.input_shape[1:]
        if min(h, w) < MIN_IMAGE_SIZE:
            raise DatasetError(f"{source}: images are {h}x{w} pixels, smaller than {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}; "
                               f"upsample them to at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}")
    if isinstance(train, FeatureDataset):
        for part, split in (("train", train), ("test", test)):
            if not bool(torch.isfinite(split.features).all()):
                raise DatasetError(f"{source}: the {part} features hold NaN or infinite values; clean them first")
    c = train.num_classes
    if test.num_classes != c:
        raise DatasetError(f"{source}: train has {c} classes but test has {test.num_classes}; use one class list")
    if c < 2:
        raise DatasetError(f"{source}: {c} class(es) found (train class counts {_counts(train.labels, c)}); a "
                           "classifier needs at least 2 classes; fix: add samples of at least one more class, "
                           "and its name")
    if len(splits.class_names) != c:
        raise DatasetError(f"{source}: {c} classes but {len(splits.class_names)} class names "
                           f"{list(splits.class_names)[:5]}...; give one name per class")
    for part, split in (("train", train), ("test", test)):
        labels = split.labels
        low = -1 if (allow_unlabeled and part == "train") else 0
        bad = (labels < low) | (labels >= c)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            hint = " (-1 = unlabelled is refused unless allow_unlabeled=True, and never in the test split)" \
                if int(labels[i]) == -1 else ""
            raise DatasetError(f"{source}: {part} label {int(labels[i])} at index {i} is outside 0..{c - 1}{hint}; "
                               f"labels must be class indices 0..{c - 1}")
    present = int((torch.bincount(train.labels[train.labels >= 0].cpu(), minlength=c) > 0).sum())
    if present < 2 and not allow_unlabeled:  # a labelling project may start with few (or no) labels
        raise DatasetError(f"{source}: the train split holds samples of {present} of its {c} classes (train class "
                           f"counts {_counts(train.labels, c)}); a classifier needs training samples of at least 2 "
                           "classes; fix: add training samples of the other classes (or check the train labels)")
    return splits


def _counts(labels: torch.Tensor, c: int) -> str:
    """Samples per class of ``labels`` (those in ``0..c-1``): the whole list for up to 20
    classes, else ``{class: count}`` of the classes present."""
    labels = labels.cpu()
    counts = torch.bincount(labels[(labels >= 0) & (labels < c)], minlength=max(c, 0)).tolist()
    if c <= 20:
        return str(counts)
    present = {k: n for k, n in enumerate(counts) if n}
    return f"{present} of {c} classes, the others 0"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape)
