"""What ``tidal serve`` does with each Label Studio call (:mod:`tidal.project.serve` routes them).

:class:`Backend` is the state of :mod:`tidal.project.serve_state` plus the calls: a task is
resolved to its pool sample, a payload is validated before anything is stored, and a refused
one raises :class:`ServeError` (an HTTP status and a one-line reason). The answers come from
the cached model and the inbox; nothing here waits for the project lock or trains.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tidal.project.serve_state import ServeState

__all__ = ["Backend", "ServeError"]

IGNORED_ACTIONS = {"PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
                   "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED",
                   "REVIEW_UPDATED", "REVIEWS_DELETED"}  # Label Studio sends every action to /webhook


class ServeError(ValueError):
    """A request that is refused: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Backend(ServeState):
    """The backend behind ``tidal serve``: :class:`ServeState` and its answers to Label Studio's calls."""

    # -- requests ----------------------------------------------------------------------------
    def health(self) -> dict:
        version, training, trainings, pushing = self.status()  # read together: never a new model "training"
        return {"status": "UP", "model_class": "tidal", "model_version": version,
                "training": training, "trainings": trainings, "pushing": pushing}

    def setup(self, body: dict) -> dict:
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise ServeError(400, "setup: no labelling config ('schema'); is this Label Studio calling?")
        self._check_config(schema)
        project = body.get("project")
        if self.ls_project is None and isinstance(project, str) and re.fullmatch(r"\d+(\.\d+)?", project):
            self.ls_project = int(project.split(".")[0])  # Label Studio's "<project id>.<created timestamp>"
            self.apply_soon()  # the worker lists the project's annotations already there (no webhook brings them)
        return {"model_version": self.cached.version}

    def _check_config(self, schema: str) -> None:
        import xml.etree.ElementTree as ET

        from tidal.project.labelstudio import CONTROL

        try:
            root = ET.fromstring(schema)
        except ET.ParseError as exc:
            raise ServeError(400, f"setup: the labelling config is not XML ({exc})") from None
        choices = [c for c in root.iter("Choices") if c.get("name") == CONTROL]
        fix = f"paste `python -m tidal.project.labelstudio config {' '.join(self.classes)}` into the project's config"
        if not choices:
            raise ServeError(400, f"setup: the labelling config has no <Choices name=\"{CONTROL}\">; {fix}")
        values = [c.get("value") for c in choices[0].iter("Choice")]
        if values != self.classes:
            raise ServeError(400, f"setup: the config's choices {values} are not the project's classes "
                                  f"{self.classes}; {fix}")

    def _resolve(self, task: Any, where: str) -> int:
        """The pool id of one Label Studio task (its data's tidal_id / path, or its image URL)."""
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise ServeError(400, f"{where}: not a task object with 'data'")
        data = task["data"]
        ident = data.get("tidal_id")
        if ident is not None:
            if isinstance(ident, bool) or not isinstance(ident, (int, str, float)):
                raise ServeError(400, f"{where}: tidal_id {ident!r} is not a sample id")
            try:
                number = float(ident)
                i = int(number)
            except (ValueError, OverflowError):  # "x", "nan", "1e400"
                raise ServeError(400, f"{where}: tidal_id {ident!r} is not a sample id") from None
            if number != i:
                raise ServeError(400, f"{where}: tidal_id {ident!r} is not a whole number")
            if not 0 <= i < len(self.paths):
                raise ServeError(422, f"{where}: tidal_id {i} is not a sample of project {self.project} "
                                      f"(ids 0..{len(self.paths) - 1}); is this Label Studio project another one's?")
            path = data.get("path")
            if isinstance(path, str) and path and path != self.paths[i]:
                raise ServeError(422, f"{where}: tidal_id {i} is {self.paths[i]!r} in project {self.project} but the "
                                      f"task says {path!r}; is this Label Studio project another one's?")
            return i
        path = data.get("path")
        if isinstance(path, str) and path in self.by_path:
            return self.by_path[path]
        image = data.get("image")
        if isinstance(image, str):
            if image in self.by_url:
                return self.by_url[image]
            d = parse_qs(urlsplit(image).query).get("d")
            if d:  # a local-files URL: the pool path is a tail of the path under the document root
                parts = unquote(d[0]).split("/")
                for n in range(len(parts)):
                    tail = "/".join(parts[n:])
                    if tail in self.by_path:
                        return self.by_path[tail]
        raise ServeError(422, f"{where}: the task names no sample of project {self.project} (no tidal_id, path or "
                              "pool image URL in its data); import tidal's tasks.json into Label Studio")

    def predict(self, body: dict) -> dict:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks:
            raise ServeError(400, "predict: 'tasks' must be a non-empty list of Label Studio tasks")
        cached = self.cached  # one model for the whole answer
        from tidal.project.labelstudio import prediction

        results = []
        for n, task in enumerate(tasks):
            i = self._resolve(task, f"predict: task {task.get('id', n) if isinstance(task, dict) else n}")
            if i in cached.entries:
                q, cls = cached.entries[i]
                results.append(prediction(cls, q, cached.version))
            else:  # no model yet, or not among its candidates (labelled): no guess, served last
                results.append({"result": [], "score": 1.0, "model_version": cached.version})
        return {"results": results}

    def train(self, body: dict) -> dict:
        """The older ``POST /train``: its ``annotations`` are the project's annotated tasks, each with its
        annotations; the retrain waits for their webhooks."""
        listed = {}
        tasks = body.get("annotations")
        for task in tasks if isinstance(tasks, list) else []:
            for a in (task.get("annotations") or []) if isinstance(task, dict) else []:
                if isinstance(a, dict) and isinstance(a.get("id"), int) and not isinstance(a.get("id"), bool):
                    listed[a["id"]] = a.get("updated_at") if isinstance(a.get("updated_at"), str) else None
        return {"training": self.request_training(annotations=listed)}

    def webhook(self, body: dict) -> dict:
        action = body.get("action")
        if not isinstance(action, str):
            raise ServeError(400, "webhook: no 'action'; is this Label Studio calling?")
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
            return self._annotations(body, action)
        if action == "ANNOTATIONS_DELETED":
            return self._deleted(body)
        if action == "START_TRAINING":
            # Label Studio counted the project's annotations (the one whose save asks included) in the project
            project = body.get("project")
            count = project.get("total_annotations_number") if isinstance(project, dict) else None
            if self.ls_project is None and isinstance(project, dict) and isinstance(project.get("id"), int):
                self.ls_project = project["id"]
            return {"action": action, "training": self.request_training(
                count=count if isinstance(count, int) and not isinstance(count, bool) else None)}
        if action in IGNORED_ACTIONS:
            return {"action": action, "ignored": True}
        raise ServeError(400, f"webhook: unknown action {action[:60]!r}")

    def _annotations(self, body: dict, action: str) -> dict:
        from tidal.project.answers import read_answers
        from tidal.project.labelstudio import read_export
        from tidal.project.store import DB_NAME, ProjectStore

        annotations, tasks = body.get("annotation"), body.get("task")
        if action == "ANNOTATIONS_CREATED":
            if not isinstance(annotations, list) or not isinstance(tasks, list):
                raise ServeError(400, f"webhook {action}: 'annotation' and 'task' must be lists")
            by_task = {t.get("id"): t for t in tasks if isinstance(t, dict)}
            pairs = [(a, by_task.get(a.get("task")) if isinstance(a, dict) else None) for a in annotations]
        else:
            pairs = [(annotations, tasks)]
        relabel = action == "ANNOTATION_UPDATED"
        stored = skipped = 0
        with self.inbox.lock:
            for ann, task in pairs:
                if not isinstance(ann, dict) or not isinstance(task, dict):
                    raise ServeError(400, f"webhook {action}: no 'annotation' and 'task' objects")
                aid = ann.get("id")
                self.note_annotation(aid, ann.get("updated_at"))  # it came, whatever becomes of it
                where = f"webhook {action} annotation {aid}"
                i = self._resolve(task, where)
                if ann.get("was_cancelled"):
                    skipped += 1
                    continue
                data = task["data"]
                if "tidal_id" not in data and "path" not in data:  # a task of a storage Sync: found by its image
                    data = {**data, "tidal_id": i, "path": self.paths[i]}
                export = [{"id": task.get("id"), "data": data, "annotations": [ann]}]
                with tempfile.NamedTemporaryFile("w", suffix=".json", dir=self.project, prefix=".tidal-serve-",
                                                 delete=False, encoding="utf-8") as f:
                    json.dump(export, f)
                file = Path(f.name)
                try:
                    try:
                        if not read_export(file):  # an annotation without a choice: not an answer
                            skipped += 1
                            continue
                        with ProjectStore(self.project / DB_NAME, readonly=True) as store:
                            changes, _ = read_answers(file, store, relabel=True)
                            current = store.labels().get(i)
                    except ValueError as exc:
                        raise ServeError(422, f"{where}: {str(exc).replace(str(file), 'the annotation')}") from None
                finally:
                    file.unlink(missing_ok=True)
                new = dict(changes).get(i, current)
                before = self.inbox.pending[i][0] if i in self.inbox.pending else current
                if before is not None and before != new and not relabel:
                    raise ServeError(409, f"{where}: {self.paths[i]} is labelled {self.classes[before]!r}, the "
                                          f"annotation says {self.classes[new]!r}; update that annotation instead "
                                          "(an update may change a label)")
                if before == new:
                    continue  # the same label again: nothing to store
                self.inbox.append({"pairs": [[i, new]], "source": f"Label Studio annotation {aid}", "at": time.time()})
                stored += 1
        self.apply_soon()
        return {"action": action, "stored": stored, "skipped": skipped}

    def _deleted(self, body: dict) -> dict:
        from tidal.project.store import DB_NAME, ProjectStore

        annotations = body.get("annotations")
        if not isinstance(annotations, list) or not all(isinstance(a, dict) and "id" in a for a in annotations):
            raise ServeError(400, "webhook ANNOTATIONS_DELETED: 'annotations' must be a list of {\"id\": ...}")
        forgotten = 0
        with self.inbox.lock, ProjectStore(self.project / DB_NAME, readonly=True) as store:
            sources = {i: s for i, (s, _) in store.label_sources().items()}
            sources.update({i: s for i, (c, s) in self.inbox.pending.items() if c is not None})
            for a in annotations:
                source = f"Label Studio annotation {a['id']}"
                ids = [i for i, s in sources.items() if s == source]
                if ids:
                    self.inbox.append({"pairs": [[i, None] for i in ids], "source": source, "at": time.time()})
                    forgotten += len(ids)
        self.apply_soon()
        return {"action": "ANNOTATIONS_DELETED", "forgotten": forgotten}


    def _push(self, cached) -> None:
        """Send the top candidates' predictions and the model_version to Label Studio."""
        from tidal.project.labelstudio import prediction
        from tidal.project.lsapi import LabelStudioAPI

        if self.ls_project is None:
            self.log("tidal serve: no Label Studio project id yet (give --ls-project, or connect the backend so "
                     "Label Studio calls /setup); predictions not pushed")
            return
        t0 = time.perf_counter()
        api = LabelStudioAPI(self.label_studio, self.token or "")
        # pool id -> its Label Studio tasks: tidal's tasks by tidal_id, a storage Sync's by image URL (every one of
        # them: a sample with two tasks, e.g. imported and synced, gets the prediction on both, never a stale one)
        there: dict[int, list[int]] = {}
        for t in api.tasks(self.ls_project):
            try:
                there.setdefault(self._resolve(t, "push"), []).append(t["id"])
            except ServeError:
                continue  # not a sample of this project
        chosen = [i for i in cached.order if i in there][: self.push]
        preds = [{**prediction(cached.entries[i][1], cached.entries[i][0], cached.version), "task": task}
                 for i in chosen for task in there[i]]
        if preds:
            api.import_predictions(self.ls_project, preds)
        api.update_project(self.ls_project, model_version=cached.version)
        self.log(f"tidal serve: pushed {len(preds)} predictions and model_version {cached.version!r} to Label Studio "
                 f"project {self.ls_project} in {time.perf_counter() - t0:.2f} s")
