import dataclasses
import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from tidal.data.cifar import CIFAR10, CIFAR100, load_cifar, load_cifar10, load_cifar100, read_pickle
from tidal.data.download import Resource, md5sum
from tidal.errors import DatasetError


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_pixels_land_on_the_right_channel_row_and_column(tmp_path, writers):
    wrote = writers["cifar"](tmp_path, CIFAR10, per_file=4)
    s = load_cifar10(tmp_path, download=False)
    x = s.train.images
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8 and s.test.images.shape == (4, 3, 32, 32)
    # batch 2 follows batch 1: its image 1 is training image 4 + 1
    original = wrote["flat"]["data_batch_2"]
    assert int(x[5, 1, 2, 5]) == int(original[1, 1024 + 2 * 32 + 5])
    assert int(x[5, 0, 0, 0]) == int(original[1, 0]) and int(x[5, 2, 31, 31]) == int(original[1, 3071])
    assert torch.equal(x[4:8].reshape(4, -1), torch.from_numpy(original))
    assert s.train.labels[4:8].tolist() == wrote["labels"]["data_batch_2"]
    assert s.test.labels.tolist() == wrote["labels"]["test_batch"]
    assert s.class_names == tuple(wrote["names"]) and s.train.num_classes == 10
    assert s.train.mean == CIFAR10.mean and s.name == "cifar10"


def test_known_pixel_value(tmp_path, writers):
    """A pixel set in the flat row appears at (channel, row, column) of the loaded image."""
    wrote = writers["cifar"](tmp_path / "src", CIFAR10, per_file=2, as_tar=False)
    folder = tmp_path / "src" / CIFAR10.folder
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    batch[b"data"][0, 2 * 1024 + 31 * 32 + 3] = 201  # blue, last row, column 3
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=4))
    s = load_cifar10(tmp_path / "src", download=False)
    assert int(s.test.images[0, 2, 31, 3]) == 201
    assert s.train.labels.tolist() == sum((wrote["labels"][f"data_batch_{i}"] for i in range(1, 6)), [])


def test_extracted_folder_or_the_folder_itself(tmp_path, writers):
    writers["cifar"](tmp_path, CIFAR10, as_tar=False)
    a = load_cifar10(tmp_path, download=False)
    b = load_cifar10(tmp_path / CIFAR10.folder, download=False)
    assert torch.equal(a.train.images, b.train.images)
    writers["cifar"](tmp_path / "t", CIFAR10, as_tar=True)
    c = load_cifar10(tmp_path / "t", download=False)
    assert torch.equal(a.train.images, c.train.images)


def test_cifar100_fine_labels_and_names(tmp_path, writers):
    wrote = writers["cifar"](tmp_path, CIFAR100, per_file=6)
    s = load_cifar100(tmp_path, download=False)
    assert s.train.images.shape == (6, 3, 32, 32) and s.train.num_classes == 100 and len(s.class_names) == 100
    assert s.train.labels.tolist() == wrote["labels"]["train"] and s.class_names[7] == "class7"
    assert s.name == "cifar100" and s.train.std == CIFAR100.std


def test_malicious_pickle_is_refused_and_never_run(tmp_path, writers):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    writers["cifar"](tmp_path, CIFAR10, as_tar=False)
    bad = tmp_path / CIFAR10.folder / "data_batch_3"
    bad.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DatasetError, match="refused to unpickle") as err:
        load_cifar10(tmp_path, download=False)
    msg = _one_line(err)
    assert str(bad) in msg and "system" in msg and not marker.exists()


def test_read_pickle_admits_only_numpy_arrays_and_plain_data():
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    got = read_pickle(pickle.dumps({b"data": arr, b"labels": [1, 2], b"s": "x"}, protocol=4), "f")
    assert np.array_equal(got[b"data"], arr) and got[b"labels"] == [1, 2]
    with pytest.raises(DatasetError, match="collections.OrderedDict"):
        read_pickle(pickle.dumps(__import__("collections").OrderedDict(a=1)), "f")


def test_python2_pickles_as_in_the_official_files(writers):
    arr = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    raw = writers["py2_pickle"]({"data": arr, "labels": [3, 4], "batch_label": "training batch 1 of 5"})
    assert b"numpy.core.multiarray\n_reconstruct" in raw and b"X" not in raw[:3]  # no unicode strings
    got = read_pickle(raw, "f")  # encoding="bytes": Python 2 str -> bytes
    assert sorted(got) == [b"batch_label", b"data", b"labels"] and np.array_equal(got[b"data"], arr)


def test_truncated_tarball_names_the_file(tmp_path, writers):
    writers["cifar"](tmp_path, CIFAR10)
    tar = tmp_path / CIFAR10.resource.filename
    tar.write_bytes(tar.read_bytes()[: len(tar.read_bytes()) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt") as err:
        load_cifar10(tmp_path, download=False)
    assert str(tar) in _one_line(err)


def test_truncated_pickle_names_the_file(tmp_path, writers):
    writers["cifar"](tmp_path, CIFAR10, as_tar=False)
    f = tmp_path / CIFAR10.folder / "test_batch"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="test_batch is truncated or corrupt") as err:
        load_cifar10(tmp_path, download=False)
    _one_line(err)


def test_tar_without_a_member(tmp_path):
    raw = pickle.dumps({b"label_names": [b"a", b"b"]})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(raw)
        t.addfile(info, io.BytesIO(raw))
    (tmp_path / CIFAR10.resource.filename).write_bytes(gzip.compress(buf.getvalue()))
    with pytest.raises(DatasetError, match="lacks cifar-10-batches-py/data_batch_1") as err:
        load_cifar10(tmp_path, download=False)
    _one_line(err)


def test_batch_without_labels_and_mislabelled_batch(tmp_path, writers):
    writers["cifar"](tmp_path, CIFAR10, as_tar=False)
    f = tmp_path / CIFAR10.folder / "data_batch_1"
    batch = pickle.loads(f.read_bytes(), encoding="bytes")
    f.write_bytes(pickle.dumps({b"data": batch[b"data"]}))
    with pytest.raises(DatasetError, match="b'labels'") as err:
        load_cifar10(tmp_path, download=False)
    assert str(f) in _one_line(err)
    batch[b"labels"][2] = 10  # CIFAR-10 has classes 0..9
    f.write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match="label 10 at index 2 is outside 0..9"):
        load_cifar10(tmp_path, download=False)
    batch[b"labels"] = batch[b"labels"][:-1]
    f.write_bytes(pickle.dumps(batch))
    with pytest.raises(DatasetError, match="4 images but b'labels'"):
        load_cifar10(tmp_path, download=False)


def test_missing_files_say_which_file_goes_where(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_cifar10(tmp_path / "empty", download=False)
    msg = _one_line(err)
    assert "cifar-10-python.tar.gz" in msg and CIFAR10.resource.url in msg and str(tmp_path / "empty") in msg


def test_explicit_data_dir_is_used_alone(tmp_path, writers, monkeypatch):
    writers["cifar"](tmp_path / "env")
    monkeypatch.setenv("TIDAL_DATA", str(tmp_path / "env"))
    assert len(load_cifar10(None, download=False).train) == 20  # found through $TIDAL_DATA
    with pytest.raises(DatasetError, match="not found in"):
        load_cifar10(tmp_path / "empty", download=False)


def test_download_of_the_tarball_is_checked(tmp_path, writers):
    writers["cifar"](tmp_path / "mirror")
    src = tmp_path / "mirror" / CIFAR10.resource.filename
    good = dataclasses.replace(CIFAR10, resource=Resource(src.name, src.as_uri(), md5sum(src)))
    s = load_cifar(good, tmp_path / "dl", download=True)
    assert len(s.train) == 20 and (tmp_path / "dl" / src.name).is_file()
    bad = dataclasses.replace(CIFAR10, resource=Resource(src.name, src.as_uri(), "0" * 32))
    with pytest.raises(DatasetError, match="MD5 .* the file was deleted"):
        load_cifar(bad, tmp_path / "dl2", download=True)
    assert list((tmp_path / "dl2").iterdir()) == []


@pytest.mark.parametrize("fmt", [CIFAR10, CIFAR100])
def test_undecodable_class_name_names_the_meta_file(tmp_path, writers, fmt):
    """issue 21 case 13: a latin-1 class name gave a bare "'utf-8' codec can't decode byte 0xe9"."""
    writers["cifar"](tmp_path, fmt, as_tar=False, per_file=2)
    f = tmp_path / fmt.folder / fmt.meta_member
    meta = pickle.loads(f.read_bytes(), encoding="bytes")
    meta[fmt.names_key][3] = "caf\xe9".encode("latin-1")
    f.write_bytes(writers["py2_pickle"](meta))
    with pytest.raises(DatasetError) as err:
        load_cifar(fmt, tmp_path, download=False)
    msg = _one_line(err)
    assert str(f) in msg and "class name 3" in msg and "b'caf\\xe9'" in msg and "not UTF-8" in msg
    assert "download the dataset again" in msg
