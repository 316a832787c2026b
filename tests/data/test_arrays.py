import numpy as np
import pytest
import torch

from tidal.data import FeatureDataset, ImageDataset, from_arrays, load_npz, load_source
from tidal.errors import DatasetError


def _imgs(n, h=12, w=12, c=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _labels(n, c=3):
    return np.arange(n) % c


def _err(**kw) -> str:
    args = {"x_train": _imgs(6, c=3), "y_train": _labels(6), "x_test": _imgs(3, c=3), "y_test": _labels(3)}
    args.update(kw)
    with pytest.raises(DatasetError) as err:
        from_arrays(**args)
    msg = str(err.value)
    assert "\n" not in msg and "custom" in msg
    return msg


def test_numpy_4d_is_channels_last():
    x = _imgs(6, h=10, w=12, c=3)
    x[4, 3, 5, 2] = 77
    s = from_arrays(x, _labels(6), _imgs(3, h=10, w=12, c=3), _labels(3))
    assert isinstance(s.train, ImageDataset) and s.train.images.shape == (6, 3, 10, 12)
    assert int(s.train.images[4, 2, 3, 5]) == 77
    assert torch.equal(s.train.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert s.class_names == ("0", "1", "2") and s.train.num_classes == 3 and s.name == "custom"


def test_torch_4d_is_channels_first():
    x = torch.from_numpy(_imgs(6, c=3)).permute(0, 3, 1, 2).contiguous()
    x[4, 2, 3, 5] = 77
    s = from_arrays(x, torch.tensor(_labels(6)), x[:3].clone(), torch.tensor(_labels(3)), class_names=["a", "b", "c"])
    assert s.train.images.shape == (6, 3, 12, 12) and int(s.train.images[4, 2, 3, 5]) == 77
    assert s.class_names == ("a", "b", "c")


def test_grey_images_and_label_columns():
    s = from_arrays(_imgs(6), _labels(6).reshape(6, 1), _imgs(3), _labels(3))
    assert s.train.images.shape == (6, 1, 12, 12) and s.train.labels.dtype == torch.int64


def test_mean_and_std_come_from_the_training_images():
    x = _imgs(8, c=3)
    s = from_arrays(x, _labels(8), _imgs(2, c=3), _labels(2))
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(s.train.mean, ref.mean(axis=(0, 1, 2)), atol=1e-9)
    np.testing.assert_allclose(s.train.std, ref.std(axis=(0, 1, 2)), atol=1e-9)
    assert s.test.mean == s.train.mean


def test_float_features_make_a_feature_split():
    f = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float64)
    s = from_arrays(f, _labels(6), f[:2], _labels(2))
    assert isinstance(s.train, FeatureDataset) and s.train.features.dtype == torch.float32
    assert s.train.input_shape == (5,)


def test_float_images_are_refused_with_the_fix():
    msg = _err(x_train=_imgs(6, c=3) / 255.0)
    assert "float images" in msg and "uint8" in msg and "2-D" in msg


def test_other_layout_mistakes():
    assert "np.moveaxis" in _err(x_train=_imgs(6, c=3).transpose(0, 3, 1, 2))  # channels-first numpy
    assert "permute" in _err(x_train=torch.from_numpy(_imgs(6, c=3)))  # channels-last torch
    assert "must be float" in _err(x_train=np.zeros((6, 5), dtype=np.int64))
    assert "int64" in _err(x_train=_imgs(6, c=3).astype(np.int64))
    assert "integer class" in _err(y_train=_labels(6).astype(np.float32))
    assert "[N, H, W]" in _err(x_train=np.zeros((6, 2, 2, 2, 2), dtype=np.uint8))


def test_shared_checks_apply():
    assert "6 samples but y_train has 5" in _err(y_train=_labels(5))
    assert "0 images" in _err(x_train=_imgs(0, c=3), y_train=_labels(0))
    assert "0 samples" in _err(x_test=_imgs(0, c=3), y_test=_labels(0))
    assert "3x12x12 but test inputs are 3x16x16" in _err(x_test=_imgs(3, h=16, w=16, c=3))
    assert "smaller than 8x8" in _err(x_train=_imgs(6, 4, 4, c=3), x_test=_imgs(3, 4, 4, c=3))
    assert "at least 2 classes" in _err(y_train=np.zeros(6, dtype=np.int64), y_test=np.zeros(3, dtype=np.int64))
    assert "label 5 at index 1 is outside 0..2" in _err(y_test=np.array([0, 5, 1]), class_names=["a", "b", "c"])


def test_unlabelled_samples_only_when_allowed():
    y = _labels(6)
    y[2] = -1
    assert "allow_unlabeled" in _err(y_train=y)
    s = from_arrays(_imgs(6, c=3), y, _imgs(3, c=3), _labels(3), allow_unlabeled=True)
    assert int(s.train.labels[2]) == -1 and s.train.num_classes == 3
    yt = _labels(3)
    yt[0] = -1
    with pytest.raises(DatasetError, match="test label -1"):
        from_arrays(_imgs(6, c=3), y, _imgs(3, c=3), yt, allow_unlabeled=True)


def test_npz_round_trip(tmp_path):
    x = _imgs(6, c=3)
    x[1, 2, 3, 0] = 9
    np.savez(tmp_path / "d.npz", x_train=x, y_train=_labels(6), x_test=_imgs(3, c=3), y_test=_labels(3),
             class_names=np.array(["cat", "dog", "eel"]))
    s = load_source(f"npz:{tmp_path / 'd.npz'}")
    assert int(s.train.images[1, 0, 2, 3]) == 9 and s.class_names == ("cat", "dog", "eel") and s.name == "d"


def test_npz_problems_name_the_file(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, x_train=_imgs(6), y_train=_labels(6), x_test=_imgs(3))
    with pytest.raises(DatasetError, match=r"lacks \['y_test'\]") as err:
        load_npz(f)
    assert str(f) in str(err.value)
    np.savez(f, x_train=_imgs(6), y_train=_labels(6), x_test=_imgs(3), y_test=np.array([0, 1, 7]),
             class_names=np.array(["a", "b", "c"]))
    with pytest.raises(DatasetError, match="label 7") as err:
        load_npz(f)
    assert str(f) in str(err.value)
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match="truncated") as err:
        load_npz(f)
    assert str(f) in str(err.value) and "\n" not in str(err.value)
    f.write_bytes(b"garbage" * 100)
    with pytest.raises(DatasetError, match="truncated or not an .npz") as err:
        load_npz(f)
    with pytest.raises(DatasetError, match="no such file"):
        load_npz(tmp_path / "missing.npz")
