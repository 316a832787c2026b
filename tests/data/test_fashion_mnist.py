import numpy as np
import pytest

from tidal.data import load_dataset
from tidal.data import download
from tidal.data import fashion_mnist as fm
from tidal.data.idx import write_idx
from tidal.errors import DatasetError


def test_loads_official_format_from_data_dir(writers, tmp_path):
    writers["fashion_mnist"](tmp_path / "d")
    s = load_dataset("fashion-mnist", tmp_path / "d", download=False)
    assert s.train.images.shape == (20, 1, 28, 28) and s.train.images.dtype.is_floating_point is False
    assert s.test.labels.tolist() == list(range(10))
    assert s.train.num_classes == 10 and len(s.class_names) == 10


def test_env_variable_is_searched(writers, tmp_path, monkeypatch):
    writers["fashion_mnist"](tmp_path / "env" / "fashion-mnist")
    monkeypatch.setenv("TIDAL_DATA", str(tmp_path / "env"))
    assert fm.find_fashion_mnist(None, download=False) == tmp_path / "env" / "fashion-mnist"


def test_missing_files_say_how_to_get_them(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion-mnist", tmp_path / "empty", download=False)
    msg = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg and str(tmp_path / "empty") in msg


def test_offline_download_failure_is_reported(tmp_path, monkeypatch):
    def refuse(url, timeout=None):
        raise OSError("network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", refuse)
    with pytest.raises(DatasetError, match="download from .* failed"):
        fm.find_fashion_mnist(tmp_path / "empty", download=True)


def test_corrupt_file_is_reported(writers, tmp_path):
    writers["fashion_mnist"](tmp_path / "d")
    (tmp_path / "d" / fm.FILES["test_images"]).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="t10k-images"):
        load_dataset("fashion-mnist", tmp_path / "d", download=False)


def test_mismatched_image_and_label_counts(writers, tmp_path):
    writers["fashion_mnist"](tmp_path / "d")
    write_idx(tmp_path / "d" / fm.FILES["train_labels"], np.zeros(3, dtype=np.uint8))
    with pytest.raises(DatasetError, match="do not match"):
        load_dataset("fashion-mnist", tmp_path / "d", download=False)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="fashion-mnist"):
        load_dataset("imagenet")


def test_real_fashion_mnist(fmnist):
    assert fmnist.train.images.shape == (60000, 1, 28, 28) and fmnist.test.images.shape == (10000, 1, 28, 28)
    assert fmnist.train.labels.bincount().tolist() == [6000] * 10
    mean = fmnist.train.images.float().mean().item() / 255
    assert abs(mean - fm.MEAN[0]) < 1e-3
