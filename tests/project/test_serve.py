"""`tidal serve` without Label Studio: Label Studio 1.23's requests replayed against the backend.

The payloads have the shape Label Studio 1.23.2 sends (``ml/api_connector.py`` for health, setup,
predict and train; ``webhooks/models.py`` serializers for the annotation events): a full task
with its ``data`` (tidal's ``tidal_id``, ``path``, ``image``), the annotation with its ``result``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tidal.project.answers import import_labels
from tidal.project.labelstudio import label_config
from tidal.project.project import init_project
from tidal.project.query import round_dir
from tidal.project.serve import INBOX_NAME, make_server
from tidal.project.store import DB_NAME, ProjectStore

pytestmark = pytest.mark.timeout(300)


def _call(url: str, path: str, body: object = None, raw: bytes | None = None, headers: dict | None = None):
    """(status, JSON answer, seconds) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), time.perf_counter() - t0
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), time.perf_counter() - t0


def _task(ls_id: int, sample: int, path: str, pool: str = "pool") -> dict:
    """A task as Label Studio serializes it (TaskSimpleSerializer / the webhook's task)."""
    from urllib.parse import quote

    return {"id": ls_id, "data": {"image": f"/data/local-files/?d={pool}/{quote(path)}", "tidal_id": sample,
                                  "path": path},
            "meta": {}, "created_at": "2026-12-05T06:40:01.123456Z", "updated_at": "2026-12-05T06:40:01.123456Z",
            "is_labeled": False, "overlap": 1, "inner_id": ls_id, "total_annotations": 0, "cancelled_annotations": 0,
            "total_predictions": 0, "comment_count": 0, "unresolved_comment_count": 0, "last_comment_updated_at": None,
            "project": 1, "updated_by": None, "file_upload": None, "comment_authors": [], "annotations": [],
            "predictions": []}


def _annotation(aid: int, ls_task: int, label: str | None, cancelled: bool = False) -> dict:
    result = [] if label is None else [{"id": f"r{aid}", "type": "choices", "value": {"choices": [label]},
                                        "origin": "manual", "to_name": "image", "from_name": "label"}]
    return {"id": aid, "result": result, "created_username": " tidal@example.com, 1", "created_ago": "0 minutes",
            "completed_by": 1, "was_cancelled": cancelled, "ground_truth": False,
            "created_at": "2026-12-05T06:41:00.000000Z", "updated_at": f"2026-12-05T06:41:{aid:02d}.000000Z",
            "draft_created_at": None, "lead_time": 3.2, "import_id": None, "last_action": None, "bulk_created": False,
            "task": ls_task, "project": 1, "updated_by": 1, "parent_prediction": None, "parent_annotation": None,
            "last_created_by": None}


def _event(action: str, ann: dict, task: dict) -> dict:
    return {"action": action, "annotation": ann, "task": task,
            "project": {"id": 1, "title": "tidal", "label_config": "<View/>"}}


@pytest.fixture
def served(tmp_path: Path, write_images, classes, fast):
    """A project over 45 PNGs with 6 labels, served on a free loopback port; yields (url, project, truth, server)."""
    truth = write_images(tmp_path / "pool", 45)
    project = tmp_path / "project"
    init_project(project, f"folder:{tmp_path / 'pool'}", classes, **fast)
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        paths = s.paths()
    first = tmp_path / "first.csv"
    first.write_text("id,label\n" + "".join(f"{i},{truth[paths[i]]}\n" for i in range(6)))
    import_labels(project, first)
    logs: list[str] = []
    server = make_server(project, port=0, device="cpu", log=logs.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", project, (truth, paths), server, logs
    finally:
        server.shutdown()
        server.server_close()
        server.backend.close()



def _labelled_project(tmp_path, write_images, classes, **init) -> tuple:
    """A project over 45 written images whose first 6 (in the store's order) are labelled:
    (project folder, the images' true classes by path, the store's paths)."""
    truth = write_images(tmp_path / "pool", 45)
    project = tmp_path / "project"
    init_project(project, f"folder:{tmp_path / 'pool'}", classes, **init)
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        paths = s.paths()
    (tmp_path / "first.csv").write_text("id,label\n" + "".join(f"{i},{truth[paths[i]]}\n" for i in range(6)))
    import_labels(project, tmp_path / "first.csv")
    return project, truth, paths

def test_replayed_label_studio_requests(served, classes) -> None:
    url, project, (truth, paths), server, logs = served
    b = server.backend

    # health and setup (the config tidal prints is accepted; another one is refused with the reason)
    status, body, _ = _call(url, "/health")
    assert status == 200 and body["status"] == "UP" and body["model_version"] == "tidal none"
    status, body, _ = _call(url, "/setup", {"project": "7.1764916401", "schema": label_config(classes),
                                            "hostname": "http://localhost:8080", "access_token": "x",
                                            "extra_params": None})
    assert (status, body) == (200, {"model_version": "tidal none"}) and b.ls_project == 7
    status, body, _ = _call(url, "/setup", {"project": "7.1", "schema": label_config(["cat", "dog"])})
    assert status == 400 and "not the project's classes" in body["error"]

    # predict before any model: one empty result per task, in order
    tasks = [_task(100 + i, i, paths[i]) for i in (10, 11, 12)]
    status, body, _ = _call(url, "/predict", {"tasks": tasks, "project": "7.1", "label_config": "",
                                              "params": {"login": None, "password": None, "context": None}})
    assert status == 200 and [r["result"] for r in body["results"]] == [[], [], []]

    # START_TRAINING: answered at once, trained in the background (a round of `tidal query`)
    status, body, seconds = _call(url, "/webhook", {"action": "START_TRAINING", "project": {"id": 7}})
    assert status == 200 and body["training"] in ("started", "queued") and seconds < 1.0
    assert b.wait_idle(240) and b.trainings == 1 and b.last_error is None
    assert b.cached.version == "tidal round 1"
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        rnd = s.rounds()[-1]
    assert rnd.round == 1 and not rnd.random and len(rnd.selections) == 45 - 6

    # predict answers from the round: its predicted class, and a queue score whose order is the round's ranking
    ranked = [sel.id for sel in rnd.selections]
    tasks = [_task(200 + n, i, paths[i]) for n, i in enumerate(reversed(ranked))]
    tasks[1]["data"] = {"image": tasks[1]["data"]["image"]}  # resolved by its local-files URL alone
    status, body, _ = _call(url, "/predict", {"tasks": tasks})
    assert status == 200 and len(body["results"]) == len(tasks)
    scores = [r["score"] for r in body["results"]]
    assert all(0 <= q < 1 for q in scores) and {r["model_version"] for r in body["results"]} == {"tidal round 1"}
    by_score = [t["data"].get("tidal_id", ranked[-2]) for _, t in sorted(zip(scores, tasks), key=lambda p: p[0])]
    assert by_score == ranked  # lowest score first = `tidal query`'s ranking
    predicted = {sel.id: classes[sel.predicted] for sel in rnd.selections}
    assert [r["result"][0]["value"]["choices"][0] for r in body["results"]] == [predicted[i] for i in reversed(ranked)]

    # the three annotation events; each answered well under a second
    a, c, d, e = ranked[0], ranked[1], ranked[2], ranked[3]
    sync = _task(304, e, paths[e])
    sync["data"] = {"image": sync["data"]["image"]}
    wrong = next(x for x in classes if x != truth[paths[a]])
    events = [
        ("ANNOTATION_CREATED", _annotation(1, 300, wrong), _task(300, a, paths[a]), 200),
        ("ANNOTATION_UPDATED", _annotation(1, 300, truth[paths[a]]), _task(300, a, paths[a]), 200),  # relabel
        ("ANNOTATION_CREATED", _annotation(2, 301, truth[paths[c]]), _task(301, c, paths[c]), 200),
        ("ANNOTATION_CREATED", _annotation(3, 302, None, cancelled=True), _task(302, d, paths[d]), 200),  # skipped
        ("ANNOTATION_CREATED", _annotation(4, 303, truth[paths[d]]), _task(303, d, paths[d]), 200),
        # a task made by Label Studio's storage Sync has only its image URL: found by it, validated the same
        ("ANNOTATION_CREATED", _annotation(6, 304, truth[paths[e]]), sync, 200),
    ]
    for action, ann, task, code in events:
        status, body, seconds = _call(url, "/webhook", _event(action, ann, task))
        assert status == code and seconds < 1.0, (action, body)
    assert body == {"action": "ANNOTATION_CREATED", "stored": 1, "skipped": 0}
    # a second annotation that disagrees is refused unless it is an update (tidal label's --relabel)
    other = next(x for x in classes if x != truth[paths[c]])
    status, body, _ = _call(url, "/webhook", _event("ANNOTATION_CREATED", _annotation(5, 301, other),
                                                    _task(301, c, paths[c])))
    assert status == 409 and "update that annotation" in body["error"]
    # deleting annotation 4 forgets the label it gave
    status, body, _ = _call(url, "/webhook", {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 4}],
                                              "project": {"id": 7}})
    assert (status, body["forgotten"]) == (200, 1)

    assert b.wait_idle(60)
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        labels = s.labels()
        sources = s.label_sources()
    assert classes[labels[a]] == truth[paths[a]] and classes[labels[c]] == truth[paths[c]] and d not in labels
    assert sources[a][0] == "Label Studio annotation 1" and len(labels) == 6 + 3
    assert classes[labels[e]] == truth[paths[e]] and sources[e][0] == "Label Studio annotation 6"
    assert (project / INBOX_NAME).read_text() == ""

    # malformed and foreign payloads: 4xx with a one-line reason, never a traceback
    bad = [
        ("/webhook", b"{not json", 400, "not JSON"),
        ("/webhook", b"[1, 2]", 400, "not an object"),
        ("/webhook", json.dumps({"action": "EXPLODE"}).encode(), 400, "unknown action"),
        ("/webhook", json.dumps({"annotation": {}}).encode(), 400, "no 'action'"),
        ("/webhook", json.dumps(_event("ANNOTATION_CREATED", _annotation(9, 1, "red"), {"id": 1})).encode(), 400,
         "not a task object"),
        ("/webhook", json.dumps(_event("ANNOTATION_CREATED", _annotation(9, 1, "purple"),
                                       _task(1, 20, paths[20]))).encode(), 422, "not one of the project's classes"),
        ("/webhook", json.dumps(_event("ANNOTATION_CREATED", _annotation(9, 1, "red"),
                                       _task(1, 9999, "x.png"))).encode(), 422, "not a sample of project"),
        ("/webhook", json.dumps(_event("ANNOTATION_CREATED", _annotation(9, 1, "red"),
                                       _task(1, 20, "another.png"))).encode(), 422, "another one's"),
        ("/predict", json.dumps({"tasks": [{"id": 1, "data": {"image": "https://elsewhere/x.png"}}]}).encode(), 422,
         "names no sample"),
        ("/predict", json.dumps({"tasks": []}).encode(), 400, "non-empty list"),
        ("/predict", json.dumps({"tasks": [{"id": 1, "data": {"tidal_id": "1e400"}}]}).encode(), 400,
         "not a sample id"),
        ("/predict", json.dumps({"tasks": [{"id": 1, "data": {"tidal_id": 2.5}}]}).encode(), 400, "whole number"),
        ("/setup", json.dumps({"schema": "<View><Image"}).encode(), 400, "not XML"),
        ("/nowhere", b"{}", 404, "no such endpoint"),
    ]
    for path, raw, code, why in bad:
        status, body, _ = _call(url, path, raw=raw)
        assert status == code and why in body["error"] and "\n" not in body["error"], (path, body)
    status, body, _ = _call(url, "/webhook", {"action": "PROJECT_UPDATED", "project": {"id": 7}})
    assert (status, body.get("ignored")) == (200, True)  # Label Studio sends every action: the rest are ignored
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        assert s.labels() == labels  # nothing refused was stored
    assert all(line.count("\n") == 0 for line in logs) and any(" POST /webhook ANNOTATION_CREATED 200 " in line
                                                              for line in logs)


def test_training_requests_merge_and_a_restart_resumes(served, classes) -> None:
    url, project, (truth, paths), server, _ = served
    b = server.backend
    answers = [_call(url, "/train", {"project": "7.1"})[1]["training"] for _ in range(4)]
    assert answers[0] == "started" and set(answers[1:]) == {"queued"}
    assert b.wait_idle(240) and b.trainings in (1, 2)  # merged: at most one follow-up run
    version = b.cached.version
    # an acknowledged label still in the inbox when the server dies is stored by the next one
    (project / INBOX_NAME).write_text(json.dumps({"pairs": [[30, classes.index(truth[paths[30]])]],
                                                  "source": "Label Studio annotation 77", "at": 0}) + "\n")
    again = make_server(project, port=0, device="cpu", log=lambda line: None)
    try:
        assert again.backend.cached.version == version  # resumes from the last finished model
        assert again.backend.wait_idle(60)
        with ProjectStore(project / DB_NAME, readonly=True) as s:
            assert s.label_sources()[30][0] == "Label Studio annotation 77"
    finally:
        again.server_close()
        again.backend.close()


def test_a_project_held_by_another_command_is_logged_once_then_once_stored(served, monkeypatch, capsys) -> None:
    """While another tidal command holds the project, the inbox waits for it: one line when the wait
    begins (naming the holder) and one when the labels are stored, not one per try."""
    import os

    from tidal.rundir import RunDirLock

    url, project, (truth, paths), server, logs = served
    monkeypatch.setattr("tidal.project.project.LOCK_WAIT_S", 0.2)  # each try gives up fast: several tries
    held = RunDirLock(project)  # this process plays the other tidal command
    try:
        status, body, _ = _call(url, "/webhook", _event("ANNOTATION_CREATED", _annotation(1, 300, truth[paths[20]]),
                                                        _task(300, 20, paths[20])))
        assert (status, body["stored"]) == (200, 1)
        time.sleep(3.0)  # the worker tries about every 1.2 s
        assert not server.backend.wait_idle(0)  # still in the inbox
    finally:
        held.release()
    assert server.backend.wait_idle(60)
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        assert s.label_sources()[20][0] == "Label Studio annotation 1"
    said = [line for line in logs if not line.startswith("tidal serve: 127.0.0.1 ")]  # not the request lines
    assert len(said) == 2, said
    assert f"is in use by another tidal process (pid {os.getpid()}: " in said[0] and INBOX_NAME in said[0]
    assert "is free again; stored 1 inbox records after waiting" in said[1]
    assert "waiting up to" not in capsys.readouterr().err  # nor a line per try on stderr


def test_a_shared_secret_is_required_when_set(tmp_path, write_images, classes, fast) -> None:
    write_images(tmp_path / "pool", 6)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    server = make_server(tmp_path / "p", port=0, secret="s3cret", log=lambda line: None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert _call(url, "/health")[0] == 401
        assert _call(url, "/health", headers={"Authorization": "Bearer nope"})[0] == 401
        assert _call(url, "/health", headers={"Authorization": "Bearer s3cret"})[0] == 200
        basic = base64.b64encode(b"tidal:s3cret").decode()
        assert _call(url, "/health", headers={"Authorization": f"Basic {basic}"})[0] == 200
    finally:
        server.shutdown()
        server.server_close()
        server.backend.close()


def test_serve_help_and_labelstudio_commands_parse() -> None:
    from tidal.cli import build_parser

    args = build_parser().parse_args(["serve", "p", "--port", "9191", "--label-studio", "http://127.0.0.1:8080"])
    assert (args.command, args.port, args.host) == ("serve", 9191, "127.0.0.1")
    args = build_parser().parse_args(["labelstudio", "push", "p", "--url", "http://h", "--ls-project", "3"])
    assert (args.ls_command, args.ls_project, args.round) == ("push", 3, None)
    assert round_dir(Path("p"), 3) == Path("p/rounds/003")


def test_killing_tidal_serve_mid_retrain_loses_no_acknowledged_label(tmp_path, write_images, classes, fast) -> None:
    """SIGKILL while a retrain holds the project: the labels acknowledged meanwhile are only in the inbox;
    the next `tidal serve` stores them and serves the last finished model."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    project, truth, paths = _labelled_project(tmp_path, write_images, classes, train={**fast["train"], "epochs": 30})
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "tidal", "serve", str(project), "--port", str(port), "--device",
                             "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _call(url, "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "tidal serve did not start"
            time.sleep(0.2)
        assert _call(url, "/webhook", {"action": "START_TRAINING"})[1]["training"] == "started"
        deadline = time.monotonic() + 60
        while not _call(url, "/health")[1]["training"]:  # the retrain (and its 1 s settle) has begun
            assert time.monotonic() < deadline
            time.sleep(0.05)
        acked = {}
        for n, i in enumerate(range(10, 16)):
            status, body, seconds = _call(url, "/webhook", _event("ANNOTATION_CREATED", _annotation(n + 1, 500 + i,
                                                                                                  truth[paths[i]]),
                                                                  _task(500 + i, i, paths[i])))
            assert status == 200 and body["stored"] == 1 and seconds < 1.0
            acked[i] = truth[paths[i]]
        assert _call(url, "/health")[1]["training"]  # still training: the labels wait in the inbox
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    with ProjectStore(project / DB_NAME, readonly=True) as s:
        assert s.num_rounds() == 0  # the killed retrain stored nothing
    again = make_server(project, port=0, device="cpu", log=lambda line: None)
    try:
        assert again.backend.wait_idle(60) and again.backend.cached.version == "tidal none"
        with ProjectStore(project / DB_NAME, readonly=True) as s:
            labels = s.labels()
        assert {i: classes[labels[i]] for i in acked} == acked and len(labels) == 6 + len(acked)
    finally:
        again.server_close()
        again.backend.close()


def test_cli_mistakes_are_one_line(tmp_path, capsys, write_images, classes, fast, monkeypatch) -> None:
    from tidal.cli import main

    assert main(["serve", str(tmp_path / "nowhere")]) == 2
    assert "is not a tidal project" in capsys.readouterr().err
    write_images(tmp_path / "pool", 6)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    assert main(["serve", str(tmp_path / "p"), "--label-studio", "http://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "no Label Studio API token" in err and err.count("\n") == 1
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "a.b.c")
    assert main(["labelstudio", "push", str(tmp_path / "p"), "--url", "http://127.0.0.1:8080", "--ls-project", "1"]) == 2
    assert "has no round yet" in capsys.readouterr().err
    assert main(["labelstudio", "connect", "--url", "ftp://x", "--ls-project", "1"]) == 2
    assert "must start with http://" in capsys.readouterr().err


class _FakeLabelStudio:
    """A Label Studio API stand-in on loopback: the tasks list (with their annotations), predictions import
    and project PATCH (``delay`` s each: a slow push); records the calls."""

    def __init__(self, delay: float = 0.0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.annotations: list[dict] = []  # {"id", "task", "updated_at", "was_cancelled"}
        self.tasks: list[dict] = []  # {"id", "data"}: tasks without annotations too
        self.calls: list[str] = []
        self.bodies: list = []  # the POST bodies, in order
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, body) -> None:
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802
                fake.calls.append("GET " + self.path)
                tasks = {t["id"]: {**t, "annotations": []} for t in fake.tasks}
                for a in list(fake.annotations):
                    task = tasks.setdefault(a["task"], {"id": a["task"], "data": {}, "annotations": []})
                    task["annotations"].append(a)
                self._send({"tasks": list(tasks.values()), "total": len(tasks)})

            def do_POST(self) -> None:  # noqa: N802
                fake.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                fake.calls.append("POST " + self.path)
                time.sleep(delay)
                self._send({"created": 0})

            def do_PATCH(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.calls.append("PATCH " + self.path)
                time.sleep(delay)
                self._send({})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _serve_with(project: Path, fake: _FakeLabelStudio, logs: list[str], **kw):
    server = make_server(project, port=0, device="cpu", log=logs.append, label_studio=fake.url,
                         token="legacy0token", ls_project=1, **kw)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_start_training_waits_for_the_webhook_of_the_annotation_that_asked(tmp_path, write_images, classes,
                                                                            fast) -> None:
    """Label Studio sends START_TRAINING inside the save of the N-th annotation, before that annotation's
    webhook, which may come seconds later on a loaded machine: the retrain waits for it (Label Studio's API
    lists it; the payload's project counts it), not for a fixed second."""
    project, truth, paths = _labelled_project(tmp_path, write_images, classes, **fast)
    fake = _FakeLabelStudio()
    logs: list[str] = []
    server, url = _serve_with(project, fake, logs)
    b = server.backend
    try:
        assert b.wait_idle(60)
        for n, i in enumerate(range(10, 14)):  # 4 annotations; the 4th one's webhook comes 2.5 s after the ask
            ann = _annotation(n + 1, 500 + i, truth[paths[i]])
            fake.annotations.append({"id": ann["id"], "task": 500 + i, "updated_at": ann["updated_at"],
                                     "was_cancelled": False})
            if n < 3:
                assert _call(url, "/webhook", _event("ANNOTATION_CREATED", ann, _task(500 + i, i, paths[i])))[0] == 200
        status, body, seconds = _call(url, "/webhook", {"action": "START_TRAINING",
                                                        "project": {"id": 1, "total_annotations_number": 4}})
        assert status == 200 and body["training"] == "started" and seconds < 1.0
        time.sleep(2.5)
        assert b.trainings == 0 and _call(url, "/health")[1]["training"]  # still waiting for the 4th webhook
        assert _call(url, "/webhook", _event("ANNOTATION_CREATED", ann, _task(513, 13, paths[13])))[0] == 200
        assert b.wait_idle(240) and b.trainings == 1 and b.last_error is None
        with ProjectStore(project / DB_NAME, readonly=True) as s:
            rnd = s.rounds()[-1]
        assert rnd.round == 1 and len(rnd.selections) == 45 - 6 - 4  # trained on all 10 labels
        assert any("waited" in line and "webhooks" in line for line in logs), logs

        # a count Label Studio has not committed yet (it asks inside the save): waits, bounded, then says so
        b.wait_labels = 1.0
        assert _call(url, "/webhook", {"action": "START_TRAINING",
                                       "project": {"id": 1, "total_annotations_number": 5}})[0] == 200
        assert b.wait_idle(240) and b.trainings == 2
        assert any("retraining without 1 of the 5 annotations" in line for line in logs), logs

        # the older /train lists the annotated tasks with their annotations: it waits for those webhooks too
        b.wait_labels = 30.0
        late = _annotation(77, 514, truth[paths[14]])
        listed = [{**_task(514, 14, paths[14]), "annotations": [late]}]
        assert _call(url, "/train", {"annotations": listed, "project": "1.1", "label_config": ""})[0] == 200
        time.sleep(2.0)
        assert b.trainings == 2  # still waiting for annotation 77's webhook
        assert _call(url, "/webhook", _event("ANNOTATION_CREATED", late, _task(514, 14, paths[14])))[0] == 200
        assert b.wait_idle(240) and b.trainings == 3
        with ProjectStore(project / DB_NAME, readonly=True) as s:
            assert 14 not in [sel.id for sel in s.rounds()[-1].selections]  # trained with it
    finally:
        server.shutdown()
        server.server_close()
        b.close()
        fake.close()


def test_health_never_shows_the_new_model_still_training(tmp_path, write_images, classes, fast) -> None:
    """model_version, training and trainings change in one step; the push to Label Studio (slow here) comes
    after, with training already false, so whoever sees the new model_version in Label Studio sees
    ``training: false`` too."""
    project, truth, paths = _labelled_project(tmp_path, write_images, classes, **fast)
    fake = _FakeLabelStudio(delay=1.5)
    logs: list[str] = []
    server, url = _serve_with(project, fake, logs)
    b = server.backend
    try:
        assert b.wait_idle(60)
        start = {"action": "START_TRAINING", "project": {"id": 1, "total_annotations_number": 0}}
        assert _call(url, "/webhook", start)[0] == 200
        seen = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            h = _call(url, "/health")[1]
            seen.append((h["model_version"], h["training"], h["trainings"], h.get("pushing")))
            if h["trainings"] == 1 and not h.get("pushing") and not h["training"]:
                break
            time.sleep(0.02)
        assert all(not training for version, training, _, _ in seen if version == "tidal round 1"), seen
        assert all(n == (version == "tidal round 1") for version, _, n, _ in seen), seen
        assert ("tidal round 1", False, 1, True) in seen  # the push, after the model is published
        assert b.wait_idle(30)
    finally:
        server.shutdown()
        server.server_close()
        b.close()
        fake.close()


def test_a_started_server_pushes_the_stored_model_before_it_answers(tmp_path, write_images, classes, fast) -> None:
    """With a stored round, Label Studio gets its predictions and model_version before tidal serve answers
    anything: its queue serves TiDAL's order (never a random task, a labelled one perhaps) from the start."""
    from tidal.project.query import query_project

    project, truth, paths = _labelled_project(tmp_path, write_images, classes, **fast)
    query_project(project, 39, device="cpu")
    fake = _FakeLabelStudio()
    fake.tasks = [{"id": 500 + i, "data": {"tidal_id": i, "path": p}} for i, p in enumerate(paths)]
    fake.tasks.append({"id": 999, "data": {"image": f"/data/local-files/?d=pool/{paths[20]}"}})  # synced too
    logs: list[str] = []
    server, url = _serve_with(project, fake, logs)
    try:
        assert fake.calls[-2:] == ["POST /api/projects/1/import/predictions", "PATCH /api/projects/1"]
        assert any("pushed 40 predictions and model_version 'tidal round 1'" in line for line in logs), logs
        pushed = {p["task"]: p for p in fake.bodies[-1]}
        assert set(pushed) == {500 + i for i in range(6, 45)} | {999}  # both of sample 20's tasks
        assert pushed[999]["score"] == pushed[520]["score"] and pushed[520]["model_version"] == "tidal round 1"
        h = _call(url, "/health")[1]
        assert (h["model_version"], h["training"], h["trainings"]) == ("tidal round 1", False, 0)
    finally:
        server.shutdown()
        server.server_close()
        server.backend.close()
        fake.close()
