"""Durable results: one SQLite row per (dataset, imbalance, method, seed, cycle).

Each cycle is written in its own transaction, after the cycle has finished, so the database
never holds a half-written record; a killed run loses at most the cycle in progress. The
run's resolved configuration is stored beside the rows; a different experiment pointed at
the same directory is refused.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidal.config import ExperimentConfig
from tidal.errors import RunDirectoryError

__all__ = ["DB_NAME", "CycleRecord", "ResultStore"]

DB_NAME = "results.sqlite"
SCHEMA_VERSION = 1
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


class ResultStore:
    """The SQLite database of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, timeout=60)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        with self._conn:
            self._conn.executescript(_SCHEMA)

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
        old = self.config()
        if old is not None and old.identity() != config.identity():
            diffs = _diff(old.identity(), config.identity())
            raise RunDirectoryError(
                f"{self.path.parent} holds results of a different experiment ({'; '.join(diffs[:4])}); "
                "pass a new --out directory, or the same settings to continue that run"
            )
        merged = config if old is None else _union(old, config)
        with self._conn:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('config', ?)", (json.dumps(merged.to_dict()),))
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # -- cycles -----------------------------------------------------------------------------
    def add_cycle(self, record: CycleRecord) -> None:
        """Insert one finished cycle atomically (one transaction)."""
        r = record
        with self._conn:
            self._conn.execute(
                "INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.dataset, r.imbalance, r.method, r.seed, r.cycle, r.n_labeled, r.accuracy,
                 json.dumps(r.class_counts), json.dumps(r.labeled), json.dumps(r.selected),
                 json.dumps([float(s) for s in r.scores]), r.train_seconds, r.score_seconds, r.eval_seconds,
                 r.final_loss, r.finished_at or time.time()),
            )

    def records(self, **where: Any) -> list[CycleRecord]:
        """Stored cycles, optionally filtered by column equality, in a stable order."""
        clause = " AND ".join(f"{k} = ?" for k in where)
        sql = "SELECT * FROM cycles" + (f" WHERE {clause}" if clause else "")
        sql += " ORDER BY dataset, imbalance, method, seed, cycle"
        return list(self._decode(self._conn.execute(sql, tuple(where.values()))))

    @staticmethod
    def _decode(rows: Iterator[tuple]) -> Iterator[CycleRecord]:
        for row in rows:
            vals = list(row)
            for i in (7, 8, 9, 10):
                vals[i] = json.loads(vals[i])
            yield CycleRecord(*vals)


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
