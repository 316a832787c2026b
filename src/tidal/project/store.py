"""The state of a labelling project: one SQLite file, ``PROJECT/project.sqlite``.

Tables::

    meta        key -> JSON value: classes, data source, pool root, settings, seed; and per trained
                round, ``round:N`` -> its final training loss and holdout confusion matrix
    samples     id (stable, 0-based) | path (relative to the pool root, '/'-separated)
    labels      id | label (class index) | source (file it came from) | after_round | labeled_at
    holdout     path (absolute) | label          (the optional labelled holdout set)
    rounds      round | method | seed | k | subset | retrain | random | n_labeled | class_counts
                | accuracy (holdout, NULL without one) | train/score/total seconds | finished_at
    selections  round | rank | id | score | predicted | probability

The file is created whole, its tables and its mark in one transaction (``PRAGMA application_id`` =
:data:`APPLICATION_ID`, distinct from the results database's); any other file (another
program's SQLite database, empty or not, or a run directory's ``results.sqlite``) is refused
and left as it was. A round is inserted in one transaction after everything it wrote is on
disk, so a killed query stores nothing.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidal.errors import RunDirectoryError
from tidal.sqlite import SQLiteStore, identify_database

__all__ = ["APPLICATION_ID", "DB_NAME", "ProjectStore", "RoundRecord", "Selection"]

DB_NAME = "project.sqlite"  # the database of a project directory
APPLICATION_ID = 0x5444504A  # "TDPJ": PRAGMA application_id of a tidal project
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS samples (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY REFERENCES samples(id),
    label INTEGER NOT NULL,          -- class index into meta.classes
    source TEXT NOT NULL,            -- the file (or pool folder) the label came from
    after_round INTEGER NOT NULL,    -- rounds completed when it was imported (0: before any)
    labeled_at REAL NOT NULL         -- unix time
);
CREATE TABLE IF NOT EXISTS holdout (path TEXT PRIMARY KEY, label INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY,       -- 1-based
    method TEXT NOT NULL,            -- strategy name, or 'random' for a draw without a model
    seed INTEGER NOT NULL,
    k INTEGER NOT NULL,
    subset INTEGER NOT NULL,         -- unlabeled samples scored
    retrain TEXT NOT NULL,
    random INTEGER NOT NULL,         -- 1: drawn at random (no labels to train on)
    n_labeled INTEGER NOT NULL,      -- labels the model trained on
    class_counts TEXT NOT NULL,      -- JSON list: labels per class trained on
    accuracy REAL,                   -- holdout accuracy in [0, 1]; NULL without a holdout
    holdout_size INTEGER NOT NULL,
    train_seconds REAL NOT NULL,
    score_seconds REAL NOT NULL,
    total_seconds REAL NOT NULL,
    classes TEXT NOT NULL,           -- JSON list: the classes the round's model predicts
    finished_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS selections (
    round INTEGER NOT NULL REFERENCES rounds(round),
    rank INTEGER NOT NULL,           -- 1 = most informative
    id INTEGER NOT NULL REFERENCES samples(id),
    score REAL,                      -- NULL in a random round
    predicted INTEGER,               -- class index; NULL in a random round
    probability REAL,
    PRIMARY KEY (round, rank)
);
"""


@dataclass
class Selection:
    """One selected sample of a round."""

    rank: int
    id: int
    score: float | None
    predicted: int | None
    probability: float | None


@dataclass
class RoundRecord:
    """One stored round."""

    round: int
    method: str
    seed: int
    k: int
    subset: int
    retrain: str
    random: bool
    n_labeled: int
    class_counts: list[int]
    accuracy: float | None
    holdout_size: int
    train_seconds: float
    score_seconds: float
    total_seconds: float
    classes: list[str]
    finished_at: float
    selections: list[Selection]
    final_loss: float | None = None  # mean training loss of the last epoch (None: random round, or stored before)
    confusion: list[list[int]] | None = None  # holdout counts [true class][predicted class] (None: none stored)


# The fix for a project database tidal cannot use: a new project, into which the label files are imported again.
FIX = ("pass a new project directory (`tidal init NEW --data ...`) and import your label files into it again "
       "with `tidal label NEW FILE`")


class ProjectStore(SQLiteStore):
    """The project database at ``path``; ``create=True`` makes and marks a new one when there is
    none (whole, in one transaction: :func:`tidal.sqlite.create_database`; a 0-byte file counts
    as none). An existing file that is not a tidal project (another program's database, an
    empty one too) is refused and left as it was."""

    def __init__(self, path: str | Path, create: bool = False, readonly: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise RunDirectoryError(f"{self.path.parent} is not a tidal project (no {DB_NAME}); create one with "
                                    f"`tidal init {self.path.parent} --data folder:PATH --classes A B ...`")
        self._open(readonly, f"{self.path} is an empty file, not a tidal project; run `tidal init`",
                   create=(_SCHEMA, APPLICATION_ID, SCHEMA_VERSION) if create else None)

    @staticmethod
    def _identify(conn: sqlite3.Connection, path: Path) -> str:
        """"ours" (marked as a project) or "none" (a 0-byte file); raise for any other file (an
        empty database too)."""
        return identify_database(conn, path, APPLICATION_ID, "a tidal project database", FIX)

    # -- settings ---------------------------------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, **values: Any) -> None:
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                   [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def classes(self) -> list[str]:
        return list(self.meta("classes", []))

    # -- the pool ---------------------------------------------------------------------------
    def add_samples(self, paths: Iterable[str]) -> list[int]:
        """Give each new path the next id; returns the new ids (known paths keep theirs)."""
        known = {p for (p,) in self._conn.execute("SELECT path FROM samples")}
        new = [p for p in paths if p not in known]
        start = self.num_samples()
        with self._conn:
            self._conn.executemany("INSERT INTO samples VALUES (?, ?)", [(start + i, p) for i, p in enumerate(new)])
        return list(range(start, start + len(new)))

    def num_samples(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def paths(self) -> list[str]:
        """The path of every sample, by id (ids are 0..N-1)."""
        return [p for (p,) in self._conn.execute("SELECT path FROM samples ORDER BY id")]

    def ids_of_paths(self) -> dict[str, int]:
        return {p: i for i, p in self._conn.execute("SELECT id, path FROM samples")}

    # -- labels -----------------------------------------------------------------------------
    def labels(self) -> dict[int, int]:
        """``{sample id: class index}`` of every labelled sample."""
        return dict(self._conn.execute("SELECT id, label FROM labels ORDER BY id"))

    def label_sources(self) -> dict[int, tuple[str, int]]:
        return {i: (s, r) for i, s, r in self._conn.execute("SELECT id, source, after_round FROM labels")}

    def set_labels(self, labels: Sequence[tuple[int, int]], source: str) -> None:
        """Store ``(id, class index)`` pairs (replacing earlier labels of the same ids) in one transaction."""
        after = self.num_rounds()
        now = time.time()
        with self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO labels VALUES (?, ?, ?, ?, ?)",
                                   [(int(i), int(c), source, after, now) for i, c in labels])

    def remove_labels(self, ids: Sequence[int]) -> None:
        """Forget the labels of ``ids`` (a Label Studio annotation that gave them was deleted), in one transaction."""
        with self._conn:
            self._conn.executemany("DELETE FROM labels WHERE id = ?", [(int(i),) for i in ids])

    def set_holdout(self, items: Sequence[tuple[str, int]]) -> None:
        with self._conn:
            self._conn.execute("DELETE FROM holdout")
            self._conn.executemany("INSERT INTO holdout VALUES (?, ?)", list(items))

    def holdout(self) -> list[tuple[str, int]]:
        return list(self._conn.execute("SELECT path, label FROM holdout ORDER BY path"))

    # -- rounds -----------------------------------------------------------------------------
    def num_rounds(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM rounds").fetchone()[0])

    def add_round(self, r: RoundRecord) -> None:
        """Insert a finished round and its selection in one transaction (a stored round is complete)."""
        with self._conn:
            self._conn.execute(
                "INSERT INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.round, r.method, r.seed, r.k, r.subset, r.retrain, int(r.random), r.n_labeled,
                 json.dumps(r.class_counts), r.accuracy, r.holdout_size, r.train_seconds, r.score_seconds,
                 r.total_seconds, json.dumps(r.classes), r.finished_at))
            self._conn.executemany("INSERT INTO selections VALUES (?, ?, ?, ?, ?, ?)",
                                   [(r.round, s.rank, s.id, s.score, s.predicted, s.probability)
                                    for s in r.selections])
            if r.final_loss is not None or r.confusion is not None:  # in meta: the tables keep their schema
                loss = r.final_loss if r.final_loss is None or math.isfinite(r.final_loss) else None
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                   (f"round:{r.round}", json.dumps({"final_loss": loss, "confusion": r.confusion})))

    def rounds(self) -> list[RoundRecord]:
        sel: dict[int, list[Selection]] = {}
        for rnd, *rest in self._conn.execute("SELECT * FROM selections ORDER BY round, rank"):
            sel.setdefault(rnd, []).append(Selection(*rest))
        out = []
        for row in self._conn.execute("SELECT * FROM rounds ORDER BY round"):
            v = list(row)
            v[6] = bool(v[6])
            v[8] = json.loads(v[8])
            v[14] = json.loads(v[14])
            model = self.meta(f"round:{v[0]}", {})
            out.append(RoundRecord(*v, selections=sel.get(v[0], []), final_loss=model.get("final_loss"),
                                   confusion=model.get("confusion")))
        return out
