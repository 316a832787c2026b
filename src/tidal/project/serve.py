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
``POST /train``      the older training call: like ``START_TRAINING``. A retrain first waits for the
                     webhooks of the annotations Label Studio has (its API; ``START_TRAINING``'s
                     count, ``/train``'s list), as :mod:`tidal.project.serve_state` says.

Every handler answers in milliseconds: Label Studio delivers webhooks synchronously with a 1 s
timeout inside the annotator's submit.

:class:`tidal.project.serve_requests.Backend` answers each call; :mod:`tidal.project.serve_state`
keeps the cached model, the inbox of accepted labels (``PROJECT/serve-inbox.jsonl``) and the
retrain thread. This module is the HTTP front: routing, the shared secret, the request body, one
log line per request.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tidal.project.serve_requests import Backend, ServeError
from tidal.project.serve_state import INBOX_NAME, ServeOptions  # noqa: F401 - INBOX_NAME: where the inbox is, as before the split

__all__ = ["Backend", "ServeError", "ServeOptions", "make_server", "serve"]

MAX_BODY = 64 << 20  # bytes: the largest request body accepted (a predict call of thousands of tasks)
SECRET_ENV = "TIDAL_SERVE_SECRET"  # the shared secret, when one is required


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
                return self._answer(200, b.train(body), what, t0)
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


def make_server(project: str | Path, *, host: str = "127.0.0.1", port: int = 9090, log=None, **options: Any):
    """A ``ThreadingHTTPServer`` serving :class:`Backend` ``(project, ServeOptions(**options), log)``
    (not started).

    ``server.backend`` is the backend; ``server.serve_forever()`` runs it, ``server.shutdown()``
    stops it (from another thread).
    """
    b = Backend(project, ServeOptions(**options), log)
    handler = type("Handler", (_Handler,), {"backend": b})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.backend = b  # type: ignore[attr-defined]
    return server


def serve(project: str | Path, *, host: str = "127.0.0.1", port: int = 9090, **options: Any) -> None:
    """Run ``tidal serve PROJECT`` until interrupted (Ctrl-C or SIGTERM)."""
    server = make_server(project, host=host, port=port, **options)
    b = server.backend
    b.log(f"tidal serve: project {project} on http://{host}:{server.server_address[1]} (model_version "
          f"{b.cached.version!r}{', shared secret required' if b.secret else ''}); connect it in Label Studio")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        b.close()
