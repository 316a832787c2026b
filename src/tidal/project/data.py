"""A project's pool and holdout as splits (:mod:`tidal.data.dataset`), from its stored state.

The pool split's absolute ids are the project's sample ids and its labels are the stored
labels (``-1`` = not labelled yet), so training, scoring and selection run on it exactly as
in the simulation. Pools come from a data source spec:

``folder:PATH``  the images under PATH (:mod:`tidal.project.pool`), decoded as RGB at their
                 size, or resized and centre-cropped to ``image_size``; held in memory when
                 the decoded pool is under 1 GiB, else decoded from disk on demand
``npz:PATH``     ``x_train`` is the pool (its labels ``>= 0`` count as given), ``x_test``/``y_test``
                 the holdout; sample paths are ``x_train/<index>``
a named source   (``fashion-mnist``, ``cifar10``, ...): the training split with its labels
                 hidden is the pool, the test split the holdout; paths ``train/<index>``

A folder pool's file that was deleted after ``init`` is *missing* (:func:`missing_samples`):
the pool keeps its id (with a blank image that nothing reads: a query neither trains on it nor
selects it) and its stored label, so it is back in the pool as soon as the file is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from tidal.data.checks import IN_MEMORY_BYTES, channel_stats, stats_ids
from tidal.data.dataset import ImageDataset, Split
from tidal.errors import DatasetError

__all__ = ["PoolData", "array_pool", "decode_images", "load_pool", "missing_samples"]



@dataclass
class PoolData:
    """The pool (ids = sample ids, labels = stored labels or -1) and the holdout (or None)."""

    pool: Split
    holdout: Split | None


def decode_images(paths: list[Path], image_size: int | None) -> torch.Tensor:
    """uint8 ``[n, 3, H, W]``: the files decoded as RGB, resized and centre-cropped to
    ``image_size`` when given (then every file must share the first one's size)."""
    from tidal.data.files import load_rgb, resize_center_crop, to_chw

    out: list[torch.Tensor] = []
    for p in paths:
        img = load_rgb(str(p))
        if image_size is not None:
            img = resize_center_crop(img, image_size, image_size)
        x = to_chw(img)
        if out and x.shape != out[0].shape:
            raise DatasetError(f"{p} is {x.shape[2]}x{x.shape[1]} px but {paths[0]} is {out[0].shape[2]}x"
                               f"{out[0].shape[1]}; images must share one size: create the project with "
                               "--image-size N to resize them all to N x N")
        out.append(x)
    return torch.stack(out) if out else torch.zeros((0, 3, image_size or 8, image_size or 8), dtype=torch.uint8)


def _stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = channel_stats(images[stats_ids(len(images))])
    return mean, tuple(s if s > 0 else 1.0 for s in std)


def _labels_tensor(n: int, labels: dict[int, int]) -> torch.Tensor:
    y = torch.full((n,), -1, dtype=torch.int64)
    if labels:
        y[torch.tensor(list(labels), dtype=torch.int64)] = torch.tensor(list(labels.values()), dtype=torch.int64)
    return y


def array_pool(spec: str, data_dir: str | None = None):
    """``(pool split, pool labels >= 0 or -1, holdout split or None)`` of an ``npz:`` or named source."""
    if spec.startswith("npz:"):
        from tidal.data.arrays import load_npz

        s = load_npz(spec[len("npz:"):], allow_unlabeled=True)
        holdout = s.test if len(s.test) else None
        return s.train, s.train.labels.clone(), holdout
    from tidal.data.sources import load_source

    s = load_source(spec, data_dir)
    return s.train, torch.full((len(s.train),), -1, dtype=torch.int64), s.test


def _moved_fix(store, kind: str = "folder") -> str:
    project = store.path.parent
    return (f"if you moved it, point the project at its new place: `tidal init {project} --data {kind}:NEWPATH "
            f"--classes {' '.join(store.classes)} --moved`")


def missing_samples(store) -> list[int]:
    """The sample ids of a ``folder:`` pool whose file is gone, sorted (``[]`` for other pools).

    Raises:
        DatasetError: the pool folder (or an ``npz:`` pool's file) itself is gone (the message
            says how to point the project at a moved pool).
    """
    source = store.meta("source")
    if source.startswith("npz:") and not Path(source[len("npz:"):]).expanduser().is_file():
        raise DatasetError(f"the pool file {source[len('npz:'):]} of project {store.path.parent} is gone; "
                           f"{_moved_fix(store, 'npz')}")
    if not source.startswith("folder:"):
        return []
    root = Path(store.meta("pool_root"))
    if not root.is_dir():
        raise DatasetError(f"the pool folder {root} of project {store.path.parent} is gone; {_moved_fix(store)}")
    return [i for i, p in enumerate(store.paths()) if not (root / p).is_file()]


def _check_holdout(store) -> list[tuple[str, int]]:
    items = store.holdout()
    gone = [p for p, _ in items if not Path(p).is_file()]
    if gone:
        raise DatasetError(f"{len(gone)} of the {len(items)} holdout images are gone (e.g. {gone[0]}); restore them, "
                           f"or if the holdout moved: `tidal init {store.path.parent} --data {store.meta('source')} "
                           f"--classes {' '.join(store.classes)} --holdout NEWPATH --moved`")
    return items


def load_pool(store, device: torch.device | str = "cpu", data_dir: str | None = None,
              skip: Sequence[int] = ()) -> PoolData:
    """The project's pool and holdout on ``device`` (see the module docstring).

    ``skip``: sample ids not to read (missing files, :func:`missing_samples`): blank images in
    the pool, left out of the normalisation statistics.
    """
    spec = store.meta("source")
    labels = store.labels()
    n = store.num_samples()
    classes = store.classes
    image_size = store.meta("image_size")
    if spec.startswith("folder:"):
        root = Path(store.meta("pool_root"))
        paths = [root / p for p in store.paths()]
        skipped = set(skip)
        present = [i for i in range(n) if i not in skipped]
        w, h = (image_size, image_size) if image_size else store.meta("image_wh", (0, 0))
        if n * 3 * w * h >= IN_MEMORY_BYTES:
            return _on_disk(store, paths, present, labels, len(classes), w, h, device)
        images = decode_images([paths[i] for i in present], image_size)
        mean, std = _stats(images)
        if skipped:  # blank images hold the missing samples' ids; nothing reads them
            full = torch.zeros((n, *images.shape[1:]), dtype=images.dtype)
            full[torch.tensor(present, dtype=torch.int64)] = images
            images = full
        pool: Split = ImageDataset(images, _labels_tensor(n, labels), len(classes), mean, std)
        holdout_items = _check_holdout(store)
        holdout = None
        if holdout_items:
            hx = decode_images([Path(p) for p, _ in holdout_items], image_size)
            if hx.shape[1:] != images.shape[1:]:
                raise DatasetError(f"holdout images are {hx.shape[3]}x{hx.shape[2]} px but the pool's are "
                                   f"{images.shape[3]}x{images.shape[2]}; create the project with --image-size N")
            holdout = ImageDataset(hx, torch.tensor([c for _, c in holdout_items], dtype=torch.int64), len(classes),
                                   mean, std)
    else:
        split, _, holdout = array_pool(spec, data_dir)
        if len(split) != n:
            raise DatasetError(f"{spec} now holds {len(split)} samples but the project was made with {n}; "
                               "the data changed: create a new project")
        pool = split.with_labels(_labels_tensor(n, labels))
    return PoolData(pool.to(device), holdout.to(device) if holdout is not None else None)


def _on_disk(store, paths: list[Path], present: list[int], labels: dict[int, int], num_classes: int, w: int,
             h: int, device: torch.device | str) -> PoolData:
    """A pool too large for memory: decoded from disk on demand (:class:`tidal.data.files.FileDataset`);
    the statistics come from ``present`` samples only."""
    from tidal.data.files import FileDataset

    if w != h:
        raise DatasetError(f"the pool's images are {w}x{h} (not square) and too many to hold in memory; create the "
                           "project with --image-size N to crop them to N x N")
    ids = stats_ids(len(present), 500).tolist()
    mean, std = _stats(decode_images([paths[present[i]] for i in ids], store.meta("image_size")))
    pool = FileDataset(paths, _labels_tensor(len(paths), labels), num_classes, w, mean, std, resize_eval=False)
    holdout = None
    if store.holdout():
        items = _check_holdout(store)
        holdout = FileDataset([p for p, _ in items], torch.tensor([c for _, c in items], dtype=torch.int64),
                              num_classes, w, mean, std, resize_eval=False)
    return PoolData(pool.to(device), holdout.to(device) if holdout is not None else None)
