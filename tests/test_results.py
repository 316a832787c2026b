"""ResultStore: a cycle and its td_tracking rows are one transaction; the reader; older databases."""

import re
import sqlite3

import pytest

from tidal.errors import RunDirectoryError

from tidal.results import _SCHEMA, APPLICATION_ID, DB_NAME, CycleRecord, EpochKL, ResultStore, TDTrackingRecord
from foreign_files import FOREIGN, foreign_database


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


# --- files tidal did not make, a creation that fails half-way, rows changed outside tidal ---------



@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_database_tidal_did_not_make_is_refused_and_left_alone(tmp_path, kind):
    path = tmp_path / DB_NAME
    before = foreign_database(path, kind)
    for attempt in (lambda: ResultStore(path), lambda: ResultStore(path, readonly=True),
                    lambda: ResultStore.check(path)):
        with pytest.raises(RunDirectoryError, match=rf"is not a tidal results database {FOREIGN[kind]}.*--out"):
            attempt()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [DB_NAME]  # no -wal, -shm or -journal beside it


def test_a_0_byte_file_is_no_database_and_is_replaced_whole(tmp_path):
    """What sqlite3.connect leaves when something looks for the store before it exists: no
    database, nothing to protect (a database has a header); the store is made in its place."""
    path = tmp_path / DB_NAME
    path.write_bytes(b"")
    ResultStore.check(path)
    with pytest.raises(RunDirectoryError, match="is an empty file: no tidal results yet"):
        ResultStore(path, readonly=True)
    with ResultStore(path) as store:
        store.add_cycle(_record())
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    con.close()


@pytest.mark.parametrize("failure", ["statement", "ulimit -f"])
def test_a_creation_that_fails_half_way_leaves_nothing_a_rerun_refuses(tmp_path, monkeypatch, failure):
    """The tables and tidal's mark are one transaction: a write failing part-way (a bad statement
    after the first tables, or a file-size limit as `ulimit -f` sets) leaves no results.sqlite."""
    import subprocess
    import sys

    path = tmp_path / DB_NAME
    if failure == "statement":
        monkeypatch.setattr("tidal.results._SCHEMA", _SCHEMA + "CREATE TABLE half (;")
        with pytest.raises(sqlite3.Error):
            ResultStore(path)
        monkeypatch.undo()
    else:
        import resource

        def limit() -> None:  # 8 KiB: the first two pages; Python ignores SIGXFSZ, the write fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

        code = "import sys; from tidal.results import ResultStore; ResultStore(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, str(path)], preexec_fn=limit, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode != 0 and "disk I/O error" in done.stderr, done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []  # neither the database nor its temporary file
    with ResultStore(path) as store:  # the re-run
        store.add_cycle(_record())
        assert len(store.records()) == 1


def _damage(path, sql: str, *args) -> None:
    con = sqlite3.connect(path)
    with con:
        con.execute(sql, args)
    con.close()


@pytest.mark.parametrize("sql,match", [
    ("UPDATE cycles SET accuracy = 'abc' WHERE cycle = 1",
     r"the cycles row \(dataset 'fashion-mnist', imbalance 10.0, method 'tidal-entropy', seed 0, cycle 1\) has "
     r"accuracy 'abc', not a number; .*delete that run's rows from this cycle \(1\) on"),
    ("UPDATE cycles SET labeled = '[1, 2' WHERE cycle = 0", r"cycle 0\) has labeled '\[1, 2', not a JSON list"),
    ("UPDATE cycles SET class_counts = '{}' WHERE cycle = 0", r"class_counts '\{\}', not a JSON list of integers"),
    ("UPDATE td_tracking SET kl_module = 'x'", r"the td_tracking row \(.*cycle 0, epoch 1\) has kl_module 'x'"),
    ("UPDATE meta SET value = '' WHERE key = 'config'",
     r"its stored configuration \(meta key 'config'\) '' cannot be read \(JSONDecodeError: Expecting value"),
    ("UPDATE meta SET value = '[1]' WHERE key = 'config'", r"meta key 'config'\) '\[1\]' cannot be read"),
    ("INSERT INTO meta VALUES ('class_names', '{oops')", r"its class names \(meta key 'class_names'\) '\{oops'"),
])
def test_rows_changed_outside_tidal_are_reported_naming_the_database_row_and_fix(tmp_path, sql, match):
    from tidal.config import preset

    path = tmp_path / DB_NAME
    with ResultStore(path) as store:
        store.bind(preset("quick"))
        store.add_cycle(_record(0), td_tracking=[EpochKL(1, 0.1, 0.2)])
        store.add_cycle(_record(1))
    _damage(path, sql)
    with ResultStore(path, readonly=True) as store:
        with pytest.raises(RunDirectoryError, match=rf"^results database {re.escape(str(path))}: .*{match}") as info:
            store.records(), store.td_tracking(), store.config(), store.class_names()
    assert "changed outside tidal: restore it from a copy, or " in str(info.value)
