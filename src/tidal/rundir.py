"""One process per run directory, and the temporary files a killed writer left there.

``tidal run`` holds an exclusive ``flock`` on ``OUT/.tidal.lock`` from the moment it binds the
directory until it returns; a second ``tidal run`` on the same directory is refused at once,
naming the holder (its pid and command, written into the lock file). The kernel releases the
lock when the holder's process ends, however it ends, so a killed run never leaves a stale
lock. The worker processes of ``--jobs`` do not take it: their parent holds it for them.

Files are written atomically through ``.<name>.<random>.tmp`` files beside them
(:mod:`tidal.io`); a process killed while writing leaves one behind, which the next holder of
the lock removes.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tidal.errors import RunDirectoryError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "TEMP_NAME", "RunDirLock", "check_unlocked", "is_tidal_leftover", "remove_stale_temp_files"]

LOCK_NAME = ".tidal.lock"  # the lock file inside a run directory
# the names of tidal.io.atomic_path's and tidal.sqlite.create_database's files: tempfile.mkstemp, 8 random chars
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
_POLL_S = 0.05  # seconds between tries while waiting for the lock
_TEMP_DIRS = (".", "figures", "checkpoints", "analysis")  # where tidal writes files, inside a run directory


def _refusal(out: Path, holder: str) -> RunDirectoryError:
    who = f" ({holder})" if holder else ""
    return RunDirectoryError(f"--out {out} is in use by another tidal process{who}; wait for it to finish, or "
                             "pass another --out (one process per directory: use --jobs N to train in parallel)")


def _holder(path: Path) -> str:
    try:
        return " ".join(path.read_text(errors="replace").split())[:300]
    except OSError:
        return ""


class RunDirLock:
    """The exclusive lock on run directory ``out`` (which must exist), held until
    :meth:`release` (or until the object is garbage-collected, or the process ends).

    ``wait``: seconds to wait for a lock another process holds (short commands, e.g. ``tidal
    label``, started together each get it in turn); ``on_wait(holder)`` is called once when the
    wait begins, with the holder's pid and command. 0: refuse at once (``tidal run``).

    Raises:
        RunDirectoryError: another process holds it (still, after ``wait`` seconds); the message
            names that process.
    """

    def __init__(self, out: str | Path, wait: float = 0.0, on_wait: Callable[[str], None] | None = None) -> None:
        self.out = Path(out)
        self._file = None
        if fcntl is None:
            return
        path = self.out / LOCK_NAME
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open: the lock lives as long as the file
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.close()
                    raise _refusal(self.out, _holder(path)) from None
                if not waiting and on_wait is not None:
                    on_wait(_holder(path))
                waiting = True
                time.sleep(_POLL_S)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.truncate(0)
            self._file.close()  # closing the file releases the lock
            self._file = None

    def __enter__(self) -> "RunDirLock":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_unlocked(out: str | Path) -> None:
    """Raise the refusal of :class:`RunDirLock` now if another process holds ``out``'s lock,
    without creating anything (so a second run is refused before it loads its data)."""
    path = Path(out) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(Path(out), _holder(path)) from None


def is_tidal_leftover(name: str) -> bool:
    """Whether a file called ``name`` in a directory is tidal's own: the lock, or the temporary
    file of an atomic write or of a database's creation that a killed process left behind (an
    otherwise empty directory holding one is still empty to ``tidal run`` and ``tidal init``)."""
    return name == LOCK_NAME or TEMP_NAME.fullmatch(name) is not None


def remove_stale_temp_files(out: str | Path) -> list[Path]:
    """Remove the temporary files of tidal's atomic writes that a killed process left in run
    directory ``out``; call it only while holding the directory's lock. Returns what it removed."""
    removed = []
    for sub in _TEMP_DIRS:
        d = Path(out) / sub
        for p in d.glob(".*.tmp") if d.is_dir() else ():
            if TEMP_NAME.fullmatch(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
