import hashlib
import urllib.error

import pytest

from tidal.data import download
from tidal.data import fashion_mnist as fm
from tidal.data.download import Resource, ensure_files, fetch, md5sum, search_dirs
from tidal.errors import DatasetError


def _source(tmp_path, data=b"official bytes" * 1000):
    src = tmp_path / "mirror" / "file.bin"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    return src, hashlib.md5(data).hexdigest()


def test_fetch_copies_and_checks(tmp_path):
    src, md5 = _source(tmp_path)
    dest = fetch(src.as_uri(), tmp_path / "out" / "file.bin", md5)
    assert dest.read_bytes() == src.read_bytes() and md5sum(dest) == md5
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]  # no temporary file left


def test_checksum_mismatch_deletes_the_file(tmp_path):
    src, _ = _source(tmp_path)
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DatasetError, match="not the published 0{32}; the file was deleted") as err:
        fetch(src.as_uri(), dest, "0" * 32)
    assert "\n" not in str(err.value) and src.as_uri() in str(err.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_mismatch_leaves_an_existing_file_alone(tmp_path):
    src, _ = _source(tmp_path)
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DatasetError):
        fetch(src.as_uri(), dest, "0" * 32)
    assert dest.read_bytes() == b"old"


def test_network_failure_is_one_line_with_the_url(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match="download from http://x/f.gz failed") as err:
        fetch("http://x/f.gz", tmp_path / "f.gz", "0" * 32)
    assert "\n" not in str(err.value) and str(tmp_path / "f.gz") in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_offline_says_which_files_go_in_which_folder(tmp_path):
    res = (Resource("a.gz", "http://host/a.gz", "0" * 32), Resource("b.gz", "http://host/b.gz", "1" * 32))
    (tmp_path / "b.gz").write_bytes(b"present")
    with pytest.raises(DatasetError) as err:
        ensure_files("thing", res, tmp_path, download=False)
    msg = str(err.value)
    assert "\n" not in msg and "a.gz (http://host/a.gz)" in msg and str(tmp_path) in msg and "b.gz" not in msg


def test_ensure_files_downloads_only_the_missing_ones(tmp_path):
    src, md5 = _source(tmp_path)
    res = (Resource("file.bin", src.as_uri(), md5),)
    assert ensure_files("thing", res, tmp_path / "d", download=True) == tmp_path / "d"
    assert (tmp_path / "d" / "file.bin").read_bytes() == src.read_bytes()


def test_explicit_data_dir_is_searched_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("TIDAL_DATA", str(tmp_path / "env"))
    assert search_dirs("x", tmp_path / "d") == [tmp_path / "d", tmp_path / "d" / "x"]
    assert search_dirs("x", None)[:2] == [tmp_path / "env", tmp_path / "env" / "x"]


def test_fashion_mnist_explicit_data_dir_never_falls_back(tmp_path, writers, monkeypatch):
    """The bug: --data-dir without the files used the system copy; now it says what to put there."""
    writers["fashion_mnist"](tmp_path / "system")
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "system")
    assert fm.find_fashion_mnist(None, download=False) == tmp_path / "system"
    with pytest.raises(DatasetError) as err:
        fm.find_fashion_mnist(tmp_path / "empty", download=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "system") not in msg
    assert f"put {', '.join(fm.FILES.values())}" in msg and f"in {tmp_path / 'empty'}" in msg


def test_fashion_mnist_downloads_into_the_explicit_data_dir_with_checksums(tmp_path, writers, monkeypatch):
    writers["fashion_mnist"](tmp_path / "mirror")
    monkeypatch.setattr(fm, "URL", (tmp_path / "mirror").as_uri() + "/")
    monkeypatch.setattr(fm, "MD5", {f: md5sum(tmp_path / "mirror" / f) for f in fm.FILES.values()})
    assert fm.find_fashion_mnist(tmp_path / "d", download=True) == tmp_path / "d"
    assert all((tmp_path / "d" / f).is_file() for f in fm.FILES.values())
    # the published sums do not match these fake files: refused and deleted
    monkeypatch.setattr(fm, "MD5", dict.fromkeys(fm.FILES.values(), "f" * 32))
    with pytest.raises(DatasetError, match="the file was deleted"):
        fm.find_fashion_mnist(tmp_path / "d2", download=True)
    assert not any((tmp_path / "d2").glob("*.gz"))


def test_fashion_mnist_checksums_are_the_published_ones():
    assert fm.MD5["train-images-idx3-ubyte.gz"] == "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    assert set(fm.MD5) == set(fm.FILES.values()) and all(len(v) == 32 for v in fm.MD5.values())


def test_every_official_resource_has_a_published_md5_and_its_url():
    from tidal.data.cifar import CIFAR10, CIFAR100
    from tidal.data.svhn import RESOURCES

    resources = [CIFAR10.resource, CIFAR100.resource, *RESOURCES.values()]
    resources += [Resource(f, fm.URL + f, fm.MD5[f]) for f in fm.FILES.values()]
    for r in resources:
        assert len(r.md5) == 32 and int(r.md5, 16) >= 0 and r.url.endswith("/" + r.filename)
    assert RESOURCES["train"].md5 == "e26dedcc434d2e4c54c9b2d4a06d8373"
    assert CIFAR10.resource.md5 == "c58f30108f718f92721af3b95e74349a"
