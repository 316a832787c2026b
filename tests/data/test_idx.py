import gzip

import numpy as np
import pytest

from tidal.data.idx import read_idx, write_idx
from tidal.errors import DatasetError


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_roundtrip(tmp_path, name):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / name, arr)
    np.testing.assert_array_equal(read_idx(tmp_path / name), arr)


def test_header_bytes_follow_the_official_layout(tmp_path):
    write_idx(tmp_path / "l.idx", np.array([7, 1, 2], dtype=np.uint8))
    raw = (tmp_path / "l.idx").read_bytes()
    # magic 0x00000801 (uint8, 1 dimension), then the size 3 as big-endian uint32
    assert raw[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 3]) and raw[8:] == bytes([7, 1, 2])


def test_truncated_file_is_reported(tmp_path):
    write_idx(tmp_path / "t.idx.gz", np.zeros((5, 4), dtype=np.uint8))
    raw = gzip.decompress((tmp_path / "t.idx.gz").read_bytes())
    (tmp_path / "t.idx.gz").write_bytes(gzip.compress(raw[:-3]))
    with pytest.raises(DatasetError, match="corrupt"):
        read_idx(tmp_path / "t.idx.gz")


def test_not_gzip_and_bad_magic(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read"):
        read_idx(tmp_path / "x.gz")
    (tmp_path / "y.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(DatasetError, match="not an IDX"):
        read_idx(tmp_path / "y.idx")
