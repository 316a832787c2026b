"""Where dataset files are looked for, and checked downloads of the official files.

Search order for a dataset ``name`` (e.g. ``cifar10``):

* an explicit ``data_dir`` (``--data-dir``) is used **alone**: ``data_dir`` itself, then
  ``data_dir/name``; missing files are downloaded into ``data_dir`` when allowed;
* otherwise ``$TIDAL_DATA`` and ``$TIDAL_DATA/name``, any system folder the dataset names
  (e.g. a Debian package), then the user cache ``~/.cache/tidal/name``, which is where
  downloads go.

:func:`fetch` downloads one file to a temporary name beside its destination, checks the
MD5 published with the dataset, and only then moves it into place: a file with the wrong
checksum is deleted and never read.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tidal.errors import DatasetError
from tidal.io import atomic_path

__all__ = ["Resource", "cache_dir", "ensure_files", "fetch", "md5sum", "search_dirs"]

_CHUNK = 1 << 20  # bytes read per step while downloading or hashing


@dataclass(frozen=True)
class Resource:
    """One official file: its name on disk, where it is published, and its published MD5."""

    filename: str
    url: str
    md5: str


def md5sum(path: str | Path) -> str:
    """Hex MD5 of the file at ``path``."""
    h = hashlib.md5()  # noqa: S324 (integrity check against the published sums, not security)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | Path, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically and check its MD5 against ``md5``.

    The bytes go to a temporary file beside ``dest``; on a checksum mismatch that file is
    deleted and a ``DatasetError`` says so (``dest`` is left as it was). Network errors are
    raised as ``DatasetError`` naming the URL and saying where to put the file by hand.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(dest) as tmp:
            h = hashlib.md5()  # noqa: S324 (integrity check, see md5sum)
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:  # noqa: S310
                for block in iter(lambda: response.read(_CHUNK), b""):
                    h.update(block)
                    out.write(block)
            if h.hexdigest() != md5.lower():
                raise DatasetError(
                    f"download from {url} has MD5 {h.hexdigest()}, not the published {md5}; the file was deleted. "
                    f"Try again later, or download it by hand, check it with `md5sum`, and put it at {dest}"
                )
    except DatasetError:
        raise
    except OSError as exc:  # urllib's URLError and HTTPError are OSErrors
        raise DatasetError(
            f"download from {url} failed ({exc.__class__.__name__}: {exc}); download it by hand and put it at {dest}"
        ) from exc
    return dest


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/tidal/name`` (default ``~/.cache/tidal/name``): where downloads go by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tidal" / name


def search_dirs(name: str, data_dir: str | Path | None, system_dirs: tuple[Path, ...] = ()) -> list[Path]:
    """The folders to look in for dataset ``name``, in order (see the module docstring)."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / name]
    dirs: list[Path] = []
    if os.environ.get("TIDAL_DATA"):
        env = Path(os.environ["TIDAL_DATA"])
        dirs += [env, env / name]
    return dirs + list(system_dirs) + [cache_dir(name)]


def ensure_files(title: str, resources: tuple[Resource, ...], folder: Path, download: bool, hint: str = "") -> Path:
    """``folder`` after downloading into it whichever of ``resources`` it lacks.

    ``download=False`` with files missing raises one ``DatasetError`` line saying which
    files to put in which folder, and their URLs. ``hint`` is appended to that line.
    """
    missing = [r for r in resources if not (folder / r.filename).is_file()]
    if not missing:
        return folder
    if not download:
        where = ", ".join(f"{r.filename} ({r.url})" for r in missing)
        raise DatasetError(f"{title} files not found in {folder} and downloading is disabled; "
                           f"put {where} in {folder}, or allow downloading{hint}")
    for r in missing:
        fetch(r.url, folder / r.filename, r.md5)
    return folder
