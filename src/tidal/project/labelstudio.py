"""STAND-IN for the Label Studio module written on branch ``labelstudio`` (another helper's).

This file only exists so that the workflow (``tidal query`` / ``tidal label``) runs and is
tested before that branch is merged; the lead takes the ``labelstudio`` branch's version of
this file at merge. It keeps exactly the agreed signatures:

``label_config(classes) -> str``            Label Studio's labelling config (XML)
``write_tasks(path, rows, image_url)``      a round's ``tasks.json`` (one task per row)
``read_export(path) -> list[Answer]``       answers from a JSON, JSON-MIN or CSV export
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tidal.io import atomic_write_text

__all__ = ["Answer", "TaskRow", "label_config", "read_export", "write_tasks"]


@dataclass
class TaskRow:
    """One selected sample of a round, as a Label Studio task."""

    id: int  # the project's sample id
    path: str  # the sample's path relative to the pool root
    score: float  # its informativeness score (higher = more informative)
    predicted: str  # the model's class
    probability: float  # the model's probability of that class
    round: int  # the round that selected it


@dataclass
class Answer:
    """One label read from an export."""

    tidal_id: int | None
    path: str | None
    label: str
    where: str  # "file:line" or "file:item N", for error messages


def label_config(classes: Sequence[str]) -> str:
    """A single-choice image classification config for ``classes``."""
    choices = "\n".join(f'    <Choice value="{html.escape(c, quote=True)}"/>' for c in classes)
    return (f'<View>\n  <Image name="image" value="$image"/>\n  <Choices name="label" toName="image" '
            f'choice="single">\n{choices}\n  </Choices>\n</View>\n')


def write_tasks(path: Path, rows: Sequence[TaskRow], image_url: Callable[[str], str]) -> None:
    """Write the tasks of ``rows`` to ``path`` (JSON list), atomically."""
    tasks = []
    for r in rows:
        task: dict = {"data": {"image": image_url(r.path), "tidal_id": int(r.id), "path": r.path}}
        if r.predicted:
            score = float(r.score) if math.isfinite(r.score) else 0.0
            task["predictions"] = [{"model_version": f"tidal round {r.round}", "score": score,
                                    "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                                "value": {"choices": [r.predicted]}}]}]
        tasks.append(task)
    atomic_write_text(Path(path), json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")


def _int_or_none(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value not in (None, "") else None
    except ValueError:
        return None


def _choice(value: object) -> str | None:
    """The class of a JSON-MIN/CSV ``label`` field: "cat", {"choices": ["cat"]} or '{"choices": ...}'."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, dict):
        value = value.get("choices")
    if isinstance(value, list):
        return str(value[0]) if len(value) == 1 else None
    return None if value in (None, "") else str(value)


def read_export(path: Path) -> list[Answer]:
    """The answers of a Label Studio export (JSON, JSON-MIN or CSV); ``ValueError`` otherwise."""
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    out: list[Answer] = []
    if path.suffix.lower() == ".csv":
        for line, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            label = _choice(row.get("label"))
            if label is not None:
                out.append(Answer(_int_or_none(row.get("tidal_id")), row.get("path") or None, label,
                                  f"{path.name}:{line}"))
        return out
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not a Label Studio export (invalid JSON: {exc.msg} at line {exc.lineno})") from None
    if not isinstance(items, list):
        raise ValueError(f"{path} is not a Label Studio export (expected a JSON list of tasks)")
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ValueError(f"{path}: item {n} is not a task object; export as JSON, JSON-MIN or CSV")
        data = item.get("data") if isinstance(item.get("data"), dict) else item
        where = f"{path.name}:item {n}"
        if "annotations" in item:  # JSON: the last non-cancelled annotation's choice
            label = None
            for ann in item["annotations"] or []:
                if ann.get("was_cancelled"):
                    continue
                for res in ann.get("result") or []:
                    if res.get("type") == "choices":
                        label = _choice(res.get("value"))
            if label is None:
                continue
        else:
            label = _choice(item.get("label"))
            if label is None:
                continue
        out.append(Answer(_int_or_none(data.get("tidal_id")), data.get("path"), label, where))
    return out
