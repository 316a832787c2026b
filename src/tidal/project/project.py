"""Creating a project (``tidal init``) and opening one under its lock.

A project directory holds ``project.sqlite`` (:mod:`tidal.project.store`), ``rounds/NNN/``
(each query's files), ``skipped.txt`` (pool files that are not readable images) and the
report. One process at a time works on it: :func:`open_project` holds the same OS lock as
``tidal run`` holds on a run directory (:class:`tidal.rundir.RunDirLock`); a command that finds
it held waits up to :data:`LOCK_WAIT_S` seconds for it (saying so on stderr) before refusing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidal.errors import DatasetError, RunDirectoryError
from tidal.project.store import DB_NAME, ProjectStore
from tidal.rundir import is_tidal_leftover

__all__ = ["IMAGE_URL_FIELDS", "InitResult", "SKIPPED_NAME", "check_image_url", "check_project_dir", "init_project",
           "open_project", "read_table", "read_utf8"]

LOCK_WAIT_S = 10.0  # seconds a project command waits for the lock another tidal process holds, then refuses
SKIPPED_NAME = "skipped.txt"  # the pool files init skipped, one "path<TAB>why" a line
# Label Studio's local-files URL of a pool image, with the pool's parent folder as the document root
# (Label Studio serves files only from a storage under the root, never the root itself: docs/labelstudio.md)
DEFAULT_IMAGE_URL = "/data/local-files/?d={pool}/{path}"
IMAGE_URL_FIELDS = ("path", "abspath", "pool")  # the fields an --image-url template may name


@dataclass
class InitResult:
    """What ``tidal init`` did."""

    project: Path
    created: bool  # False: the project existed and its pool was rescanned
    samples: int  # pool samples in all
    new_samples: int  # added by this call
    labeled: int  # labels stored in all
    holdout: int  # holdout samples
    skipped: list[tuple[str, str]] = field(default_factory=list)  # pool files skipped: (path, why)
    missing: list[tuple[str, bool]] = field(default_factory=list)  # samples whose file is gone: (path, labelled?)


def check_image_url(template: str) -> str:
    """``template`` if it is a valid ``--image-url``: fields only among :data:`IMAGE_URL_FIELDS`, at
    least ``{path}`` or ``{abspath}``, literal braces doubled; else a one-line ``ValueError``."""
    import string

    allowed = ", ".join("{" + f + "}" for f in IMAGE_URL_FIELDS)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"--image-url {template!r} is not a valid template ({exc}); its fields are {allowed}, and "
                         "a literal brace is written {{ or }}") from None
    bad = [f for f in fields if f not in IMAGE_URL_FIELDS]
    if bad:
        raise ValueError(f"--image-url {template!r} names {{{bad[0]}}}; the only fields are {allowed} (a literal "
                         "brace is written {{ or }})")
    if "path" not in fields and "abspath" not in fields:
        raise ValueError(f"--image-url {template!r} names no {{path}} or {{abspath}}; e.g. "
                         "/data/local-files/?d=pool/{path}")
    try:
        template.format(path="a.png", abspath="/pool/a.png", pool="pool")
    except ValueError as exc:  # a bad conversion (!x) or format spec (:d)
        raise ValueError(f"--image-url {template!r} is not a valid template ({exc}); write the fields plainly, "
                         f"e.g. {{path}}") from None
    return template


def check_project_dir(project: Path, must_exist: bool) -> None:
    """Refuse a path that is a file, another program's folder or database, or a run directory."""
    from tidal.results import DB_NAME as RESULTS_DB

    if project.exists() and not project.is_dir():
        raise RunDirectoryError(f"project {project} is a file; pass a directory path")
    if (project / RESULTS_DB).exists():
        raise RunDirectoryError(f"{project} is a `tidal run` directory (it holds {RESULTS_DB}), not a labelling "
                                "project; pass a new directory to `tidal init`")
    if must_exist and not (project / DB_NAME).is_file():
        raise RunDirectoryError(f"{project} is not a tidal project (no {DB_NAME}); create one with `tidal init "
                                f"{project} --data folder:PATH --classes A B ...`")
    if (project / DB_NAME).exists():
        ProjectStore.check(project / DB_NAME)  # another program's file: refused before a lock file is written


@contextmanager
def open_project(project: Path, create: bool = False,
                 on_wait: Callable[[str], None] | None = None) -> Iterator[tuple[ProjectStore, Any]]:
    """The project's store, with the directory's lock held until the block ends.

    ``on_wait(holder)``: called when the wait for another process's lock begins (default: say so on stderr).
    """
    from tidal.rundir import LOCK_NAME, RunDirLock

    check_project_dir(project, must_exist=not create)
    project.mkdir(parents=True, exist_ok=True)

    def say_waiting(holder: str) -> None:
        who = f" ({holder[:200]})" if holder else ""
        print(f"tidal: project {project} is in use by another tidal process{who}; waiting up to {LOCK_WAIT_S:g} s "
              "for it", file=sys.stderr, flush=True)

    try:
        lock = RunDirLock(project, wait=LOCK_WAIT_S, on_wait=on_wait or say_waiting)
    except RunDirectoryError:
        holder = (project / LOCK_NAME).read_text(errors="replace").strip()[:200]
        raise RunDirectoryError(f"project {project} is in use by another tidal process ({holder}), still after "
                                f"{LOCK_WAIT_S:g} s; wait for it to finish: one process at a time works on a "
                                "project") from None
    try:
        _remove_stale_temp_files(project)
        with ProjectStore(project / DB_NAME, create=create) as store:
            yield store, lock
    finally:
        lock.release()


def _remove_stale_temp_files(project: Path) -> None:
    """Remove the temporary files of atomic writes (:mod:`tidal.io`) that a killed process left in
    the project or its round folders; called only while holding the lock."""
    from tidal.rundir import TEMP_NAME, remove_stale_temp_files

    remove_stale_temp_files(project)
    for p in project.glob("rounds/*/.*.tmp"):
        if TEMP_NAME.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _check_classes(classes: Sequence[str]) -> list[str]:
    classes = [str(c) for c in classes]
    for c in classes:
        if not c.strip() or c != c.strip():
            raise ValueError(f"class name {c!r} is empty or has spaces around it; give names like cat dog")
        if "/" in c or "\\" in c:
            raise ValueError(f"class name {c!r} holds a slash; class names are folder names: use e.g. {c.replace('/', '-')!r}")
    if len(classes) < 2:
        raise ValueError(f"--classes {' '.join(classes)} names {len(classes)} class(es); a classifier needs at least 2")
    dup = sorted({c for c in classes if classes.count(c) > 1})
    if dup:
        raise ValueError(f"--classes repeats {', '.join(dup)}; give each class once")
    return classes


def _holdout(spec: str, classes: list[str]) -> list[tuple[str, int, tuple[int, int]]]:
    """``(absolute path, class index, (w, h))`` of a holdout folder (``PATH/<class>/...``) or CSV (``path,label``)."""
    from tidal.project.pool import read_image_size, scan_pool

    path = Path(spec).expanduser()
    index = {c: i for i, c in enumerate(classes)}
    out = []
    if path.is_dir():
        scan = scan_pool(path, classes)
        loose = [p for p in scan.images if p not in scan.labels]
        if loose:
            raise DatasetError(f"holdout folder {path}: {len(loose)} image(s) are not under a class folder "
                               f"(e.g. {loose[0]}); lay it out as {path}/<class>/*.png with classes {classes}")
        if scan.skipped:
            raise DatasetError(f"holdout folder {path}: {scan.skipped[0][0]} {scan.skipped[0][1]} "
                               f"({len(scan.skipped)} such files); a holdout must hold only readable images")
        return [(str(scan.root / p), index[scan.labels[p]], scan.sizes[p]) for p in scan.images]
    if not path.is_file():
        raise DatasetError(f"--holdout {spec!r} is neither a folder nor a file; pass a folder PATH/<class>/*.png or a "
                           "CSV with path,label")
    rows = read_table(path)
    if not rows or "path" not in rows[0] or "label" not in rows[0]:
        raise DatasetError(f"--holdout {path}: expected a CSV with a header path,label")
    for line, row in enumerate(rows[1:], start=2):
        if len(row.get("_cells", [])) == 0:
            continue
        p, label = row.get("path", ""), row.get("label", "")
        if label not in index:
            raise DatasetError(f"--holdout {path}:{line}: class {label!r} is not one of {classes}")
        f = (path.parent / p).resolve()
        size = read_image_size(f)
        if isinstance(size, str):
            raise DatasetError(f"--holdout {path}:{line}: {p} {size}")
        out.append((str(f), index[label], size))
    if not out:
        raise DatasetError(f"--holdout {path} holds no rows")
    return out


def read_utf8(path: Path) -> str:
    """The text of ``path`` (UTF-8, a BOM dropped); ``ValueError`` naming the file, line and byte otherwise."""
    raw = path.read_bytes()
    raw = raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw  # the BOM some editors write
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}, e.g. Latin-1 or Windows "
                         "text); save the file as UTF-8 (a spreadsheet's 'CSV UTF-8') and try again") from None


def read_table(path: Path, delimiter: str = ",") -> list[dict[str, Any]]:
    """A CSV (or, with ``delimiter="\\t"``, a TSV) as ``[header dict, row dicts...]`` keyed by the
    lower-cased header names (UTF-8; BOM and Windows line ends accepted, extra columns kept).
    Raises ``ValueError`` naming the file and line for text that is not UTF-8 or not a table."""
    reader = csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            return []
        names = [h.strip().lower() for h in header]
        out: list[dict[str, Any]] = [{n: n for n in names}]
        for cells in reader:
            row = {n: (cells[i].strip() if i < len(cells) else "") for i, n in enumerate(names)}
            row["_cells"] = [c for c in cells if c.strip()]
            out.append(row)
    except csv.Error as exc:
        fix = ("a cell this long is no id, path or class name: is it the right file?"
               if "field limit" in str(exc) else "fix the quoting of that line")
        raise ValueError(f"{path}:{reader.line_num}: unreadable CSV ({exc}); {fix}") from None
    return out


def init_project(project: str | Path, data: str, classes: Sequence[str], *, method: str = "tidal-entropy",
                 holdout: str | None = None, seed: int = 0, image_size: int | None = None, image_url: str | None = None,
                 train: dict[str, Any] | None = None, strategy: dict[str, Any] | None = None,
                 data_dir: str | None = None, moved: bool = False) -> InitResult:
    """Create ``project`` over the pool ``data`` (or rescan the pool of an existing project).

    Args:
        data: ``folder:PATH`` (any tree of images), ``npz:PATH`` or a named source.
        classes: the class names; images under a folder named like one count as labelled.
        method, seed: defaults of the queries.
        holdout: a folder ``PATH/<class>/*`` or a CSV ``path,label`` of labelled images to
            report accuracy on (``npz:`` and named sources hold their own test split).
        image_size: resize and centre-crop every image to this many pixels square (needed when
            the pool's images differ in size).
        image_url: the image reference of a Label Studio task, with ``{path}`` (relative to the
            pool root, URL-quoted), ``{abspath}`` or ``{pool}`` (the pool folder's name) and no
            other field (:func:`check_image_url`); default ``/data/local-files/?d={pool}/{path}``:
            Label Studio's local files with the pool's parent folder as document root
            (docs/labelstudio.md). Given on an existing project, it replaces the template of
            later rounds (the only setting a rescan changes).
        train, strategy: fields of :class:`TrainConfig` / :class:`StrategyConfig` overriding
            the quick preset's (``train={"model": "mlp"}``: the queries' model; default ``"auto"``).
        moved: the existing project's pool folder (or npz file) moved to ``data``: point the
            project at it (samples keep their ids by their paths inside the folder; ``holdout``,
            when given, replaces the stored holdout). Without it another path is refused
            (paths are compared after resolving, so ``pool/`` and ``$PWD/pool`` are one folder).

    A rescan lists the samples whose file is gone (:attr:`InitResult.missing`); they stay in the
    project with their labels, and queries leave them out while they are gone.
    Raises:
        ValueError, DatasetError, RunDirectoryError: one line saying what to fix.
    """
    from tidal.config import PRESETS
    from tidal.data.checks import MIN_IMAGE_SIZE
    from tidal.data.sources import check_source_spec
    from tidal.models.factory import check_model_spec
    from tidal.strategies import strategy_class

    project = Path(project)
    classes = _check_classes(classes)
    check_source_spec(data)
    strategy_class(method)
    quick = PRESETS["quick"]
    train_cfg = dataclasses.replace(quick.train, **(train or {}))
    if train_cfg.model == "resnet18" and not (train or {}).get("model"):
        train_cfg = dataclasses.replace(train_cfg, model="auto")
    strategy_cfg = dataclasses.replace(quick.strategy, **(strategy or {}))
    dataclasses.replace(quick, train=train_cfg, strategy=strategy_cfg).validate()
    check_model_spec(train_cfg.model)
    if image_size is not None and image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"--image-size {image_size} is too small; use at least {MIN_IMAGE_SIZE} pixels")
    url_given = image_url is not None
    image_url = check_image_url(DEFAULT_IMAGE_URL if image_url is None else image_url)
    if seed < 0:
        raise ValueError(f"--seed {seed} must be >= 0")
    check_project_dir(project, must_exist=False)
    exists = (project / DB_NAME).is_file() and (project / DB_NAME).stat().st_size > 0  # 0 bytes: no database
    if moved and not exists:
        raise ValueError(f"--moved points an existing project at its moved pool, but {project} is no project yet; "
                         "leave --moved out to create it")
    if data.startswith("npz:"):  # stored resolved: a later query may run from another folder
        data = f"npz:{Path(data[len('npz:'):]).expanduser().resolve()}"
    if project.is_dir() and not exists and not all(is_tidal_leftover(p.name) or p.name == DB_NAME
                                                   for p in project.iterdir()):
        raise RunDirectoryError(f"{project} exists and is not a tidal project; pass a new or empty directory")

    # Read and check everything before the project is created or changed.
    skipped: list[tuple[str, str]] = []
    pool_root = None
    if data.startswith("folder:"):
        from tidal.project.pool import scan_pool

        scan = scan_pool(data[len("folder:"):], classes)
        pool_root, paths, skipped = str(scan.root), scan.images, scan.skipped
        index = {c: i for i, c in enumerate(classes)}
        given = {p: index[c] for p, c in scan.labels.items()}
        sizes = set(scan.sizes.values())
        hold = _holdout(holdout, classes) if holdout else []
        overlap = sorted({h for h, _, _ in hold} & {str(scan.root / p) for p in paths})
        if overlap:
            raise DatasetError(f"holdout image {overlap[0]} is also in the pool ({len(overlap)} such); keep the "
                               "holdout outside the pool folder")
        sizes |= {s for _, _, s in hold}
        if image_size is None and len(sizes) > 1:
            a, b = sorted(sizes)[:2]
            raise DatasetError(f"the images differ in size ({a[0]}x{a[1]}, {b[0]}x{b[1]}, ...); pass --image-size N "
                               "to resize them all to N x N")
    else:
        if holdout:
            raise ValueError(f"--holdout is for folder: pools; {data} uses its own test split as the holdout")
        from tidal.project.data import array_pool

        split, labels, test = array_pool(data, data_dir)
        names = _source_classes(data, data_dir)
        if names is not None and list(names) != classes:
            raise ValueError(f"{data} has the classes {list(names)}; pass them to --classes in that order")
        if split.num_classes > len(classes):
            raise ValueError(f"{data} has {split.num_classes} classes but --classes names {len(classes)}")
        prefix = "x_train" if data.startswith("npz:") else "train"
        paths = [f"{prefix}/{i}" for i in range(len(split))]
        given = {paths[i]: int(c) for i, c in enumerate(labels.tolist()) if c >= 0}
        hold, sizes = [], set()
        if image_size is not None:
            raise ValueError(f"--image-size is for folder: pools; {data} keeps its own size")

    with open_project(project, create=True) as (store, _):
        if exists:
            old = store.classes
            if old != classes:
                raise RunDirectoryError(f"project {project} has the classes {old}; given {classes}: classes cannot "
                                        "change between rounds; start a new project for other classes")
            if not _same_pool(store, data, pool_root):
                if not moved:
                    raise RunDirectoryError(_another_pool(store, project, data, pool_root))
                _check_moved(store, project, data, paths)
                store.set_meta(source=data, pool_root=pool_root)
            if moved and hold:  # the holdout moved (with the pool or alone)
                store.set_holdout([(p, c) for p, c, _ in hold])
            settings = store.meta("settings")
            if url_given and settings.get("image_url") != image_url:  # the only setting a rescan changes
                store.set_meta(settings={**settings, "image_url": image_url})
        else:
            wh = next(iter(sizes)) if pool_root and len(sizes) == 1 else None
            store.set_meta(classes=classes, source=data, pool_root=pool_root, image_size=image_size, image_wh=wh,
                           created_at=time.time(),
                           settings={"method": method, "seed": seed, "image_url": image_url,
                                     "train": dataclasses.asdict(train_cfg),
                                     "strategy": dataclasses.asdict(strategy_cfg)})
            if hold:
                store.set_holdout([(p, c) for p, c, _ in hold])
        new_ids = store.add_samples(paths)
        ids = store.ids_of_paths()
        known = store.labels()
        fresh = [(ids[p], c) for p, c in given.items() if ids[p] not in known]
        if fresh:
            store.set_labels(fresh, source="pool folder" if pool_root else data)
        from tidal.io import atomic_write_text

        if skipped:
            atomic_write_text(project / SKIPPED_NAME, "".join(f"{p}\t{why}\n" for p, why in skipped))
        labels = store.labels()
        root = Path(pool_root) if pool_root else None
        missing = [] if root is None else [(p, i in labels) for i, p in enumerate(store.paths())
                                           if not (root / p).is_file()]
        return InitResult(project, not exists, store.num_samples(), len(new_ids), len(labels),
                          len(store.holdout()) if pool_root else (len(test) if test is not None else 0), skipped,
                          missing)


def _pool_path(store: ProjectStore) -> Path | None:
    """The stored pool's folder or npz file, resolved (None for a named source)."""
    source = store.meta("source")
    if source.startswith("folder:"):
        return Path(store.meta("pool_root"))
    return Path(source[len("npz:"):]).expanduser().resolve() if source.startswith("npz:") else None


def _same_pool(store: ProjectStore, data: str, pool_root: str | None) -> bool:
    """Whether ``data`` names the project's pool: paths compared after resolving (``pool/``,
    ``./pool`` and ``$PWD/pool`` are one folder)."""
    old = store.meta("source")
    kind = data.split(":", 1)[0] if data.startswith(("folder:", "npz:")) else None
    if kind is None or not old.startswith(kind + ":"):
        return old == data
    new = Path(pool_root) if kind == "folder" else Path(data[len("npz:"):]).expanduser().resolve()
    return _pool_path(store) == new


def _another_pool(store: ProjectStore, project: Path, data: str, pool_root: str | None) -> str:
    """Why ``data`` is refused as the pool of ``project``, and the fixes."""
    old = _pool_path(store)
    new = pool_root if pool_root is not None else data.split(":", 1)[1]
    if old is None or not data.startswith(("folder:", "npz:")):
        return (f"project {project} was made from {store.meta('source')}, not {data}; start a new project for "
                "another pool")
    gone = "" if old.exists() else " (now gone)"
    return (f"project {project} was made from the pool {old}{gone}, not {new}; if this is the project's pool moved "
            f"here, add --moved to point the project at it; else start a new project for another pool")


def _check_moved(store: ProjectStore, project: Path, data: str, paths: list[str]) -> None:
    """Refuse ``--moved`` to a pool that cannot be the project's pool moved."""
    old = store.meta("source")
    if _pool_path(store) is None or not data.startswith(old.split(":", 1)[0] + ":"):
        raise ValueError(f"--moved points a project at its moved pool folder or npz file; project {project} was made "
                         f"from {old}, and {data} is another kind of pool: start a new project for it")
    stored = store.paths()
    if old.startswith("npz:"):
        if len(paths) != len(stored):
            raise ValueError(f"--moved: {data} holds {len(paths)} samples, the project's pool {len(stored)}; it is "
                             "not the same pool: start a new project for it")
        return
    if not set(stored) & set(paths):
        raise ValueError(f"--moved: none of the project's {len(stored)} images (e.g. {stored[0]!r}) is in {data}; "
                         "give the folder the pool moved to (the images keep their paths inside it)")


def _source_classes(data: str, data_dir: str | None) -> Sequence[str] | None:
    """The class names a non-folder source names itself (None: it names none)."""
    if data.startswith("npz:"):
        import numpy as np

        with np.load(Path(data[len("npz:"):]).expanduser(), allow_pickle=False) as f:
            return [str(n) for n in f["class_names"].tolist()] if "class_names" in f.files else None
    from tidal.data.sources import load_source

    return load_source(data, data_dir).class_names
