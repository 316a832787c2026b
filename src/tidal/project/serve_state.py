"""The state behind ``tidal serve`` (:mod:`tidal.project.serve`): the cached model, the inbox, the retrain thread.

Labels: an accepted annotation goes to the inbox (:mod:`tidal.project.serve_inbox`, fsynced
before the answer), which a background thread stores into the project under the project lock,
at once unless a retrain holds the lock (then as soon as it ends). At start the inbox is stored
first.

Retraining runs in one background thread, one at a time; requests that arrive meanwhile are
merged into one follow-up run. A retrain first waits for the webhooks of the annotations it was
asked for (:mod:`tidal.project.serve_wait`: Label Studio asks before it sends them).

A retrain is a round of ``tidal query`` (:func:`query_project`, ``-k`` = every unlabeled sample
unless ``top`` says fewer), so it trains and scores exactly as ``tidal query`` does and is
stored as a round; its selection replaces the cached one, ``model_version`` becomes ``"tidal
round N"``, ``trainings`` grows and ``training`` becomes false in one step under one lock
(``/health`` never shows the new ``model_version`` with ``training: true``); then, with a Label
Studio URL and token, the top ``push`` candidates' predictions and the new ``model_version`` are
pushed to Label Studio so its "Uncertainty sampling" queue serves TiDAL's order (``pushing`` is
true meanwhile; Label Studio's ``model_version`` changes only after ``training`` is false). A
restarted server serves the last stored round's model, and pushes it before its first answer.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tidal.errors import RunDirectoryError
from tidal.project.serve_inbox import INBOX_NAME, Inbox
from tidal.project.serve_wait import WAIT_LABELS, Webhooks, short_error

__all__ = ["INBOX_NAME", "NO_MODEL", "Cached", "ServeOptions", "ServeState"]

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


@dataclass(frozen=True)
class ServeOptions:
    """``tidal serve``'s settings (its flags), checked on creation."""

    top: int | None = None  # candidates each retrain scores (-k of its round); None: every unlabeled sample
    push: int = 200  # predictions pushed to Label Studio after a retrain: the most informative candidates
    method: str | None = None  # strategy; None: the project's
    retrain: str = "scratch"  # each retrain from scratch, or "continue" from the last round's weights
    device: str = "auto"  # cpu, cuda, cuda:N or auto
    label_studio: str | None = None  # Label Studio's URL, to push predictions and model_version to
    token: str | None = None  # its Personal Access Token
    ls_project: int | None = None  # the Label Studio project's id (None: learnt from its /setup call)
    secret: str | None = None  # a shared secret every request must carry (None: none)
    # Label Studio asks for a retrain (in the annotation's save) BEFORE it sends that annotation's webhook, so
    # the retrain waits for it: up to wait_labels s for what Label Studio's API lists, or (no API) settle s
    settle: float = 1.0  # s
    wait_labels: float = WAIT_LABELS  # s

    def __post_init__(self) -> None:
        if self.top is not None and self.top < 1:
            raise ValueError(f"--top {self.top} must be >= 1")
        if self.push < 0:
            raise ValueError(f"--push {self.push} must be >= 0")
        if self.label_studio:
            from tidal.project.lsapi import LabelStudioAPI

            LabelStudioAPI(self.label_studio, self.token or "")  # a bad URL or no token: refused now, not later


class ServeState:
    """The state behind ``tidal serve``: the cached model, the inbox, the retrain thread."""

    def __init__(self, project: str | Path, options: ServeOptions = ServeOptions(), log=None) -> None:
        from tidal.project.project import check_project_dir
        from tidal.project.store import DB_NAME, ProjectStore

        self.project = Path(project)
        check_project_dir(self.project, must_exist=True)
        o = options
        self.top, self.push, self.method, self.retrain, self.device = o.top, o.push, o.method, o.retrain, o.device
        self.label_studio, self.token = o.label_studio, o.token
        self.ls_project = o.ls_project  # learnt from Label Studio's /setup call when not given
        self.secret = o.secret or None
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
        self.inbox = Inbox(self.project, self.log)
        self._wake = threading.Condition()  # guards the fields below; cached, training and trainings change together
        self._train_wanted = False
        self._busy = False  # the worker is storing, training or pushing
        self.training = False  # a retrain is running and its model is not published yet
        self.pushing = False  # the published model's predictions are being sent to Label Studio
        self.trainings = 0  # retrains finished
        # what the retrain requests since the last retrain began asked for: Label Studio's annotation count, and
        # annotation ids -> updated_at (a /train call lists them)
        self._want_count: int | None = None
        self._want_annotations: dict[int, str | None] = {}
        self.webhooks = Webhooks(self._wake, self._connect, self.log, o.settle, o.wait_labels)
        self.last_error: str | None = None
        self._stop = False
        # before the first answer: Label Studio's annotations that no webhook will bring, and the stored model's
        # predictions, so that its queue serves that model's order (not random tasks) from the first request
        self.webhooks.take_baseline()
        self._push_at_start()
        self._worker = threading.Thread(target=self._work, name="tidal-serve-worker", daemon=True)
        self._worker.start()
        self.apply_soon()

    # -- the inbox (stored by the worker) ----------------------------------------------------
    def apply_soon(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- retraining --------------------------------------------------------------------------
    def request_training(self, count: int | None = None, annotations: dict[int, str | None] | None = None) -> str:
        """Ask for a retrain; ``count``: Label Studio's count of (non-cancelled) annotations when it asked,
        ``annotations``: the annotations it listed (id -> updated_at). The retrain waits for their webhooks."""
        with self._wake:
            queued = self.training or self.pushing or self._train_wanted
            self._train_wanted = True
            if count is not None:
                self._want_count = max(count, self._want_count or 0)
            self._want_annotations.update(annotations or {})
            self._wake.notify_all()
        return "queued" if queued else "started"

    def note_annotation(self, aid, updated_at) -> None:
        """A webhook brought annotation ``aid`` as of ``updated_at`` (:meth:`Webhooks.note`)."""
        self.webhooks.note(aid, updated_at)

    def _connect(self):
        """``(Label Studio API client, project id)``; None without a URL or a project id (yet)."""
        from tidal.project.lsapi import LabelStudioAPI

        if not self.label_studio or self.ls_project is None:
            return None
        return LabelStudioAPI(self.label_studio, self.token or ""), self.ls_project

    def _push_at_start(self) -> None:
        """Give Label Studio the stored model's predictions when the server starts, so its queue serves that
        model's order (not random tasks, labelled ones included) until the first retrain."""
        if not self.label_studio or self.ls_project is None or self.cached.round < 1:
            return
        try:
            self._push(self.cached)
        except Exception as exc:  # noqa: BLE001 - Label Studio not reachable: the queue waits for the next push
            self.log(f"tidal serve: pushing {self.cached.version!r} at start failed: {short_error(exc, 300)}")

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._stop and not self._train_wanted and not self.inbox.has_records():
                    self._wake.wait(timeout=1.0)
                    if self.webhooks.baseline is None and self.label_studio and self.ls_project is not None:
                        break  # the project id came with /setup: take the baseline first
                if self._stop:
                    return
                train, self._train_wanted = self._train_wanted, False
                count, listed = self._want_count, self._want_annotations
                self._want_count, self._want_annotations = None, {}
                self._busy = True
                self.training = train
            try:
                if self.webhooks.baseline is None:
                    self.webhooks.take_baseline()
                if train:
                    self.webhooks.wait_for(count, listed)
                self.inbox.store()
                if train:
                    self._train_once()
            except Exception as exc:  # noqa: BLE001 - a failed retrain is logged; the server keeps serving
                self.last_error = short_error(exc)
                if train or not (isinstance(exc, RunDirectoryError) and self.inbox.waiting):
                    # (still waiting for another process's lock to store the inbox: said once, when it began)
                    self.log(f"tidal serve: {'retrain' if train else 'storing the inbox'} failed: "
                             f"{self.last_error}")
                time.sleep(1.0)  # e.g. another tidal command holds the project: try again, not in a busy loop
                if os.environ.get("TIDAL_DEBUG"):
                    traceback.print_exc()
            finally:
                with self._wake:
                    self.training = self.pushing = self._busy = False
                    self._wake.notify_all()

    def status(self) -> tuple[str, bool, int, bool]:
        """(model_version, training, trainings, pushing), read together."""
        with self._wake:
            return self.cached.version, self.training, self.trainings, self.pushing

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
            cached = _cached(store)
        with self._wake:  # published in one step: requests see the old model (training) or the new one (not)
            self.cached = cached
            self.trainings += 1
            self.training = False
            self.pushing = bool(self.label_studio) and cached.round == rnd
        what = "drew at random (fewer than 2 labels)" if result.random else f"trained on {result.n_labeled} labels"
        self.log(f"tidal serve: round {rnd} {what} in {time.perf_counter() - t0:.1f} s; model_version "
                 f"{self.cached.version!r}")
        self.inbox.store()  # labels that came in while training held the lock
        if self.label_studio and cached.round == rnd:
            self._push(cached)

    def _push(self, cached: Cached) -> None:
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
            while self._busy or self._train_wanted or self.inbox.has_records():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(timeout=min(left, 0.5))
        return True
