import sys
import types

import pytest
import torch

from tidal.data import DATASETS, load_dataset
from tidal.data.dataset import Split
from tidal.data.sources import NAMED_SOURCES, check_source_spec, is_source, list_sources, load_source


def test_every_named_source_has_a_file_writer(writers):
    assert set(writers["by_source"]) == set(NAMED_SOURCES)


@pytest.mark.parametrize("name", sorted(NAMED_SOURCES))
def test_every_source_loads_its_official_files_into_the_split_interface(name, tmp_path, writers):
    writers["by_source"][name](tmp_path)
    s = load_source(name, data_dir=tmp_path, download=False)
    assert s.name == name
    for split in (s.train, s.test):
        assert isinstance(split, Split) and len(split) > 0
        assert split.labels.dtype == torch.int64 and len(split.input_shape) == 3
        assert split.num_classes == len(s.class_names) and int(split.labels.max()) < split.num_classes
        x = split.inputs(torch.arange(2))
        assert x.dtype == torch.float32 and x.shape == (2, *split.input_shape)
    assert s.train.input_shape == s.test.input_shape


def test_load_dataset_is_load_source(tmp_path, writers):
    writers["cifar"](tmp_path)
    assert torch.equal(load_dataset("cifar10", tmp_path, False).train.images,
                       load_source("cifar10", tmp_path, False).train.images)
    assert "fashion-mnist" in DATASETS and "cifar10" in DATASETS


def test_unknown_spec_lists_the_valid_ones_and_suggests_one():
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar-10' \(did you mean 'cifar10'\?\)") as err:
        load_source("cifar-10")
    assert "npz:PATH" in str(err.value) and "svhn" in str(err.value)


def test_spec_check_reads_nothing():
    for spec in ("fashion-mnist", "cifar100", "svhn", "inat2018", "npz:/no/such.npz", "folder:/no/such"):
        check_source_spec(spec)
        assert is_source(spec)
    for spec in ("npz:", "folder:  ", "mnist", ""):
        with pytest.raises(ValueError):
            check_source_spec(spec)
        assert not is_source(spec)
    assert list_sources() == ["cifar10", "cifar100", "fashion-mnist", "inat2018", "svhn", "folder:PATH", "npz:PATH"]


def test_image_size_is_refused_for_fixed_size_sources(tmp_path, writers):
    writers["svhn"](tmp_path)
    assert load_source("svhn", tmp_path, False, image_size=32).train.input_shape == (3, 32, 32)
    with pytest.raises(ValueError, match="image_size=64 does not apply to 'svhn'"):
        load_source("svhn", tmp_path, False, image_size=64)


def test_disk_sources_are_passed_their_arguments(monkeypatch, tmp_path):
    calls = []
    folder = types.ModuleType("tidal.data.folder")
    folder.load_folder = lambda path, image_size=None, workers=2: calls.append(("folder", path, image_size, workers))
    inat = types.ModuleType("tidal.data.inat")
    inat.load_inat2018 = lambda data_dir, download, image_size=None, workers=2: calls.append(
        ("inat", data_dir, download, image_size, workers))
    monkeypatch.setitem(sys.modules, "tidal.data.folder", folder)
    monkeypatch.setitem(sys.modules, "tidal.data.inat", inat)
    load_source(f"folder:{tmp_path}", image_size=64, workers=3)
    load_source("inat2018", data_dir=tmp_path, download=False, image_size=224, workers=4)
    assert calls == [("folder", tmp_path, 64, 3), ("inat", tmp_path, False, 224, 4)]
