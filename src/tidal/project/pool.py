"""Scanning a pool folder: any tree of images, flat or with subfolders.

Every image file under the root is a pool sample, named by its path relative to the root
('/'-separated; spaces and any unicode accepted). An image whose nearest enclosing folder
named like one of the classes is, say, ``cat/`` counts as labelled ``cat``. Hidden files
and folders (``.DS_Store``, ``.git``) are ignored. Files that are not images (by extension)
or that Pillow cannot open are skipped and listed (:attr:`PoolScan.skipped`). A symbolic
link that leads outside the root is refused; one that stays inside is skipped (its target
is already in the pool). :func:`relative_path` turns a path a user typed (or a labels file
holds) into the pool's form, refusing any that escapes the root (``..``, absolute paths
elsewhere, links).
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from tidal.errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "PoolScan", "read_image_size", "relative_path", "scan_pool"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")  # compared lower-case


@dataclass
class PoolScan:
    """What :func:`scan_pool` found."""

    root: Path  # the pool folder, absolute and resolved
    images: list[str] = field(default_factory=list)  # relative paths, sorted
    labels: dict[str, str] = field(default_factory=dict)  # relative path -> class, for images under a class folder
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # relative path -> (width, height)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why), sorted


def _escapes(root: Path, target: Path) -> bool:
    try:
        target.relative_to(root)
    except ValueError:
        return True
    return False


def relative_path(root: Path, given: str) -> str:
    """``given`` (relative to ``root``, or absolute) as a pool path: '/'-separated, relative,
    normalised. Raises ``ValueError`` when it leads outside ``root``."""
    text = given.strip().replace("\\", "/")
    if not text:
        raise ValueError("empty path")
    if os.path.isabs(text):
        try:
            text = Path(text).resolve().relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"path {given!r} is outside the pool root {root}; use paths inside it") from None
    norm = posixpath.normpath(text)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise ValueError(f"path {given!r} escapes the pool root {root}; use paths inside it")
    return norm


def read_image_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)``, or why the file cannot be read as an image."""
    from tidal.data.files import decode_errors, describe

    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()  # checks the file's structure without decoding the pixels
        with Image.open(path) as img:
            return img.size
    except decode_errors() as exc:
        return f"cannot be read as an image ({describe(exc, str(path))})"


def scan_pool(root: str | Path, classes: list[str]) -> PoolScan:
    """Every image under ``root`` (see the module docstring).

    Raises:
        DatasetError: ``root`` is not a folder, a link leads outside it, or it holds no image.
    """
    from tidal.data.checks import MIN_IMAGE_SIZE  # tidal.data loads torch: not for `tidal label`'s paths

    given = Path(root).expanduser()
    if not given.is_dir():
        raise DatasetError(f"pool folder {str(given)!r} does not exist or is not a folder; pass --data folder:PATH "
                           "with PATH a folder of images")
    base = given.resolve()
    scan = PoolScan(base)
    class_set = set(classes)
    for folder, dirs, files in os.walk(base):
        here = Path(folder)
        for d in sorted(dirs):
            p = here / d
            if p.is_symlink():
                if _escapes(base, p.resolve()):
                    raise DatasetError(f"{p} is a link to {p.resolve()}, outside the pool folder {base}; tidal reads "
                                       "only files inside the pool: copy them in or remove the link")
                scan.skipped.append((p.relative_to(base).as_posix() + "/", "a link to a folder inside the pool"))
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not (here / d).is_symlink())
        for name in sorted(files):
            if name.startswith("."):
                continue
            p = here / name
            rel = p.relative_to(base).as_posix()
            if p.is_symlink():
                target = p.resolve()
                if _escapes(base, target):
                    raise DatasetError(f"{p} is a link to {target}, outside the pool folder {base}; tidal reads "
                                       "only files inside the pool: copy the file in or remove the link")
                scan.skipped.append((rel, "a link to a file inside the pool"))
                continue
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                scan.skipped.append((rel, f"not an image ({p.suffix or 'no extension'}; "
                                          f"images are {'/'.join(IMAGE_EXTENSIONS)})"))
                continue
            size = read_image_size(p)
            if isinstance(size, str):
                scan.skipped.append((rel, size))
                continue
            if min(size) < MIN_IMAGE_SIZE:
                scan.skipped.append((rel, f"{size[0]}x{size[1]} px, smaller than {MIN_IMAGE_SIZE} px"))
                continue
            scan.images.append(rel)
            scan.sizes[rel] = size
            for part in reversed(rel.split("/")[:-1]):  # the nearest enclosing class folder
                if part in class_set:
                    scan.labels[rel] = part
                    break
    scan.images.sort()
    scan.skipped.sort()
    if not scan.images:
        why = f" ({len(scan.skipped)} files skipped, e.g. {scan.skipped[0][0]}: {scan.skipped[0][1]})" \
            if scan.skipped else ""
        raise DatasetError(f"pool folder {base} holds no readable image{why}; put .png/.jpg images in it")
    return scan
