"""Reader for the IDX file format of (Fashion-)MNIST, with numpy only.

IDX layout (big-endian): two zero bytes, a type code (0x08 = uint8), the number of
dimensions ``d``, then ``d`` uint32 sizes, then the data. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from tidal.errors import DatasetError

__all__ = ["read_idx", "write_idx"]


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX (optionally ``.gz``) file into a uint8 array of the stored shape.

    Raises ``DatasetError`` naming the file when it is truncated or not IDX.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"cannot read {path}: {exc}; delete it and fetch the file again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path} is not an IDX uint8 file (bad header); delete it and fetch it again")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated (header cut short); delete it and fetch it again")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path} is corrupt: header says shape {tuple(shape)} ({expected} bytes) "
            f"but it holds {len(raw) - header} bytes; delete it and fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``).

    Used by the tests to make small files in the official format.
    """
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
