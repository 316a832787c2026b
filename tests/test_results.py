"""ResultStore: a cycle and its td_tracking rows are one transaction; the reader; older databases."""

import sqlite3

import pytest

from tidal.results import _SCHEMA, DB_NAME, CycleRecord, EpochKL, ResultStore, TDTrackingRecord


def _record(cycle: int = 0, method: str = "tidal-entropy", seed: int = 0) -> CycleRecord:
    return CycleRecord("fashion-mnist", 10.0, method, seed, cycle, 20, 0.5, [10, 10], list(range(20)), [20, 21],
                       [0.9, 0.8], 1.0, 0.1, 0.1, 0.3, 1.0e9)


def _counts(path) -> tuple[int, int]:
    con = sqlite3.connect(path)
    try:
        return (con.execute("SELECT COUNT(*) FROM cycles").fetchone()[0],
                con.execute("SELECT COUNT(*) FROM td_tracking").fetchone()[0])
    finally:
        con.close()


def test_cycle_and_tracking_are_stored_together_and_read_back(tmp_path):
    with ResultStore(tmp_path / DB_NAME) as store:
        store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.5, 0.9), EpochKL(2, 0.2, 0.4)])
        store.add_cycle(_record(1))  # no tracking
        store.add_cycle(_record(0, method="random"), td_tracking=[])
        rows = store.td_tracking()
        assert rows == [TDTrackingRecord("fashion-mnist", 10.0, "tidal-entropy", 0, 0, 1, 0.5, 0.9),
                        TDTrackingRecord("fashion-mnist", 10.0, "tidal-entropy", 0, 0, 2, 0.2, 0.4)]
        assert store.td_tracking(method="random") == [] and [r.epoch for r in store.td_tracking(cycle=0)] == [1, 2]
    assert _counts(tmp_path / DB_NAME) == (3, 2)


def test_a_failing_tracking_insert_leaves_neither_row(tmp_path):
    with ResultStore(tmp_path / DB_NAME) as store:
        with pytest.raises(sqlite3.IntegrityError):  # two rows for epoch 1
            store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.5, 0.9), EpochKL(1, 0.4, 0.8)])
        assert store.records() == [] and store.td_tracking() == []
    assert _counts(tmp_path / DB_NAME) == (0, 0)


def test_a_failing_cycle_insert_leaves_no_tracking_rows(tmp_path):
    with ResultStore(tmp_path / DB_NAME) as store:
        store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.5, 0.9)])
        with pytest.raises(sqlite3.IntegrityError):  # the cycle is already stored
            store.add_cycle(_record(0), td_tracking=[EpochKL(1, 9.0, 9.0), EpochKL(2, 9.0, 9.0)])
        assert [(r.epoch, r.kl_module) for r in store.td_tracking()] == [(1, 0.5)]


def test_stale_tracking_of_a_deleted_cycle_is_replaced(tmp_path):
    with ResultStore(tmp_path / DB_NAME) as store:
        store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.5, 0.9), EpochKL(2, 0.4, 0.8)])
    con = sqlite3.connect(tmp_path / DB_NAME)
    with con:
        con.execute("DELETE FROM cycles")  # e.g. a cycle removed by hand to train it again
    con.close()
    with ResultStore(tmp_path / DB_NAME) as store:
        store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.1, 0.2)])
        assert [(r.epoch, r.kl_module) for r in store.td_tracking()] == [(1, 0.1)]


def test_a_version_1_database_gains_the_tracking_table(tmp_path):
    con = sqlite3.connect(tmp_path / DB_NAME)
    with con:  # what version 1 made: its tables (no td_tracking), no application_id
        con.executescript(_SCHEMA.split("CREATE TABLE IF NOT EXISTS td_tracking")[0])
        con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.close()
    with ResultStore(tmp_path / DB_NAME) as store:
        assert store.td_tracking() == []
        store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.5, 0.9)])
        assert len(store.td_tracking()) == 1


def test_cycle_counts_count_each_runs_stored_cycles(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        assert store.cycle_counts() == {}
        for method, cycles in (("random", 3), ("tidal-entropy", 1)):
            for c in range(cycles):
                store.add_cycle(_record(cycle=c, method=method))
        store.add_cycle(_record(cycle=0, method="random", seed=1))
        assert store.cycle_counts() == {("fashion-mnist", 10.0, "random", 0): 3,
                                        ("fashion-mnist", 10.0, "tidal-entropy", 0): 1,
                                        ("fashion-mnist", 10.0, "random", 1): 1}
        assert len(store.records(method="random")) == 4


def test_filters_on_unknown_columns_are_refused(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        with pytest.raises(ValueError, match="'accuracy; DROP TABLE cycles'"):
            store.records(**{"accuracy; DROP TABLE cycles": 1})
        with pytest.raises(ValueError, match="'labeled'"):
            store.td_tracking(labeled=[1])


def test_class_names_are_stored_merged_and_absent_from_older_databases(tmp_path):
    with ResultStore(tmp_path / DB_NAME) as store:
        assert store.class_names() == {}  # a database written before class names were stored
        store.set_class_names({"fashion-mnist": ("T-shirt/top", "Trouser")})
        store.set_class_names({"tiny": ["c0", "c1"]})  # another dataset is added, not replacing the first
    with ResultStore(tmp_path / DB_NAME) as store:
        assert store.class_names() == {"fashion-mnist": ["T-shirt/top", "Trouser"], "tiny": ["c0", "c1"]}
