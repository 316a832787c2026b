"""Label Studio files: the config, tasks.json, image URLs and the three export formats.

The export samples below have the shape of the files Label Studio 1.23.2 wrote for a project
made from tidal's tasks.json (seen in the real round trip, test_labelstudio_server.py), cut
down to the fields that matter and varied for each case.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidal.project.labelstudio import (
    Answer,
    TaskRow,
    label_config,
    local_files,
    local_files_url,
    main,
    queue_scores,
    read_export,
    url_prefix,
    write_tasks,
)


# ------------------------------------------------------------------------------- config
def _choices(xml: str) -> list[str]:
    root = ET.fromstring(xml)
    image, choices = root.find("Image"), root.find("Choices")
    assert (image.get("name"), image.get("value")) == ("image", "$image")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("label", "image", "single")
    return [c.get("value") for c in choices.findall("Choice")]


def test_label_config_is_a_single_choice_over_the_classes_in_order() -> None:
    classes = ["T-shirt/top", "dog & co", 'say "hi"', "<b>", "oiseau ü", "it's"]
    assert _choices(label_config(classes)) == classes


@given(st.lists(st.text(st.characters(min_codepoint=32, exclude_categories=["Cs"]), min_size=1)
                .filter(str.strip), min_size=1, max_size=6, unique=True))
@settings(max_examples=60, deadline=None)
def test_label_config_gives_back_any_class_names(classes: list[str]) -> None:
    assert _choices(label_config(classes)) == classes


@pytest.mark.parametrize("classes, message", [
    ([], "at least one"), ("cat", "at least one"), (["cat", "cat"], "given twice"), (["cat", ""], "empty"),
    ([" "], "empty"), (["a\tb"], "control character"), ([3], "not text")])
def test_label_config_refuses_bad_classes(classes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        label_config(classes)


def test_config_command_prints_it_and_refuses_duplicates(capsys) -> None:
    assert main(["config", "cat", "dog & co"]) == 0
    assert _choices(capsys.readouterr().out) == ["cat", "dog & co"]
    with pytest.raises(SystemExit) as exc:
        main(["config", "cat", "cat"])
    assert exc.value.code == 2 and "given twice" in capsys.readouterr().err


# ----------------------------------------------------------------------------- image URLs
def test_local_files_url_quotes_spaces_unicode_and_query_characters() -> None:
    # the very URL a real Label Studio served this PNG from (test_labelstudio_server.py)
    assert local_files_url("pool/sub dir/ä 1.png") == "/data/local-files/?d=pool/sub%20dir/%C3%A4%201.png"
    url = local_files_url("a&b=c/#1?.png")
    assert parse_qs(urlsplit(url).query) == {"d": ["a&b=c/#1?.png"]}
    assert local_files_url("x\\y.png") == "/data/local-files/?d=x/y.png"


@pytest.mark.parametrize("bad", ["", " ", "/etc/passwd", "../x.png", "a/../../b.png"])
def test_local_files_url_refuses_paths_that_leave_the_root(bad: str) -> None:
    with pytest.raises(ValueError, match="image path"):
        local_files_url(bad)


def test_image_url_factories() -> None:
    assert local_files("pool")("cats/1 a.png") == "/data/local-files/?d=pool/cats/1%20a.png"
    assert local_files()("1.png") == local_files("/")("1.png") == "/data/local-files/?d=1.png"
    assert url_prefix("https://files.example.org/pool/")("ä b.png") == "https://files.example.org/pool/%C3%A4%20b.png"
    assert unquote(url_prefix("/static")("x y/z.png")) == "/static/x y/z.png"
    with pytest.raises(ValueError, match="must start with"):
        url_prefix("files.example.org")
    with pytest.raises(ValueError, match="stay inside"):
        local_files("../up")
    with pytest.raises(ValueError, match="stay inside"):
        url_prefix("https://h")("../x.png")


# ---------------------------------------------------------------------------------- tasks
ROWS = [TaskRow(id=7, path="sub dir/ä 1.png", score=0.25, predicted="dog & co", probability=0.6, round=3),
        TaskRow(id=2, path="b.png", score=1.5, predicted="cat", probability=0.9, round=3)]


def test_write_tasks_writes_the_agreed_task_shape(tmp_path: Path) -> None:
    out = tmp_path / "tasks.json"
    write_tasks(out, ROWS, local_files("pool"))
    raw = out.read_bytes()
    assert "ä".encode() in raw  # UTF-8, not \u escapes
    tasks = json.loads(raw.decode("utf-8"))
    assert tasks[0] == {
        "data": {"image": "/data/local-files/?d=pool/sub%20dir/%C3%A4%201.png", "tidal_id": 7, "path": "sub dir/ä 1.png",
                 "tidal_score": 0.25},
        "predictions": [{"model_version": "tidal round 3", "score": 0.5, "result": [
            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["dog & co"]}}]}]}
    assert [t["data"]["tidal_id"] for t in tasks] == [7, 2]
    # Label Studio serves the lowest prediction score first: the most informative (1.5) gets 0
    assert [t["predictions"][0]["score"] for t in tasks] == [0.5, 0.0]
    assert [t["data"]["tidal_score"] for t in tasks] == [0.25, 1.5]  # the raw TiDAL score stays in the data


def test_queue_scores_are_one_minus_the_percentile_rank() -> None:
    # hand-computed: n = 4, ranked 3.0 > 2.0 (first given) > 2.0 > -1.0: positions 0..3 over 4
    assert queue_scores([2.0, -1.0, 3.0, 2.0]) == [0.25, 0.75, 0.0, 0.5]
    assert queue_scores([7.0]) == [0.0]
    assert queue_scores([]) == []
    scores = [0.3, 9.0, -2.0, 4.5, 4.4]
    q = queue_scores(scores)
    assert all(0.0 <= v < 1.0 for v in q)
    assert sorted(range(5), key=lambda i: q[i]) == sorted(range(5), key=lambda i: -scores[i])  # same order, reversed
    with pytest.raises(ValueError, match="nan is not a finite"):
        queue_scores([1.0, float("nan")])


def test_write_tasks_without_a_model_has_no_prediction(tmp_path: Path) -> None:
    out = tmp_path / "tasks.json"
    write_tasks(out, [TaskRow(id=0, path="a.png", score=float("nan"), predicted="", probability=0.0, round=1)],
                url_prefix("http://localhost:8000"))
    assert json.loads(out.read_text()) == [{"data": {"image": "http://localhost:8000/a.png", "tidal_id": 0,
                                                     "path": "a.png"}}]


def test_write_tasks_is_atomic_and_refuses_bad_rows(tmp_path: Path) -> None:
    out = tmp_path / "tasks.json"
    write_tasks(out, ROWS, local_files())
    before = out.read_bytes()
    bad = [ROWS[0], TaskRow(id=3, path="c.png", score=float("inf"), predicted="cat", probability=1.0, round=3)]
    with pytest.raises(ValueError, match="score inf"):
        write_tasks(out, bad, local_files())
    with pytest.raises(ValueError, match="not an integer"):
        write_tasks(out, [TaskRow(id="3", path="c.png", score=1, predicted="cat", probability=1, round=3)], local_files())
    with pytest.raises(ValueError, match="stay inside"):
        write_tasks(out, [TaskRow(id=3, path="../c.png", score=1, predicted="cat", probability=1, round=3)], local_files())
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["tasks.json"]  # no temporary file left behind


# --------------------------------------------------------------------------------- exports
def _annotation(ident: int, choices: list[str] | None, updated: str, cancelled: bool = False, name: str = "label") -> dict:
    result = [] if choices is None else [{"value": {"choices": choices}, "id": f"r{ident}", "from_name": name,
                                          "to_name": "image", "type": "choices", "origin": "manual"}]
    return {"id": ident, "completed_by": 1, "result": result, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": updated, "updated_at": updated, "lead_time": 3.2, "task": 1, "project": 1}


def _task(ident: int, tidal_id: object, path: object, annotations: list[dict]) -> dict:
    return {"id": ident, "annotations": annotations, "drafts": [], "predictions": [ident],
            "data": {"image": "/data/local-files/?d=pool/x.png", "tidal_id": tidal_id, "path": path},
            "meta": {}, "created_at": "2026-11-26T20:41:38.049891Z", "updated_at": "2026-11-26T20:41:39.946799Z",
            "inner_id": ident, "total_annotations": len(annotations), "cancelled_annotations": 0, "project": 1}


def _write(tmp_path: Path, name: str, content: object) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def _labels(answers: list[Answer]) -> dict:
    return {(a.tidal_id, a.path): a.label for a in answers}


def test_json_export_takes_the_most_recent_non_cancelled_choice(tmp_path: Path) -> None:
    tasks = [
        # listed newest first: the later updated_at wins, whatever the order
        _task(1, 10, "a.png", [_annotation(2, ["dog & co"], "2026-11-26T20:41:39.918587Z"),
                               _annotation(1, ["cat"], "2026-11-26T20:41:38.701454Z")]),
        _task(2, 11, "sub dir/ä 1.png", [_annotation(3, ["cat"], "2026-11-26T20:41:38Z"),
                                         _annotation(4, None, "2026-11-26T20:42:00Z", cancelled=True)]),
        _task(3, 12, "c.png", [_annotation(5, None, "2026-11-26T20:41:40Z", cancelled=True)]),  # only skipped
        _task(4, 13, "d.png", []),  # not annotated
        _task(5, 14, "e.png", [_annotation(6, None, "2026-11-26T20:41:41Z")]),  # submitted with no choice
        _task(6, None, "f.png", [_annotation(7, ["bird ü"], "2026-11-26T20:41:42.1+00:00")]),  # path only
    ]
    answers = read_export(_write(tmp_path, "export.json", tasks))
    assert _labels(answers) == {(10, "a.png"): "dog & co", (11, "sub dir/ä 1.png"): "cat", (None, "f.png"): "bird ü"}
    assert answers.skipped == 3 and answers.format == "JSON"
    assert [a.where for a in answers] == ["export.json:item 1", "export.json:item 2", "export.json:item 6"]


def test_json_export_ignores_other_controls_beside_the_label(tmp_path: Path) -> None:
    ann = _annotation(1, ["cat"], "2026-11-26T20:41:38Z")
    ann["result"].append({"value": {"text": ["blurry"]}, "from_name": "comment", "to_name": "image", "type": "textarea"})
    assert _labels(read_export(_write(tmp_path, "e.json", [_task(1, 5, "a.png", [ann])]))) == {(5, "a.png"): "cat"}


@pytest.mark.parametrize("task, message", [
    (_task(1, 5, "a.png", [_annotation(1, ["cat", "dog"], "2026-11-26T20:41:38Z")]), r"e.json:item 2: 2 classes chosen"),
    (_task(1, None, None, [_annotation(1, ["cat"], "2026-11-26T20:41:38Z")]), r"e.json:item 2: no tidal_id and no path"),
    (_task(1, None, "", []), r"item 2: no tidal_id and no path"),
    (_task(1, "seven", "a.png", []), r"item 2: tidal_id 'seven' is not a whole number"),
    (_task(1, 2.5, "a.png", []), r"tidal_id 2.5 is not a whole number"),
    (_task(1, 5, "a.png", [_annotation(1, ["cat"], "2026-11-26T20:41:38Z", name="class")]), r"named 'class', not 'label'"),
    ({"id": 1, "annotations": {"x": 1}, "data": {"tidal_id": 1}}, r"'annotations' is dict"),
    ({"id": 1, "annotations": [], "data": "a.png"}, r"no data object"),
    ({"data": {"image": "/data/local-files/?d=a.png", "tidal_id": 1, "path": "a.png"}}, r"tasks file"),
    ([1, 2], r"item 2 is list, not a task object"),
])
def test_json_export_refuses_bad_tasks_quoting_file_and_item(tmp_path: Path, task, message: str) -> None:
    good = _task(9, 1, "ok.png", [_annotation(9, ["cat"], "2026-11-26T20:41:38Z")])
    with pytest.raises(ValueError, match=message):
        read_export(_write(tmp_path, "e.json", [good, task]))


# JSON-MIN as Label Studio writes it: one row per annotation (the task's data fields, the choice
# under "label", the annotation's times); an unannotated task is a row without "label"; cancelled
# annotations are left out.
JSON_MIN = """[
{
  "image": "\\/data\\/local-files\\/?d=pool\\/sub%20dir\\/%C3%A4%201.png",
  "tidal_id": 0,
  "path": "sub dir\\/\u00e4 1.png",
  "id": 1,
  "label": "cat",
  "annotator": 1,
  "annotation_id": 2,
  "created_at": "2026-11-26T20:41:39.918560Z",
  "updated_at": "2026-11-26T20:41:39.918587Z",
  "lead_time": null
},
{
  "image": "\\/data\\/local-files\\/?d=pool\\/sub%20dir\\/%C3%A4%201.png",
  "tidal_id": 0,
  "path": "sub dir\\/\u00e4 1.png",
  "id": 1,
  "label": "dog & co",
  "annotator": 1,
  "annotation_id": 1,
  "created_at": "2026-11-26T20:41:38.701426Z",
  "updated_at": "2026-11-26T20:41:38.701454Z",
  "lead_time": null
},
{
  "image": "\\/data\\/local-files\\/?d=pool\\/b.png",
  "tidal_id": "3",
  "path": "b.png",
  "id": 2,
  "label": {"choices": ["bird \u00fc"]},
  "annotator": 1,
  "annotation_id": 4,
  "created_at": "2026-11-26T20:41:47.546035Z",
  "updated_at": "2026-11-26T20:41:47.546085Z",
  "lead_time": 2.5
},
{
  "image": "\\/data\\/local-files\\/?d=pool\\/c.png",
  "tidal_id": 2,
  "path": "c.png",
  "id": 3,
  "annotator": null,
  "annotation_id": null,
  "created_at": null,
  "updated_at": null,
  "lead_time": null
}
]"""


def test_json_min_export_keeps_the_latest_row_of_each_task(tmp_path: Path) -> None:
    answers = read_export(_write(tmp_path, "export.json", JSON_MIN))
    assert _labels(answers) == {(0, "sub dir/ä 1.png"): "cat", (3, "b.png"): "bird ü"}
    assert answers.skipped == 1 and answers.format == "JSON-MIN"
    assert [a.where for a in answers] == ["export.json:item 1", "export.json:item 3"]


def test_json_min_rows_without_task_ids_are_kept_apart(tmp_path: Path) -> None:
    rows = [{"tidal_id": 1, "label": "cat"}, {"tidal_id": 1, "label": "dog"}, {"path": "x.png", "label": "cat"}]
    assert [(a.tidal_id, a.path, a.label) for a in read_export(_write(tmp_path, "m.json", rows))] == [
        (1, None, "cat"), (1, None, "dog"), (None, "x.png", "cat")]  # the caller sees the conflict


@pytest.mark.parametrize("row, message", [
    ({"tidal_id": 1, "id": 5, "label": {"choices": ["cat", "dog"]}}, r"m.json:item 2: 2 classes chosen \['cat', 'dog'\]"),
    ({"id": 5, "label": "cat", "image": "/data/local-files/?d=a.png"}, r"m.json:item 2: no tidal_id and no path"),
    ({"tidal_id": True, "label": "cat"}, r"tidal_id True is not a sample id"),
    ({"tidal_id": 1, "label": 3}, r"the label 3 is not a class name"),
    ({"tidal_id": 1, "label": {"choices": "cat"}}, r"is not a class name"),
])
def test_json_min_export_refuses_bad_rows(tmp_path: Path, row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_export(_write(tmp_path, "m.json", [{"tidal_id": 0, "id": 1, "label": "cat"}, row]))


# The CSV export of the same project: a header of the JSON-MIN keys, sorted; several choices as
# a JSON text in the label cell.
CSV = ('"annotation_id","annotator","created_at","id","image","label","lead_time","path","tidal_id","updated_at"\n'
       '2,"1","2026-11-26T20:41:39.918560Z",1,"/data/local-files/?d=pool/sub%20dir/%C3%A4%201.png","cat","",'
       '"sub dir/ä 1.png",0,"2026-11-26T20:41:39.918587Z"\n'
       '1,"1","2026-11-26T20:41:38.701426Z",1,"/data/local-files/?d=pool/sub%20dir/%C3%A4%201.png","dog & co","",'
       '"sub dir/ä 1.png",0,"2026-11-26T20:41:38.701454Z"\n'
       '"","","",3,"/data/local-files/?d=pool/c.png","","","c.png",2.0,""\n'
       '5,"1","2026-11-26T20:43:00Z",4,"/data/local-files/?d=pool/d.png","bird ü","","d.png",4.0,"2026-11-26T20:43:00Z"\n')


def test_csv_export(tmp_path: Path) -> None:
    answers = read_export(_write(tmp_path, "export.csv", CSV))
    assert _labels(answers) == {(0, "sub dir/ä 1.png"): "cat", (4, "d.png"): "bird ü"}
    assert answers.skipped == 1 and answers.format == "CSV"
    assert [a.where for a in answers] == ["export.csv:line 2", "export.csv:line 5"]


def test_csv_export_with_bom_windows_line_ends_and_tabs(tmp_path: Path) -> None:
    crlf = "\ufeff" + CSV.replace("\n", "\r\n")
    assert _labels(read_export(_write(tmp_path, "a.csv", crlf.encode("utf-8")))) == _labels(
        read_export(_write(tmp_path, "b.csv", CSV)))
    tsv = "tidal_id\tpath\tlabel\n1\ta b.png\tcat\n2\tc.png\t\n"
    answers = read_export(_write(tmp_path, "export.tsv", tsv))
    assert _labels(answers) == {(1, "a b.png"): "cat"} and answers.format == "TSV" and answers.skipped == 1


@pytest.mark.parametrize("text, message", [
    ('id,label\n3,cat\n', r"x.csv:line 1: the header 'id,label' needs .* 'tidal_id' or 'path'"),
    ('tidal_id,path,choice\n3,a.png,cat\n', r"needs a 'label' column"),
    ('tidal_id,label\n3,cat\nthree,dog\n', r"x.csv:line 3: tidal_id 'three' is not a whole number"),
    ('tidal_id,label\n3,"{""choices"":[""cat"",""dog""]}"\n', r"x.csv:line 2: 2 classes chosen"),
    ('tidal_id,path,label\n,,cat\n', r"x.csv:line 2: no tidal_id and no path"),
    ('tidal_id,label\n3,"cat\n', r"x.csv:line \d+: unreadable CSV"),
])
def test_csv_export_refuses_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        read_export(_write(tmp_path, "x.csv", text))


def test_csv_one_choice_as_json_text_is_accepted(tmp_path: Path) -> None:
    text = 'tidal_id,label\n3,"{""choices"":[""cat""]}"\n4,"{not json"\n'
    assert [(a.tidal_id, a.label) for a in read_export(_write(tmp_path, "x.csv", text))] == [(3, "cat"), (4, "{not json")]


@pytest.mark.parametrize("content, error, message", [
    (b"", ValueError, "is empty"),
    (b" \n\t", ValueError, "is empty"),
    (b"\xff\xfe[]", ValueError, "not UTF-8"),
    (b'[{"id": 1,', ValueError, r"line 1: invalid JSON"),
    (b'{"tasks": []}', ValueError, "JSON dict, not a list of tasks"),
])
def test_unreadable_exports(tmp_path: Path, content: bytes, error: type, message: str) -> None:
    path = _write(tmp_path, "export.json", content)
    with pytest.raises(error, match=message) as exc:
        read_export(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("content, message", [
    ("[" * 100_000 + "]" * 100_000, r"export.json: JSON nested too deeply to read"),
    ('[{"id": 1' + "1" * 5000 + ', "tidal_id": 0, "label": "cat"}]', r"export.json: unreadable JSON \(Exceeds"),
    ([{"id": [1, 2], "tidal_id": 0, "label": "cat"}], r"export.json:item 1: the task id \[1, 2\] is a list"),
    ([{"id": {"a": 1}, "tidal_id": 0, "label": "cat"}], r"export.json:item 1: the task id \{\"a\": 1\} is an object"),
    ([{"id": [1], "data": {"tidal_id": 0}, "annotations": []}], r"export.json:item 1: the task id \[1\] is a list"),
    ("tidal_id,label\n0,\"" + '{""a"":' * 20_000 + "1" + "}" * 20_000 + '"\n',
     r"export.json:line 2: the label is JSON nested too deeply"),
])
def test_hostile_exports_are_refused_in_one_line(tmp_path: Path, content, message: str) -> None:
    """Issue 21, case 10: deep nesting, huge numbers and list or object task ids (no RecursionError, TypeError)."""
    with pytest.raises(ValueError, match=message) as exc:
        read_export(_write(tmp_path, "export.json", content))
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 400


def test_a_tsv_export_with_annotation_columns(tmp_path: Path) -> None:
    tsv = CSV.replace('","', "\t").replace(",", "\t").replace('"', "")
    answers = read_export(_write(tmp_path, "export.tsv", tsv))
    assert answers.format == "TSV" and _labels(answers) == _labels(read_export(_write(tmp_path, "e.csv", CSV)))


def test_missing_export(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_export(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="is a directory, not a file"):
        read_export(tmp_path)


def test_an_empty_export_has_no_answers(tmp_path: Path) -> None:
    answers = read_export(_write(tmp_path, "export.json", "[]"))
    assert answers == [] and answers.skipped == 0


def test_tasks_written_then_annotated_come_back(tmp_path: Path) -> None:
    """write_tasks -> (a labeller answers every task with the model's guess) -> read_export."""
    write_tasks(tmp_path / "tasks.json", ROWS, local_files("pool"))
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    export = [dict(t, id=n, annotations=[_annotation(n, t["predictions"][0]["result"][0]["value"]["choices"],
                                                     "2026-11-26T20:41:38Z")]) for n, t in enumerate(tasks)]
    answers = read_export(_write(tmp_path, "export.json", export))
    assert [(a.tidal_id, a.path, a.label) for a in answers] == [(r.id, r.path, r.predicted) for r in ROWS]
