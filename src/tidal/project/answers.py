"""Taking labels back (``tidal label PROJECT FILE``): read, validate everything, then store.

Formats, told apart by their content:

* a plain CSV (or TSV: tabs in the header) with a header naming ``id`` or ``path``, and
  ``label`` (other columns are ignored, so a round's ``to_label.csv`` with its ``label``
  column filled in is one); UTF-8, a BOM and Windows line ends are accepted; rows with an
  empty label are skipped (not answered);
* a Label Studio export: JSON, JSON-MIN (a ``.json`` file, or text starting with ``[``) or
  CSV/TSV (a header with ``tidal_id`` or ``annotation_id``), read by
  :func:`tidal.project.labelstudio.read_export`; tasks without an answer count as blank.

Nothing is stored unless every answer passes: its id or path is in the project (a path
relative to the pool root that does not leave it), its class is one of the project's, no
sample is answered twice in the file, and a sample already labelled keeps its class
(``relabel=True`` lets the file change it). Importing the same file twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tidal.errors import did_you_mean
from tidal.project.store import ProjectStore

__all__ = ["ImportResult", "import_labels", "read_answers"]


class AnswerError(ValueError):
    """A labels file that cannot be imported (one line)."""


@dataclass
class ImportResult:
    new: int  # samples labelled for the first time
    changed: int  # labels replaced (relabel=True)
    unchanged: int  # answers equal to the stored label
    blank: int  # rows without a label (skipped)
    format: str  # "csv", or "Label Studio JSON" (JSON-MIN, CSV, TSV)


def _examples(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _raw_answers(path: Path) -> tuple[list[tuple[int | None, str | None, str, str]], int, str]:
    """``([(id, path, label, where)], blank rows, format)`` from any supported file."""
    from tidal.project.labelstudio import read_export
    from tidal.project.project import read_table, read_utf8

    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".json"))
        raise AnswerError(f"labels file {path} is a directory, not a file; give the labels file itself"
                          + (f", e.g. {path / inside[0]}" if inside else " (a CSV id,label or a Label Studio export)"))
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist")
    text = read_utf8(path).strip()
    if not text:
        raise AnswerError(f"labels file {path} is empty; write a CSV with a header id,label (or path,label) and one "
                          "row per image")
    first = text.split("\n", 1)[0]
    delimiter = "\t" if first.count("\t") > first.count(",") else ","  # a TSV (Label Studio offers one)
    rows = [] if path.suffix.lower() == ".json" or text[0] in "[{" else read_table(path, delimiter)
    if not rows or "tidal_id" in rows[0] or "annotation_id" in rows[0]:  # a Label Studio export
        answers = read_export(path)
        return ([(a.tidal_id, a.path, a.label, a.where) for a in answers], answers.skipped,
                f"Label Studio {answers.format}")
    header = rows[0]
    if "label" not in header or not ({"id", "path"} & set(header)):
        raise AnswerError(f"{path}: the first line must be a header naming id (or path) and label, e.g. id,label; "
                          f"it is {delimiter.join(h for h in header)!r}")
    out, blank = [], 0
    for line, row in enumerate(rows[1:], start=2):
        if not row["_cells"]:
            continue  # an empty line
        where = f"{path.name}:{line}"
        if not row.get("label"):
            blank += 1
            continue
        i = row.get("id") or None
        try:
            ident = int(i) if i is not None else None
        except ValueError:
            raise AnswerError(f"{where}: id {i!r} is not a whole number; ids are the project's sample ids "
                              "(to_label.csv's id column)") from None
        out.append((ident, row.get("path") or None, row["label"], where))
    return out, blank, "csv"


def read_answers(path: str | Path, store: ProjectStore, relabel: bool = False) -> tuple[list[tuple[int, int]], ImportResult]:
    """The ``(id, class index)`` pairs of ``path`` that change the project, validated against ``store``.

    Raises ``ValueError`` (one line naming the file, its line and the fix) for any bad answer;
    then nothing may be stored.
    """
    path = Path(path)
    answers, blank, fmt = _raw_answers(path)
    if not answers:
        raise AnswerError(f"{path} holds no labels ({blank} rows without one); fill in the label column")
    classes = store.classes
    index = {c: i for i, c in enumerate(classes)}
    n = store.num_samples()
    paths = store.paths()
    by_path = {p: i for i, p in enumerate(paths)}
    root = Path(store.meta("pool_root")) if store.meta("pool_root") else None
    resolved, unknown = [], []
    for ident, p, label, where in answers:
        if ident is not None:
            if not 0 <= ident < n:
                unknown.append(f"id {ident} ({where})")
                continue
            if p is not None and _norm(root, p) != paths[ident]:
                raise AnswerError(f"{where}: id {ident} is {paths[ident]!r} in this project but the file says {p!r}; "
                                  "is it a labels file of another project?")
        elif p is not None:
            try:
                rel = _norm(root, p, strict=True)
            except ValueError as exc:
                raise AnswerError(f"{where}: {exc}") from None
            if rel not in by_path:
                unknown.append(f"path {p!r} ({where})")
                continue
            ident = by_path[rel]
        else:
            raise AnswerError(f"{where}: the answer names neither an id nor a path; give one per row")
        resolved.append((ident, label, where))
    if unknown:
        if not resolved:
            raise AnswerError(f"none of the {len(unknown)} answers in {path} names a sample of this project "
                              f"({_examples(unknown)}); is it a labels file of another project? This one has ids "
                              f"0..{n - 1}")
        raise AnswerError(f"{len(unknown)} answers in {path} name no sample of this project: {_examples(unknown)}; "
                          "fix or remove those rows")
    bad = [(label, where) for _, label, where in resolved if label not in index]
    if bad:
        label, where = bad[0]
        raise AnswerError(f"{where}: class {label!r} is not one of the project's classes {classes}"
                          f"{did_you_mean(label, classes)} ({len(bad)} such answers); fix the label (classes "
                          "are fixed when the project is made)")
    seen: dict[int, str] = {}
    for ident, _, where in resolved:
        if ident in seen:
            raise AnswerError(f"{where}: sample {ident} ({paths[ident]}) is answered twice in {path} (also at "
                              f"{seen[ident]}); keep one answer per sample")
        seen[ident] = where
    stored = store.labels()
    changes, new, changed, same = [], 0, 0, 0
    conflicts = []
    for ident, label, where in resolved:
        c = index[label]
        if ident not in stored:
            new += 1
            changes.append((ident, c))
        elif stored[ident] == c:
            same += 1
        else:
            conflicts.append(f"{where}: {paths[ident]} is labelled {classes[stored[ident]]!r}, the file says {label!r}")
            changed += 1
            changes.append((ident, c))
    if conflicts and not relabel:
        raise AnswerError(f"{len(conflicts)} answers change a stored label ({conflicts[0]}); pass --relabel to "
                          "replace them, or fix the file")
    return changes, ImportResult(new, changed, same, blank, fmt)


def _norm(root: Path | None, p: str, strict: bool = False) -> str:
    """A path from a file in the pool's form; for non-folder pools the text itself."""
    from tidal.project.pool import relative_path

    if root is None:
        return p.strip()
    try:
        return relative_path(root, p)
    except ValueError:
        if strict:
            raise
        return p


def import_labels(project: str | Path, file: str | Path, relabel: bool = False) -> ImportResult:
    """Validate ``file`` against ``project`` and store its labels (all or nothing), under the project's lock."""
    from tidal.project.project import open_project

    with open_project(Path(project)) as (store, _):
        changes, result = read_answers(file, store, relabel)
        if changes:
            store.set_labels(changes, source=Path(file).name)
        return result
