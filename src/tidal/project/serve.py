"""``tidal serve PROJECT``: a Label Studio ML backend that orders the annotators' queue and retrains.

Label Studio (1.23.x, ``label_studio/ml/api_connector.py``) calls an ML backend over HTTP:

``GET /health``      -> ``{"status": "UP", "model_version": ...}``
``POST /setup``      the project's labelling config (``schema``): checked against the project's
                     classes; -> ``{"model_version": ...}``
``POST /predict``    ``{"tasks": [full task dicts]}`` -> ``{"results": [{"result": [...], "score": s,
                     "model_version": v}, ...]}``, one per task, in order. Each task is resolved to
                     the pool by the ``tidal_id`` / ``path`` tidal put in its data, or by its
                     local-files image URL; the answer comes from the current model's cached
                     selection (never trained inside a request). ``score`` is
                     :func:`tidal.project.labelstudio.queue_scores`' value: lowest = most informative.
``POST /webhook``    ``ANNOTATION_CREATED`` / ``ANNOTATION_UPDATED`` (validated exactly like ``tidal
                     label``: :func:`tidal.project.answers.read_answers` on the annotation as a one-task
                     export; an update may change a label, as ``--relabel``; a skipped annotation is
                     acknowledged and not stored), ``ANNOTATIONS_DELETED`` (a label given by a deleted
                     annotation is forgotten) and ``START_TRAINING``; other Label Studio actions are
                     acknowledged and ignored.
``POST /train``      the older training call: like ``START_TRAINING``.

Every handler answers in milliseconds: Label Studio delivers webhooks synchronously with a 1 s
timeout inside the annotator's submit.

Labels: an accepted annotation is appended to ``PROJECT/serve-inbox.jsonl`` and fsynced before
the answer (so killing the server loses nothing acknowledged), then written into the project
store under the project lock by a background thread, at once unless a retrain holds the lock
(then as soon as it ends). At start the inbox is applied first; applying twice changes nothing.

Retraining runs in one background thread, one at a time; requests that arrive meanwhile are
merged into one follow-up run. A retrain is a round of ``tidal query`` (:func:`query_project`,
``-k`` = every unlabeled sample unless ``top`` says fewer), so it trains and scores exactly as
``tidal query`` does and is stored as a round; its selection replaces the cached one in one
assignment, ``model_version`` becomes ``"tidal round N"``, and, with a Label Studio URL and
token, the top ``push`` candidates' predictions and the new ``model_version`` are pushed to
Label Studio so its "Uncertainty sampling" queue serves TiDAL's order. A restarted server
serves the last stored round's model.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Backend", "ServeError", "make_server", "serve"]

INBOX_NAME = "serve-inbox.jsonl"  # accepted annotations not yet in the store, one JSON record a line
MAX_BODY = 64 << 20  # bytes: the largest request body accepted (a predict call of thousands of tasks)
SECRET_ENV = "TIDAL_SERVE_SECRET"  # the shared secret, when one is required
IGNORED_ACTIONS = {"PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED", "TASKS_CREATED", "TASKS_DELETED",
                   "LABEL_LINK_CREATED", "LABEL_LINK_UPDATED", "LABEL_LINK_DELETED", "REVIEW_CREATED",
                   "REVIEW_UPDATED", "REVIEWS_DELETED"}  # Label Studio sends every action to /webhook
NO_MODEL = "tidal none"  # model_version before any model is trained


class ServeError(ValueError):
    """A request that is refused: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class Cached:
    """One finished model's view of the pool: replaced as a whole after each retrain."""

    version: str  # "tidal round N", or NO_MODEL
    round: int  # the round (0: none)
    entries: dict[int, tuple[float, str]] = field(default_factory=dict)  # id -> (queue score, predicted class)
    order: tuple[int, ...] = ()  # ids, most informative first


def _cached(store) -> Cached:
    from tidal.project.labelstudio import model_version, queue_scores

    rounds = [r for r in store.rounds() if not r.random]
    if not rounds:
        return Cached(NO_MODEL, 0)
    r = rounds[-1]
    sel = [s for s in r.selections if s.score is not None and s.predicted is not None]
    q = queue_scores([s.score for s in sel])
    return Cached(model_version(r.round), r.round,
                  {s.id: (v, r.classes[s.predicted]) for s, v in zip(sel, q)}, tuple(s.id for s in sel))


class Backend:
    """The state behind ``tidal serve``: the cached model, the inbox, the retrain thread."""

    def __init__(self, project: str | Path, *, top: int | None = None, push: int = 200, method: str | None = None,
                 retrain: str = "scratch", device: str = "auto", label_studio: str | None = None,
                 token: str | None = None, ls_project: int | None = None, secret: str | None = None,
                 settle: float = 1.0, log=None) -> None:
        from tidal.project.project import check_project_dir
        from tidal.project.store import DB_NAME, ProjectStore

        self.project = Path(project)
        check_project_dir(self.project, must_exist=True)
        if top is not None and top < 1:
            raise ValueError(f"--top {top} must be >= 1")
        if push < 0:
            raise ValueError(f"--push {push} must be >= 0")
        self.top, self.push, self.method, self.retrain, self.device = top, push, method, retrain, device
        self.label_studio, self.token, self.ls_project = label_studio, token, ls_project
        if label_studio:
            from tidal.project.lsapi import LabelStudioAPI

            LabelStudioAPI(label_studio, token or "")  # a bad URL or no token: refused now, not after a retrain
        self.secret = secret or None
        # seconds a retrain waits after it is asked for: Label Studio asks (in the annotation's save) BEFORE it
        # sends that annotation's webhook, so the retrain waits for it to be trained on too
        self.settle = settle
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        with ProjectStore(self.project / DB_NAME, readonly=True) as store:
            self.classes = store.classes
            self.paths = store.paths()
            settings = store.meta("settings")
            root = Path(store.meta("pool_root")) if store.meta("pool_root") else None
            self.cached = _cached(store)
        self.by_path = {p: i for i, p in enumerate(self.paths)}
        from urllib.parse import quote

        def url(path: str) -> str:  # the image URL tidal's tasks.json gives this sample (--image-url's template)
            absolute = (root / path) if root is not None else (self.project / path)
            return settings["image_url"].format(path=quote(path), abspath=quote(str(absolute)),
                                                pool=quote(root.name if root is not None else ""))

        self.by_url = {url(p): i for i, p in enumerate(self.paths)}
        self.inbox = self.project / INBOX_NAME
        self._inbox_lock = threading.Lock()  # one writer of the inbox and the pending overlay at a time
        self.pending: dict[int, tuple[int | None, str]] = {}  # id -> (class or None: deleted, source), not yet stored
        self._wake = threading.Condition()
        self._train_wanted = False
        self.training = False
        self.trainings = 0  # retrains finished
        self.last_error: str | None = None
        self._stop = False
        for rec in self._read_inbox():
            self._overlay(rec)
        self._worker = threading.Thread(target=self._work, name="tidal-serve-worker", daemon=True)
        self._worker.start()
        self.apply_soon()

    # -- the inbox ---------------------------------------------------------------------------
    def _read_inbox(self) -> list[dict]:
        if not self.inbox.is_file():
            return []
        out = []
        for line in self.inbox.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut short by a kill before its fsync: it was never acknowledged
                continue
        return out

    def _overlay(self, rec: dict) -> None:
        for i, c in rec["pairs"]:
            self.pending[int(i)] = (c, rec["source"])

    def _append(self, rec: dict) -> None:
        """Write ``rec`` to the inbox durably (fsync) and into the pending overlay."""
        with open(self.inbox, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._overlay(rec)

    def _apply_inbox(self) -> int:
        """Store the inbox's records under the project lock, in order, then drop them from the inbox.

        Only the worker thread calls this. The inbox lock is held just to read and to rewrite the
        inbox, never while waiting for the project lock, so webhooks keep answering at once.
        """
        from tidal.io import atomic_write_text
        from tidal.project.project import open_project

        with self._inbox_lock:
            records = self._read_inbox()
        if not records:
            return 0
        with open_project(self.project) as (store, _):
            for rec in records:
                sets = [(i, c) for i, c in rec["pairs"] if c is not None]
                if sets:
                    store.set_labels(sets, source=rec["source"])
                gone = [i for i, c in rec["pairs"] if c is None]
                if gone:
                    sources = store.label_sources()
                    store.remove_labels([i for i in gone if sources.get(i, ("",))[0] == rec["source"]])
        with self._inbox_lock:  # records that came in meanwhile stay in the inbox (and pending)
            rest = self._read_inbox()[len(records):]
            atomic_write_text(self.inbox, "".join(json.dumps(r) + "\n" for r in rest))
            self.pending.clear()
            for rec in rest:
                self._overlay(rec)
        return len(records)

    def apply_soon(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- retraining --------------------------------------------------------------------------
    def request_training(self) -> str:
        with self._wake:
            queued = self.training or self._train_wanted
            self._train_wanted = True
            self._wake.notify_all()
        return "queued" if queued else "started"

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stop and not self._train_wanted and not self._inbox_has_records():
                    self._wake.wait(timeout=1.0)
                if self._stop:
                    return
                train, self._train_wanted = self._train_wanted, False
                self.training = train
            try:
                if train and self.settle > 0:
                    time.sleep(self.settle)  # the webhook of the annotation that asked for it comes right after
                self._apply_inbox()
                if train:
                    self._train_once()
            except Exception as exc:  # noqa: BLE001 - a failed retrain is logged; the server keeps serving
                self.last_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
                self.log(f"tidal serve: {'retrain' if train else 'storing the inbox'} failed: {self.last_error}")
                time.sleep(1.0)  # e.g. another tidal command holds the project: try again, not in a busy loop
                if os.environ.get("TIDAL_DEBUG"):
                    traceback.print_exc()
            finally:
                with self._wake:
                    self.training = False
                    self._wake.notify_all()

    def _inbox_has_records(self) -> bool:
        try:
            return self.inbox.stat().st_size > 0
        except OSError:
            return False

    def _train_once(self) -> None:
        from tidal.project.data import missing_samples
        from tidal.project.query import query_project
        from tidal.project.store import DB_NAME, ProjectStore

        t0 = time.perf_counter()
        with ProjectStore(self.project / DB_NAME, readonly=True) as store:
            missing = set(missing_samples(store))
            labels = store.labels()
        unlabeled = sum(1 for i in range(len(self.paths)) if i not in labels and i not in missing)
        if unlabeled < 1:
            self.log("tidal serve: every sample is labelled; nothing to retrain for")
            return
        k = unlabeled if self.top is None else min(self.top, unlabeled)
        rnd, result, _ = query_project(self.project, k, method=self.method, retrain=self.retrain,
                                       device=self.device, progress=False)
        with ProjectStore(self.project / DB_NAME, readonly=True) as store:
            self.cached = _cached(store)  # one assignment: requests see the old model or the new one
        self.trainings += 1
        what = "drew at random (fewer than 2 labels)" if result.random else f"trained on {result.n_labeled} labels"
        self.log(f"tidal serve: round {rnd} {what} in {time.perf_counter() - t0:.1f} s; model_version "
                 f"{self.cached.version!r}")
        self._apply_inbox()  # labels that came in while training held the lock
        if self.label_studio and self.cached.round == rnd:
            self._push()

    def _push(self) -> None:
        """Send the top candidates' predictions and the model_version to Label Studio."""
        from tidal.project.labelstudio import prediction
        from tidal.project.lsapi import LabelStudioAPI

        if self.ls_project is None:
            self.log("tidal serve: no Label Studio project id yet (give --ls-project, or connect the backend so "
                     "Label Studio calls /setup); predictions not pushed")
            return
        t0 = time.perf_counter()
        cached = self.cached
        api = LabelStudioAPI(self.label_studio, self.token or "")
        there = {}  # pool id -> Label Studio task: tidal's tasks by tidal_id, a storage Sync's by image URL
        for t in api.tasks(self.ls_project):
            try:
                there.setdefault(self._resolve(t, "push"), t["id"])
            except ServeError:
                continue  # not a sample of this project
        chosen = [i for i in cached.order if i in there][: self.push]
        preds = [{**prediction(cached.entries[i][1], cached.entries[i][0], cached.version), "task": there[i]}
                 for i in chosen]
        if preds:
            api.import_predictions(self.ls_project, preds)
        api.update_project(self.ls_project, model_version=cached.version)
        self.log(f"tidal serve: pushed {len(preds)} predictions and model_version {cached.version!r} to Label Studio "
                 f"project {self.ls_project} in {time.perf_counter() - t0:.2f} s")

    def close(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()

    def wait_idle(self, timeout: float = 600.0) -> bool:
        """Block until no retrain is running or wanted and the inbox is stored (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self.training or self._train_wanted or self._inbox_has_records():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(timeout=min(left, 0.5))
        return True

    # -- requests ----------------------------------------------------------------------------
    def health(self) -> dict:
        return {"status": "UP", "model_class": "tidal", "model_version": self.cached.version,
                "training": self.training, "trainings": self.trainings}

    def setup(self, body: dict) -> dict:
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise ServeError(400, "setup: no labelling config ('schema'); is this Label Studio calling?")
        self._check_config(schema)
        project = body.get("project")
        if self.ls_project is None and isinstance(project, str) and re.fullmatch(r"\d+(\.\d+)?", project):
            self.ls_project = int(project.split(".")[0])  # Label Studio's "<project id>.<created timestamp>"
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

    def webhook(self, body: dict) -> dict:
        action = body.get("action")
        if not isinstance(action, str):
            raise ServeError(400, "webhook: no 'action'; is this Label Studio calling?")
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
            return self._annotations(body, action)
        if action == "ANNOTATIONS_DELETED":
            return self._deleted(body)
        if action == "START_TRAINING":
            return {"action": action, "training": self.request_training()}
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
        with self._inbox_lock:
            for ann, task in pairs:
                if not isinstance(ann, dict) or not isinstance(task, dict):
                    raise ServeError(400, f"webhook {action}: no 'annotation' and 'task' objects")
                aid = ann.get("id")
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
                before = self.pending[i][0] if i in self.pending else current
                if before is not None and before != new and not relabel:
                    raise ServeError(409, f"{where}: {self.paths[i]} is labelled {self.classes[before]!r}, the "
                                          f"annotation says {self.classes[new]!r}; update that annotation instead "
                                          "(an update may change a label)")
                if before == new:
                    continue  # the same label again: nothing to store
                self._append({"pairs": [[i, new]], "source": f"Label Studio annotation {aid}", "at": time.time()})
                stored += 1
        self.apply_soon()
        return {"action": action, "stored": stored, "skipped": skipped}

    def _deleted(self, body: dict) -> dict:
        from tidal.project.store import DB_NAME, ProjectStore

        annotations = body.get("annotations")
        if not isinstance(annotations, list) or not all(isinstance(a, dict) and "id" in a for a in annotations):
            raise ServeError(400, "webhook ANNOTATIONS_DELETED: 'annotations' must be a list of {\"id\": ...}")
        forgotten = 0
        with self._inbox_lock, ProjectStore(self.project / DB_NAME, readonly=True) as store:
            sources = {i: s for i, (s, _) in store.label_sources().items()}
            sources.update({i: s for i, (c, s) in self.pending.items() if c is not None})
            for a in annotations:
                source = f"Label Studio annotation {a['id']}"
                ids = [i for i, s in sources.items() if s == source]
                if ids:
                    self._append({"pairs": [[i, None] for i in ids], "source": source, "at": time.time()})
                    forgotten += len(ids)
        self.apply_soon()
        return {"action": "ANNOTATIONS_DELETED", "forgotten": forgotten}


class _Handler(BaseHTTPRequestHandler):
    server_version = "tidal-serve"
    backend: Backend  # set on the class made by make_server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - one line per request is ours
        pass

    def _authorized(self) -> bool:
        secret = self.backend.secret
        if not secret:
            return True
        given = self.headers.get("Authorization", "")
        if given.startswith("Basic "):
            try:
                given = base64.b64decode(given[6:]).decode("utf-8").split(":", 1)[-1]
            except ValueError:
                return False
        elif given.startswith("Bearer "):
            given = given[7:]
        else:
            given = self.headers.get("X-Tidal-Secret", "")
        return hmac.compare_digest(given.encode(), secret.encode())

    def _answer(self, status: int, body: dict, what: str, t0: float) -> None:
        raw = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)
        detail = body.get("error") or ", ".join(f"{k} {v}" for k, v in body.items() if k in ("stored", "skipped",
                                                                                            "forgotten", "training"))
        self.backend.log(f"tidal serve: {self.client_address[0]} {self.command} {self.path} {what} {status} "
                         f"{1000 * (time.perf_counter() - t0):.1f} ms{' ' + detail if detail else ''}")

    def _handle(self) -> None:
        t0 = time.perf_counter()
        path = urlsplit(self.path).path.rstrip("/") or "/"
        what = ""
        try:
            if not self._authorized():
                raise ServeError(401, "unauthorized: give the shared secret (basic auth password or Bearer)")
            b = self.backend
            if self.command == "GET":
                if path in ("/health", "/"):
                    return self._answer(200, b.health(), what, t0)
                if path == "/versions":
                    return self._answer(200, {"versions": [b.cached.version]}, what, t0)
                raise ServeError(404, f"no such endpoint: GET {path}")
            body = self._body()
            if path == "/webhook":
                what = str(body.get("action", ""))[:40]
            if path == "/setup":
                return self._answer(200, b.setup(body), what, t0)
            if path == "/predict":
                what = f"{len(body.get('tasks') or [])} tasks"
                return self._answer(200, b.predict(body), what, t0)
            if path == "/webhook":
                return self._answer(200, b.webhook(body), what, t0)
            if path == "/train":
                return self._answer(200, {"training": b.request_training()}, what, t0)
            if path == "/validate":
                b._check_config(str(body.get("config", "")))
                return self._answer(200, {"status": "ok"}, what, t0)
            raise ServeError(404, f"no such endpoint: POST {path}")
        except ServeError as exc:
            return self._answer(exc.status, {"error": " ".join(str(exc).split())}, what, t0)
        except Exception as exc:  # noqa: BLE001 - never a traceback to the caller; one line in the log
            self.backend.log(f"tidal serve: internal error: {type(exc).__name__}: {exc}")
            if os.environ.get("TIDAL_DEBUG"):
                traceback.print_exc()
            return self._answer(500, {"error": f"internal error ({type(exc).__name__}); see tidal serve's log"},
                                what, t0)

    def _body(self) -> dict:
        try:
            n = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ServeError(411, "a POST needs a Content-Length header") from None
        if n < 0 or n > MAX_BODY:
            raise ServeError(413, f"request body of {n} bytes; at most {MAX_BODY} accepted")
        raw = self.rfile.read(n)
        try:
            body = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        except (ValueError, RecursionError):
            raise ServeError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ServeError(400, f"the request body is a JSON {type(body).__name__}, not an object")
        return body

    do_GET = _handle
    do_POST = _handle


def make_server(project: str | Path, *, host: str = "127.0.0.1", port: int = 9090, **backend: Any):
    """A ``ThreadingHTTPServer`` serving :class:`Backend` ``(project, **backend)`` (not started).

    ``server.backend`` is the backend; ``server.serve_forever()`` runs it, ``server.shutdown()``
    stops it (from another thread).
    """
    b = Backend(project, **backend)
    handler = type("Handler", (_Handler,), {"backend": b})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.backend = b  # type: ignore[attr-defined]
    return server


def serve(project: str | Path, *, host: str = "127.0.0.1", port: int = 9090, **backend: Any) -> None:
    """Run ``tidal serve PROJECT`` until interrupted (Ctrl-C or SIGTERM)."""
    server = make_server(project, host=host, port=port, **backend)
    b = server.backend
    b.log(f"tidal serve: project {project} on http://{host}:{server.server_address[1]} (model_version "
          f"{b.cached.version!r}{', shared secret required' if b.secret else ''}); connect it in Label Studio")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        b.close()
