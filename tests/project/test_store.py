"""The project database: marked as tidal's, foreign files refused, rounds stored whole."""

from __future__ import annotations

import sqlite3

import pytest

from tidal.errors import RunDirectoryError
from tidal.project.project import init_project
from tidal.project.store import APPLICATION_ID, DB_NAME, ProjectStore, RoundRecord, Selection
from tidal.results import APPLICATION_ID as RESULTS_ID
from foreign_files import FOREIGN, foreign_database



def test_a_new_store_is_marked_and_distinct_from_a_results_database(tmp_path, write_images, classes):
    with ProjectStore(tmp_path / DB_NAME, create=True):
        pass
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID != RESULTS_ID
    con.close()


def test_another_programs_database_is_refused_and_left_alone(tmp_path, write_images, classes):
    path = tmp_path / DB_NAME
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(RunDirectoryError, match="is not a tidal project database .*tables notes"):
        ProjectStore(path)
    assert path.read_bytes() == before




@pytest.mark.parametrize("kind", sorted(FOREIGN))
def test_a_database_tidal_did_not_make_is_never_written(tmp_path, pool, classes, fast, kind):
    """Each kind of foreign file named project.sqlite, beside the other program's notes: refused
    by the store (to read, to write, to create) and by `tidal init`, which writes nothing there."""
    project = tmp_path / "other"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    before = foreign_database(project / DB_NAME, kind)
    match = rf"is not a tidal project database {FOREIGN[kind]}.*pass a new project directory"
    for attempt in (lambda: ProjectStore(project / DB_NAME), lambda: ProjectStore(project / DB_NAME, readonly=True),
                    lambda: ProjectStore(project / DB_NAME, create=True),
                    lambda: init_project(project, f"folder:{pool[0]}", classes, **fast)):
        with pytest.raises(RunDirectoryError, match=match):
            attempt()
    assert (project / DB_NAME).read_bytes() == before
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", DB_NAME]  # no lock, no -wal


def test_a_0_byte_file_is_no_project_until_init_makes_one_in_its_place(tmp_path):
    path = tmp_path / DB_NAME
    path.write_bytes(b"")
    with pytest.raises(RunDirectoryError, match="is an empty file, not a tidal project; run `tidal init`"):
        ProjectStore(path)
    with ProjectStore(path, create=True) as store:
        store.add_samples(["a.png"])
    with ProjectStore(path, readonly=True) as store:
        assert store.num_samples() == 1


def test_a_creation_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch, pool, classes, fast):
    """The tables and the mark are one transaction in a file linked into place only when whole."""
    from tidal.project import store as store_module

    monkeypatch.setattr(store_module, "_SCHEMA", store_module._SCHEMA + "CREATE TABLE half (;")
    with pytest.raises(sqlite3.Error):
        init_project(tmp_path / "p", f"folder:{pool[0]}", classes, **fast)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "p").iterdir()] == [".tidal.lock"]  # no database, no temporary file
    assert init_project(tmp_path / "p", f"folder:{pool[0]}", classes, **fast).samples == 45  # the re-run


def test_a_results_database_is_not_a_project(tmp_path, write_images, classes):
    from tidal.results import ResultStore

    ResultStore(tmp_path / DB_NAME).close()  # tidal's, but the simulation's kind
    with pytest.raises(RunDirectoryError, match="application_id 0x5444414c"):
        ProjectStore(tmp_path / DB_NAME)


def test_a_folder_without_a_project_says_how_to_make_one(tmp_path, write_images, classes):
    with pytest.raises(RunDirectoryError, match="tidal init"):
        ProjectStore(tmp_path / DB_NAME)


@pytest.mark.parametrize("what", ["run directory", "other files", "a file"])
def test_init_refuses_directories_that_are_not_projects(tmp_path, pool, what, classes, fast):
    root, _ = pool
    project = tmp_path / "p"
    if what == "run directory":
        project.mkdir()
        (project / "results.sqlite").write_bytes(b"")
        match = "is a `tidal run` directory"
    elif what == "other files":
        project.mkdir()
        (project / "thesis.tex").write_text("x")
        match = "exists and is not a tidal project"
    else:
        project.write_text("x")
        match = "is a file"
    with pytest.raises(RunDirectoryError, match=match):
        init_project(project, f"folder:{root}", classes, **fast)


def test_rounds_round_trip(tmp_path, write_images, classes):
    with ProjectStore(tmp_path / DB_NAME, create=True) as store:
        store.add_samples(["a.png", "b.png", "c.png"])
        r = RoundRecord(1, "tidal-entropy", 0, 2, 3, "scratch", False, 4, [2, 2], 0.5, 10, 1.0, 0.5, 2.0, ["x", "y"],
                        123.0, [Selection(1, 2, 0.9, 1, 0.7), Selection(2, 0, 0.1, 0, 0.6)])
        store.add_round(r)
        assert store.rounds() == [r]
        with pytest.raises(sqlite3.IntegrityError):  # a round is stored once
            store.add_round(r)
        assert store.num_rounds() == 1 and store.rounds()[0].selections == r.selections


def test_a_rounds_final_loss_and_confusion_are_stored_with_it(tmp_path):
    """Issue 21 case 22: the report's per-class view and the near-chance warning read them back;
    a NaN loss is stored as None (JSON has no NaN), a round stored without them reads None."""
    def record(rnd, loss=None, confusion=None):
        return RoundRecord(rnd, "entropy", 0, 1, 5, "scratch", False, 4, [2, 2], 0.5, 4, 1.0, 0.1, 1.2, ["a", "b"],
                           1.0e9, [Selection(1, 7, 0.3, 1, 0.6)], loss, confusion)

    with ProjectStore(tmp_path / DB_NAME, create=True) as store:
        store.add_round(record(1))
        store.add_round(record(2, 0.25, [[2, 0], [1, 1]]))
        store.add_round(record(3, float("nan"), [[1, 1], [1, 1]]))
    with ProjectStore(tmp_path / DB_NAME, readonly=True) as store:
        got = [(r.final_loss, r.confusion) for r in store.rounds()]
    assert got == [(None, None), (0.25, [[2, 0], [1, 1]]), (None, [[1, 1], [1, 1]])]
