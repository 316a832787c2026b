"""The Label Studio side of the round trip, run with the Label Studio venv's python (not pytest's).

Label Studio pins its own Django, numpy, ... so it and its SDK live in ``.venv-labelstudio``;
``test_labelstudio_server.py`` runs this script there with a JSON job on stdin and reads a JSON
report on stdout. Through the SDK (``label_studio_sdk.client.LabelStudio``, SDK 1.x/2.x) it:

1. creates a project with the given labelling config;
2. imports the tasks of a ``tasks.json`` and connects a Local Storage for the pool folder (and
   tries one at the document root, which Label Studio refuses);
3. downloads each task's image URL from the server (checks local-files serving);
4. posts the given annotations (a list per tidal id; ``null`` = a cancelled/skipped one);
5. exports the project in each given format and writes the files to ``out``.

Job: ``{"url", "token", "config", "tasks", "storage", "document_root", "annotations": {tidal_id: [label|null]},
"formats": [...], "out"}``. Report: ``{"project", "tasks": {tidal_id: task id}, "images":
{tidal_id: sha256}, "predictions": {tidal_id: [score, model_version, choice]}, "exports": {format: file},
"storage_at_root_refused": bool}``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import urllib.request
from pathlib import Path

from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError


def export(client: LabelStudio, project: int, fmt: str, out: Path, timeout: float = 60.0) -> Path:
    """Create an export snapshot, wait until it is built, download it converted to ``fmt``."""
    snapshot = client.projects.exports.create(project, title=f"tidal test {fmt}")
    deadline = time.monotonic() + timeout
    while snapshot.status != "completed":
        if snapshot.status == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"export snapshot {snapshot.id} is {snapshot.status!r}")
        time.sleep(0.2)
        snapshot = client.projects.exports.get(project, snapshot.id)
    path = out / f"export-{fmt}.{'csv' if fmt == 'CSV' else 'json'}"
    path.write_bytes(b"".join(client.projects.exports.download(project, snapshot.id, export_type=fmt)))
    return path


def main() -> None:
    job = json.load(sys.stdin)
    client = LabelStudio(base_url=job["url"], api_key=job["token"])
    project = client.projects.create(title="tidal round trip", label_config=job["config"])
    tasks = json.loads(Path(job["tasks"]).read_text(encoding="utf-8"))
    client.projects.import_tasks(project.id, request=tasks, return_task_ids=True)
    client.import_storage.local.create(project=project.id, path=job["storage"], use_blob_urls=True)
    try:  # Label Studio refuses a storage at the document root itself: the pool must be a subfolder
        client.import_storage.local.create(project=project.id, path=job["document_root"])
        root_refused = False
    except ApiError:  # HTTP 400: "cannot be the same as LOCAL_FILES_DOCUMENT_ROOT"
        root_refused = True

    report: dict = {"project": project.id, "tasks": {}, "images": {}, "predictions": {}, "exports": {},
                    "storage_at_root_refused": root_refused}
    for task in client.tasks.list(project=project.id):
        tid = str(task.data["tidal_id"])
        report["tasks"][tid] = task.id
        request = urllib.request.Request(job["url"] + task.data["image"],
                                         headers={"Authorization": f"Token {job['token']}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            report["images"][tid] = hashlib.sha256(response.read()).hexdigest()
        for p in client.predictions.list(task=task.id):
            report["predictions"][tid] = [p.score, p.model_version, p.result[0]["value"]["choices"]]

    for tid, labels in job["annotations"].items():
        for label in labels:  # in order: the last one is the most recent
            result = [] if label is None else [{"from_name": "label", "to_name": "image", "type": "choices",
                                                "value": {"choices": [label] if isinstance(label, str) else label}}]
            client.annotations.create(report["tasks"][tid], result=result, was_cancelled=label is None)

    out = Path(job["out"])
    for fmt in job["formats"]:
        report["exports"][fmt] = str(export(client, project.id, fmt, out))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
