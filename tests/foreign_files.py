"""Files of another program named like tidal's databases (issue 21, case 1), for the stores' tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# kind -> what tidal's refusal says about it (a regular expression)
FOREIGN = {"empty, user_version 7": r"\(an empty database, user_version 7\)", "tables": r"\(tables contacts\)",
           "not SQLite": r"\(SQLite cannot read it: file is not a database\)"}


def foreign_database(path: Path, kind: str) -> bytes:
    """Write a file of another program at ``path``, of one ``kind`` of :data:`FOREIGN`; returns its
    bytes (to check that tidal left it alone)."""
    if kind == "not SQLite":
        path.write_bytes(b"name,phone\nada,123\n" * 300)
    else:
        con = sqlite3.connect(path)
        with con:
            if kind == "empty, user_version 7":
                con.execute("PRAGMA user_version = 7")
            else:  # "tables"
                con.execute("CREATE TABLE contacts (name TEXT)")
                con.execute("INSERT INTO contacts VALUES ('ada')")
        con.close()
    return path.read_bytes()
