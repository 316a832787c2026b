"""Shared fixtures: a tiny synthetic dataset (fast loops) and the real FashionMNIST files."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# As the `tidal` command does (tidal/__init__.py), before torch loads: waiting OpenMP threads
# sleep, so the suite does not crawl on a busy machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))  # helper modules shared by test files (foreign_files.py)

from tidal.data import DatasetSplits, ImageDataset
from tidal.data.fashion_mnist import FILES, SYSTEM_DIR

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_tiny_splits(n_train: int = 240, n_test: int = 60, num_classes: int = 4, size: int = 12,
                     channels: int = 1, seed: int = 0) -> DatasetSplits:
    """A learnable toy dataset: each class lights up a different quadrant, plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> ImageDataset:
        labels = torch.arange(n) % num_classes
        images = torch.randint(0, 60, (n, channels, size, size), generator=g)
        half = size // 2
        for c in range(num_classes):
            r, q = divmod(c % 4, 2)
            images[labels == c, :, r * half:(r + 1) * half, q * half:(q + 1) * half] += 150
        return ImageDataset(images.clamp(0, 255).to(torch.uint8), labels, num_classes, (0.3,) * channels,
                            (0.3,) * channels)

    return DatasetSplits("tiny", make(n_train), make(n_test), tuple(f"c{i}" for i in range(num_classes)))


@pytest.fixture(scope="session")
def tiny_splits() -> DatasetSplits:
    return make_tiny_splits()


def _fmnist_dir() -> Path | None:
    for d in [os.environ.get("TIDAL_DATA"), str(SYSTEM_DIR)]:
        if d and all((Path(d) / f).is_file() for f in FILES.values()):
            return Path(d)
    return None


@pytest.fixture(scope="session")
def fmnist_dir() -> Path:
    """The real FashionMNIST files (installed by `make test`); a clear failure when absent."""
    d = _fmnist_dir()
    if d is None:
        if os.environ.get("TIDAL_SKIP_REAL_DATA"):
            pytest.skip("TIDAL_SKIP_REAL_DATA is set and FashionMNIST is not installed")
        pytest.fail("real FashionMNIST not found: run `make test` (installs dataset-fashion-mnist) "
                    "or set TIDAL_DATA to a folder with the four .gz files")
    return d


@pytest.fixture(scope="session")
def fmnist(fmnist_dir: Path) -> DatasetSplits:
    from tidal.data import load_dataset

    return load_dataset("fashion-mnist", fmnist_dir, download=False)


@pytest.fixture
def one_thread():
    """One torch thread for the test (--jobs workers and Ray tasks train with one; a serial
    reference must too), restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
