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
from typing import Any, NamedTuple

from tidal.config import ExperimentConfig
from tidal.errors import RunDirectoryError
from tidal.sqlite import SQLiteStore, identify_database, in_one_transaction

__all__ = ["ANALYSIS_DIR", "DB_NAME", "CycleRecord", "EpochKL", "ResultStore", "RunKey", "TDTrackingRecord"]

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


class RunKey(NamedTuple):
    """One run of an experiment, in the order of the store's columns."""

    dataset: str  # the dataset (source spec or name)
    imbalance: float  # the long-tail imbalance ratio (1: balanced)
    method: str  # the strategy's registered name
    seed: int  # the trial's seed


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


class ResultStore(SQLiteStore):
    """The SQLite database of one run directory.

    A new store is created whole (:func:`tidal.sqlite.create_database`: its tables and tidal's marks,
    ``PRAGMA application_id`` = :data:`APPLICATION_ID` and ``user_version`` =
    :data:`SCHEMA_VERSION`, in one transaction); a store of an earlier version (no mark, but
    tidal's ``meta`` and ``cycles`` tables) is marked when opened for writing. Any other file,
    an empty database too, is refused with a :class:`RunDirectoryError` and left as it was; a
    0-byte file (no database at all: what ``sqlite3.connect`` leaves when it looks for a store
    that is not there yet) is taken for none. ``readonly=True`` opens
    an existing store for reading only (``mode=ro``): nothing in the file changes.
    """

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly and not self.path.is_file():
            raise RunDirectoryError(f"{self.path} does not exist")
        self._open(readonly, f"{self.path} is an empty file: no tidal results yet",
                   create=(_SCHEMA, APPLICATION_ID, SCHEMA_VERSION))

    @staticmethod
    def _identify(conn: sqlite3.Connection, path: Path) -> str:
        """"ours" (marked as tidal's) or "legacy" (tidal's tables and schema_version, made before
        stores were marked); raise for any other file."""
        return identify_database(conn, path, APPLICATION_ID, "a tidal results database",
                                 "pass a new --out directory", legacy=_legacy)

    def _upgrade(self, kind: str) -> None:
        # tables added since (version 1: td_tracking) and, for a store made before stores were
        # marked, the mark: one transaction, so a failure leaves the store as it was
        marks = ("" if kind == "ours" else
                 f"PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION};")
        in_one_transaction(self._conn, _SCHEMA + marks)

    # -- configuration ----------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def config(self) -> ExperimentConfig | None:
        """The configuration last bound to this store, or None for a new store."""
        raw = self._meta("config")
        if raw is None:
            return None
        try:
            return ExperimentConfig.from_dict(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise self._damaged(f"its stored configuration (meta key 'config') {_shown(raw)} cannot be read "
                                f"({type(exc).__name__}: {_shown(exc)})", "start a new --out directory") from None

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
        try:
            names = json.loads(raw) if raw is not None else {}
        except ValueError:
            raise self._damaged(f"its class names (meta key 'class_names') {_shown(raw)} are not JSON",
                                "start a new --out directory") from None
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

    def cycle_counts(self) -> dict[RunKey, int]:
        """Stored cycles per run, ``{(dataset, imbalance, method, seed): count}``, in one query
        that decodes no labeled sets (resume checks on large run directories)."""
        sql = f"SELECT {', '.join(_RUN_COLUMNS)}, COUNT(*) FROM cycles GROUP BY {', '.join(_RUN_COLUMNS)}"
        return {RunKey(d, float(ir), m, int(s)): int(n) for d, ir, m, s, n in self._conn.execute(sql)}

    def td_tracking(self, **where: Any) -> list[TDTrackingRecord]:
        """Stored ``td_tracking`` rows, optionally filtered by column equality (e.g. ``method=...``),
        ordered by (dataset, imbalance, method, seed, cycle, epoch)."""
        sql = "SELECT * FROM td_tracking" + _where(where, _RUN_COLUMNS + ("cycle", "epoch"))
        sql += " ORDER BY dataset, imbalance, method, seed, cycle, epoch"
        out = []
        for row in self._conn.execute(sql, tuple(where.values())):
            for i, (name, kind) in enumerate(_TD_COLUMNS):
                if not _KINDS[kind](row[i]):
                    raise self._damaged(f"the td_tracking row ({_key(row)}, epoch {row[5]!r}) has {name} "
                                        f"{_shown(row[i])}, not {kind}", _REDO.format(cycle=_shown(row[4])))
            out.append(TDTrackingRecord(*row))
        return out

    def _decode(self, rows: Iterator[tuple]) -> Iterator[CycleRecord]:
        """Each row as a :class:`CycleRecord`, its JSON columns decoded; a value of the wrong kind (a
        file changed outside tidal) raises :class:`RunDirectoryError` naming the row and the column."""
        for row in rows:
            vals = list(row)
            for i, (name, kind) in enumerate(_CYCLE_COLUMNS):
                if "JSON" in kind:
                    try:
                        vals[i] = json.loads(vals[i]) if isinstance(vals[i], str) else None
                    except ValueError:
                        vals[i] = None
                if not _KINDS[kind](vals[i]):
                    raise self._damaged(f"the cycles row ({_key(row)}) has {name} {_shown(row[i])}, not {kind}",
                                        _REDO.format(cycle=_shown(row[4])))
            yield CycleRecord(*vals)

    def _damaged(self, what: str, fix: str) -> RunDirectoryError:
        """The one-line error for a store whose content tidal did not write."""
        return RunDirectoryError(f"results database {self.path}: {what}; the file was changed outside tidal: "
                                 f"restore it from a copy, or {fix}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# What each column of a stored row must hold (the schema's types; SQLite itself stores any value in any column).
_KINDS: dict[str, Callable[[Any], bool]] = {
    "text": lambda v: isinstance(v, str),
    "an integer": _is_int,
    "a number": _is_number,
    "a JSON list of integers": lambda v: isinstance(v, list) and all(_is_int(x) for x in v),
    "a JSON list of numbers": lambda v: isinstance(v, list) and all(_is_number(x) for x in v),
}
_CYCLE_COLUMNS = (("dataset", "text"), ("imbalance", "a number"), ("method", "text"), ("seed", "an integer"),
                  ("cycle", "an integer"), ("n_labeled", "an integer"), ("accuracy", "a number"),
                  ("class_counts", "a JSON list of integers"), ("labeled", "a JSON list of integers"),
                  ("selected", "a JSON list of integers"), ("scores", "a JSON list of numbers"),
                  ("train_seconds", "a number"), ("score_seconds", "a number"), ("eval_seconds", "a number"),
                  ("final_loss", "a number"), ("finished_at", "a number"))
_TD_COLUMNS = (("dataset", "text"), ("imbalance", "a number"), ("method", "text"), ("seed", "an integer"),
               ("cycle", "an integer"), ("epoch", "an integer"), ("kl_module", "a number"),
               ("kl_snapshot", "a number"))
# The fix for a damaged row: the run retrains what is missing (a later cycle starts from the ones before it).
_REDO = ("delete that run's rows from this cycle ({cycle}) on and run the same `tidal run` again to retrain them, "
         "or start a new --out directory")


def _key(row: tuple) -> str:
    """A stored row's run and cycle in words: ``dataset 'x', imbalance 10, method 'random', seed 0, cycle 1``."""
    names = ("dataset", "imbalance", "method", "seed", "cycle")
    return ", ".join(f"{name} {_shown(v)}" for name, v in zip(names, row))


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters (a stored value can be long)."""
    text = repr(value) if not isinstance(value, BaseException) else str(value)
    return text if len(text) <= limit else text[:limit] + "..."


_RUN_COLUMNS = ("dataset", "imbalance", "method", "seed")


def _legacy(conn: sqlite3.Connection, tables: set[str]) -> bool:
    """tidal's tables and schema_version: a results store made before stores were marked."""
    return {"meta", "cycles"} <= tables and conn.execute(
        "SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone() is not None


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

    axes = ("datasets", "imbalances", "methods", "seeds")
    return dataclasses.replace(new, **{axis: merge(getattr(old, axis), getattr(new, axis)) for axis in axes})
