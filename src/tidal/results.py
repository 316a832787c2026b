"""Durable results: one SQLite row per (dataset, imbalance, method, seed, cycle).

Each cycle is written in its own transaction, after the cycle has finished, so the database
never holds a half-written record; a killed run loses at most the cycle in progress. The
run's resolved configuration is stored beside the rows; a different experiment pointed at
the same directory is refused.

With ``--track-td`` a cycle of a TD-predicting method also has one ``td_tracking`` row per
training epoch (the paper's Figure 7), written in the same transaction as its cycle row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidal.config import ExperimentConfig
from tidal.errors import RunDirectoryError

__all__ = ["ANALYSIS_DIR", "DB_NAME", "CycleRecord", "EpochKL", "ResultStore", "TDTrackingRecord", "connect_readonly",
           "identify_database"]

DB_NAME = "results.sqlite"  # the database of a run directory
ANALYSIS_DIR = "analysis"  # the run directory's folder of per-sample analyses (tidal.analysis, .npz files)
SCHEMA_VERSION = 2  # 2: the td_tracking table (opening a version-1 database adds it, empty)
APPLICATION_ID = 0x5444414C  # "TDAL": PRAGMA application_id of a tidal store, set when it is created
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cycles (
    dataset TEXT NOT NULL,
    imbalance REAL NOT NULL,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    cycle INTEGER NOT NULL,          -- 0-based
    n_labeled INTEGER NOT NULL,      -- size of the labeled set trained on
    accuracy REAL NOT NULL,          -- test accuracy in [0, 1]
    class_counts TEXT NOT NULL,      -- JSON list: labeled samples per class
    labeled TEXT NOT NULL,           -- JSON list: absolute indices trained on
    selected TEXT NOT NULL,          -- JSON list: absolute indices labeled at the end of the cycle
    scores TEXT NOT NULL,            -- JSON list: their scores (higher = more informative)
    train_seconds REAL NOT NULL,
    score_seconds REAL NOT NULL,
    eval_seconds REAL NOT NULL,
    final_loss REAL NOT NULL,        -- mean training loss of the last epoch
    finished_at REAL NOT NULL,       -- unix time
    PRIMARY KEY (dataset, imbalance, method, seed, cycle)
);
CREATE TABLE IF NOT EXISTS td_tracking (
    dataset TEXT NOT NULL,
    imbalance REAL NOT NULL,
    method TEXT NOT NULL,
    seed INTEGER NOT NULL,
    cycle INTEGER NOT NULL,          -- 0-based, as in cycles
    epoch INTEGER NOT NULL,          -- 1-based: after the t-th training epoch
    kl_module REAL NOT NULL,         -- test-set mean of KL(p̄(T) || p̃_m(t)), nats
    kl_snapshot REAL NOT NULL,       -- test-set mean of KL(p̄(T) || p(t)), nats
    PRIMARY KEY (dataset, imbalance, method, seed, cycle, epoch)
);
"""


@dataclass
class CycleRecord:
    """One stored cycle (JSON columns decoded)."""

    dataset: str
    imbalance: float
    method: str
    seed: int
    cycle: int
    n_labeled: int
    accuracy: float
    class_counts: list[int]
    labeled: list[int]
    selected: list[int]
    scores: list[float]
    train_seconds: float
    score_seconds: float
    eval_seconds: float
    final_loss: float
    finished_at: float

    def summary_dict(self) -> dict[str, Any]:
        """The record without the long index lists (for CSV)."""
        d = dict(self.__dict__)
        for key in ("labeled", "selected", "scores"):
            d.pop(key)
        d["class_counts"] = json.dumps(self.class_counts)
        return d


@dataclass
class EpochKL:
    """Figure 7's two numbers after one training epoch of a cycle (test-set means, in nats)."""

    epoch: int  # 1-based epoch t
    kl_module: float  # mean KL(p̄(T) || p̃_m(t)): actual TD vs. the module's predicted TD
    kl_snapshot: float  # mean KL(p̄(T) || p(t)): actual TD vs. the model snapshot's softmax


@dataclass
class TDTrackingRecord:
    """One stored ``td_tracking`` row: an :class:`EpochKL` with the key of its cycle."""

    dataset: str
    imbalance: float
    method: str
    seed: int
    cycle: int  # 0-based
    epoch: int  # 1-based
    kl_module: float  # nats
    kl_snapshot: float  # nats


class ResultStore:
    """The SQLite database of one run directory.

    A new store is marked as tidal's (``PRAGMA application_id`` = :data:`APPLICATION_ID`,
    ``user_version`` = :data:`SCHEMA_VERSION`); a store of an earlier version (no mark, but
    tidal's ``meta`` and ``cycles`` tables) is marked when opened for writing. Any other file
    is refused with a :class:`RunDirectoryError` and left as it was. ``readonly=True`` opens
    an existing store for reading only (``mode=ro``): nothing in the file changes.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise RunDirectoryError(f"{self.path} does not exist")
            self._conn = connect_readonly(self.path)
        else:
            self._conn = sqlite3.connect(self.path, timeout=60)
        try:
            kind = _identify(self._conn, self.path)
            if readonly and kind == "empty":
                raise RunDirectoryError(f"{self.path} is an empty database: no tidal results yet")
            if not readonly:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
                with self._conn:
                    self._conn.executescript(_SCHEMA)
                if kind != "ours":  # new, or made before stores were marked: mark it as tidal's
                    with self._conn:
                        self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    @staticmethod
    def check(path: str | Path) -> None:
        """Raise :class:`RunDirectoryError` if ``path`` is a database tidal did not make; an
        empty file passes. Opens it read-only: nothing in the file changes."""
        conn = connect_readonly(Path(path))
        try:
            _identify(conn, Path(path))
        finally:
            conn.close()

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration ----------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def config(self) -> ExperimentConfig | None:
        """The configuration last bound to this store, or None for a new store."""
        raw = self._meta("config")
        return None if raw is None else ExperimentConfig.from_dict(json.loads(raw))

    def bind(self, config: ExperimentConfig) -> None:
        """Record ``config``, or refuse when the store holds results of a different experiment.

        Methods, seeds, datasets and imbalance ratios may be added to an existing run; every
        other field (training, AL protocol, strategy options, data slicing) must match.
        """
        with self._conn:  # read, compare and merge in one write transaction (concurrent runs)
            self._conn.execute("BEGIN IMMEDIATE")
            old = self.config()
            if old is not None and old.identity() != config.identity():
                diffs = _diff(old.identity(), config.identity())
                raise RunDirectoryError(
                    f"{self.path.parent} holds results of a different experiment ({'; '.join(diffs[:4])}); "
                    "pass a new --out directory, or the same settings to continue that run"
                )
            merged = config if old is None else _union(old, config)
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(merged.to_dict()),))
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def class_names(self) -> dict[str, list[str]]:
        """Dataset name -> the name of each class index, as :meth:`set_class_names` stored them;
        empty for a database written before class names were stored (the report then labels
        classes ``class 0``, ``class 1``, ...)."""
        raw = self._meta("class_names")
        names = json.loads(raw) if raw is not None else {}
        return names if isinstance(names, dict) else {}

    def set_class_names(self, names: dict[str, Sequence[str]]) -> None:
        """Store the class names of each dataset (meta key ``class_names``, JSON), merged with those stored."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            merged = {**self.class_names(), **{k: [str(n) for n in v] for k, v in names.items()}}
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('class_names', ?)", (json.dumps(merged),))

    # -- cycles -----------------------------------------------------------------------------
    def add_cycle(self, record: CycleRecord, td_tracking: Sequence[EpochKL] = ()) -> None:
        """Insert one finished cycle and its per-epoch ``td_tracking`` rows in one transaction.

        Either everything is stored or, when any insert fails (e.g. the cycle is already
        stored, or two rows share an epoch), nothing is. Tracking rows left by an earlier,
        deleted copy of the cycle are replaced.
        """
        r = record
        key = (r.dataset, r.imbalance, r.method, r.seed, r.cycle)
        with self._conn:
            self._conn.execute(
                "INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.dataset, r.imbalance, r.method, r.seed, r.cycle, r.n_labeled, r.accuracy,
                 json.dumps(r.class_counts), json.dumps(r.labeled), json.dumps(r.selected),
                 json.dumps([float(s) for s in r.scores]), r.train_seconds, r.score_seconds, r.eval_seconds,
                 r.final_loss, r.finished_at or time.time()),
            )
            self._conn.execute("DELETE FROM td_tracking WHERE dataset = ? AND imbalance = ? AND method = ? "
                               "AND seed = ? AND cycle = ?", key)
            self._conn.executemany("INSERT INTO td_tracking VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                   [(*key, int(t.epoch), float(t.kl_module), float(t.kl_snapshot))
                                    for t in td_tracking])

    def records(self, **where: Any) -> list[CycleRecord]:
        """Stored cycles, optionally filtered by column equality, in a stable order."""
        sql = "SELECT * FROM cycles" + _where(where, _RUN_COLUMNS + ("cycle",))
        sql += " ORDER BY dataset, imbalance, method, seed, cycle"
        return list(self._decode(self._conn.execute(sql, tuple(where.values()))))

    def cycle_counts(self) -> dict[tuple[str, float, str, int], int]:
        """Stored cycles per run, ``{(dataset, imbalance, method, seed): count}``, in one query
        that decodes no labeled sets (resume checks on large run directories)."""
        sql = f"SELECT {', '.join(_RUN_COLUMNS)}, COUNT(*) FROM cycles GROUP BY {', '.join(_RUN_COLUMNS)}"
        return {(d, float(ir), m, int(s)): int(n) for d, ir, m, s, n in self._conn.execute(sql)}

    def td_tracking(self, **where: Any) -> list[TDTrackingRecord]:
        """Stored ``td_tracking`` rows, optionally filtered by column equality (e.g. ``method=...``),
        ordered by (dataset, imbalance, method, seed, cycle, epoch)."""
        sql = "SELECT * FROM td_tracking" + _where(where, _RUN_COLUMNS + ("cycle", "epoch"))
        sql += " ORDER BY dataset, imbalance, method, seed, cycle, epoch"
        return [TDTrackingRecord(*row) for row in self._conn.execute(sql, tuple(where.values()))]

    @staticmethod
    def _decode(rows: Iterator[tuple]) -> Iterator[CycleRecord]:
        for row in rows:
            vals = list(row)
            for i in (7, 8, 9, 10):
                vals[i] = json.loads(vals[i])
            yield CycleRecord(*vals)


_RUN_COLUMNS = ("dataset", "imbalance", "method", "seed")


def connect_readonly(path: Path) -> sqlite3.Connection:
    """``path`` opened read-only (``mode=ro``): nothing in the file can change."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)


def identify_database(conn: sqlite3.Connection, path: Path, application_id: int, what: str, fix: str,
                      legacy: Callable[[sqlite3.Connection, set[str]], bool] | None = None) -> str:
    """Whose database ``conn`` is, by its ``PRAGMA application_id``: "ours" (marked
    ``application_id``), "empty" (unmarked, no table yet) or, when ``legacy(conn, tables)``
    says so, "legacy"; any other database raises :class:`RunDirectoryError` naming ``what`` it
    is not and the ``fix`` (tidal's results store and a labelling project share this check)."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    if app == application_id:
        return "ours"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if app == 0 and not tables:
        return "empty"
    if app == 0 and legacy is not None and legacy(conn, tables):
        return "legacy"
    found = f"application_id {app:#x}" if app else f"tables {', '.join(sorted(tables))}"
    raise RunDirectoryError(f"{path} is not {what} ({found}); tidal leaves other programs' files alone: {fix}")


def _legacy(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """tidal's tables and schema_version: a results store made before stores were marked."""
    return {"meta", "cycles"} <= tables and conn.execute(
        "SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is not None


def _identify(conn: sqlite3.Connection, path: Path) -> str:
    """"ours" (marked as tidal's), "legacy" (tidal's tables and schema_version, made before
    stores were marked) or "empty" (no table yet); raise for any other database."""
    return identify_database(conn, path, APPLICATION_ID, "a tidal results database", "pass a new --out directory",
                             legacy=_legacy)


def _where(where: dict[str, Any], columns: tuple[str, ...]) -> str:
    """`` WHERE a = ? AND b = ?`` for the keys of ``where`` (values bound separately), or ``""``;
    a key that is not one of ``columns`` is refused rather than put into the SQL."""
    bad = sorted(set(where) - set(columns))
    if bad:
        raise ValueError(f"cannot filter stored rows by {', '.join(map(repr, bad))}; use one of {', '.join(columns)}")
    return (" WHERE " + " AND ".join(f"{k} = ?" for k in where)) if where else ""


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key}: stored {va!r}, given {vb!r}")
    return out


def _union(old: ExperimentConfig, new: ExperimentConfig) -> ExperimentConfig:
    import dataclasses

    def merge(a: tuple, b: tuple) -> tuple:
        return tuple(a) + tuple(x for x in b if x not in a)

    return dataclasses.replace(
        new,
        datasets=merge(old.datasets, new.datasets),
        imbalances=merge(old.imbalances, new.imbalances),
        methods=merge(old.methods, new.methods),
        seeds=merge(old.seeds, new.seeds),
    )
