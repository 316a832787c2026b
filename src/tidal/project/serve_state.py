"""The state behind ``tidal serve`` (:mod:`tidal.project.serve`): the cached model, the inbox, the retrain thread.

Labels: an accepted annotation is appended to ``PROJECT/serve-inbox.jsonl`` and fsynced before
the answer (so killing the server loses nothing acknowledged), then written into the project
store under the project lock by a background thread, at once unless a retrain holds the lock
(then as soon as it ends). At start the inbox is applied first; applying twice changes nothing.
While another tidal command holds the project, the labels wait in the inbox: logged once when
the wait begins (naming the holder) and once when they are stored.

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

import json
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tidal.errors import RunDirectoryError

__all__ = ["INBOX_NAME", "NO_MODEL", "Cached", "ServeState"]

INBOX_NAME = "serve-inbox.jsonl"  # accepted annotations not yet in the store, one JSON record a line
NO_MODEL = "tidal none"  # model_version before any model is trained


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


class ServeState:
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
        self._held_since: float | None = None  # time.monotonic() when storing the inbox began waiting for the lock
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
        with open_project(self.project, on_wait=self._lock_held) as (store, _):
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
        if self._held_since is not None:
            self.log(f"tidal serve: project {self.project} is free again; stored {len(records)} inbox records after "
                     f"waiting {time.monotonic() - self._held_since:.1f} s")
            self._held_since = None
        return len(records)

    def _lock_held(self, holder: str) -> None:
        """``open_project``'s ``on_wait``: say once, when the wait begins, that the labels wait for the lock."""
        if self._held_since is None:
            self._held_since = time.monotonic()
            who = f" ({holder[:200]})" if holder else ""
            self.log(f"tidal serve: project {self.project} is in use by another tidal process{who}; acknowledged "
                     f"labels wait in {INBOX_NAME} until it finishes")

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
                if train or not (isinstance(exc, RunDirectoryError) and self._held_since is not None):
                    # (still waiting for another process's lock to store the inbox: said once, when it began)
                    self.log(f"tidal serve: {'retrain' if train else 'storing the inbox'} failed: "
                             f"{self.last_error}")
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
        """Send the new model's predictions to Label Studio: :class:`tidal.project.serve_requests.Backend` does."""
        raise NotImplementedError

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
