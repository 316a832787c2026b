"""``tidal report PROJECT``: the rounds as one self-contained HTML page, ``PROJECT/report.html``.

The page shows the holdout accuracy per round (table, and a line chart), a warning for a round
whose model ended near chance, the latest trained round's per-class holdout accuracy and
confusion matrix, the class make-up
of the labels (table, and a bar chart), and the last round's selection as thumbnails with
their rank, score and predicted class. Charts need matplotlib (the ``report`` extra); without
it the page has the tables only and says so. Every image is inlined as a base64 data URI, so
the page can be mailed or moved alone. Reads the database only (read-only, no lock).
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections import Counter
from pathlib import Path

from tidal.io import atomic_write_text
from tidal.project.status import chance_warnings
from tidal.project.store import DB_NAME, ProjectStore, RoundRecord

__all__ = ["REPORT_NAME", "THUMB_SIDE", "write_project_report"]

REPORT_NAME = "report.html"
THUMB_SIDE = 128  # pixels, the longer side of a thumbnail

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; } th { background: #f3f3f3; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
.grid figure { margin: 0; width: 150px; font-size: .8em; }
.grid img { width: 128px; height: 128px; object-fit: contain; background: #f6f6f6; border: 1px solid #ddd;
            image-rendering: pixelated; }
.chart img { max-width: 100%; }
.warning { background: #fff3cd; border: 1px solid #e0c060; padding: .5em .8em; }
"""


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
    return "\n".join(out + ["</table>"])


def _charts(rounds: list[RoundRecord], classes: list[str], counts: list[int]) -> dict[str, bytes]:
    """PNG bytes of the accuracy and class charts (empty without matplotlib)."""
    from tidal.report.style import figures_available, new_figure

    if not figures_available():
        return {}
    out = {}
    acc = [(r.round, 100 * r.accuracy) for r in rounds if r.accuracy is not None]
    if acc:
        fig, ax = new_figure(width=5.5, height=3.2)
        ax.plot([a for a, _ in acc], [b for _, b in acc], marker="o", color="#d62728")
        ax.set_xlabel("round")
        ax.set_ylabel("holdout accuracy (%)")
        ax.set_xticks([a for a, _ in acc])
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        out["accuracy"] = buf.getvalue()
    fig, ax = new_figure(width=5.5, height=0.4 * len(classes) + 1.2)
    ax.barh(range(len(classes)), counts, color="#1f77b4")
    ax.set_yticks(range(len(classes)), labels=classes)
    ax.invert_yaxis()
    ax.set_xlabel("labelled samples")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    out["classes"] = buf.getvalue()
    return out


def _thumbnail(store: ProjectStore, ids: list[int], data_dir: str | None) -> dict[int, bytes]:
    """PNG thumbnails (longer side :data:`THUMB_SIDE`) of ``ids``; samples without an image are left out."""
    from PIL import Image

    out: dict[int, bytes] = {}
    root = store.meta("pool_root")
    paths = store.paths()
    images = None
    if root is None:
        from tidal.project.data import array_pool

        split, _, _ = array_pool(store.meta("source"), data_dir)
        images = getattr(split, "images", None)
        if images is None:  # feature vectors: nothing to look at
            return out
    for i in ids:
        try:
            if images is not None:
                x = images[i].permute(1, 2, 0).numpy()
                img = Image.fromarray(x[:, :, 0] if x.shape[2] == 1 else x[:, :, :3])
            else:
                with Image.open(Path(root) / paths[i]) as f:
                    f.load()
                    img = f.convert("RGB")
        except OSError:
            continue
        scale = THUMB_SIDE / max(img.size)
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))),
                         Image.NEAREST if scale > 1 else Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out[i] = buf.getvalue()
    return out


CONFUSION_MAX_CLASSES = 20  # with more classes the per-class table leaves out the full confusion matrix


def _per_class(r: RoundRecord) -> str:
    """Round ``r``'s holdout per class: images, accuracy, the class most often predicted instead, and
    (up to :data:`CONFUSION_MAX_CLASSES` classes) the confusion matrix; a last row with the share of
    all holdout images predicted as each class, where a model that answers one class shows at once."""
    classes, m = r.classes, r.confusion or []
    total = sum(map(sum, m))
    full = len(classes) <= CONFUSION_MAX_CLASSES
    header = ["true class", "holdout images", "accuracy (%)", "most often predicted as"]
    header += [f"→ {c}" for c in classes] if full else []
    rows = []
    for i, (c, row) in enumerate(zip(classes, m)):
        n = sum(row)
        wrong = max((j for j in range(len(row)) if j != i), key=lambda j: row[j], default=None)
        other = "-" if wrong is None or row[wrong] == 0 else f"{classes[wrong]} ({100 * row[wrong] / n:.0f}%)"
        rows.append([c, str(n), "-" if n == 0 else f"{100 * row[i] / n:.1f}", other]
                    + ([str(x) for x in row] if full else []))
    predicted = [sum(row[j] for row in m) for j in range(len(classes))]
    top = max(range(len(classes)), key=lambda j: predicted[j])
    correct = sum(m[i][i] for i in range(len(m)))
    rows.append(["predicted (all)", str(total), "-" if total == 0 else f"{100 * correct / total:.1f}",
                 "-" if total == 0 else f"{classes[top]} ({100 * predicted[top] / total:.0f}% of all)"]
                + ([str(x) for x in predicted] if full else []))
    return (f"<h2>Round {r.round}: holdout accuracy per class</h2>"
            "<p>Rows: the true class; columns: what the model predicted (confusion counts). A model that answers "
            "(nearly) one class for everything shows as one full column and a large share in the last row.</p>"
            + _table(header, rows))


def write_project_report(project: str | Path, data_dir: str | None = None) -> Path:
    """Write ``PROJECT/report.html`` (see the module docstring); returns its path."""
    from tidal.project.project import check_project_dir

    project = Path(project)
    check_project_dir(project, must_exist=True)
    with ProjectStore(project / DB_NAME, readonly=True) as store:
        classes = store.classes
        labels = store.labels()
        rounds = store.rounds()
        n = store.num_samples()
        paths = store.paths()
        counts_by = Counter(labels.values())
        counts = [counts_by.get(i, 0) for i in range(len(classes))]
        last = rounds[-1] if rounds else None
        thumbs = _thumbnail(store, [s.id for s in last.selections], data_dir) if last else {}
        source = store.meta("source")
    charts = _charts(rounds, classes, counts)
    body = [f"<h1>Labelling project {html.escape(project.name)}</h1>",
            f"<p>{n} samples from <code>{html.escape(source)}</code>; {len(labels)} labelled, "
            f"{n - len(labels)} unlabeled; {len(rounds)} round(s). Every number comes from "
            f"<code>{DB_NAME}</code>.</p>"]
    if not charts:
        body.append("<p>No charts: matplotlib is not installed (<code>pip install -e '.[report]'</code> in the checkout); "
                    "the tables hold the same numbers.</p>")
    body.append("<h2>Accuracy per round</h2>")
    if rounds:
        body.append(_table(["round", "method", "trained on", "selected", "holdout accuracy (%)", "time (s)"],
                           [[str(r.round), r.method, str(r.n_labeled), str(r.k),
                             "-" if r.accuracy is None else f"{100 * r.accuracy:.1f}", f"{r.total_seconds:.1f}"]
                            for r in rounds]))
        if all(r.accuracy is None for r in rounds):
            body.append("<p>No holdout accuracy: the project has no holdout (<code>tidal init --holdout</code>), "
                        "or no round trained a model yet.</p>")
        body += [f'<p class="warning"><strong>Warning:</strong> {html.escape(w)}</p>'
                 for w in chance_warnings(rounds)]
    else:
        body.append("<p>No rounds yet: <code>tidal query PROJECT -k 100</code>.</p>")
    if "accuracy" in charts:
        body.append(f'<figure class="chart"><img src="{_png_uri(charts["accuracy"])}" alt="holdout accuracy per '
                    'round"><figcaption>Holdout accuracy of each round\'s model.</figcaption></figure>')
    judged = [r for r in rounds if r.confusion]
    if judged:
        body.append(_per_class(judged[-1]))
    body.append("<h2>Class make-up of the labels</h2>")
    body.append(_table(["class", "labels", "share (%)"],
                       [[c, str(k), f"{100 * k / max(len(labels), 1):.1f}"] for c, k in zip(classes, counts)]))
    if "classes" in charts:
        body.append(f'<figure class="chart"><img src="{_png_uri(charts["classes"])}" alt="labels per class">'
                    "<figcaption>Labelled samples per class.</figcaption></figure>")
    if last is not None:
        what = "drawn at random (no model yet)" if last.random else f"selected by {html.escape(last.method)}"
        body.append(f"<h2>Round {last.round}: the {len(last.selections)} samples {what}</h2>")
        body.append("<p>Most informative first (higher score = more informative); the class is the model's "
                    "prediction and its probability.</p>")
        body.append('<div class="grid">')
        for s in last.selections:
            score = "" if s.score is None or not math.isfinite(s.score) else f"score {s.score:.3g}"
            pred = "" if s.predicted is None else f"{classes[s.predicted]} ({100 * (s.probability or 0):.0f}%)"
            done = f"labelled {classes[labels[s.id]]}" if s.id in labels else "not labelled yet"
            img = (f'<img src="{_png_uri(thumbs[s.id])}" alt="{html.escape(paths[s.id])}">' if s.id in thumbs
                   else "<div>(no image)</div>")
            caption = "<br>".join(html.escape(t) for t in (f"#{s.rank} id {s.id}", paths[s.id], score, pred, done)
                                  if t)
            body.append(f"<figure>{img}<figcaption>{caption}</figcaption></figure>")
        body.append("</div>")
    page = ["<!DOCTYPE html>", '<html lang="en">', '<head><meta charset="utf-8">',
            f"<title>tidal project {html.escape(project.name)}</title>", f"<style>{_CSS}</style></head>", "<body>",
            *body, "</body>", "</html>", ""]
    out = project / REPORT_NAME
    atomic_write_text(out, "\n".join(page))
    return out
