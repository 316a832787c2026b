"""`tidal label`: every bad labels file is refused in one line and stores nothing."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tidal.project.answers import import_labels
from tidal.project.project import init_project
from tidal.project.store import DB_NAME


@pytest.fixture
def project(tmp_path, pool, classes, fast):
    root, truth = pool
    init_project(tmp_path / "proj", f"folder:{root}", classes, **fast)
    return tmp_path / "proj", root, truth


def _labels(project):
    con = sqlite3.connect(project / DB_NAME)
    try:
        return dict(con.execute("SELECT id, label FROM labels"))
    finally:
        con.close()


def _write(path, text, encoding="utf-8", newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def test_id_and_path_files_are_read_with_bom_crlf_and_extra_columns(project, tmp_path):
    proj, _, truth = project
    f = _write(tmp_path / "a.csv", "ID, Label ,comment\n0,red,first\n1,green,\n", encoding="utf-8-sig", newline="\r\n")
    r = import_labels(proj, f)
    assert (r.new, r.changed, r.unchanged, r.format) == (2, 0, 0, "csv")
    f = _write(tmp_path / "b.csv", "path,label\nimg 002.png,blue\n./img 003.png,red\n")
    assert import_labels(proj, f).new == 2
    assert _labels(proj) == {0: 0, 1: 1, 2: 2, 3: 0}


def test_importing_the_same_file_twice_changes_nothing(project, tmp_path):
    proj, _, _ = project
    f = _write(tmp_path / "a.csv", "id,label\n0,red\n1,green\n")
    import_labels(proj, f)
    before = (proj / DB_NAME).read_bytes(), _labels(proj)
    r = import_labels(proj, f)
    assert (r.new, r.changed, r.unchanged) == (0, 0, 2) and _labels(proj) == before[1]


def test_blank_labels_are_skipped_and_counted(project, tmp_path):
    proj, _, _ = project
    r = import_labels(proj, _write(tmp_path / "a.csv", "id,label\n0,red\n1,\n2,\n"))
    assert (r.new, r.blank) == (1, 2)


@pytest.mark.parametrize("text,match", [
    ("", "is empty"),
    ("id,label\n", "holds no labels"),
    ("id,label\n0,\n", "holds no labels"),
    ("name,class\n0,red\n", "header naming id .* and label"),
    ("id,label\n0,red\n99,blue\n", r"1 answers .* name no sample of this project: id 99"),
    ("id,label\n500,red\n501,blue\n", "none of the 2 answers .* another project"),
    ("path,label\nother/x.png,red\n", "none of the 1 answers .* another project"),
    ("path,label\n../pool/img 000.png,red\n", "escapes the pool root"),
    ("path,label\n/etc/passwd,red\n", "outside the pool root"),
    ("id,label\n0,rouge\n", r"class 'rouge' is not one of the project's classes \['red', 'green', 'blue'\]"),
    ("id,label\n0,gren\n", "did you mean 'green'"),
    ("id,label\n0,red\n0,red\n", "answered twice"),
    ("id,path,label\n0,img 0.png,red\n", "id 0 is 'img 000.png' in this project but the file says 'img 0.png'"),
    ("id,label\nzero,red\n", "id 'zero' is not a whole number"),
])
def test_bad_files_are_refused_in_one_line_and_store_nothing(project, tmp_path, text, match):
    proj, _, _ = project
    import_labels(proj, _write(tmp_path / "first.csv", "id,label\n5,blue\n"))
    before = _labels(proj)
    with pytest.raises(ValueError, match=match) as info:
        import_labels(proj, _write(tmp_path / "bad.csv", text))
    assert "\n" not in str(info.value)
    assert _labels(proj) == before


def test_a_missing_file_is_refused(project, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        import_labels(project[0], tmp_path / "nope.csv")


def test_a_directory_is_called_a_directory(project, tmp_path):
    """Issue 21, case 18."""
    (tmp_path / "answers").mkdir()
    with pytest.raises(ValueError, match="answers is a directory, not a file; give the labels file itself"):
        import_labels(project[0], tmp_path / "answers")
    _write(tmp_path / "answers" / "round1.csv", "id,label\n0,red\n")
    with pytest.raises(ValueError, match=r"is a directory, not a file; .*e\.g\. .*answers/round1\.csv"):
        import_labels(project[0], tmp_path / "answers")


@pytest.mark.parametrize("text,encoding,match", [
    ("id,label\n1,green\n0,r\xe9d\n", "latin-1", r"bad\.csv:3: not UTF-8 text \(byte 0xe9.*save the file as UTF-8"),
    ("id,label\n1,green\n0,r\xe9d\n", "cp1252", r"bad\.csv:3: not UTF-8 text"),
    ("id,label\n0," + "x" * 200_000 + "\n", "utf-8", r"bad\.csv:2: unreadable CSV \(field larger than field limit"),
])
def test_unreadable_csv_files_name_the_file_and_line(project, tmp_path, text, encoding, match):
    """Issue 21, cases 10 and 13: a Latin-1 file, a 200,000-character cell (no bare codec or _csv.Error)."""
    with pytest.raises(ValueError, match=match) as info:
        import_labels(project[0], _write(tmp_path / "bad.csv", text, encoding=encoding))
    assert "\n" not in str(info.value) and str(tmp_path / "bad.csv") in str(info.value)
    assert _labels(project[0]) == {}


def test_tab_separated_files(project, tmp_path):
    """Issue 21, case 10: Label Studio's TSV export (and a plain id/label TSV) are read like their CSVs."""
    proj, _, _ = project
    tsv = ("annotation_id\tannotator\tcreated_at\tid\timage\tlabel\tlead_time\tpath\ttidal_id\tupdated_at\n"
           "3\t1\t2026-11-26T20:41:39Z\t11\t/data/local-files/?d=pool/img%20003.png\tgreen\t2.1\timg 003.png\t3\t"
           "2026-11-26T20:41:39Z\n")
    r = import_labels(proj, _write(tmp_path / "project-1.tsv", tsv))
    assert (r.new, r.format) == (1, "Label Studio TSV")
    r = import_labels(proj, _write(tmp_path / "plain.tsv", "id\tlabel\n4\tblue\n5\tred\n"))
    assert (r.new, r.format) == (2, "csv")
    assert _labels(proj) == {3: 1, 4: 2, 5: 0}


def test_changing_a_stored_label_needs_relabel(project, tmp_path):
    proj, _, _ = project
    import_labels(proj, _write(tmp_path / "a.csv", "id,label\n0,red\n1,green\n"))
    change = _write(tmp_path / "b.csv", "id,label\n0,blue\n2,red\n")
    with pytest.raises(ValueError, match=r"1 answers change a stored label .*labelled 'red', the file says 'blue'.*--relabel"):
        import_labels(proj, change)
    assert _labels(proj) == {0: 0, 1: 1}  # not even the new label of id 2
    r = import_labels(proj, change, relabel=True)
    assert (r.new, r.changed) == (1, 1) and _labels(proj) == {0: 2, 1: 1, 2: 0}


def test_label_studio_exports(project, tmp_path):
    proj, _, _ = project
    full = [{"id": 7, "data": {"image": "/data/local-files/?d=img%20000.png", "tidal_id": 0, "path": "img 000.png"},
             "annotations": [{"result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                          "value": {"choices": ["red"]}}]}]},
            {"id": 8, "data": {"tidal_id": 1, "path": "img 001.png"}, "annotations": []}]  # not annotated: skipped
    (tmp_path / "ls.json").write_text(json.dumps(full))
    assert import_labels(proj, tmp_path / "ls.json").new == 1
    (tmp_path / "min.json").write_text(json.dumps([{"id": 9, "image": "x", "tidal_id": 2, "path": "img 002.png",
                                                    "label": "blue"}]))
    assert import_labels(proj, tmp_path / "min.json").new == 1
    _write(tmp_path / "ls.csv", "annotation_id,id,image,label,path,tidal_id\n3,11,x,green,img 003.png,3\n")
    r = import_labels(proj, tmp_path / "ls.csv")
    assert r.new == 1 and r.format == "Label Studio CSV"
    assert _labels(proj) == {0: 0, 2: 2, 3: 1}
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(ValueError, match="not a Label Studio export"):
        import_labels(proj, tmp_path / "bad.json")
