"""A compact store for what set strategies read about every candidate, and its row blocks.

Core-Set, BADGE and CAL need every candidate's embedding ``[n, D]`` (BADGE also its
probabilities ``[n, C]``; Core-Set and CAL the labeled set's embeddings ``[m, D]``) at once.
The scoring pass writes them here chunk by chunk (:func:`tidal.gather.select`), and the
algorithms read them back in row blocks (:meth:`StoredRows.spans`, :meth:`StoredRows.rows`),
so nothing of size ``n × D`` or ``n × C`` is ever built beyond the store itself.

The store lives in memory or in memory-mapped files on disk, in float32 or float16
(:class:`StoreSpec`; ``ALConfig.embedding_store`` / ``embedding_dtype`` / ``store_dir``):

* ``memory`` + ``float32`` (the default): one preallocated tensor per array; a block is a view.
  The algorithms' results are bit-identical to the whole-array computation (see below).
* ``disk``: one file per array in a fresh directory under ``store_dir`` (default: the system's
  temporary directory), removed when the store closes. A block is copied out of the mapping
  into a float32 tensor and its pages are released (``MADV_DONTNEED``), so the process's
  resident memory holds one block, not the file.
* ``float16``: half the bytes; every value is rounded to float16 (11 significant bits,
  relative error <= 2^-11, range +-65504) once when written, and the algorithms compute in
  float32/float64 on the rounded values. Selections can then differ from float32's wherever
  two candidates' distances or scores are closer than that rounding.

Why blocks change no bit: row-wise operations (norms, element-wise maps) are per row, and
matrix products of a row block with the same right operand give the same rows as the whole
product as long as blocks start at multiples of 64 rows and none has a single row (a one-row
product is a different BLAS kernel). :meth:`StoredRows.spans` cuts blocks that way; the tests
check the equality against the whole-array algorithms.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tidal.config import embedding_store_error

__all__ = ["STORE_DTYPES", "EmbeddingStore", "StoreSpec", "StoredRows", "as_rows", "row_spans"]

STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
ALIGN = 64  # rows: blocks start at multiples of this (see the module docstring)
BLOCK_BYTES = 16 << 20  # float32 bytes of one row block by default
_F16_MAX = float(torch.finfo(torch.float16).max)


@dataclass(frozen=True)
class StoreSpec:
    """Where and how a :class:`EmbeddingStore` keeps its arrays.

    kind: ``"memory"`` or ``"disk"``; dtype: ``"float32"`` or ``"float16"``; directory: where a
    disk store creates its folder (None: the system's temporary directory); block_rows: rows
    per block of the algorithms (None: about ``BLOCK_BYTES`` of float32 per block), a positive
    multiple of 64.
    """

    kind: str = "memory"
    dtype: str = "float32"
    directory: str | None = None
    block_rows: int | None = None

    def __post_init__(self) -> None:
        if (error := embedding_store_error(self.kind, self.dtype)) is not None:
            raise ValueError(error)
        if self.block_rows is not None and (not isinstance(self.block_rows, int) or self.block_rows < ALIGN
                                            or self.block_rows % ALIGN):
            raise ValueError(f"block_rows={self.block_rows!r} must be a positive multiple of {ALIGN} "
                             "(aligned blocks keep results equal to the whole array's)")

    def check_directory(self) -> None:
        """``ValueError`` (one line) when a disk store could not create its folder in ``directory``."""
        if self.kind != "disk":
            return
        where = self.directory or tempfile.gettempdir()
        try:
            probe = tempfile.mkdtemp(prefix="tidal-store-check-", dir=where)
        except OSError as exc:
            raise ValueError(f"store_dir={where!r} is not a writable directory ({exc.strerror}); "
                             "pass --store-dir a writable directory or use --embedding-store memory") from None
        os.rmdir(probe)


def row_spans(n: int, rows: int) -> list[tuple[int, int]]:
    """``(start, end)`` blocks of ``rows`` rows covering ``0..n``; a last block of one row joins the one before."""
    spans = [(s, min(s + rows, n)) for s in range(0, n, rows)]
    if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
        spans[-2:] = [(spans[-2][0], n)]
    return spans


def default_rows(width: int) -> int:
    """Rows of one block of ``width`` float32 columns: about ``BLOCK_BYTES``, a multiple of 64."""
    return max(ALIGN, BLOCK_BYTES // (4 * max(width, 1)) // ALIGN * ALIGN)


class StoredRows:
    """One array ``[n, width]``, written in chunks of rows and read back in float32 row blocks.

    Either wraps a tensor (memory) or a file mapping (disk). ``rows(start, end)`` gives rows
    ``start:end`` as a float32 tensor (for an in-memory float32 array, a view; otherwise a copy),
    or in the wrapped tensor's own dtype for :func:`as_rows` of a non-float32 tensor.
    """

    def __init__(self, n: int, width: int, dtype: torch.dtype, block_rows: int | None = None,
                 path: str | None = None, tensor: torch.Tensor | None = None) -> None:
        self.shape = (n, width)
        self.dtype = dtype  # stored dtype
        self.block_rows = block_rows or default_rows(width)
        self.path = path
        self._tensor = tensor
        self._mm: mmap.mmap | None = None
        self._np_dtype = np.float16 if dtype == torch.float16 else np.float32
        if tensor is None and path is None:
            self._tensor = torch.empty(n, width, dtype=dtype)
        elif path is not None:
            size = max(n * width * np.dtype(self._np_dtype).itemsize, 1)
            with open(path, "w+b") as f:
                f.truncate(size)
                self._mm = mmap.mmap(f.fileno(), size)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    def _view(self, start: int, end: int) -> np.ndarray:
        width = self.shape[1]
        item = np.dtype(self._np_dtype).itemsize
        return np.frombuffer(self._mm, dtype=self._np_dtype, count=(end - start) * width,
                             offset=start * width * item).reshape(end - start, width)

    def _release(self, start: int, end: int) -> None:
        """Drop the pages of rows ``start:end`` from this process (they stay in the file / page cache)."""
        if not hasattr(self._mm, "madvise"):
            return
        row = self.shape[1] * np.dtype(self._np_dtype).itemsize
        lo = start * row // mmap.PAGESIZE * mmap.PAGESIZE
        hi = min(len(self._mm), -(-end * row // mmap.PAGESIZE) * mmap.PAGESIZE)
        if hi > lo:
            self._mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def write(self, start: int, values: torch.Tensor) -> None:
        """Store ``values [b, width]`` as rows ``start:start + b`` (rounded to float16 for a float16 store)."""
        values = values.detach().cpu()
        end = start + len(values)
        if values.dim() != 2 or values.shape[1] != self.shape[1] or end > self.shape[0]:
            raise ValueError(f"rows {start}:{end} of width {tuple(values.shape[1:])} do not fit the stored "
                             f"array {self.shape}")
        if self.dtype == torch.float16 and len(values):
            top = float(values.abs().max())
            if top > _F16_MAX:
                raise ValueError(f"a stored value reaches {top:.4g}, beyond float16's range ({_F16_MAX:g}); "
                                 "use --embedding-dtype float32")
        if self._mm is None:
            self._tensor[start:end] = values
            return
        view = self._view(start, end)
        view[...] = values.to(self.dtype).numpy()
        del view
        self._release(start, end)

    def rows(self, start: int, end: int) -> torch.Tensor:
        """Rows ``start:end``, float32 ``[end - start, width]`` (see the class docstring)."""
        if self._mm is None:
            block = self._tensor[start:end]
            return block.float() if block.dtype == torch.float16 else block
        view = self._view(start, end)
        block = torch.from_numpy(np.array(view, dtype=np.float32))
        del view
        self._release(start, end)
        return block

    def spans(self) -> list[tuple[int, int]]:
        """The row blocks the algorithms iterate over (:func:`row_spans` of ``block_rows``)."""
        return row_spans(self.shape[0], self.block_rows)

    def blocks(self) -> Iterator[tuple[int, int, torch.Tensor]]:
        """``(start, end, rows(start, end))`` for each of :meth:`spans`."""
        for start, end in self.spans():
            yield start, end, self.rows(start, end)

    def whole(self) -> torch.Tensor:
        """Every row, float32 ``[n, width]`` (the in-memory float32 tensor itself; otherwise a copy)."""
        return self.rows(0, self.shape[0])

    def column_mean(self) -> torch.Tensor:
        """Mean of the rows, ``[width]``: ``whole().mean(dim=0)`` in memory, float64 block sums otherwise."""
        if self._mm is None and self._tensor.dtype != torch.float16:
            return self._tensor.mean(dim=0)
        total = torch.zeros(self.shape[1], dtype=torch.float64)
        for _, _, block in self.blocks():
            total += block.double().sum(dim=0)
        return (total / max(self.shape[0], 1)).float()

    def close(self) -> None:
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # a block view is still alive (an exception unwound past it): the GC unmaps it
                pass
            self._mm = None
        self._tensor = None


def as_rows(x: "torch.Tensor | StoredRows", block_rows: int | None = None) -> StoredRows:
    """``x`` itself when stored, else the tensor ``x [n, D]`` wrapped (no copy; blocks are views in its dtype)."""
    if isinstance(x, StoredRows):
        return x
    if x.dim() != 2:
        raise ValueError(f"expected a [n, D] array, got shape {tuple(x.shape)}")
    return StoredRows(x.shape[0], x.shape[1], x.dtype, block_rows, tensor=x)


class EmbeddingStore:
    """Named :class:`StoredRows` arrays of one scoring pass, laid out by a :class:`StoreSpec`.

    Use as a context manager: leaving it closes every array and, for a disk store, removes
    its folder (also when scoring raised).
    """

    def __init__(self, spec: StoreSpec | None = None) -> None:
        self.spec = spec or StoreSpec()
        self.arrays: dict[str, StoredRows] = {}
        self.directory: str | None = None
        if self.spec.kind == "disk":
            self.spec.check_directory()
            self.directory = tempfile.mkdtemp(prefix="tidal-store-", dir=self.spec.directory)

    def array(self, name: str, n: int, width: int) -> StoredRows:
        """A new array ``[n, width]`` called ``name`` (its rows are written by the caller)."""
        if name in self.arrays:
            raise ValueError(f"the store already holds an array {name!r}")
        path = None if self.directory is None else os.path.join(self.directory, f"{name}.bin")
        self.arrays[name] = StoredRows(n, width, STORE_DTYPES[self.spec.dtype], self.spec.block_rows, path)
        return self.arrays[name]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def close(self) -> None:
        for a in self.arrays.values():
            a.close()
        self.arrays.clear()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> "EmbeddingStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
