"""iNaturalist 2018 (Van Horn et al. 2018) from its official JSON files, decoded from disk.

Expected under the data folder (after extracting the three official archives there)::

    train2018.json   val2018.json          (COCO-like: images, annotations, categories)
    train_val2018/<super category>/<category id>/<image>.jpg

Each JSON holds ``images`` ``[{id, file_name, width, height}]`` (``file_name`` relative to
the data folder), ``annotations`` ``[{image_id, category_id}]`` and ``categories``
``[{id, name, ...}]``. The classes are the categories the two files list (8,142 in the real
data), ordered by id: label ``k`` is the ``k``-th smallest category id. Class names come from
``categories.json`` (the official un-obfuscated names) when it lies beside the JSON files,
else from the JSON's ``name`` field. Absolute ids follow the image ids, ascending. ``val2018``
is the test split.

Both splits are :class:`~tidal.data.files.FileDataset`\\ s with ImageNet statistics and
transforms (train: random resized crop to ``image_size`` + flip; eval: shorter side to
``image_size * 256/224``, centre crop). At load, the first few files of each split are
checked to exist; any other missing or corrupt file raises a ``DatasetError`` naming it when
it is decoded.

Downloading: the archives are 120 GB of images plus two 26 MB annotation files, so they are
never fetched automatically; when the files are missing the error gives the official URLs,
their MD5 sums and where to extract them (``download`` only changes the wording).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from tidal.data.checks import check_splits
from tidal.data.dataset import DatasetSplits
from tidal.data.files import FileDataset
from tidal.errors import DatasetError

__all__ = ["ARCHIVES", "IMAGENET_MEAN", "IMAGENET_STD", "find_inat2018", "load_inat2018"]

# Official archives and MD5 sums (github.com/visipedia/inat_comp, 2018/README.md; the images'
# MD5 is also the one torchvision's INaturalist dataset checks for version "2018").
BASE_URL = "https://ml-inat-competition-datasets.s3.amazonaws.com/2018/"
ARCHIVES = {
    "train_val2018.tar.gz": "b1c6952ce38f31868cc50ea72d066cc3",  # 120 GB: train_val2018/<super>/<cat>/*.jpg
    "train2018.json.tar.gz": "bfa29d89d629cbf04d826a720c0a68b0",  # 26 MB: train2018.json
    "val2018.json.tar.gz": "f2ed8bfe3e9901cdefceb4e53cd3775d",  # 26 MB: val2018.json
}
SPLIT_FILES = ("train2018.json", "val2018.json")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics, in [0, 1] units
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECK_FIRST = 5  # image files per split checked to exist at load time


def _candidates(data_dir: str | Path | None) -> list[Path]:
    """The folders searched: an explicit ``data_dir`` alone (it and its ``inat2018/``), as for
    every source (:mod:`tidal.data.download`); else ``$TIDAL_DATA/inat2018``, then the user cache."""
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / "inat2018"]
    dirs: list[Path] = []
    if os.environ.get("TIDAL_DATA"):
        dirs += [Path(os.environ["TIDAL_DATA"]) / "inat2018"]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return dirs + [Path(base) / "tidal" / "inat2018"]


def find_inat2018(data_dir: str | Path | None = None, download: bool = False) -> Path:
    """The first candidate folder holding both JSON files; otherwise a ``DatasetError`` that
    lists the places tried, the official URLs with their MD5 sums and where to extract them."""
    tried = _candidates(data_dir)
    for d in tried:
        if all((d / f).is_file() for f in SPLIT_FILES):
            return d
    where = tried[0]
    why = ("iNaturalist 2018 is not downloaded automatically (120 GB)" if download
           else "downloading is disabled (and iNaturalist 2018 is never downloaded automatically: 120 GB)")
    urls = ", ".join(f"{BASE_URL}{name} (md5 {md5})" for name, md5 in ARCHIVES.items())
    raise DatasetError(f"iNaturalist 2018 files {' and '.join(SPLIT_FILES)} not found in "
                       f"{', '.join(str(d) for d in tried)}; {why}. Fix: download {urls}, check them with "
                       f"`md5sum`, and extract all three with `tar xzf` into {where}"
                       f"{' (or pass --data-dir)' if data_dir is None else ''}")


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read {path} ({exc.__class__.__name__}: {exc}); fix: extract it again "
                           f"from {path.name}.tar.gz") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path} holds a JSON {type(data).__name__}, not the object with lists 'images', "
                           f"'annotations' and 'categories' of the iNaturalist/COCO format; fix: use the official "
                           f"{path.name} (extract it again from {path.name}.tar.gz)")
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DatasetError(f"{path} lacks the list(s) {', '.join(missing)} of the iNaturalist/COCO format; "
                           f"fix: use the official {path.name}")
    return data


def _split(root: Path, data: dict, name: str, label_of: dict[int, int]) -> tuple[list[str], torch.Tensor]:
    """``(file paths, int64 labels [N])`` of one JSON, in ascending image id."""
    category = {a["image_id"]: a["category_id"] for a in data["annotations"]}
    images = sorted(data["images"], key=lambda im: im["id"])
    unlabelled = [im["id"] for im in images if im["id"] not in category]
    if unlabelled:
        raise DatasetError(f"{len(unlabelled)} images of {root / name} have no annotation (image id "
                           f"{unlabelled[0]}, ...); fix: use the official {name} (test2018 has no labels)")
    paths = [str(root / im["file_name"]) for im in images]
    missing = [p for p in paths[:CHECK_FIRST] if not Path(p).is_file()]
    if missing:
        raise DatasetError(f"image files listed in {root / name} are missing: {', '.join(missing)}; fix: extract "
                           f"{BASE_URL}train_val2018.tar.gz into {root}")
    return paths, torch.tensor([label_of[category[im["id"]]] for im in images], dtype=torch.int64)


def load_inat2018(data_dir: str | Path | None = None, download: bool = False, *, image_size: int = 224,
                  workers: int = 2) -> DatasetSplits:
    """Load iNaturalist 2018 (train2018 -> train, val2018 -> test) as disk-backed splits.

    Args:
        data_dir: folder holding ``train2018.json``, ``val2018.json`` and ``train_val2018/``
            (also searched: ``data_dir/inat2018``; nothing else when ``data_dir`` is given;
            without it: ``$TIDAL_DATA/inat2018``, then ``~/.cache/tidal/inat2018``).
        download: only changes the message when files are missing (nothing is downloaded).
        image_size: side of the square model input in pixels.
        workers: decoding processes per split.
    Raises:
        DatasetError: missing or malformed JSON, unannotated images, missing image files,
            fewer than 2 categories with training images (:func:`~tidal.data.checks.check_splits`).
    """
    root = find_inat2018(data_dir, download)
    train_json, val_json = (_read(root / f) for f in SPLIT_FILES)
    try:
        splits = _load(root, train_json, val_json, image_size, workers)
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"an entry of {root / SPLIT_FILES[0]} or {root / SPLIT_FILES[1]} is malformed "
                           f"({exc.__class__.__name__}: {exc}); fix: use the official JSON files") from None
    return check_splits(splits, f"{root / SPLIT_FILES[0]} and {SPLIT_FILES[1]}")


def _load(root: Path, train_json: dict, val_json: dict, image_size: int, workers: int) -> DatasetSplits:
    categories = {c["id"]: str(c.get("name", c["id"])) for c in train_json["categories"] + val_json["categories"]}
    if (root / "categories.json").is_file():  # official un-obfuscated names, when present
        try:
            named = json.loads((root / "categories.json").read_text(encoding="utf-8"))
            categories.update({c["id"]: str(c["name"]) for c in named if c["id"] in categories})
        except (OSError, ValueError, KeyError, TypeError):
            pass  # names only: the obfuscated ones will do
    ids = sorted(categories)
    label_of = {cid: k for k, cid in enumerate(ids)}
    for name, data in zip(SPLIT_FILES, (train_json, val_json)):
        unknown = {a["category_id"] for a in data["annotations"]} - set(categories)
        if unknown:
            raise DatasetError(f"{root / name} annotates category ids {sorted(unknown)[:5]} that no 'categories' "
                               "entry lists; fix: use the official JSON files")
    (p_train, y_train), (p_val, y_val) = (_split(root, d, n, label_of)
                                          for n, d in zip(SPLIT_FILES, (train_json, val_json)))
    make = dict(num_classes=len(ids), size=image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize_eval=True,
                num_workers=workers)
    return DatasetSplits("inat2018", FileDataset(p_train, y_train, **make), FileDataset(p_val, y_val, **make),
                         tuple(categories[c] for c in ids))
