import numpy as np
import pytest
import scipy.io
import torch

from tidal.data.svhn import MEAN, RESOURCES, load_svhn
from tidal.errors import DatasetError


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_pixels_and_labels_land_right(tmp_path, writers):
    wrote = writers["svhn"](tmp_path, n_train=11, n_test=4)
    x, y = wrote["train"]
    s = load_svhn(tmp_path, download=False)
    assert s.train.images.shape == (11, 3, 32, 32) and s.train.images.dtype == torch.uint8
    assert s.test.images.shape == (4, 3, 32, 32)
    # X is [H, W, C, N]: pixel (row 4, column 7) of channel 2 of sample 9
    assert int(s.train.images[9, 2, 4, 7]) == int(x[4, 7, 2, 9])
    assert torch.equal(s.train.images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    # labels 1..10 with 10 meaning the digit 0
    assert y[9, 0] == 10 and int(s.train.labels[9]) == 0 and int(s.train.labels[0]) == 1
    assert s.train.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert s.class_names == tuple("0123456789") and s.train.mean == MEAN and s.name == "svhn"


def test_truncated_mat_names_the_file(tmp_path, writers):
    writers["svhn"](tmp_path)
    f = tmp_path / "test_32x32.mat"
    f.write_bytes(f.read_bytes()[:3000])
    with pytest.raises(DatasetError, match="truncated") as err:
        load_svhn(tmp_path, download=False)
    assert str(f) in _one_line(err)


def test_garbage_mat_names_the_file(tmp_path, writers):
    writers["svhn"](tmp_path)
    f = tmp_path / "train_32x32.mat"
    f.write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DatasetError) as err:
        load_svhn(tmp_path, download=False)
    assert str(f) in _one_line(err)


def test_wrong_keys_and_mislabelled_file(tmp_path, writers):
    writers["svhn"](tmp_path)
    f = tmp_path / "train_32x32.mat"
    x = np.zeros((32, 32, 3, 5), dtype=np.uint8)
    scipy.io.savemat(f, {"X": x, "labels": np.ones((5, 1))})
    with pytest.raises(DatasetError, match="not 'X' and 'y'") as err:
        load_svhn(tmp_path, download=False)
    assert str(f) in _one_line(err)
    scipy.io.savemat(f, {"X": x, "y": np.array([[1], [2], [11], [3], [4]], dtype=np.uint8)})
    with pytest.raises(DatasetError, match="train label 11 at index 2 is outside 0..9"):
        load_svhn(tmp_path, download=False)
    scipy.io.savemat(f, {"X": x, "y": np.ones((4, 1), dtype=np.uint8)})
    with pytest.raises(DatasetError, match="5 images but y is"):
        load_svhn(tmp_path, download=False)
    scipy.io.savemat(f, {"X": x.astype(np.float64), "y": np.ones((5, 1), dtype=np.uint8)})
    with pytest.raises(DatasetError, match="expected uint8"):
        load_svhn(tmp_path, download=False)


def test_missing_files_say_which_files_go_where(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_svhn(tmp_path / "d", download=False)
    msg = _one_line(err)
    for r in RESOURCES.values():
        assert r.filename in msg and r.url in msg
    assert str(tmp_path / "d") in msg
