"""The registry of data sources: a spec string in, :class:`DatasetSplits` out, one signature.

Specs (``tidal datasets`` lists them, :func:`list_sources`)::

    fashion-mnist  cifar10  cifar100  svhn   official files, in memory (uint8 images)
    inat2018                                  iNaturalist 2018, decoded from disk
    npz:PATH                                  your arrays (x_train, y_train, x_test, y_test)
    folder:PATH                               your images, one subfolder per class

``load_source(spec, data_dir, download, image_size, workers)`` loads any of them;
``check_source_spec(spec)`` validates a spec without loading (for configuration checks).
A source joins with :func:`register_source` on its loader.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tidal.data.checks import check_splits
from tidal.data.dataset import DatasetSplits
from tidal.registry import Registry, check_callable

__all__ = ["SourceInfo", "check_source_spec", "is_source", "list_sources", "load_source", "register_source",
           "source_info"]

_LOAD_KEYWORDS = ("path", "data_dir", "download", "image_size", "workers")  # what load_source passes every loader


@dataclass(frozen=True)
class SourceInfo:
    """A registered source: how ``tidal datasets`` lists it and how :func:`load_source` loads it."""

    name: str  # the spec, or with ``path`` the prefix of ``NAME:PATH``
    load: Callable[..., DatasetSplits]  # load(path=, data_dir=, download=, image_size=, workers=) -> the splits
    description: str  # one line for ``tidal datasets``
    path: bool = False  # named by a path after the prefix: ``NAME:PATH`` (``load`` gets it as ``path``)
    resizes: bool = False  # decodes at ``image_size``; the other sources refuse a size that is not theirs

    @property
    def spec(self) -> str:  # the form `tidal datasets` shows
        return f"{self.name}:PATH" if self.path else self.name


_SOURCES: Registry[SourceInfo] = Registry("source", "unknown dataset {name!r}{hint}; choose one of: {names}")


def register_source(name: str, description: str, path: bool = False, resizes: bool = False) -> Callable:
    """Decorator: ``load(*, path, data_dir, download, image_size, workers)`` (``**_`` for the keywords it
    ignores) becomes the source ``name`` (``name:PATH`` when ``path``); :func:`load_source` checks its splits."""
    def add(load: Callable[..., DatasetSplits]) -> Callable[..., DatasetSplits]:
        if ":" in name:
            raise ValueError(f"source name {name!r} must not hold ':'; pass path=True for a {name}:PATH source")
        check_callable(f"source {name!r}", load, 0, _LOAD_KEYWORDS)
        _SOURCES.add(name, SourceInfo(name, load, description, path, resizes), description)
        return load
    return add


@register_source("fashion-mnist", "FashionMNIST, official IDX .gz files; 28x28 grey, in memory")
def _fashion_mnist(data_dir: str | Path | None, download: bool, **_) -> DatasetSplits:
    from tidal.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(data_dir, download)


@register_source("cifar10", "CIFAR-10, official python tarball; 32x32 RGB, in memory")
def _cifar10(data_dir: str | Path | None, download: bool, **_) -> DatasetSplits:
    from tidal.data.cifar import load_cifar10

    return load_cifar10(data_dir, download)


@register_source("cifar100", "CIFAR-100 (fine labels), official python tarball; 32x32 RGB, in memory")
def _cifar100(data_dir: str | Path | None, download: bool, **_) -> DatasetSplits:
    from tidal.data.cifar import load_cifar100

    return load_cifar100(data_dir, download)


@register_source("svhn", "SVHN cropped digits, train_32x32.mat / test_32x32.mat; 32x32 RGB, in memory")
def _svhn(data_dir: str | Path | None, download: bool, **_) -> DatasetSplits:
    from tidal.data.svhn import load_svhn

    return load_svhn(data_dir, download)


@register_source("inat2018", "iNaturalist 2018, train2018.json / val2018.json over the image tree; decoded from disk",
                 resizes=True)
def _inat2018(data_dir: str | Path | None, download: bool, image_size: int | None, workers: int, **_) -> DatasetSplits:
    from tidal.data.inat import load_inat2018

    return load_inat2018(data_dir, download, image_size=224 if image_size is None else image_size, workers=workers)


@register_source("folder", "your images, PATH/<class>/*.png|jpg (optional PATH/train, PATH/test); in memory or "
                 "from disk", path=True, resizes=True)
def _folder(path: str, image_size: int | None, workers: int, **_) -> DatasetSplits:
    from tidal.data.folder import load_folder

    return load_folder(Path(path).expanduser(), image_size=image_size, workers=workers)


@register_source("npz", "your arrays x_train, y_train, x_test, y_test (uint8 images or float features); in memory",
                 path=True)
def _npz(path: str, **_) -> DatasetSplits:
    from tidal.data.arrays import load_npz

    return load_npz(path)


def list_sources(pattern: str = "*") -> list[str]:
    """Every spec form matching a shell-style ``pattern``, sorted: the names, then the ``NAME:PATH`` forms."""
    infos = [_SOURCES[n] for n in _SOURCES.names()]
    specs = [i.spec for i in infos if not i.path] + [i.spec for i in infos if i.path]
    return [s for s in specs if fnmatch.fnmatch(s, pattern)]


def _parse(spec: str) -> tuple[SourceInfo, str | None]:
    """The registered source ``spec`` names and its path (None for a named source)."""
    if not isinstance(spec, str):
        raise ValueError(f"dataset {spec!r} must be a string such as 'cifar10' or 'npz:data.npz'")
    name, colon, path = spec.partition(":")
    info = _SOURCES[name] if name in _SOURCES else None
    if info is not None and info.path:
        if not path.strip():
            raise ValueError(f"dataset {spec!r} names no path; write {info.spec}: {info.description}")
        return info, path
    if info is None or colon:
        raise _SOURCES.unknown(spec, list_sources(), cutoff=0.5)
    return info, None


def source_info(spec: str) -> SourceInfo:
    """The registered source of ``spec`` (a name or ``NAME:PATH``); a ``ValueError`` listing the valid
    specs unless it is one. Nothing is read from disk: whether files exist is for :func:`load_source`."""
    return _parse(spec)[0]


def check_source_spec(spec: str) -> None:
    """Raise ``ValueError`` unless ``spec`` is a registered name or ``NAME:PATH`` with a path (:func:`source_info`)."""
    _parse(spec)


def is_source(spec: str) -> bool:
    """Whether ``spec`` is a valid source spec (see :func:`check_source_spec`)."""
    try:
        _parse(spec)
    except ValueError:
        return False
    return True


def load_source(spec: str, data_dir: str | Path | None = None, download: bool = True, image_size: int | None = None,
                workers: int = 2) -> DatasetSplits:
    """Load the source ``spec`` (see the module docstring).

    ``data_dir``/``download`` apply to the official datasets (an explicit ``data_dir`` is the
    only place searched). ``image_size`` (pixels, square) and ``workers`` (decoding
    processes) apply to the sources that decode from disk (``folder:`` and ``inat2018``); the
    others keep their native size, and an ``image_size`` that differs from it is refused.
    Unknown specs raise ``ValueError`` listing the valid ones. Every source's splits pass
    :func:`~tidal.data.checks.check_splits` (a ``DatasetError`` otherwise).
    """
    info, path = _parse(spec)
    splits = info.load(path=path, data_dir=data_dir, download=download, image_size=image_size, workers=workers)
    shape = splits.train.input_shape
    if not info.resizes and image_size is not None and (len(shape) != 3 or shape[1:] != (image_size, image_size)):
        resizing = " and ".join(_SOURCES[n].spec for n in _SOURCES.names() if _SOURCES[n].resizes)
        raise ValueError(f"image_size={image_size} does not apply to {spec!r}, whose inputs are "
                         f"{'x'.join(map(str, shape))}; leave image_size unset (it resizes {resizing} only)")
    # One check for every source (labels in range, at least 2 classes with training samples, ...):
    # the loaders that know their files ran it already, naming the file; this names the spec.
    return check_splits(splits, spec)
