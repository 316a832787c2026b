import sys
import types

import pytest
import torch

from tidal.data import load_dataset
from tidal.data.dataset import Split
from tidal.data.sources import check_source_spec, is_source, list_sources, load_source, register_source, source_info


def test_every_registered_source_has_a_file_writer(writers):
    assert set(writers["by_source"]) == set(list_sources())


@pytest.mark.parametrize("form", list_sources())
def test_every_source_loads_its_official_files_into_the_split_interface(form, tmp_path, writers):
    spec = writers["by_source"][form](tmp_path)
    s = load_source(spec, data_dir=tmp_path, download=False, workers=0)
    assert s.name and len(s.class_names) >= 2
    for split in (s.train, s.test):
        assert isinstance(split, Split) and len(split) > 0
        assert split.labels.dtype == torch.int64 and len(split.input_shape) in (1, 3)
        assert split.num_classes == len(s.class_names) and int(split.labels.max()) < split.num_classes
        x = split.inputs(torch.arange(2))
        assert x.dtype == torch.float32 and x.shape == (2, *split.input_shape)
    assert s.train.input_shape == s.test.input_shape


def test_load_dataset_is_load_source(tmp_path, writers):
    writers["cifar"](tmp_path)
    assert torch.equal(load_dataset("cifar10", tmp_path, False).train.images,
                       load_source("cifar10", tmp_path, False).train.images)
    assert source_info("cifar10").name == "cifar10" and source_info("npz:x.npz").path


def test_unknown_spec_lists_the_valid_ones_and_suggests_one():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar-10' \(did you mean 'cifar10'\?\)") as err:
        load_source("cifar-10")
    assert "npz:PATH" in str(err.value) and "svhn" in str(err.value)


def test_spec_check_reads_nothing():
    for spec in ("fashion-mnist", "cifar100", "svhn", "inat2018", "npz:/no/such.npz", "folder:/no/such"):
        check_source_spec(spec)
        assert is_source(spec)
    for spec in ("npz:", "folder:  ", "npz", "mnist", "cifar10:x", "", 3):
        with pytest.raises(ValueError):
            check_source_spec(spec)
        assert not is_source(spec)
    assert list_sources() == ["cifar10", "cifar100", "fashion-mnist", "inat2018", "svhn", "folder:PATH", "npz:PATH"]
    assert list_sources("cifar*") == ["cifar10", "cifar100"] and list_sources("npz*") == ["npz:PATH"]


@pytest.mark.parametrize("spec,message", [
    ("cifar-10", r"^unknown dataset 'cifar-10' \(did you mean 'cifar10'\?\); choose one of: cifar10, .*, npz:PATH$"),
    ("mnist", r"^unknown dataset 'mnist' \(did you mean 'fashion-mnist'\?\); choose one of: "),
    ("imagenet", r"^unknown dataset 'imagenet'; choose one of: cifar10, cifar100, fashion-mnist, inat2018, svhn, "
                 r"folder:PATH, npz:PATH$"),
    ("npz", r"^dataset 'npz' names no path; write npz:PATH: your arrays x_train"),
    ("folder: ", r"^dataset 'folder: ' names no path; write folder:PATH: your images"),
])
def test_a_bad_spec_is_one_line_quoting_it(spec, message):
    with pytest.raises(ValueError, match=message) as err:
        load_source(spec)
    assert "\n" not in str(err.value)


def test_registration_refuses_duplicates_and_missing_metadata():
    def load(path, **_):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match=r"source name 'cifar10' is already registered \(CIFAR-10, official .*\); "
                                         r"choose another name"):
        register_source("cifar10", "again")(load)
    with pytest.raises(ValueError, match="needs a one-line description"):
        register_source("new-source", "")(load)
    with pytest.raises(ValueError, match="must not hold ':'"):
        register_source("x:y", "a source")(load)
    with pytest.raises(ValueError, match=r"cannot be called with 0 argument\(s\) and the keywords path, data_dir"):
        register_source("strict", "a source")(lambda path: None)
    assert "new-source" not in list_sources() and "strict" not in list_sources()


def test_a_registered_source_loads_through_load_source(monkeypatch):
    from tidal.data import from_arrays
    from tidal.data import sources

    monkeypatch.setattr(sources, "_SOURCES", type(sources._SOURCES)("dataset", sources._SOURCES._unknown))
    for name in ("cifar10", "npz"):  # the registry as before, plus one source of ours
        sources._SOURCES.add(name, sources.SourceInfo(name, lambda **_: None, "x", path=name == "npz"), "x")
    x = torch.randint(0, 255, (8, 8, 8), dtype=torch.uint8)
    register_source("mine", "eight 8x8 grey images")(
        lambda workers, **_: from_arrays(x, torch.arange(8) % 2, x, torch.arange(8) % 2, name="mine"))
    assert list_sources() == ["cifar10", "mine", "npz:PATH"]
    assert load_source("mine", workers=0).train.input_shape == (1, 8, 8)


def test_image_size_is_refused_for_fixed_size_sources(tmp_path, writers):
    writers["svhn"](tmp_path)
    assert load_source("svhn", tmp_path, False, image_size=32).train.input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="image_size=64 does not apply to 'svhn'"):
        load_source("svhn", tmp_path, False, image_size=64)


def test_disk_sources_are_passed_their_arguments(monkeypatch, tmp_path):
    from tidal.data.dataset import DatasetSplits, ImageDataset

    calls = []
    split = ImageDataset(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), torch.tensor([0, 1]), 2, (0.5,) * 3, (0.2,) * 3)
    good = DatasetSplits("d", split, split, ("a", "b"))  # what the stubs return (load_source checks it)
    folder = types.ModuleType("tidal.data.folder")
    folder.load_folder = lambda path, image_size=None, workers=2: (
        calls.append(("folder", path, image_size, workers)), good)[1]
    inat = types.ModuleType("tidal.data.inat")
    inat.load_inat2018 = lambda data_dir, download, image_size=None, workers=2: (
        calls.append(("inat", data_dir, download, image_size, workers)), good)[1]
    monkeypatch.setitem(sys.modules, "tidal.data.folder", folder)
    monkeypatch.setitem(sys.modules, "tidal.data.inat", inat)
    load_source(f"folder:{tmp_path}", image_size=64, workers=3)
    load_source("inat2018", data_dir=tmp_path, download=False, image_size=224, workers=4)
    assert calls == [("folder", tmp_path, 64, 3), ("inat", tmp_path, False, 224, 4)]


def _one_class_train(name, root, writers):
    """Official files of ``name`` whose training labels all name one class (issue 21 case 7)."""
    import json

    import numpy as np
    import scipy.io
    from PIL import Image

    if name == "svhn":
        writers["svhn"](root, n_train=8, n_test=4)
        mat = scipy.io.loadmat(root / "train_32x32.mat")
        scipy.io.savemat(root / "train_32x32.mat", {"X": mat["X"], "y": np.ones_like(mat["y"])})  # all "1"
        return "svhn", [0, 8, 0, 0, 0, 0, 0, 0, 0, 0], root / "train_32x32.mat"
    if name == "npz":
        x = np.zeros((40, 8, 8), np.uint8)
        np.savez(root / "d.npz", x_train=x, y_train=np.zeros(40, int), x_test=x[:3], y_test=np.array([0, 1, 2]))
        return f"npz:{root / 'd.npz'}", [40, 0, 0], root / "d.npz"
    # inat2018: one category in both JSON files
    for split in ("train2018.json", "val2018.json"):
        images = []
        for i in range(3):
            rel = f"train_val2018/Plantae/7/{split[:3]}{i}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16, 3), 9 * i, np.uint8)).save(root / rel)
            images.append({"id": i, "file_name": rel, "width": 16, "height": 16})
        (root / split).write_text(json.dumps({"images": images, "categories": [{"id": 7, "name": "Quercus"}],
                                              "annotations": [{"id": i, "image_id": i, "category_id": 7}
                                                              for i in range(3)]}))
    return "inat2018", [3], root / "train2018.json"


@pytest.mark.parametrize("name", ["svhn", "npz", "inat2018"])
def test_every_source_refuses_a_training_split_of_one_class(name, tmp_path, writers):
    """issue 21 case 7: these trained and stored 100% (SVHN, iNat) or 33.3% (npz)."""
    from tidal.errors import DatasetError

    spec, counts, file = _one_class_train(name, tmp_path, writers)
    with pytest.raises(DatasetError) as err:
        load_source(spec, data_dir=tmp_path, download=False, image_size=16 if name == "inat2018" else None)
    msg = str(err.value)
    assert "\n" not in msg and str(counts) in msg and "fix:" in msg and str(file) in msg, msg


def test_load_source_checks_every_source(monkeypatch, tmp_path):
    """The one check runs centrally, also for a source whose loader did not run it."""
    from tidal.data import folder
    from tidal.data.dataset import DatasetSplits, ImageDataset
    from tidal.errors import DatasetError

    one = ImageDataset(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64), 2,
                       (0.5,) * 3, (0.2,) * 3)
    monkeypatch.setattr(folder, "load_folder", lambda *a, **k: DatasetSplits("f", one, one, ("a", "b")))
    with pytest.raises(DatasetError, match=r"folder:x: the train split holds samples of 1 of its 2 classes"):
        load_source("folder:x")
