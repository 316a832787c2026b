"""Writers of tiny files in exactly each official format, shared by the data tests.

Each writer returns what it wrote, so a test can compare pixels and labels with the loader's.
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tidal.data import fashion_mnist as fm
from tidal.data.cifar import CIFAR10, CIFAR100, CifarFormat
from tidal.data.idx import write_idx


class _Py2Pickler(pickle._Pickler):
    """Pickles as Python 2 wrote the official CIFAR files: protocol 2, every str/bytes as a
    Python 2 ``str`` (BINSTRING opcodes), numpy globals under ``numpy.core.multiarray``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core.", "numpy.core.")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)

    dispatch[type] = save_global


def py2_pickle(obj) -> bytes:
    """``obj`` pickled the way the official (Python 2) CIFAR files are."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(flat: np.ndarray, labels: list[int], label_key: bytes) -> dict:
    """A batch dict as in the official files: b'data' uint8 [N, 3072] (R, G, B planes, row-major)."""
    batch = {b"batch_label": b"training batch 1 of 5", label_key: list(labels), b"data": flat,
             b"filenames": [b"image_%05d.png" % i for i in range(len(labels))]}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [y % 20 for y in labels]
    return batch


def write_cifar(root: Path, fmt: CifarFormat = CIFAR10, per_file: int = 4, as_tar: bool = True,
                seed: int = 0) -> dict:
    """Write ``fmt``'s official files (``per_file`` images in each batch) into ``root``.

    As the tarball ``root/cifar-10-python.tar.gz`` (members ``cifar-10-batches-py/...``) or,
    with ``as_tar=False``, as the extracted folder. Returns the flat data, labels and names.
    """
    rng = np.random.default_rng(seed)
    n_classes = 10 if fmt is CIFAR10 else 100
    names = [f"class{c}" for c in range(n_classes)]
    members: dict[str, bytes] = {}
    flats, labels = {}, {}
    for i, m in enumerate((*fmt.train_members, fmt.test_member)):
        flats[m] = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
        labels[m] = [int(y) for y in (np.arange(per_file) + 3 * i) % n_classes]
        members[m] = py2_pickle(cifar_batch(flats[m], labels[m], fmt.label_key))
    meta = {fmt.names_key: [n.encode() for n in names]}
    if fmt is CIFAR10:
        meta.update({b"num_cases_per_batch": per_file, b"num_vis": 3072})
    else:
        meta[b"coarse_label_names"] = [f"super{c}".encode() for c in range(20)]
    members[fmt.meta_member] = py2_pickle(meta)
    root.mkdir(parents=True, exist_ok=True)
    if as_tar:
        with tarfile.open(root / fmt.resource.filename, "w:gz") as tar:
            for m, raw in members.items():
                info = tarfile.TarInfo(f"{fmt.folder}/{m}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        (root / fmt.folder).mkdir(exist_ok=True)
        for m, raw in members.items():
            (root / fmt.folder / m).write_bytes(raw)
    return {"flat": flats, "labels": labels, "names": names}


def write_svhn(root: Path, n_train: int = 6, n_test: int = 4, seed: int = 0) -> dict:
    """``train_32x32.mat`` / ``test_32x32.mat``: X uint8 [32, 32, 3, N], y [N, 1] in 1..10 (10 = digit 0)."""
    import scipy.io

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 1..10, like the official files
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def write_fashion_mnist(root: Path, n_train: int = 20, n_test: int = 10) -> None:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_idx(root / fm.FILES["train_images"], rng.integers(0, 255, (n_train, 28, 28), dtype=np.uint8))
    write_idx(root / fm.FILES["train_labels"], (np.arange(n_train) % 10).astype(np.uint8))
    write_idx(root / fm.FILES["test_images"], rng.integers(0, 255, (n_test, 28, 28), dtype=np.uint8))
    write_idx(root / fm.FILES["test_labels"], (np.arange(n_test) % 10).astype(np.uint8))


def write_inat2018(root: Path, per_split: int = 4) -> None:
    """``train2018.json`` / ``val2018.json`` (COCO-like) over JPEGs under ``train_val2018/``, 2 categories."""
    import json

    from PIL import Image

    for split in ("train2018.json", "val2018.json"):
        images, annotations = [], []
        for i in range(per_split):
            rel = f"train_val2018/Plantae/{i % 2}/{split[:3]}{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(root / rel)
            images.append({"id": i, "file_name": rel, "width": 16, "height": 12})
            annotations.append({"id": i, "image_id": i, "category_id": i % 2})
        (root / split).write_text(json.dumps({"images": images, "annotations": annotations,
                                              "categories": [{"id": 0, "name": "Quercus"}, {"id": 1, "name": "Anas"}]}))


def write_folder(root: Path, per_class: int = 4) -> Path:
    """PNG images in ``root/images/<class>/``, three classes; returns the folder."""
    from PIL import Image

    for c in range(3):
        (root / "images" / f"class{c}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((10, 10, 3), 60 * c + i, np.uint8)).save(root / "images" / f"class{c}" / f"{i}.png")
    return root / "images"


def write_npz(root: Path, n_train: int = 12, n_test: int = 6, dim: int = 5) -> Path:
    """``root/features.npz`` with float feature vectors (x_train, y_train, x_test, y_test), three classes."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    arrays = {f"{k}_{part}": v for part, n in (("train", n_train), ("test", n_test))
              for k, v in (("x", rng.normal(size=(n, dim)).astype(np.float32)), ("y", np.arange(n) % 3))}
    np.savez(root / "features.npz", **arrays)
    return root / "features.npz"


# spec form (`tidal datasets`) -> writer of tiny files in that source's official format into a
# folder, returning the spec to load them with (tests/data/test_sources.py loops over every source)
WRITERS = {
    "fashion-mnist": lambda root: (write_fashion_mnist(root), "fashion-mnist")[1],
    "cifar10": lambda root: (write_cifar(root, CIFAR10), "cifar10")[1],
    "cifar100": lambda root: (write_cifar(root, CIFAR100), "cifar100")[1],
    "svhn": lambda root: (write_svhn(root), "svhn")[1],
    "inat2018": lambda root: (write_inat2018(root), "inat2018")[1],
    "folder:PATH": lambda root: f"folder:{write_folder(root)}",
    "npz:PATH": lambda root: f"npz:{write_npz(root)}",
}


@pytest.fixture
def writers() -> dict:
    return {"cifar": write_cifar, "py2_pickle": py2_pickle, "svhn": write_svhn, "fashion_mnist": write_fashion_mnist,
            "by_source": WRITERS}


@pytest.fixture(autouse=True)
def no_default_places(monkeypatch, tmp_path):
    """Hide $TIDAL_DATA, the system copy and the user cache, so only the given folders count."""
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "no-system")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TIDAL_DATA", raising=False)
