"""load_folder: class-folder layouts, held-out test split, in memory vs on disk, bad folders."""

import numpy as np
import pytest
import torch
from PIL import Image

from tidal.data.dataset import ImageDataset
from tidal.data.files import FileDataset
from tidal.data.folder import load_folder
from tidal.errors import DatasetError


def _img(path, value, hw=(12, 12), ext="png"):
    """A flat image whose red channel is ``value`` (green = 2 * value % 256, blue = 0)."""
    a = np.zeros((*hw, 3), dtype=np.uint8)
    a[..., 0], a[..., 1] = value, (2 * value) % 256
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path.with_suffix("." + ext))
    return path.with_suffix("." + ext)


def _tree(root, classes=("cat", "dog"), per_class=5, **kw):
    for c, name in enumerate(classes):
        for i in range(per_class):
            _img(root / name / f"{i:03d}", 10 * c + i, **kw)
    return root


def _one_line(err, *needles):
    msg = str(err.value)
    assert "\n" not in msg and "fix" in msg, msg
    for n in needles:
        assert str(n) in msg, msg


def test_train_test_layout_pixels_labels_names(tmp_path):
    _tree(tmp_path / "train", per_class=3)
    _tree(tmp_path / "test", per_class=2)
    s = load_folder(tmp_path, workers=0)
    assert s.class_names == ("cat", "dog") and s.name == tmp_path.name
    assert isinstance(s.train, ImageDataset) and s.train.images.shape == (6, 3, 12, 12)
    assert s.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and s.test.labels.tolist() == [0, 0, 1, 1]
    # ids follow the sorted relative paths: dog/001.png is id 4, red channel 10 * 1 + 1
    assert s.train.images[4, :, 0, 0].tolist() == [11, 22, 0]
    assert s.test.images[1, 0, 5, 5].item() == 1
    assert len(s.train.mean) == 3 and all(v > 0 for v in s.train.std)


def test_held_out_test_is_stratified_and_deterministic(tmp_path):
    _tree(tmp_path, per_class=10)
    a, b = load_folder(tmp_path, workers=0), load_folder(tmp_path, workers=0)
    assert a.train.labels.bincount().tolist() == [8, 8] and a.test.labels.bincount().tolist() == [2, 2]
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.images, b.test.images)
    # train and test are disjoint and together hold every image once
    red = torch.cat([a.train.images[:, 0, 0, 0], a.test.images[:, 0, 0, 0]]).sort().values
    assert red.tolist() == sorted(list(range(10)) + list(range(10, 20)))


def test_jpeg_and_upper_case_extensions_and_workers(tmp_path):
    for c in ("a", "b"):
        for i in range(3):
            _img(tmp_path / c / f"x{i}", 100, hw=(16, 16), ext="JPG" if i else "jpeg")
    s = load_folder(tmp_path, workers=2)
    assert len(s.train) + len(s.test) == 6
    assert abs(int(s.train.images[0, 0, 8, 8]) - 100) <= 3  # JPEG is lossy


def test_mixed_sizes_need_image_size(tmp_path):
    _tree(tmp_path, per_class=2)
    odd = _img(tmp_path / "dog" / "big", 7, hw=(20, 30))
    with pytest.raises(DatasetError) as err:
        load_folder(tmp_path, workers=0)
    _one_line(err, odd, "--image-size", "30x20")
    s = load_folder(tmp_path, image_size=10, workers=0)
    assert s.train.images.shape[1:] == (3, 10, 10)


def test_large_folder_becomes_a_file_dataset(tmp_path):
    _tree(tmp_path / "train", per_class=3)
    _tree(tmp_path / "test", per_class=1)
    s = load_folder(tmp_path, workers=0, in_memory=False)
    mem = load_folder(tmp_path, workers=0, in_memory=True)
    assert isinstance(s.train, FileDataset) and s.train.input_shape == (3, 12, 12)
    assert s.train.mean == mem.train.mean and s.train.std == mem.train.std
    torch.testing.assert_close(s.test.inputs(torch.arange(2)), mem.test.inputs(torch.arange(2)))
    assert s.train.labels.tolist() == mem.train.labels.tolist()


@pytest.mark.parametrize("case", ["flat", "empty class", "single class", "not an image", "tiny", "missing",
                                  "nested", "no images", "ambiguous", "no test images"])
def test_bad_folders_give_one_line(tmp_path, case):
    if case == "flat":
        for i in range(3):
            _img(tmp_path / f"{i}", i)
        needle = "0.png"
    elif case == "empty class":
        _tree(tmp_path)
        (tmp_path / "emu").mkdir()
        needle = tmp_path / "emu"
    elif case == "single class":
        _tree(tmp_path, classes=("cat",))
        needle = "'cat'"
    elif case == "not an image":
        _tree(tmp_path)
        (tmp_path / "dog" / "notes.txt").write_text("hi")
        needle = tmp_path / "dog" / "notes.txt"
    elif case == "tiny":
        _tree(tmp_path)
        needle = _img(tmp_path / "cat" / "small", 1, hw=(5, 12))
    elif case == "missing":
        needle = tmp_path / "nowhere"
        tmp_path = needle
    elif case == "nested":
        _tree(tmp_path)
        _img(tmp_path / "cat" / "sub" / "x", 1)
        needle = tmp_path / "cat" / "sub"
    elif case == "no images":
        needle = tmp_path
    elif case == "ambiguous":
        _tree(tmp_path / "train")
        _tree(tmp_path / "lion")
        needle = "lion/"
    else:
        _tree(tmp_path, per_class=1)
        needle = "no test images"
    with pytest.raises(DatasetError) as err:
        load_folder(tmp_path, workers=0)
    _one_line(err, needle)


@pytest.mark.parametrize("in_memory", [True, False])
def test_unreadable_files_are_listed(tmp_path, in_memory):
    _tree(tmp_path, per_class=4)
    bad = [tmp_path / "cat" / f"00{i}.png" for i in range(3)] + [tmp_path / "dog" / f"00{i}.png" for i in range(4)]
    for p in bad:
        p.write_bytes(b"garbage")
    with pytest.raises(DatasetError) as err:
        load_folder(tmp_path, workers=0, in_memory=in_memory)
    _one_line(err, "7 of 8 images", bad[0], bad[4], "and 2 more")


def test_truncated_file_is_caught_when_decoding_into_memory(tmp_path):
    _tree(tmp_path, per_class=3, hw=(64, 64))
    p = tmp_path / "cat" / "001.png"
    p.write_bytes(p.read_bytes()[:60])  # the header survives, the pixels do not
    with pytest.raises(DatasetError) as err:
        load_folder(tmp_path, workers=0)
    _one_line(err, p)


def test_test_folder_with_unknown_class_is_refused(tmp_path):
    _tree(tmp_path / "train")
    _tree(tmp_path / "test", classes=("cat", "cow"))
    with pytest.raises(DatasetError) as err:
        load_folder(tmp_path, workers=0)
    _one_line(err, "cow")


@pytest.mark.parametrize("in_memory", [True, False])
def test_16_bit_pngs_are_scaled_to_8_bits(tmp_path, in_memory):
    """issue 21 case 8: value 32768 of a 16-bit PNG decoded to 255 (clipped), not 128."""
    for c, name in enumerate(("dark", "mid")):
        for i in range(3):
            (tmp_path / name).mkdir(exist_ok=True)
            Image.fromarray(np.full((12, 12), 1000 + 31768 * c, dtype=np.uint16)).save(tmp_path / name / f"{i}.png")
    assert Image.open(tmp_path / "mid" / "0.png").mode == "I;16"
    s = load_folder(tmp_path, workers=0, in_memory=in_memory)
    ids = torch.arange(len(s.train))
    x = s.train.images if in_memory else s.train.decode(ids, None)
    want = torch.where(s.train.labels == 1, 128, 4).to(torch.uint8)  # round(v * 255 / 65535)
    assert torch.equal(x[:, :, 5, 5], want[:, None].expand(-1, 3))
