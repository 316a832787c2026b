"""Exceptions raised at the library's edges.

Every predictable user mistake raises one of these (or a plain ``ValueError`` /
``FileNotFoundError``) with the bad value quoted and the fix spelled out; the CLI turns
them into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["TidalError", "DatasetError", "TrainingDivergedError", "RunDirectoryError", "did_you_mean"]


class TidalError(Exception):
    """Base class for errors the CLI reports as a single line."""


class DatasetError(TidalError, FileNotFoundError):
    """Dataset files are missing or corrupt."""


class TrainingDivergedError(TidalError, RuntimeError):
    """The training loss became NaN or infinite."""


class RunDirectoryError(TidalError, ValueError):
    """The output directory holds results of a different experiment."""


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the valid name closest to a mistyped ``name``, or ``""``."""
    import difflib

    close = difflib.get_close_matches(name, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
