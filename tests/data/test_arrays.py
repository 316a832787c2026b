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
    msg = _err(y_test=np.array([0, 5, 1]), class_names=["a", "b", "c"])
    assert "y_test label 5 at index 1 has no class name" in msg
    assert "train label -2 at index 5 is outside 0..2" in _err(y_train=np.array([0, 1, 2, 0, 1, -2]))


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
    with pytest.raises(DatasetError, match="not an .npz archive") as err:
        load_npz(f)
    with pytest.raises(DatasetError, match="no such file"):
        load_npz(tmp_path / "missing.npz")


def _save(path, **kw):
    arrays = {"x_train": _imgs(6, c=3), "y_train": _labels(6), "x_test": _imgs(3, c=3), "y_test": _labels(3)}
    arrays.update(kw)
    np.savez(path, **arrays)
    return path


def _npz_err(path) -> str:
    with pytest.raises(DatasetError) as err:
        load_npz(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path.name) in msg and "fix" in msg, msg
    return msg


def test_huge_label_is_refused_before_building_class_names(tmp_path):
    """issue 21 case 9: one label of 2**40 built 1.1e12 class names (13 GiB, minutes, no output)."""
    msg = _npz_err(_save(tmp_path / "d.npz", y_train=np.array([0, 1, 2, 0, 1, 10**6])))
    assert "label 1000000 at index 5" in msg
    assert "at most 100,000" in msg
    msg = _npz_err(_save(tmp_path / "d.npz", y_test=np.array([0, 1, 2**40])))
    assert "y_test holds label 1099511627776 at index 2" in msg and "renumber" in msg
    assert len(from_arrays(_imgs(6, c=3), _labels(6), _imgs(3, c=3), np.array([0, 1, 99_999])).class_names) == 100_000


def test_npy_under_an_npz_name_and_text_file(tmp_path):
    """issue 21 cases 11 and 14: a .npy saved as .npz gave a TypeError; a text file passed on
    numpy's advice to load it unsafely with pickle."""
    f = tmp_path / "d.npz"
    with open(f, "wb") as fh:
        np.save(fh, _imgs(6))
    assert "single array written by np.save, not an .npz archive" in _npz_err(f)
    f.write_text("x_train,y_train\n1,2\n")
    msg = _npz_err(f)
    assert "is not an .npz archive" in msg and "pickle" not in msg and "allow_pickle" not in msg


def test_object_arrays_are_named_as_such(tmp_path):
    """issue 21 case 14: an object array was called 'truncated or not an .npz archive'."""
    f = _save(tmp_path / "d.npz", y_train=np.array([0, 1, 2, 0, 1, 2], dtype=object))
    msg = _npz_err(f)
    assert "'y_train' holds Python objects (dtype object)" in msg and "refuses" in msg and "uint8 images" in msg
    assert "truncated" not in msg
    f = _save(tmp_path / "d.npz", class_names=np.array(["a", "b", "c"], dtype=object))
    assert "'class_names' holds Python objects" in _npz_err(f) and "dtype=str" in _npz_err(f)


def test_label_beyond_int64_and_too_few_class_names(tmp_path):
    """issue 21 case 15: 2**64-1 was reported as "-1 (unlabelled)"; a label without a class
    name as out of range, not naming the class-name list."""
    msg = _npz_err(_save(tmp_path / "d.npz", y_train=np.array([0, 1, 2, 0, 1, 2**64 - 1], dtype=np.uint64)))
    assert "label 18446744073709551615 at index 5" in msg and "unlabelled" not in msg
    msg = _err(y_train=torch.tensor([0, 1, 2, 0, 1, 2**64 - 1], dtype=torch.uint64))
    assert "label 18446744073709551615" in msg
    msg = _npz_err(_save(tmp_path / "d.npz", class_names=np.array(["a", "b"])))
    assert "y_train label 2 at index 2 has no class name" in msg and "class_names array of d.npz lists 2 names" in msg
    assert "class_names lists 2 names ['a', 'b']" in _err(class_names=["a", "b"])
