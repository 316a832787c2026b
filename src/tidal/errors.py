"""Exceptions raised at the library's edges.

Every predictable user mistake raises one of these (or a plain ``ValueError`` /
``FileNotFoundError``) with the bad value quoted and the fix spelled out; the CLI turns
them into one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["TidalError", "DatasetError", "ModelError", "NonFiniteError", "TrainingDivergedError", "RunDirectoryError",
           "did_you_mean"]


class TidalError(Exception):
    """Base class for errors the CLI reports as a single line."""


class DatasetError(TidalError, FileNotFoundError):
    """Dataset files are missing or corrupt."""


class TrainingDivergedError(TidalError, RuntimeError):
    """The training loss became NaN or infinite."""


class ModelError(TidalError, ValueError):
    """A user's model failed when tidal built or called it; the message has the model's own
    message and what tidal passed it (the traceback is chained, ``TIDAL_DEBUG=1`` shows it)."""


class NonFiniteError(TidalError, ArithmeticError):
    """A cycle's evaluation logits or selection scores are NaN or infinite; the message names
    the cause found (the data, the starting weights, or training) and what to change."""


class RunDirectoryError(TidalError, ValueError):
    """The output directory holds results of a different experiment."""


def did_you_mean(name: str, valid: Iterable[str], preferred: Iterable[str] = (), cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` for the valid name closest to a mistyped ``name``, or ``""``.

    The valid names that start with ``name`` (``tidal`` -> ``tidal-entropy``, ``tidal-exact``)
    count as close too; of the close names, the first of ``preferred`` that is one wins (the
    main method rather than a costly variant), else the closest by spelling. ``cutoff``: the
    least similarity (difflib's ratio, 0..1) of a close name."""
    import difflib

    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=cutoff)
    close += [v for v in valid if name and v.startswith(name) and v not in close]
    best = next((p for p in preferred if p in close), close[0] if close else None)
    return f" (did you mean {best!r}?)" if best else ""
