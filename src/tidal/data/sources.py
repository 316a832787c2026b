"""The registry of data sources: a spec string in, :class:`DatasetSplits` out, one signature.

Specs::

    fashion-mnist  cifar10  cifar100  svhn   official files, in memory (uint8 images)
    inat2018                                  iNaturalist 2018, decoded from disk
    npz:PATH                                  your arrays (x_train, y_train, x_test, y_test)
    folder:PATH                               your images, one subfolder per class

``load_source(spec, data_dir, download, image_size, workers)`` loads any of them;
``check_source_spec(spec)`` validates a spec without loading (for configuration checks);
``list_sources()`` names them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

from tidal.data.checks import check_splits
from tidal.data.dataset import DatasetSplits

__all__ = ["NAMED_SOURCES", "PATH_PREFIXES", "check_source_spec", "is_source", "list_sources", "load_source"]


def _fashion_mnist(data_dir: str | Path | None, download: bool) -> DatasetSplits:
    from tidal.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(data_dir, download)


def _cifar10(data_dir: str | Path | None, download: bool) -> DatasetSplits:
    from tidal.data.cifar import load_cifar10

    return load_cifar10(data_dir, download)


def _cifar100(data_dir: str | Path | None, download: bool) -> DatasetSplits:
    from tidal.data.cifar import load_cifar100

    return load_cifar100(data_dir, download)


def _svhn(data_dir: str | Path | None, download: bool) -> DatasetSplits:
    from tidal.data.svhn import load_svhn

    return load_svhn(data_dir, download)


# name -> loader(data_dir, download) of the in-memory sources (their images have a fixed size)
NAMED_SOURCES: dict[str, Callable[[str | Path | None, bool], DatasetSplits]] = {
    "fashion-mnist": _fashion_mnist,
    "cifar10": _cifar10,
    "cifar100": _cifar100,
    "svhn": _svhn,
}
_DISK_SOURCES = ("inat2018",)  # decoded from disk at image_size by tidal.data.inat
PATH_PREFIXES = ("folder:", "npz:")  # sources named by a path after the prefix


# one line per spec form, for `tidal datasets`
SOURCE_NOTES = {
    "fashion-mnist": "FashionMNIST, official IDX .gz files; 28x28 grey, in memory",
    "cifar10": "CIFAR-10, official python tarball; 32x32 RGB, in memory",
    "cifar100": "CIFAR-100 (fine labels), official python tarball; 32x32 RGB, in memory",
    "svhn": "SVHN cropped digits, train_32x32.mat / test_32x32.mat; 32x32 RGB, in memory",
    "inat2018": "iNaturalist 2018, train2018.json / val2018.json over the image tree; decoded from disk",
    "folder:PATH": "your images, PATH/<class>/*.png|jpg (optional PATH/train, PATH/test); in memory or from disk",
    "npz:PATH": "your arrays x_train, y_train, x_test, y_test (uint8 images or float features); in memory",
}


def list_sources() -> list[str]:
    """Every valid spec form, sorted: the names, then ``folder:PATH`` and ``npz:PATH``."""
    return sorted([*NAMED_SOURCES, *_DISK_SOURCES]) + [f"{p}PATH" for p in PATH_PREFIXES]


def check_source_spec(spec: str) -> None:
    """Raise ``ValueError`` unless ``spec`` is a known name or ``folder:``/``npz:`` with a path.

    Nothing is read from disk: whether the files exist is for :func:`load_source` to say.
    """
    if not isinstance(spec, str):
        raise ValueError(f"dataset {spec!r} must be a string such as 'cifar10' or 'npz:data.npz'")
    for prefix in PATH_PREFIXES:
        if spec.startswith(prefix):
            if not spec[len(prefix):].strip():
                raise ValueError(f"dataset {spec!r} names no path; write {prefix}PATH, e.g. {prefix}"
                                 f"{'data.npz' if prefix == 'npz:' else 'images/'}")
            return
    if spec in NAMED_SOURCES or spec in _DISK_SOURCES:
        return
    close = difflib.get_close_matches(spec, [*NAMED_SOURCES, *_DISK_SOURCES, *PATH_PREFIXES], n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown dataset {spec!r}{hint}; choose one of: {', '.join(list_sources())}")


def is_source(spec: str) -> bool:
    """Whether ``spec`` is a valid source spec (see :func:`check_source_spec`)."""
    try:
        check_source_spec(spec)
    except ValueError:
        return False
    return True


def load_source(spec: str, data_dir: str | Path | None = None, download: bool = True, image_size: int | None = None,
                workers: int = 2) -> DatasetSplits:
    """Load the source ``spec`` (see the module docstring).

    ``data_dir``/``download`` apply to the official datasets (an explicit ``data_dir`` is the
    only place searched). ``image_size`` (pixels, square) and ``workers`` (decoding
    processes) apply to the disk-backed sources ``folder:`` and ``inat2018``; the in-memory
    sources keep their native size, and an ``image_size`` that differs from it is refused.
    Unknown specs raise ``ValueError`` listing the valid ones. Every source's splits pass
    :func:`~tidal.data.checks.check_splits` (a ``DatasetError`` otherwise).
    """
    check_source_spec(spec)
    if spec.startswith("folder:"):
        from tidal.data.folder import load_folder

        splits = load_folder(Path(spec[len("folder:"):]).expanduser(), image_size=image_size, workers=workers)
    elif spec == "inat2018":
        from tidal.data.inat import load_inat2018

        splits = load_inat2018(data_dir, download, image_size=224 if image_size is None else image_size,
                               workers=workers)
    else:
        if spec.startswith("npz:"):
            from tidal.data.arrays import load_npz

            splits = load_npz(spec[len("npz:"):])
        else:
            splits = NAMED_SOURCES[spec](data_dir, download)
        shape = splits.train.input_shape
        if image_size is not None and (len(shape) != 3 or shape[1:] != (image_size, image_size)):
            raise ValueError(f"image_size={image_size} does not apply to {spec!r}, whose inputs are "
                             f"{'x'.join(map(str, shape))}; leave image_size unset (it resizes folder: and inat2018 "
                             "only)")
    # One check for every source (labels in range, at least 2 classes with training samples, ...):
    # the loaders that know their files ran it already, naming the file; this names the spec.
    return check_splits(splits, spec)
