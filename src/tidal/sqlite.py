"""tidal's SQLite files: the results store of a run directory and a labelling project's database.

Both are made whole (:func:`create_database`), marked with their own ``PRAGMA application_id``
and refused when they are anything else (:func:`identify_database`); :class:`SQLiteStore` opens
one the same way for either, read-only (``mode=ro``) or for writing (WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tidal.errors import RunDirectoryError

__all__ = ["SQLiteStore", "connect_readonly", "create_database", "identify_database", "in_one_transaction"]

_Store = TypeVar("_Store", bound="SQLiteStore")


class SQLiteStore:
    """A tidal database at ``path``: the connection, :meth:`check`, closing (also by ``with``).

    A subclass gives ``_identify`` (whose database a connection holds: :func:`identify_database`)
    and, where an older database needs it, ``_upgrade``."""

    path: Path
    _conn: sqlite3.Connection

    @staticmethod
    def _identify(conn: sqlite3.Connection, path: Path) -> str:
        raise NotImplementedError

    def _upgrade(self, kind: str) -> None:
        """Bring a database just opened for writing up to date (``kind``: what ``_identify`` said)."""

    def _open(self, readonly: bool, empty: str, create: tuple[str, int, int] | None) -> None:
        """Connect to ``self.path``: read-only, or for writing after creating the database whole
        from ``create`` (its SQL, application_id and user_version: :func:`create_database`) when
        given and there is none. A 0-byte file raises ``RunDirectoryError(empty)``; a
        writable connection is then upgraded (``_upgrade``). Any error closes it again."""
        if readonly:
            self._conn = connect_readonly(self.path)
        else:
            if create is not None and _absent(self.path):  # made whole or not at all (a failure leaves nothing)
                create_database(self.path, *create)
            self._conn = sqlite3.connect(self.path, timeout=60)
        try:
            kind = self._identify(self._conn, self.path)
            if kind == "none":
                raise RunDirectoryError(empty)
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                self._upgrade(kind)
        except BaseException:
            self._conn.close()
            raise

    @classmethod
    def check(cls, path: str | Path) -> None:
        """Raise :class:`RunDirectoryError` if ``path`` is not a database of this kind that tidal
        made (another program's database, empty or not, or a file that is no SQLite database); a
        0-byte file passes. Opens it read-only: nothing in the file changes."""
        conn = connect_readonly(Path(path))
        try:
            cls._identify(conn, Path(path))
        finally:
            conn.close()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self: _Store) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_readonly(path: Path) -> sqlite3.Connection:
    """``path`` opened read-only (``mode=ro``): nothing in the file can change."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)


def identify_database(conn: sqlite3.Connection, path: Path, application_id: int, what: str, fix: str,
                      legacy: Callable[[sqlite3.Connection, set[str]], bool] | None = None) -> str:
    """Whose database ``conn`` is, by its ``PRAGMA application_id``: "ours" (marked
    ``application_id``), when ``legacy(conn, tables)`` says so "legacy" (unmarked, made by an
    earlier tidal), or "none" for a 0-byte file (no database at all). Any other file raises
    :class:`RunDirectoryError` naming ``what`` it is not and the ``fix`` (tidal's results store
    and a labelling project share this check): another program's database, an empty one too
    (tidal makes its databases whole, with :func:`create_database`, so an empty one is not
    tidal's), or bytes SQLite cannot read."""
    if _absent(path):
        return "none"
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        if app == application_id:
            return "ours"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if app == 0 and legacy is not None and tables and legacy(conn, tables):
            return "legacy"
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if not _unreadable(exc):
            raise
        raise RunDirectoryError(f"{path} is not {what} (SQLite cannot read it: {exc}); it is another program's file "
                                f"or a damaged copy, and tidal leaves it alone: {fix}") from None
    if app:
        found = f"application_id {app:#x}"
    elif tables:
        found = f"tables {', '.join(sorted(tables))}"
    else:
        found = f"an empty database, user_version {version}" if version else "an empty database"
        fix = f"{fix}, or delete it if it is nothing of yours (tidal makes its databases whole, never empty)"
    raise RunDirectoryError(f"{path} is not {what} ({found}); tidal leaves other programs' files alone: {fix}")


def _absent(path: Path) -> bool:
    """No database at ``path``: no file, or a 0-byte one (a database has a 512-byte header at
    least; a 0-byte file is what ``sqlite3.connect`` leaves when it looks for one not made yet,
    and holds nothing to protect: :func:`create_database` replaces it)."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def _unreadable(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the file is no SQLite database or a damaged one (not, e.g., busy)."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if isinstance(code, int):
        return code & 0xFF in (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
    return any(text in str(exc).lower() for text in ("not a database", "malformed"))


def create_database(path: Path, schema: str, application_id: int, user_version: int) -> bool:
    """Create the SQLite database ``path`` whole: ``schema`` and the marks (``PRAGMA
    application_id`` and ``user_version``) are written in one transaction into a temporary file
    beside it (``.NAME.XXXXXXXX.tmp``, removed on failure; one a killed process leaves is removed
    by :func:`tidal.rundir.remove_stale_temp_files`), which is then linked to ``path``. So
    ``path`` is either absent (or 0 bytes, which is replaced) or a complete, marked database: a
    write that fails half-way (a full disk, ``ulimit -f``) leaves nothing a re-run would refuse.
    Returns False, changing nothing, when a database appeared at ``path`` meanwhile (another
    process made it first)."""
    import os
    import tempfile

    from tidal.io import current_umask

    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=MEMORY")  # no journal file beside the temporary one
            conn.execute("PRAGMA synchronous=FULL")
            in_one_transaction(conn, f"{schema}; PRAGMA application_id = {application_id}; "
                                      f"PRAGMA user_version = {user_version};")
        finally:
            conn.close()
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces a database that appeared meanwhile
        except OSError:  # a file is there (a 0-byte one is replaced), or a file system without hard links
            if not _absent(path):
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def in_one_transaction(conn: sqlite3.Connection, script: str) -> None:
    """Run the SQL ``script`` in one transaction: all of it is committed, or (on any error) none."""
    try:
        conn.executescript(f"BEGIN IMMEDIATE; {script}; COMMIT;")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
