"""Label Studio in and out: the labelling config, a round's ``tasks.json``, and reading exports back.

Label Studio (https://labelstud.io) is what most teams label images with. A tidal round hands
it work and takes the answers back through three plain files, so no server is needed here:

* :func:`label_config` — the project's labelling config: one image, one single choice among
  the classes, under the control name ``label`` (``python -m tidal.project.labelstudio config
  CLASS...`` prints it).
* :func:`write_tasks` — a round's tasks: each image's URL, its tidal id, pool path and TiDAL
  score, and the model's guess as a *prediction* whose ``score`` is :func:`queue_scores`' value
  in [0, 1], LOWEST = most informative, the direction in which Label Studio's "Uncertainty
  sampling" serves tasks (and in which its Data Manager sorts them, ascending).
* :func:`read_export` — the answers of a Label Studio export, in any of the three formats a
  user is likely to click: JSON (the full tasks with their annotations), JSON-MIN (one flat row
  per annotation) and CSV/TSV (the same rows as a table).

Images reach the browser through Label Studio's *local files* serving: start Label Studio with

    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/data        # a folder ABOVE the pool, e.g. /data/pool

and add a Local Storage (Source, not synced) to the project whose path is the pool folder.
Label Studio serves a file only from under such a storage, and refuses a storage whose path is
the document root itself: the pool must be a subfolder of the root. :func:`local_files_url`
names an image by its path relative to the document root (``local_files("pool")`` builds the
``image_url`` for a pool at ``/data/pool``). Images already on a web server use
:func:`url_prefix` instead.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tidal.io import atomic_write_text

__all__ = ["Answer", "ExportAnswers", "TaskRow", "label_config", "local_files", "local_files_url", "model_version",
           "prediction", "queue_scores", "read_export", "url_prefix", "write_tasks"]

CONTROL = "label"  # the Choices tag's name: the from_name of every answer
IMAGE = "image"  # the Image tag's name (to_name) and the task data key it reads ($image)
LOCAL_FILES = "/data/local-files/?d="  # Label Studio's URL for a file under its document root


# --------------------------------------------------------------------------------- the config
def label_config(classes: Sequence[str]) -> str:
    """Label Studio's labelling config (XML) for a single choice among ``classes``, in order.

    Class names are XML-escaped (``&``, ``<``, quotes are fine); an empty list, an empty or
    blank name, a name with control characters and a name given twice are refused.
    """
    if isinstance(classes, str) or not classes:
        raise ValueError(f"classes={classes!r}: give a list of at least one class name, e.g. ['cat', 'dog']")
    seen: set[str] = set()
    for c in classes:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"class name {c!r} is empty or not text; give every class a name")
        if any(ord(ch) < 32 for ch in c):
            raise ValueError(f"class name {c!r} has a control character (tab, newline, ...); remove it")
        if c in seen:
            raise ValueError(f"class {c!r} is given twice in {list(classes)}; give each class once")
        seen.add(c)
    choices = "".join(f'    <Choice value="{escape(c, quote=True)}"/>\n' for c in classes)
    return (f'<View>\n  <Image name="{IMAGE}" value="${IMAGE}"/>\n'
            f'  <Choices name="{CONTROL}" toName="{IMAGE}" choice="single" showInLine="true">\n'
            f'{choices}  </Choices>\n</View>\n')


# -------------------------------------------------------------------------------- image URLs
def _relative(path: str) -> PurePosixPath:
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"image path {path!r} is empty; give a path relative to the pool root")
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts:
        raise ValueError(f"image path {path!r} must be relative and stay inside its root (no leading '/', no '..')")
    return p


def local_files_url(root_env_relative: str) -> str:
    """The URL of an image served by Label Studio's local files storage.

    ``root_env_relative`` is the image's path relative to ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``
    (e.g. ``pool/cats/ä 1.png``); the result is ``/data/local-files/?d=pool/cats/%C3%A4%201.png``.
    """
    return LOCAL_FILES + quote(_relative(root_env_relative).as_posix(), safe="/")


def local_files(pool_under_root: str = "") -> Callable[[str], str]:
    """``image_url`` for :func:`write_tasks` when the pool is the folder ``pool_under_root`` of the
    document root (``""``: the pool root is the document root itself)."""
    under = _relative(pool_under_root) if pool_under_root.strip("/ ") else PurePosixPath()
    return lambda path: local_files_url((under / _relative(path)).as_posix())


def url_prefix(prefix: str) -> Callable[[str], str]:
    """``image_url`` for images already served over HTTP(S): ``prefix`` + the URL-quoted pool path,
    e.g. ``url_prefix("https://files.example.org/pool")("cats/1.png")``."""
    if not isinstance(prefix, str) or not prefix.startswith(("http://", "https://", "/")):
        raise ValueError(f"URL prefix {prefix!r} must start with http://, https:// or /")
    base = prefix.rstrip("/")
    return lambda path: f"{base}/{quote(_relative(path).as_posix(), safe='/')}"


# ------------------------------------------------------------------------------------- tasks
@dataclass
class TaskRow:
    """One selected sample of a round, as a Label Studio task."""

    id: int  # the project's stable sample id
    path: str  # the sample's path relative to the pool root (POSIX separators)
    score: float  # its acquisition score, higher = more informative
    predicted: str  # the model's class; "" when there is no model yet (a random first round)
    probability: float  # the model's probability of that class, in [0, 1]
    round: int  # the round that selected it (1, 2, ...)


def model_version(round: int) -> str:
    """The ``model_version`` of round ``round``'s predictions (and of the Label Studio project while
    that round is labelled): ``"tidal round R"``."""
    return f"tidal round {round}"


def queue_scores(scores: Sequence[float]) -> list[float]:
    """Label Studio's prediction ``score`` of each candidate: one minus its percentile rank.

    ``scores`` are the candidates' acquisition scores (higher = more informative, finite). The
    result is in [0, 1) and the LOWEST value goes to the MOST informative candidate, because
    Label Studio's "Uncertainty sampling" serves the task with the lowest prediction score first
    (it reads the score as the model's confidence, and shows it as a percentage). With the
    candidates sorted most informative first (ties kept in the order given, which is tidal's
    ranking order), the one at position ``p`` (0-based) of ``n`` gets ``p / n``: the top one 0,
    the last ``1 - 1/n``. The raw score stays in the task's data (``tidal_score``).
    """
    values = [float(s) for s in scores]
    bad = [s for s in values if not math.isfinite(s)]
    if bad:
        raise ValueError(f"score {bad[0]} is not a finite number; every candidate needs a finite acquisition score")
    n = len(values)
    order = sorted(range(n), key=lambda i: -values[i])  # stable: ties keep their given order
    out = [0.0] * n
    for position, i in enumerate(order):
        out[i] = position / n
    return out


def _task(row: TaskRow, image_url: Callable[[str], str], queue_score: float | None) -> dict:
    if isinstance(row.id, bool) or not isinstance(row.id, int):
        raise ValueError(f"task id {row.id!r} (path {row.path!r}) is not an integer sample id")
    task: dict = {"data": {IMAGE: image_url(row.path), "tidal_id": row.id, "path": row.path}}
    if row.predicted:  # a round chosen by a model: its guess, scored so Label Studio serves the best first
        if not math.isfinite(row.score):
            raise ValueError(f"task {row.id} ({row.path!r}) has score {row.score}; scores must be finite numbers")
        task["data"]["tidal_score"] = float(row.score)
        task["predictions"] = [prediction(row.predicted, queue_score, model_version(row.round))]
    return task


def prediction(predicted: str, score: float, version: str) -> dict:
    """One Label Studio prediction: the class ``predicted`` pre-selected, with ``score`` in [0, 1]
    (:func:`queue_scores`) and ``model_version``."""
    return {"model_version": version, "score": float(score),
            "result": [{"from_name": CONTROL, "to_name": IMAGE, "type": "choices",
                        "value": {"choices": [predicted]}}]}


def write_tasks(path: Path, rows: Sequence[TaskRow], image_url: Callable[[str], str]) -> None:
    """Write ``rows`` as Label Studio tasks (a JSON list, UTF-8) to ``path``, atomically.

    Each task is ``{"data": {"image": image_url(path), "tidal_id": id, "path": path,
    "tidal_score": score}, "predictions": [{"model_version": "tidal round R", "score": q,
    "result": [the predicted choice]}]}`` where ``q`` is :func:`queue_scores`' value (in [0, 1],
    lowest = most informative); a row without a predicted class (a random round) gets no
    prediction and no ``tidal_score``.
    """
    scored = [r for r in rows if r.predicted]
    for r in scored:
        if not math.isfinite(r.score):
            raise ValueError(f"task {r.id} ({r.path!r}) has score {r.score}; scores must be finite numbers")
    q = dict(zip((id(r) for r in scored), queue_scores([r.score for r in scored]))) if scored else {}
    tasks = [_task(r, image_url, q.get(id(r))) for r in rows]
    atomic_write_text(Path(path), json.dumps(tasks, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------------- exports
@dataclass
class Answer:
    """One label read from an export."""

    tidal_id: int | None  # the sample id the task carried (data.tidal_id), or None
    path: str | None  # the pool path the task carried (data.path), or None
    label: str  # the chosen class
    where: str  # "file:item N" (JSON) or "file:line N" (CSV), for error messages


class ExportAnswers(list):
    """The answers of an export (a ``list[Answer]``), one per task, plus what was left out.

    ``skipped``: tasks (JSON) or rows (JSON-MIN, CSV) without an answer — not annotated, only
    cancelled ("skipped") annotations, or an annotation with no choice; ``format``: "JSON",
    "JSON-MIN", "CSV" or "TSV".
    """

    def __init__(self, answers: Sequence[Answer] = (), skipped: int = 0, format: str = "") -> None:
        super().__init__(answers)
        self.skipped = skipped
        self.format = format


def _when(record: dict) -> float:
    """The record's ``updated_at`` (or ``created_at``) as a POSIX time; -inf when absent or unreadable."""
    for key in ("updated_at", "created_at"):
        value = record.get(key)
        if isinstance(value, str) and value:
            try:
                t = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()
    return -math.inf


def _tidal_id(value: object, where: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{where}: tidal_id {value!r} is not a sample id")
    if isinstance(value, int):
        return value
    try:
        number = float(value)  # "12", 12.0 and "12.0" (a CSV column with gaps) are all 12
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number)):
        raise ValueError(f"{where}: tidal_id {value!r} is not a whole number; the tasks must come from tidal's tasks.json")
    return int(number)


def _choices(value: object, where: str) -> list[str]:
    """The chosen classes of a JSON-MIN/CSV ``label`` cell or an annotation's ``value``.

    A single choice is exported as the class itself; several as ``{"choices": [...]}`` (a JSON
    text in CSV).
    """
    if value is None:
        return []
    if isinstance(value, str):
        if value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except RecursionError:
                raise ValueError(f"{where}: the label is JSON nested too deeply to read, not a class name; export "
                                 "the project from Label Studio again") from None
            except ValueError:  # not JSON after all: a class name starting with "{"
                return [value]
        else:
            return [value] if value.strip() else []
    if isinstance(value, dict):
        value = value.get("choices", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: the label {value!r} is not a class name; export a project whose config is "
                         "the one tidal prints (a single choice named 'label')")
    return value


def _one(choices: list[str], where: str) -> str:
    if len(choices) > 1:
        raise ValueError(f"{where}: {len(choices)} classes chosen {choices}; choose one per image (the config's "
                         "choice=\"single\") and export again")
    return choices[0]


def _ids(data: dict, where: str) -> tuple[int | None, str | None]:
    tidal_id = _tidal_id(data.get("tidal_id"), where)
    path = data.get("path")
    path = path if isinstance(path, str) and path.strip() else None
    if tidal_id is None and path is None:
        raise ValueError(f"{where}: no tidal_id and no path; import tidal's rounds/NNN/tasks.json into Label "
                         "Studio (its tasks carry both) and export again")
    return tidal_id, path


def _annotation_choices(annotation: dict, where: str) -> list[str]:
    """The classes chosen under the ``label`` control in one annotation of the full JSON export."""
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise ValueError(f"{where}: an annotation's result is {type(results).__name__}, not a list; is this a "
                         "Label Studio JSON export?")
    chosen: list[str] = []
    others: list[str] = []
    for r in results:
        if not isinstance(r, dict) or r.get("type") != "choices":
            continue
        if r.get("from_name") == CONTROL:
            chosen += [c for c in _choices(r.get("value"), where) if c not in chosen]
        else:
            others.append(str(r.get("from_name")))
    if not chosen and others:
        raise ValueError(f"{where}: the choices are named {others[0]!r}, not {CONTROL!r}; create the Label Studio "
                         "project with the config tidal prints")
    return chosen


def _from_json_task(task: dict, where: str) -> tuple[Answer | None, float]:
    """The answer of one task of the full JSON export: its most recent non-cancelled annotation's choice."""
    data = task.get("data")
    if not isinstance(data, dict):
        raise ValueError(f"{where}: the task has no data object; is this a Label Studio JSON export?")
    tidal_id, path = _ids(data, where)
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(f"{where}: 'annotations' is {type(annotations).__name__}, not a list; is this a Label "
                         "Studio JSON export?")
    best: tuple[float, int, str] | None = None
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict) or ann.get("was_cancelled"):
            continue
        chosen = _annotation_choices(ann, where)
        if chosen:
            key = (_when(ann), n, _one(chosen, where))
            best = key if best is None or key[:2] > best[:2] else best
    if best is None:
        return None, -math.inf
    return Answer(tidal_id, path, best[2], where), best[0]


def _from_row(row: dict, where: str) -> tuple[Answer | None, float]:
    """The answer of one JSON-MIN or CSV row (one annotation; an unannotated task has no label)."""
    tidal_id, path = _ids(row, where)
    chosen = _choices(row.get(CONTROL), where)
    if not chosen:
        return None, -math.inf
    return Answer(tidal_id, path, _one(chosen, where), where), _when(row)


def _latest(rows: list[tuple[object, Answer | None, float]]) -> ExportAnswers:
    """One answer per task: among rows of the same Label Studio task, the most recent labelled one."""
    tasks: dict[object, None] = {}  # every task, in order of first appearance
    best: dict[object, tuple[Answer, float]] = {}
    for key, answer, when in rows:
        tasks.setdefault(key)
        if answer is not None and (key not in best or when > best[key][1]):
            best[key] = (answer, when)
    return ExportAnswers([best[k][0] for k in tasks if k in best], skipped=sum(k not in best for k in tasks))


def _task_id(value: object, where: str) -> object:
    """A task's Label Studio ``id`` (a number or text), which groups the rows of one task."""
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        raise ValueError(f"{where}: the task id {text[:40] + ('...' if len(text) > 40 else '')} is "
                         f"{'a list' if isinstance(value, list) else 'an object'}, not a number; export the project "
                         "from Label Studio again")
    return value


def _read_json(path: Path, items: object) -> ExportAnswers:
    if not isinstance(items, list):
        raise ValueError(f"{path} holds a JSON {type(items).__name__}, not a list of tasks; export the project from "
                         "Label Studio as JSON, JSON-MIN or CSV")
    rows: list[tuple[object, Answer | None, float]] = []
    full = 0
    for n, item in enumerate(items, start=1):
        where = f"{path.name}:item {n}"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is {type(item).__name__}, not a task object; export the project from Label "
                             "Studio as JSON, JSON-MIN or CSV")
        if "annotations" in item:
            full += 1
            answer, when = _from_json_task(item, where)
            rows.append((("task", _task_id(item.get("id", n), where)), answer, when))
        elif isinstance(item.get("data"), dict):
            raise ValueError(f"{where} is a task without annotations: this is a tasks file (like tasks.json), not "
                             "an export; export the project from Label Studio after labelling")
        else:
            answer, when = _from_row(item, where)
            rows.append((("task", _task_id(item["id"], where)) if "id" in item else ("row", n), answer, when))
    answers = _latest(rows)
    answers.format = "JSON" if full else "JSON-MIN"
    return answers


def _read_table(path: Path, text: str) -> ExportAnswers:
    first = text.split("\n", 1)[0]
    fmt, delimiter = ("TSV", "\t") if first.count("\t") > first.count(",") else ("CSV", ",")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = [h.strip() for h in (reader.fieldnames or [])]
    if CONTROL not in header or not {"tidal_id", "path"} & set(header):
        raise ValueError(f"{path}:line 1: the header {delimiter.join(header)!r} needs a {CONTROL!r} column and a "
                         "'tidal_id' or 'path' column; export a project made from tidal's tasks.json as CSV")
    reader.fieldnames = header
    rows: list[tuple[object, Answer | None, float]] = []
    try:
        for n, row in enumerate(reader, start=1):
            where = f"{path.name}:line {reader.line_num}"
            if not any(v for k, v in row.items() if k is not None):
                continue  # a blank line
            answer, when = _from_row(row, where)
            task = row.get("id")
            rows.append((("task", task) if task else ("row", n), answer, when))
    except csv.Error as exc:
        raise ValueError(f"{path}:line {reader.line_num}: unreadable {fmt} ({exc}); export it again") from None
    answers = _latest(rows)
    answers.format = fmt
    return answers


def read_export(path: Path) -> ExportAnswers:
    """The answers of a Label Studio export of a project made from tidal's ``tasks.json``.

    Reads the three formats Label Studio offers for a classification project:

    * JSON — a list of tasks, each with ``data`` and ``annotations``: the task's most recent
      (``updated_at``) non-cancelled annotation that chose a class gives its label;
    * JSON-MIN — a list of flat rows, the task's data fields plus the choice under ``label``
      (a class name, or ``{"choices": [...]}`` for several), one row per annotation;
    * CSV (or TSV) — the same rows as a table (several choices as a JSON text).

    JSON-MIN and CSV rows of one task (same ``id`` column) keep the most recent one. Tasks or
    rows with no answer are counted in the result's ``skipped``. Raises ``ValueError`` (one
    line quoting the file and its item or line) on an unreadable or unknown format, several
    classes chosen for one image, or a task that carries neither ``tidal_id`` nor ``path``;
    ``FileNotFoundError`` when the file is missing.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"Label Studio export {path} is a directory, not a file; give the exported file itself")
    if not path.is_file():
        raise FileNotFoundError(f"Label Studio export {path} does not exist; export the project (JSON) and give its path")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start}); give the file Label Studio exported "
                         "(JSON, JSON-MIN or CSV)") from None
    if not text.strip():
        raise ValueError(f"{path} is empty; export the project from Label Studio again")
    if text.lstrip()[0] in "[{":
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:line {exc.lineno}: invalid JSON ({exc.msg}), not a Label Studio export; "
                             "export the project again") from None
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply to read, not a Label Studio export (a list of flat "
                             "tasks); export the project again") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise ValueError(f"{path}: unreadable JSON ({exc}), not a Label Studio export; export the project "
                             "again") from None
        return _read_json(path, items)
    return _read_table(path, text)


# ----------------------------------------------------------------------------------- the CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tidal.project.labelstudio config CLASS...``: print the labelling config."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tidal.project.labelstudio",
                                     description="Label Studio helpers for tidal projects.")
    sub = parser.add_subparsers(dest="command", required=True)
    config = sub.add_parser("config", help="print the labelling config (XML) for the classes, to paste into "
                                           "Label Studio's Settings > Labeling Interface > Code")
    config.add_argument("classes", nargs="+", metavar="CLASS", help="the class names, in order")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(label_config(args.classes))
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
