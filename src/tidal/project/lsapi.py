"""Talking to a running Label Studio over its REST API (stdlib ``urllib``; no SDK needed).

Tested against Label Studio 1.23.2 (``tests/project/test_labelstudio_server.py``,
``test_serve_server.py``); the endpoints used exist since 1.10: ``/api/projects/<id>`` (GET,
PATCH), ``/api/projects/<id>/import``, ``/api/projects/<id>/import/predictions``,
``/api/tasks``, ``/api/ml``, ``/api/token/refresh/``.

Tokens: Label Studio 1.23 refuses the *legacy* token that ``label-studio user`` prints (401
"legacy token authentication has been disabled") unless the organisation re-enables it. A
**Personal Access Token** (Account & Settings -> Personal Access Token, or ``POST /api/token/``)
is a JWT *refresh* token: :class:`LabelStudioAPI` trades it at ``/api/token/refresh/`` for a
short-lived access token and sends that as ``Authorization: Bearer ...``, trading again when
it expires. A token that is not a JWT (no two dots) is sent as a legacy ``Token ...``.

:func:`push_round` is ``tidal labelstudio push``: it puts a round's tasks into a Label Studio
project and sets the project's ``model_version`` to the round's, which Label Studio does only
on the first import that carries predictions, so that round N is pre-annotated and ordered
like round 2.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LabelStudioAPI", "LabelStudioError", "PushResult", "connect_backend", "push_round", "UNCERTAINTY"]

UNCERTAINTY = "Uncertainty sampling"  # the project's `sampling` that serves the lowest prediction score first
TOKEN_ENV = "LABEL_STUDIO_API_KEY"  # where the commands read the token from (the SDK's name for it)


class LabelStudioError(RuntimeError):
    """Label Studio answered with an error or could not be reached (one line: method, path, status, reason)."""


class LabelStudioAPI:
    """A Label Studio server at ``url`` (``http://127.0.0.1:8080``) with API token ``token``."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"Label Studio URL {url!r} must start with http:// or https://, e.g. "
                             "http://127.0.0.1:8080")
        if not token or not token.strip():
            raise ValueError(f"no Label Studio API token; give --token or set {TOKEN_ENV} to a Personal Access "
                             "Token (Label Studio: Account & Settings > Personal Access Token)")
        self.url = url.rstrip("/")
        self.token = token.strip()
        self.timeout = timeout
        self._access: str | None = None

    @property
    def personal(self) -> bool:
        """Whether the token is a Personal Access Token (a JWT refresh token)."""
        return self.token.count(".") == 2

    def _refresh(self) -> str:
        answer = self._send("POST", "/api/token/refresh/", {"refresh": self.token}, auth=None)
        if not isinstance(answer, dict) or not answer.get("access"):
            raise LabelStudioError(f"POST {self.url}/api/token/refresh/ gave no access token; is the Personal Access "
                                   "Token valid (Account & Settings > Personal Access Token)?")
        self._access = answer["access"]
        return self._access

    def _authorization(self) -> str:
        if not self.personal:
            return f"Token {self.token}"
        return f"Bearer {self._access or self._refresh()}"

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """``method`` ``path`` with a JSON ``body``; the decoded JSON answer (None when empty)."""
        try:
            return self._send(method, path, body, auth=self._authorization())
        except LabelStudioError as exc:
            if getattr(exc, "status", None) == 401 and self.personal:  # the access token expired: trade again
                self._access = None
                return self._send(method, path, body, auth=self._authorization())
            raise

    def _send(self, method: str, path: str, body: Any, auth: str | None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = auth
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as exc:
            text = " ".join(exc.read().decode("utf-8", "replace").split())[:300]
            err = LabelStudioError(f"Label Studio {method} {path}: HTTP {exc.code} {text}")
            err.status = exc.code  # type: ignore[attr-defined]
            raise err from None
        except OSError as exc:
            raise LabelStudioError(f"Label Studio at {self.url} cannot be reached ({method} {path}: {exc}); is it "
                                   "running?") from None
        return json.loads(raw) if raw.strip() else None

    # -- the calls tidal makes ---------------------------------------------------------------
    def project(self, project: int) -> dict:
        return self.request("GET", f"/api/projects/{int(project)}")

    def update_project(self, project: int, **fields: Any) -> dict:
        return self.request("PATCH", f"/api/projects/{int(project)}", fields)

    def import_tasks(self, project: int, tasks: list[dict]) -> Any:
        return self.request("POST", f"/api/projects/{int(project)}/import", tasks)

    def import_predictions(self, project: int, predictions: list[dict]) -> Any:
        """Add ``[{"task": LS task id, "result": ..., "score": ..., "model_version": ...}]`` in one call."""
        return self.request("POST", f"/api/projects/{int(project)}/import/predictions", predictions)

    def tasks(self, project: int, page_size: int = 500) -> list[dict]:
        """Every task of ``project`` (``id`` and ``data``), page by page."""
        out: list[dict] = []
        page = 1
        while True:
            query = urllib.parse.urlencode({"project": int(project), "page": page, "page_size": page_size,
                                            "fields": "all"})
            try:
                answer = self.request("GET", f"/api/tasks?{query}")
            except LabelStudioError as exc:
                if getattr(exc, "status", None) == 404 and page > 1:  # past the last page
                    break
                raise
            batch = answer.get("tasks", []) if isinstance(answer, dict) else (answer or [])
            out += batch
            total = answer.get("total") if isinstance(answer, dict) else None
            if not batch or len(batch) < page_size or (total is not None and len(out) >= total):
                break
            page += 1
        return out


def tidal_ids(tasks: list[dict]) -> dict[int, int]:
    """``{tidal id: Label Studio task id}`` of the tasks made from tidal's tasks (``data.tidal_id``)."""
    out = {}
    for t in tasks:
        value = (t.get("data") or {}).get("tidal_id")
        if isinstance(value, int) and not isinstance(value, bool):
            out.setdefault(value, t["id"])
        elif isinstance(value, (str, float)):
            try:
                out.setdefault(int(float(value)), t["id"])
            except ValueError:
                pass
    return out


@dataclass
class PushResult:
    round: int
    imported: int  # tasks new to the Label Studio project
    predicted: int  # tasks already there that got this round's prediction
    model_version: str | None  # the project's model_version now (None: a random round, not changed)


def push_round(project: str | Path, *, url: str, token: str, ls_project: int, round: int | None = None) -> PushResult:
    """Put round ``round`` (default: the latest) of tidal ``project`` into Label Studio project ``ls_project``.

    Tasks whose sample is not in the Label Studio project yet are imported from the round's
    ``tasks.json``; samples already there get the round's prediction added to their task (no
    duplicate task). Then, for a round with a model, the project's ``model_version`` is set to
    ``"tidal round N"``, so Label Studio pre-selects the model's class and "Uncertainty
    sampling" (and the Data Manager's prediction-score column) use this round's scores.
    """
    from tidal.project.query import round_dir
    from tidal.project.store import DB_NAME, ProjectStore

    project = Path(project)
    with ProjectStore(project / DB_NAME, readonly=True) as store:
        rounds = store.num_rounds()
    if rounds == 0:
        raise ValueError(f"project {project} has no round yet; run `tidal query {project} -k N` first")
    rnd = rounds if round is None else int(round)
    if not 1 <= rnd <= rounds:
        raise ValueError(f"--round {rnd} is not a round of {project} (it has rounds 1..{rounds})")
    path = round_dir(project, rnd) / "tasks.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `tidal query {project} -k N` again to write it")
    tasks = json.loads(path.read_text(encoding="utf-8"))
    api = LabelStudioAPI(url, token)
    there = tidal_ids(api.tasks(ls_project))
    new = [t for t in tasks if t["data"]["tidal_id"] not in there]
    old = [t for t in tasks if t["data"]["tidal_id"] in there]
    if new:
        api.import_tasks(ls_project, new)
    predictions = [{**p, "task": there[t["data"]["tidal_id"]]} for t in old for p in t.get("predictions", [])]
    if predictions:
        api.import_predictions(ls_project, predictions)
    version = next((p["model_version"] for t in tasks for p in t.get("predictions", [])), None)
    if version is not None:
        api.update_project(ls_project, model_version=version)
    return PushResult(rnd, len(new), len(old) if predictions else 0, version)


def connect_backend(*, url: str, token: str, ls_project: int, backend: str, every: int | None = None,
                    title: str = "tidal", secret: str | None = None) -> dict:
    """Connect the ML backend at ``backend`` (``tidal serve``) to Label Studio project ``ls_project``.

    Adds it (``POST /api/ml``, which also makes Label Studio send the project's annotation
    webhooks to ``backend/webhook``), sets the project's sampling to "Uncertainty sampling" and,
    when ``every`` is given, ``min_annotations_to_start_training`` to it (Label Studio then asks
    for a retrain after every ``every`` annotations). With ``secret``, the backend is called with
    basic auth (user ``tidal``) and the webhook with the header ``Authorization: Bearer SECRET``.
    Returns the ML backend's record.
    """
    api = LabelStudioAPI(url, token)
    body: dict[str, Any] = {"url": backend.rstrip("/"), "project": int(ls_project), "title": title,
                            "is_interactive": False}
    if secret:
        body.update(auth_method="BASIC_AUTH", basic_auth_user="tidal", basic_auth_pass=secret)
    existing = api.request("GET", f"/api/ml?project={int(ls_project)}") or []
    same = [b for b in existing if str(b.get("url", "")).rstrip("/") == body["url"]]
    backend_record = same[0] if same else api.request("POST", "/api/ml", body)
    if secret:  # the webhook Label Studio made for the backend carries no basic auth: give it the header
        hooks = api.request("GET", f"/api/webhooks/?project={int(ls_project)}") or []
        for h in hooks:
            if str(h.get("url", "")).startswith(body["url"] + "/webhook"):
                api.request("PATCH", f"/api/webhooks/{h['id']}/", {"headers": {"Authorization": f"Bearer {secret}"}})
    fields: dict[str, Any] = {"sampling": UNCERTAINTY}
    if every is not None:
        if every < 1:
            raise ValueError(f"--every {every} must be >= 1 (annotations between retrains)")
        fields["min_annotations_to_start_training"] = int(every)
    api.update_project(ls_project, **fields)
    return backend_record
