"""load_inat2018 on a tiny tree in the official layout: JSONs (COCO-like) + JPEGs."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tidal.data import inat
from tidal.data.dataset import Augment
from tidal.data.files import FileDataset
from tidal.errors import DatasetError

# (image id, category id): category ids are sparse on purpose; labels follow their order
TRAIN = [(31, 9), (12, 2), (40, 5), (17, 2), (25, 9)]
VAL = [(3, 5), (8, 2)]
CATEGORIES = [{"id": 9, "name": "Quercus"}, {"id": 2, "name": "Anas"}, {"id": 5, "name": "Bufo"}]


def _write(root, train=TRAIN, val=VAL):
    for name, items in (("train2018.json", train), ("val2018.json", val)):
        images, annotations = [], []
        for image_id, cat in items:
            rel = f"train_val2018/Plantae/{cat}/{image_id:04d}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((30, 40, 3), image_id, dtype=np.uint8)).save(root / rel)
            images.append({"id": image_id, "file_name": rel, "width": 40, "height": 30})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": cat})
        (root / name).write_text(json.dumps({"images": images, "annotations": annotations,
                                             "categories": CATEGORIES}))
    return root


@pytest.fixture
def no_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TIDAL_DATA", raising=False)


def test_loads_labels_names_and_ids_in_image_id_order(tmp_path, no_cache):
    s = inat.load_inat2018(_write(tmp_path), image_size=16, workers=0)
    assert s.name == "inat2018" and s.class_names == ("Anas", "Bufo", "Quercus")  # by category id 2, 5, 9
    assert isinstance(s.train, FileDataset) and s.train.input_shape == (3, 16, 16)
    assert s.train.num_classes == 3 and s.train.mean == inat.IMAGENET_MEAN
    assert s.train.labels.tolist() == [0, 0, 2, 2, 1]  # image ids 12, 17, 25, 31, 40
    assert s.test.labels.tolist() == [1, 0]
    x = s.train.inputs(torch.tensor([2]))  # image id 25: every pixel is 25
    want = (torch.tensor([25 / 255] * 3) - torch.tensor(inat.IMAGENET_MEAN)) / torch.tensor(inat.IMAGENET_STD)
    torch.testing.assert_close(x[0, :, 8, 8], want, atol=0.05, rtol=0)  # JPEG is lossy
    (ids, xb), = s.train.batches([torch.arange(5)], Augment(), torch.Generator().manual_seed(0))
    assert xb.shape == (5, 3, 16, 16) and ids.tolist() == list(range(5))


def test_searches_the_inat2018_subfolder(tmp_path, no_cache):
    (tmp_path / "inat2018").mkdir()
    _write(tmp_path / "inat2018")
    assert inat.find_inat2018(tmp_path) == tmp_path / "inat2018"


@pytest.mark.parametrize("download", [True, False])
def test_missing_json_gives_urls_and_md5s(tmp_path, no_cache, download):
    with pytest.raises(DatasetError) as err:
        inat.load_inat2018(tmp_path, download)
    msg = str(err.value)
    assert "\n" not in msg and "train2018.json" in msg and str(tmp_path) in msg
    for name, md5 in inat.ARCHIVES.items():
        assert inat.BASE_URL + name in msg and md5 in msg


def test_missing_image_is_named_at_load(tmp_path, no_cache):
    _write(tmp_path)
    gone = tmp_path / "train_val2018/Plantae/2/0012.jpg"
    gone.unlink()
    with pytest.raises(DatasetError) as err:
        inat.load_inat2018(tmp_path, workers=0)
    assert str(gone) in str(err.value) and "\n" not in str(err.value)


def test_missing_image_beyond_the_first_is_named_at_decode(tmp_path, no_cache, monkeypatch):
    monkeypatch.setattr(inat, "CHECK_FIRST", 1)
    _write(tmp_path)
    gone = tmp_path / "train_val2018/Plantae/5/0040.jpg"
    gone.unlink()
    s = inat.load_inat2018(tmp_path, image_size=16, workers=0)
    with pytest.raises(DatasetError) as err:
        s.train.inputs(torch.arange(5))
    assert str(gone) in str(err.value) and "\n" not in str(err.value)


def test_malformed_json_is_one_line(tmp_path, no_cache):
    _write(tmp_path)
    (tmp_path / "val2018.json").write_text("{not json")
    with pytest.raises(DatasetError, match="val2018.json"):
        inat.load_inat2018(tmp_path)
    (tmp_path / "val2018.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="categories"):
        inat.load_inat2018(tmp_path)


def test_unannotated_image_is_refused(tmp_path, no_cache):
    _write(tmp_path)
    data = json.loads((tmp_path / "val2018.json").read_text())
    data["annotations"] = data["annotations"][:1]
    (tmp_path / "val2018.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="image id 8"):
        inat.load_inat2018(tmp_path)


def test_json_that_is_a_list_is_one_line(tmp_path, no_cache):
    """issue 21 case 11: a train2018.json holding a JSON list gave an AttributeError."""
    _write(tmp_path)
    (tmp_path / "train2018.json").write_text(json.dumps([{"id": 1}]))
    with pytest.raises(DatasetError) as err:
        inat.load_inat2018(tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "train2018.json") in msg and "JSON list" in msg and "fix:" in msg


def test_explicit_data_dir_is_the_only_folder_searched_and_listed(tmp_path, no_cache, monkeypatch):
    """issue 21 case 28: the error listed ~/.cache/tidal/inat2018 although only --data-dir was searched."""
    monkeypatch.setenv("TIDAL_DATA", str(tmp_path / "env"))
    _write(tmp_path / "cache" / "tidal" / "inat2018")  # files in the cache are not used either
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(DatasetError) as err:
        inat.load_inat2018(given)
    msg = str(err.value)
    assert f"not found in {given}, {given / 'inat2018'};" in msg
    assert "cache" not in msg and str(tmp_path / "env") not in msg and "--data-dir" not in msg
    assert inat.find_inat2018(None) == tmp_path / "cache" / "tidal" / "inat2018"  # without data_dir: searched
