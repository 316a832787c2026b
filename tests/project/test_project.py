"""`tidal init`: pools of every shape, the holdout, rescans, and what it refuses."""

from __future__ import annotations

import numpy as np
import pytest

from tidal.errors import DatasetError, RunDirectoryError
from tidal.project.project import init_project
from tidal.project.query import query_project
from tidal.project.store import DB_NAME, ProjectStore


def _store(project):
    return ProjectStore(project / DB_NAME, readonly=True)


def test_class_folders_are_labels_and_a_rescan_keeps_ids(tmp_path, write_images, classes, fast):
    pool = tmp_path / "pool"
    write_images(pool / "sorted", 6, by_class=True)
    write_images(pool / "new", 4)
    r = init_project(tmp_path / "p", f"folder:{pool}", classes, **fast)
    assert (r.created, r.samples, r.labeled) == (True, 10, 6)
    with _store(tmp_path / "p") as s:
        before = s.paths()
        labels = s.labels()
    assert {before[i]: classes[c] for i, c in labels.items()}["sorted/green/img 001.png"] == "green"
    write_images(pool / "later", 3)
    r = init_project(tmp_path / "p", f"folder:{pool}", classes, **fast)
    assert (r.created, r.samples, r.new_samples, r.labeled) == (False, 13, 3, 6)
    with _store(tmp_path / "p") as s:
        assert s.paths()[:10] == before


def test_a_pool_with_labels_trains_in_its_first_round(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "pool", 12, by_class=True)
    write_images(tmp_path / "pool" / "todo", 10)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    _, result, _ = query_project(tmp_path / "p", 4, device="cpu")
    assert not result.random and result.n_labeled == 12


def test_sizes_must_agree_unless_image_size_is_given(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "pool", 3, size=16)
    write_images(tmp_path / "pool", 3, size=20, names="big {i}.png")
    with pytest.raises(DatasetError, match="differ in size .*--image-size N"):
        init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, image_size=12, **fast)
    _, result, _ = query_project(tmp_path / "p", 2, device="cpu")
    assert len(result.ids) == 2


def test_a_holdout_csv_and_its_mistakes(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "pool", 9)
    write_images(tmp_path / "held", 6, seed=3)
    (tmp_path / "held" / "holdout.csv").write_text("path,label\nimg 000.png,red\nimg 001.png,green\n")
    r = init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, holdout=str(tmp_path / "held" /
                                                                                          "holdout.csv"), **fast)
    assert r.holdout == 2
    (tmp_path / "bad.csv").write_text("path,label\nheld/img 000.png,purple\n")
    with pytest.raises(DatasetError, match="class 'purple' is not one of"):
        init_project(tmp_path / "q", f"folder:{tmp_path / 'pool'}", classes, holdout=str(tmp_path / "bad.csv"), **fast)
    (tmp_path / "inside.csv").write_text("path,label\npool/img 000.png,red\n")
    with pytest.raises(DatasetError, match="also in the pool"):
        init_project(tmp_path / "q", f"folder:{tmp_path / 'pool'}", classes, holdout=str(tmp_path / "inside.csv"),
                     **fast)


def test_an_npz_pool_with_some_labels_and_its_test_split_as_holdout(tmp_path, classes, fast):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (30, 12, 12, 3), dtype=np.uint8)
    y = np.full(30, -1)
    y[:6] = np.arange(6) % 3
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:6], y_test=np.arange(6) % 3,
             class_names=np.array(classes))
    r = init_project(tmp_path / "p", f"npz:{tmp_path / 'd.npz'}", classes, **fast)
    assert (r.samples, r.labeled, r.holdout) == (30, 6, 6)
    _, result, out = query_project(tmp_path / "p", 4, device="cpu")
    assert result.accuracy is not None and "x_train/" in (out / "to_label.csv").read_text()
    with pytest.raises(ValueError, match="has the classes"):
        init_project(tmp_path / "q", f"npz:{tmp_path / 'd.npz'}", ["a", "b", "c"], **fast)


@pytest.mark.parametrize("kwargs,match", [
    (dict(classes=["a", "a"]), "repeats a"), (dict(classes=["a", " b"]), "spaces around"),
    (dict(classes=["a/b", "c"]), "slash"), (dict(data="imagenet"), "unknown dataset"),
    (dict(train={"model": "resnet81"}), "unknown model spec"), (dict(image_url="http://x/"), "names no {path}"),
    (dict(image_url="http://x/{nope}/{path}"), r"names \{nope\}; the only fields are \{path\}, \{abspath\}, \{pool\}"),
    (dict(image_url="http://x/{}/{path}"), r"names \{\}; the only fields are"),
    (dict(image_url="http://x/{path.upper}"), r"names \{path.upper\}; the only fields are"),
    (dict(image_url="http://x/{path"), r"is not a valid template .*literal brace is written \{\{"),
    (dict(image_url="http://x/{path!x}"), r"is not a valid template"),
    (dict(image_url="http://x/{path:d}"), r"is not a valid template"),
    (dict(seed=-1), "must be >= 0"),
])
def test_bad_settings_are_refused_before_anything_is_made(tmp_path, write_images, classes, fast, kwargs, match):
    write_images(tmp_path / "pool", 3)
    args = dict(data=f"folder:{tmp_path / 'pool'}", classes=classes, **fast)
    args.update(kwargs)
    with pytest.raises((ValueError, RunDirectoryError), match=match):
        init_project(tmp_path / "p", args.pop("data"), args.pop("classes"), **args)
    assert not (tmp_path / "p").exists()


def test_another_pool_for_the_same_project_is_refused(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "a", 3)
    write_images(tmp_path / "b", 3)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'a'}", classes, **fast)
    with pytest.raises(RunDirectoryError, match="was made from the pool .*a, not .*b; .*add --moved"):
        init_project(tmp_path / "p", f"folder:{tmp_path / 'b'}", classes, **fast)


def test_an_npz_pool_report_shows_its_images(tmp_path, classes, fast):
    from tidal.project.report import write_project_report

    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (20, 12, 12), dtype=np.uint8)  # grey images [N, H, W]
    np.savez(tmp_path / "g.npz", x_train=x, y_train=np.full(20, -1), x_test=x[:3], y_test=np.arange(3))
    init_project(tmp_path / "p", f"npz:{tmp_path / 'g.npz'}", ["0", "1", "2"], **fast)
    query_project(tmp_path / "p", 4, device="cpu")
    page = write_project_report(tmp_path / "p").read_text(encoding="utf-8")
    assert page.count("<figure><img") == 4 and "x_train/" in page


def test_a_pool_too_large_for_memory_is_decoded_from_disk(tmp_path, write_images, classes, fast, monkeypatch,
                                                          answer):
    import tidal.project.data
    from tidal.data.files import FileDataset
    from tidal.project.answers import import_labels
    from tidal.project.query import round_dir

    truth = write_images(tmp_path / "pool", 24)
    write_images(tmp_path / "held", 6, seed=2, by_class=True)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, holdout=str(tmp_path / "held"), **fast)
    in_memory = tidal.project.data.load_pool(_store(tmp_path / "p"))
    monkeypatch.setattr(tidal.project.data, "IN_MEMORY_BYTES", 1)
    on_disk = tidal.project.data.load_pool(_store(tmp_path / "p"))
    assert isinstance(on_disk.pool, FileDataset) and isinstance(on_disk.holdout, FileDataset)
    ids = __import__("torch").arange(24)
    assert (on_disk.pool.inputs(ids) - in_memory.pool.inputs(ids)).abs().max() < 0.05  # same images, sampled stats
    query_project(tmp_path / "p", 6, device="cpu")
    import_labels(tmp_path / "p", answer(round_dir(tmp_path / "p", 1) / "to_label.csv", truth, tmp_path / "a.csv"))
    _, result, _ = query_project(tmp_path / "p", 4, device="cpu")
    assert not result.random and result.accuracy is not None and len(result.ids) == 4


def test_label_commands_started_together_wait_for_the_lock_in_turn(tmp_path, pool, classes, fast):
    """Four `tidal label` processes started while another process holds the project: each says it
    waits (a short command waits up to LOCK_WAIT_S for the lock), then every one stores its labels."""
    import subprocess
    import sys
    import time

    from tidal.rundir import RunDirLock

    root, truth = pool
    project = tmp_path / "proj"
    init_project(project, f"folder:{root}", classes, **fast)
    paths = sorted(truth)
    procs, errs = [], []
    with RunDirLock(project):  # another process's lock (flock: one per open file)
        for i in range(4):
            f = tmp_path / f"labels{i}.csv"
            f.write_text("path,label\n" + "".join(f"{p},{truth[p]}\n" for p in paths[3 * i:3 * i + 3]))
            errs.append(tmp_path / f"err{i}.txt")
            with open(errs[-1], "w") as err:
                procs.append(subprocess.Popen([sys.executable, "-m", "tidal.cli", "label", str(project), str(f)],
                                              stdout=subprocess.DEVNULL, stderr=err))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
                p.poll() is not None or "waiting up to" in e.read_text() for p, e in zip(procs, errs)):
            time.sleep(0.05)
    codes = [p.wait(timeout=120) for p in procs]
    texts = [e.read_text() for e in errs]
    assert codes == [0] * 4, texts
    assert all(f"project {project} is in use by another tidal process (pid " in t and "waiting up to 10 s" in t
               for t in texts), texts
    with _store(project) as store:
        assert len(store.labels()) == 12


def test_an_image_url_template_is_checked_before_training_and_can_be_replaced(tmp_path, write_images, classes, fast,
                                                                              monkeypatch):
    """Issue 21, case 5: a bad template stored by an older tidal stops the query before it trains; `tidal init
    --image-url` on the project replaces it (literal braces doubled)."""
    import json

    import tidal.project.query

    write_images(tmp_path / "pool", 6)
    data = f"folder:{tmp_path / 'pool'}"
    init_project(tmp_path / "p", data, classes, **fast)
    with ProjectStore(tmp_path / "p" / DB_NAME) as s:
        s.set_meta(settings={**s.meta("settings"), "image_url": "http://x/{nope}/{path}"})
    monkeypatch.setattr(tidal.project.query, "query", lambda *a, **k: pytest.fail("trained before the check"))
    with pytest.raises(ValueError, match=r"names \{nope\}.*--image-url TEMPLATE"):
        query_project(tmp_path / "p", 2, device="cpu")
    monkeypatch.undo()
    init_project(tmp_path / "p", data, classes, image_url="http://x/{{a}}/{path}", **fast)
    _, _, out = query_project(tmp_path / "p", 2, device="cpu")
    tasks = json.loads((out / "tasks.json").read_text())
    assert all(t["data"]["image"].startswith("http://x/{a}/img%20") for t in tasks)


# --- a moved pool (issue 21, case 4) ---------------------------------------------------------------

def test_the_same_folder_written_another_way_is_the_same_pool(tmp_path, write_images, classes, fast, monkeypatch):
    write_images(tmp_path / "mypool", 6)
    monkeypatch.chdir(tmp_path)
    init_project(tmp_path / "p", "folder:mypool", classes, **fast)
    for spec in (f"folder:{tmp_path / 'mypool'}", "folder:mypool/", "folder:./mypool", f"folder:{tmp_path}//mypool"):
        assert init_project(tmp_path / "p", spec, classes, **fast).samples == 6


def test_a_moved_pool_is_refused_without_moved_and_repointed_with_it(tmp_path, write_images, classes, fast):
    from tidal.project.answers import import_labels

    write_images(tmp_path / "pool", 9)
    write_images(tmp_path / "held", 3, seed=5, by_class=True)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, holdout=str(tmp_path / "held"), **fast)
    (tmp_path / "a.csv").write_text("id,label\n0,red\n1,green\n2,blue\n")
    import_labels(tmp_path / "p", tmp_path / "a.csv")
    with _store(tmp_path / "p") as s:
        before = (s.paths(), s.labels())
    (tmp_path / "new").mkdir()
    (tmp_path / "pool").rename(tmp_path / "new" / "pool")
    (tmp_path / "held").rename(tmp_path / "new" / "held")
    moved = f"folder:{tmp_path / 'new' / 'pool'}"
    with pytest.raises(RunDirectoryError, match=r"made from the pool .*pool \(now gone\), not .*new/pool; if this is "
                                                r"the project's pool moved here, add --moved"):
        init_project(tmp_path / "p", moved, classes, **fast)
    write_images(tmp_path / "new" / "pool", 1, names="extra {i}.png")
    r = init_project(tmp_path / "p", moved, classes, moved=True, **fast)
    assert (r.samples, r.new_samples, r.labeled, r.holdout, r.missing) == (10, 1, 3, 3, [])
    with pytest.raises(DatasetError, match=r"3 of the 3 holdout images are gone .*--holdout NEWPATH --moved"):
        query_project(tmp_path / "p", 2, device="cpu")
    init_project(tmp_path / "p", moved, classes, holdout=str(tmp_path / "new" / "held"), moved=True, **fast)
    with _store(tmp_path / "p") as s:
        assert (s.paths()[:9], s.labels()) == before
        assert s.meta("pool_root") == str((tmp_path / "new" / "pool").resolve()) and s.meta("source") == moved
        assert all(p.startswith(str(tmp_path / "new" / "held")) for p, _ in s.holdout())
    _, result, _ = query_project(tmp_path / "p", 2, device="cpu")
    assert result.n_labeled == 3 and result.accuracy is not None


def test_moved_refuses_what_cannot_be_the_same_pool(tmp_path, write_images, classes, fast):
    write_images(tmp_path / "pool", 4)
    write_images(tmp_path / "other", 4, names="photo {i}.png")
    with pytest.raises(ValueError, match="no project yet; leave --moved out"):
        init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, moved=True, **fast)
    init_project(tmp_path / "p", f"folder:{tmp_path / 'pool'}", classes, **fast)
    with pytest.raises(ValueError, match=r"--moved: none of the project's 4 images \(e.g. 'img 000.png'\) is in"):
        init_project(tmp_path / "p", f"folder:{tmp_path / 'other'}", classes, moved=True, **fast)
    with pytest.raises(RunDirectoryError, match="not .*other; if this is the project's pool moved here, add --moved"):
        init_project(tmp_path / "p", f"folder:{tmp_path / 'other'}", classes, **fast)


def test_a_moved_npz_pool(tmp_path, classes, fast, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (12, 10, 10, 3), dtype=np.uint8)
    test = dict(x_test=x[:3], y_test=np.arange(3))
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.full(12, -1), **test)
    np.savez(tmp_path / "small.npz", x_train=x[:5], y_train=np.full(5, -1), **test)
    monkeypatch.chdir(tmp_path)
    init_project(tmp_path / "p", "npz:d.npz", classes, **fast)
    assert init_project(tmp_path / "p", f"npz:{tmp_path / 'd.npz'}", classes, **fast).samples == 12
    (tmp_path / "d.npz").rename(tmp_path / "e.npz")
    with pytest.raises(DatasetError, match=r"pool file .*d.npz of project .* is gone; .*--data npz:NEWPATH .*--moved"):
        query_project(tmp_path / "p", 3, device="cpu")
    with pytest.raises(RunDirectoryError, match=r"d.npz \(now gone\), not .*/e.npz; .*add --moved"):
        init_project(tmp_path / "p", "npz:e.npz", classes, **fast)
    with pytest.raises(ValueError, match="small.npz holds 5 samples, the project's pool 12"):
        init_project(tmp_path / "p", "npz:small.npz", classes, moved=True, **fast)
    init_project(tmp_path / "p", "npz:e.npz", classes, moved=True, **fast)
    monkeypatch.chdir(tmp_path / "p")  # the stored path is absolute: a query runs from anywhere
    _, result, _ = query_project(tmp_path / "p", 3, device="cpu")
    assert len(result.ids) == 3
