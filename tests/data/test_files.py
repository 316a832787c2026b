"""FileDataset: on-demand decoding, transforms, determinism across worker counts, bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

from tidal.data.dataset import Augment, Split
from tidal.data.files import FileDataset, random_resized_crop, resize_center_crop
from tidal.errors import DatasetError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _write(tmp_path, n=12, hw=(20, 28), mode="RGB"):
    rng = np.random.default_rng(0)
    paths, arrays = [], []
    for i in range(n):
        a = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        img = Image.fromarray(a)
        if mode != "RGB":
            img = img.convert(mode)
        p = tmp_path / f"img{i:02d}.png"
        img.save(p)
        paths.append(p)
        arrays.append(np.array(img.convert("RGB")))
    return paths, arrays


def _split(paths, size=16, workers=0, resize_eval=False):
    labels = torch.arange(len(paths)) % 3
    return FileDataset(paths, labels, 3, size, MEAN, STD, resize_eval=resize_eval, num_workers=workers)


def test_eval_pixels_are_the_files_normalised(tmp_path):
    paths, arrays = _write(tmp_path, n=4, hw=(16, 16))
    ds = _split(paths, size=16)
    assert isinstance(ds, Split) and ds.input_shape == (3, 16, 16) and len(ds) == 4
    x = ds.inputs(torch.tensor([2, 0]))
    want = (torch.from_numpy(arrays[2]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], want)


def test_grayscale_and_palette_files_become_rgb(tmp_path):
    paths, arrays = _write(tmp_path, n=2, hw=(16, 16), mode="L")
    x = _split(paths, size=16).inputs(torch.tensor([1]))
    assert x.shape == (1, 3, 16, 16)
    torch.testing.assert_close(x[0, 0], x[0, 2])
    (tmp_path / "p").mkdir()
    ppaths, _ = _write(tmp_path / "p", n=1, hw=(16, 16), mode="P")
    assert _split(ppaths, size=16).inputs(torch.tensor([0])).shape == (1, 3, 16, 16)


def test_eval_transform_resizes_shorter_side_then_centre_crops(tmp_path):
    img = Image.fromarray(np.zeros((40, 80, 3), dtype=np.uint8))
    assert resize_center_crop(img, 20, 16).size == (16, 16)
    paths, _ = _write(tmp_path, n=3, hw=(30, 50))
    ds = _split(paths, size=24, resize_eval=True)  # shorter side to round(24 * 256 / 224) = 27, crop 24
    assert ds.inputs(torch.arange(3)).shape == (3, 3, 24, 24)


def test_random_resized_crop_stays_inside_and_has_the_size():
    img = Image.fromarray(np.zeros((10, 300, 3), dtype=np.uint8))  # extreme ratio: falls back to a centre crop
    import random

    assert random_resized_crop(img, 32, random.Random(0)).size == (32, 32)


def test_batches_keep_order_and_ids(tmp_path):
    paths, _ = _write(tmp_path)
    ds = _split(paths)
    batch_ids = [torch.tensor([5, 1, 7]), torch.tensor([0, 11])]
    out = list(ds.batches(batch_ids))
    assert [ids.tolist() for ids, _ in out] == [[5, 1, 7], [0, 11]]
    torch.testing.assert_close(out[0][1], ds.inputs(torch.tensor([5, 1, 7])))


def test_train_batches_identical_with_0_and_2_workers(tmp_path):
    paths, _ = _write(tmp_path)
    batch_ids = [torch.arange(0, 5), torch.arange(5, 9), torch.arange(9, 12)]

    def run(workers, seed=0):
        g = torch.Generator().manual_seed(seed)
        return [x for _, x in _split(paths, workers=workers).batches(batch_ids, Augment(), g)]

    a, b = run(0), run(2)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], run(0, seed=1)[0])  # the generator drives the randomness
    assert a[0].shape == (5, 3, 16, 16)


def test_augment_advances_the_generator_once_per_batch(tmp_path):
    paths, _ = _write(tmp_path, n=4)
    g = torch.Generator().manual_seed(0)
    list(_split(paths).batches([torch.arange(2), torch.arange(2, 4)], Augment(), g))
    ref = torch.Generator().manual_seed(0)
    torch.randint(2**62, (2,), generator=ref)
    assert torch.equal(g.get_state(), ref.get_state())


def test_no_flip_still_crops(tmp_path):
    paths, _ = _write(tmp_path, n=3)
    g = torch.Generator().manual_seed(0)
    (_, x), = _split(paths).batches([torch.arange(3)], Augment(flip=False), g)
    assert x.shape == (3, 3, 16, 16)


def test_subset_and_to(tmp_path):
    paths, _ = _write(tmp_path, n=6, hw=(16, 16))
    ds = _split(paths, size=16)
    sub = ds.subset(torch.tensor([4, 2]))
    assert len(sub) == 2 and sub.labels.tolist() == [1, 2] and sub.path(0).endswith("img04.png")
    torch.testing.assert_close(sub.inputs(torch.tensor([0])), ds.inputs(torch.tensor([4])))
    assert ds.to("cpu").device == torch.device("cpu")


@pytest.mark.parametrize("workers", [0, 2])
def test_undecodable_file_is_one_line_naming_it(tmp_path, workers):
    paths, _ = _write(tmp_path, n=3)
    paths[1].write_bytes(b"not a png")
    ds = _split(paths, workers=workers)
    with pytest.raises(DatasetError) as err:
        list(ds.batches([torch.arange(3)]))
    msg = str(err.value)
    assert str(paths[1]) in msg and "\n" not in msg and "fix:" in msg


def test_mismatched_labels_are_refused(tmp_path):
    paths, _ = _write(tmp_path, n=3)
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        FileDataset(paths, torch.zeros(2, dtype=torch.long), 2, 8, MEAN, STD)


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    """issue 21 case 8: 16-bit PNGs decoded 32768 as 255 (clipped), so a set trained as near-white images."""
    values = np.array([[0, 255, 256, 1000, 32768, 40000, 65279, 65535]] * 8, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    img = Image.open(tmp_path / "g16.png")
    assert img.mode == "I;16"
    got = _split([tmp_path / "g16.png"], size=8).decode(torch.tensor([0]), None)[0]
    want = torch.tensor([0, 1, 1, 4, 128, 156, 254, 255], dtype=torch.uint8)  # round(v * 255 / 65535)
    assert torch.equal(got[:, 0], want.expand(3, 8)) and torch.equal(got[0], got[2])
    # mode "I" (how older Pillow versions open them) is read the same way
    from tidal.data.files import _grey16_to_8

    assert np.asarray(_grey16_to_8(Image.fromarray(values.astype(np.int32))))[0].tolist() == want.tolist()
