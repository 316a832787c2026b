"""Time a labelling session through `tidal serve`: from the N-th annotation to the reordered queue.

    python benchmarks/labelling_session.py [--n 20] [--retrains 3] [--pool 600] [--vectors 5000]

Two projects, both with the quick preset's training:

* ``images``: a folder of ``--pool`` FashionMNIST PNGs (three classes, 28 x 28), the auto model
  (ResNet-18 for images);
* ``vectors``: ``--vectors`` FashionMNIST images flattened to 784-d feature vectors in an npz, the
  MLP (``--model mlp``).

Each starts with 20 labels and one retrain, then ``--retrains`` times: ``--n`` annotations are
posted to ``tidal serve``'s ``/webhook`` over HTTP exactly as Label Studio 1.23 sends them (the
answers filled in from FashionMNIST's labels), then ``START_TRAINING``; the time from the N-th
annotation to the moment ``/predict`` answers with the new ``model_version`` (the retrain's 1 s
settle, the round of ``tidal query``, the swap) is the wait for a reordered queue. Pushing the
new order to a running Label Studio adds its REST calls (measured by the real-server test,
``tests/project/test_labelstudio_server.py``, and printed there). Saves the table to
benchmarks/results/labelling_session.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import write_table

from tidal.data import load_dataset

CLASSES = {0: "tshirt", 1: "trouser", 7: "sneaker"}  # FashionMNIST label -> class name


def _post(url: str, body: dict) -> tuple[dict, float]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read()), time.perf_counter() - t0


def _event(aid: int, sample: int, path: str, label: str) -> dict:
    return {"action": "ANNOTATION_CREATED", "project": {"id": 1},
            "annotation": {"id": aid, "task": 1000 + sample, "was_cancelled": False, "ground_truth": False,
                           "updated_at": "2026-12-05T07:00:00Z",
                           "result": [{"from_name": "label", "to_name": "image", "type": "choices",
                                       "value": {"choices": [label]}}]},
            "task": {"id": 1000 + sample, "data": {"tidal_id": sample, "path": path}}}


def make_projects(work: Path, pool: int, vectors: int) -> dict[str, tuple[Path, list[str]]]:
    """The two projects; returns {name: (project, truth by sample id)}."""
    from PIL import Image

    from tidal.project.project import init_project
    from tidal.project.store import DB_NAME, ProjectStore

    data = load_dataset("fashion-mnist")
    keep = [i for i, y in enumerate(data.train.labels.tolist()) if y in CLASSES]
    names = list(CLASSES.values())
    out = {}
    folder = work / "images"
    folder.mkdir(exist_ok=True)
    for i in keep[:pool]:
        Image.fromarray(data.train.images[i, 0].numpy()).save(folder / f"{i:05d}.png")
    init_project(work / "p-images", f"folder:{folder}", names)
    by_name = {f"{i:05d}.png": CLASSES[int(data.train.labels[i])] for i in keep[:pool]}
    with ProjectStore(work / "p-images" / DB_NAME, readonly=True) as s:
        out["images"] = (work / "p-images", [by_name[p] for p in s.paths()])
    sel = keep[:vectors]
    x = data.train.images[sel].reshape(len(sel), -1).float().numpy() / 255.0
    y = np.array([names.index(CLASSES[int(data.train.labels[i])]) for i in sel])
    test = [i for i, t in enumerate(data.test.labels.tolist()) if t in CLASSES][:600]  # the holdout
    xt = data.test.images[test].reshape(len(test), -1).float().numpy() / 255.0
    yt = np.array([names.index(CLASSES[int(data.test.labels[i])]) for i in test])
    np.savez(work / "vectors.npz", x_train=x.astype(np.float32), y_train=np.full(len(sel), -1),
             x_test=xt.astype(np.float32), y_test=yt, class_names=np.array(names))
    init_project(work / "p-vectors", f"npz:{work / 'vectors.npz'}", names, train={"model": "mlp"})
    out["vectors"] = (work / "p-vectors", [names[c] for c in y])
    return out


def session(project: Path, truth: list[str], n: int, retrains: int) -> dict:
    from tidal.project.answers import import_labels
    from tidal.project.serve import make_server
    from tidal.project.store import DB_NAME, ProjectStore

    with ProjectStore(project / DB_NAME, readonly=True) as s:
        paths = s.paths()
    rng = np.random.default_rng(0)
    first = project / "first.csv"
    first.write_text("id,label\n" + "".join(f"{i},{truth[i]}\n" for i in rng.permutation(len(paths))[:20]))
    import_labels(project, first)
    server = make_server(project, port=0, device="cpu", log=lambda line: None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    b = server.backend
    waits, answers, aid = [], [], 0
    try:
        _post(url + "/webhook", {"action": "START_TRAINING"})
        b.wait_idle(3600)
        for _ in range(retrains):
            order = list(b.cached.order)[:n]  # the annotator labels what the queue serves first
            for i in order:
                aid += 1
                _, seconds = _post(url + "/webhook", _event(aid, i, paths[i], truth[i]))
                answers.append(seconds)
            t_last = time.perf_counter()
            before = b.cached.version
            _post(url + "/webhook", {"action": "START_TRAINING"})
            task = {"id": 1, "data": {"tidal_id": int(order[0])}}
            while _post(url + "/predict", {"tasks": [task]})[0]["results"][0]["model_version"] == before:
                time.sleep(0.05)
            waits.append(time.perf_counter() - t_last)
            b.wait_idle(3600)
    finally:
        server.shutdown()
        server.server_close()
        b.close()
    return {"waits": waits, "answers": answers, "pool": len(paths)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20, help="annotations between retrains")
    parser.add_argument("--retrains", type=int, default=3)
    parser.add_argument("--pool", type=int, default=600, help="PNGs in the image pool")
    parser.add_argument("--vectors", type=int, default=5000, help="feature vectors in the npz pool")
    parser.add_argument("--work", help="folder for the pools and projects (default: a temporary one)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="tidal-session-"))
    work.mkdir(parents=True, exist_ok=True)
    projects = make_projects(work, args.pool, args.vectors)
    rows = []
    for name, (project, truth) in projects.items():
        r = session(project, truth, args.n, args.retrains)
        print(f"{name}: waits {[round(w, 1) for w in r['waits']]} s", file=sys.stderr)
        rows.append([name, r["pool"], "resnet18 (auto)" if name == "images" else "mlp", args.n,
                     " / ".join(f"{w:.1f}" for w in r["waits"]), f"{statistics.median(r['waits']):.1f}",
                     f"{1000 * statistics.median(r['answers']):.1f}", f"{1000 * max(r['answers']):.1f}"])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    write_table(f"A labelling session through `tidal serve` (quick-preset training, CPU, "
                f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at "
                f"the end): seconds from the N-th annotation to the reordered queue, per retrain, and how long "
                f"`/webhook` took to answer an annotation. `python benchmarks/labelling_session.py --n {args.n} "
                f"--retrains {args.retrains} --pool {args.pool} --vectors {args.vectors}`",
                ["pool", "samples", "model", "N", "N-th annotation -> reordered queue (s)", "median (s)",
                 "webhook answer, median (ms)", "webhook answer, max (ms)"], rows,
                Path(__file__).parent / "results" / "labelling_session.md", left=3)


if __name__ == "__main__":
    main()
