"""A query round: `tidal.query` (the library call) and `tidal query PROJECT` (stored rounds)."""

from __future__ import annotations

import csv
import dataclasses

import pytest
import torch

import tidal
from tidal.config import PRESETS
from tidal.errors import RunDirectoryError
from tidal.project.answers import import_labels
from tidal.project.project import init_project
from tidal.project.query import QueryConfig, WarmStart, query, query_project, round_dir
from tidal.project.store import DB_NAME, ProjectStore

TINY = dataclasses.replace(PRESETS["quick"].train, epochs=2, width=4, batch_size=16)


# --- the library call ---------------------------------------------------------------------------

def test_tidal_query_is_the_projects_query():
    assert tidal.query is query and "query" in tidal.__all__


def test_no_labels_draws_at_random_from_the_seed_and_round(tiny_splits):
    a = query("auto", tiny_splits.train, [], [], 10, config=QueryConfig(seed=0), round=1)
    assert a.random and a.model is None and len(set(a.ids.tolist())) == 10
    assert torch.isnan(a.scores).all() and (a.predicted == -1).all()
    assert torch.equal(a.ids, query("auto", tiny_splits.train, [], [], 10, config=QueryConfig(seed=0), round=1).ids)
    assert not torch.equal(a.ids, query("auto", tiny_splits.train, [], [], 10, config=QueryConfig(seed=1), round=1).ids)
    assert not torch.equal(a.ids, query("auto", tiny_splits.train, [], [], 10, config=QueryConfig(seed=0), round=2).ids)


def test_a_trained_round_selects_through_the_simulations_select(tiny_splits, monkeypatch):
    import tidal.gather

    calls = []
    real = tidal.gather.select

    def spy(*args, **kwargs):
        calls.append(args[0].name)
        out = real(*args, **kwargs)
        calls.append(out[0].clone())
        return out

    monkeypatch.setattr(tidal.gather, "select", spy)
    labeled = list(range(0, 40))
    labels = tiny_splits.train.labels[:40].tolist()
    r = query("auto", tiny_splits, labeled, labels, 8, "entropy", config=QueryConfig(TINY))
    assert calls[0] == "entropy" and torch.equal(calls[1], r.ids)
    assert not r.random and r.n_labeled == 40 and r.class_counts == [10, 10, 10, 10]
    assert not set(r.ids.tolist()) & set(labeled)
    assert bool((r.scores[:-1] >= r.scores[1:]).all())  # best first
    assert ((r.predicted >= 0) & (r.predicted < 4)).all() and ((r.probability > 0) & (r.probability <= 1)).all()
    assert r.accuracy is not None and 0 <= r.accuracy <= 1  # DatasetSplits: its test split is the holdout
    again = query("auto", tiny_splits, labeled, labels, 8, "entropy", config=QueryConfig(TINY))
    assert torch.equal(again.ids, r.ids) and torch.equal(again.scores, r.scores)


def test_tidal_and_a_subset(tiny_splits):
    labeled = list(range(0, 40))
    r = query("auto", tiny_splits.train, labeled, tiny_splits.train.labels[:40].tolist(), 5, "tidal-entropy",
              config=QueryConfig(TINY, subset=30))
    assert len(r.ids) == 5 and r.accuracy is None  # a split alone: no holdout


def test_a_pool_built_with_from_torch_datasets_is_relabelled_and_trained_on(tiny_splits):
    from torch.utils.data import Dataset

    from tidal.data import from_torch_datasets

    class Tensors(Dataset):
        def __init__(self, split):
            self.split = split

        def __len__(self):
            return len(self.split)

        def __getitem__(self, i):
            return self.split.images[i].float() / 255, int(self.split.labels[i])

    pool = from_torch_datasets(Tensors(tiny_splits.train), Tensors(tiny_splits.test), workers=0)
    labeled = list(range(0, 40))
    r = query("auto", pool, labeled, tiny_splits.train.labels[:40].tolist(), 5, "entropy", config=QueryConfig(TINY))
    assert not r.random and r.n_labeled == 40 and r.class_counts == [10, 10, 10, 10] and len(r.ids) == 5
    assert not set(r.ids.tolist()) & set(labeled) and r.accuracy is not None


@pytest.mark.parametrize("kwargs,match", [
    (dict(k=300), "k=300 is larger than the 236 unlabeled samples"),
    (dict(k=0), "must be an integer >= 1"),
    (dict(k=5, subset=3), "subset=3 must be >= k=5"),
    (dict(k=5, labels=[0, 1, 2, 9]), "label 9 is outside the class indices 0..3"),
    (dict(k=5, ids=[0, 0, 1, 2]), "an id twice"),
    (dict(k=5, ids=[0, 1, 2, 999]), "labeled id 999 is outside the pool's ids 0..239"),
    (dict(k=5, labels=[0, 1]), "4 labeled ids but 2 labels"),
    (dict(k=5, method="entropie"), "entropie"),
])
def test_bad_arguments(tiny_splits, kwargs, match):
    ids, labels = kwargs.pop("ids", [0, 1, 2, 3]), kwargs.pop("labels", [0, 1, 2, 3])
    with pytest.raises(ValueError, match=match):
        query("auto", tiny_splits.train, ids, labels, config=QueryConfig(TINY, subset=kwargs.pop("subset", None)),
              **kwargs)


def test_a_continued_round_starts_from_the_warm_weights(tiny_splits):
    labeled, labels = list(range(40)), tiny_splits.train.labels[:40].tolist()
    cont = QueryConfig(TINY, retrain="continue")

    def weights(r):
        return {k: v.clone() for k, v in r.model.state_dict().items()}

    first = query("auto", tiny_splits, labeled, labels, 8, "entropy", config=cont)
    a = query("auto", tiny_splits, labeled, labels, 8, "entropy", config=cont, round=2, warm=WarmStart(weights(first)))
    fresh = query("auto", tiny_splits, labeled, labels, 8, "entropy", config=cont, round=2)
    assert a.final_loss != fresh.final_loss  # the same round from the backbone's warm weights
    again = query("auto", tiny_splits, labeled, labels, 8, "entropy", config=cont, round=2,
                  warm=WarmStart(weights(first)))
    assert torch.equal(a.ids, again.ids) and a.final_loss == again.final_loss
    first = query("auto", tiny_splits, labeled, labels, 8, "tidal-entropy", config=cont)
    assert first.objective_state is not None  # TiDAL's module, kept for the next round
    both = query("auto", tiny_splits, labeled, labels, 8, "tidal-entropy", config=cont, round=2,
                 warm=WarmStart(weights(first), first.objective_state))
    backbone = query("auto", tiny_splits, labeled, labels, 8, "tidal-entropy", config=cont, round=2,
                     warm=WarmStart(weights(first)))
    assert both.final_loss != backbone.final_loss  # the module's warm weights count too


@pytest.mark.parametrize("config,warm,match", [
    (QueryConfig(TINY), WarmStart({}), "warm weights are only used with retrain='continue'"),
    (QueryConfig(TINY, retrain="continue"), WarmStart({"conv.weight": torch.zeros(1)}),
     "the warm weights do not fit this model"),
    (QueryConfig(TINY, retrain="again"), None, "retrain='again' must be 'scratch' or 'continue'"),
])
def test_bad_round_settings(tiny_splits, config, warm, match):
    with pytest.raises(ValueError, match=match):
        query("auto", tiny_splits.train, [0, 1, 2, 3], [0, 1, 2, 3], 5, config=config, warm=warm)


# --- the project command --------------------------------------------------------------------------

def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def labelled(tmp_path, pool, classes, fast, answer):
    """A project after one random round whose 9 samples are labelled."""
    root, truth = pool

    def make(name):
        project = tmp_path / name
        init_project(project, f"folder:{root}", classes, **fast)
        query_project(project, 9, device="cpu")
        import_labels(project, answer(round_dir(project, 1) / "to_label.csv", truth, tmp_path / f"{name}.csv"))
        return project

    return make


def test_a_query_killed_before_it_stores_its_round_gives_the_same_round_again(labelled, monkeypatch):
    twin = labelled("twin")
    _, _, out = query_project(twin, 6, device="cpu")
    expected = _rows(out / "to_label.csv")
    project = labelled("proj")

    def killed(self, record):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(ProjectStore, "add_round", killed)
        with pytest.raises(KeyboardInterrupt):
            query_project(project, 6, device="cpu")
    with ProjectStore(project / DB_NAME) as store:
        assert store.num_rounds() == 1  # the killed round was not stored
    rnd, _, out = query_project(project, 6, device="cpu")
    assert rnd == 2 and _rows(out / "to_label.csv") == expected
    assert [r["score"] for r in expected] == sorted((r["score"] for r in expected), key=float, reverse=True)


def test_rounds_are_stored_with_their_selection_and_only_the_last_weights_kept(labelled):
    project = labelled("proj")
    query_project(project, 6, device="cpu")
    query_project(project, 4, device="cpu", retrain="continue", method="margin")
    with ProjectStore(project / DB_NAME) as store:
        rounds = store.rounds()
    assert [r.method for r in rounds] == ["random", "tidal-entropy", "margin"]
    assert [r.n_labeled for r in rounds] == [0, 9, 9] and rounds[2].retrain == "continue"
    assert [len(r.selections) for r in rounds] == [9, 6, 4] and rounds[0].random
    assert not (round_dir(project, 2) / "model.pt").exists() and (round_dir(project, 3) / "model.pt").is_file()
    row = _rows(round_dir(project, 3) / "to_label.csv")[0]
    assert set(row) == {"rank", "id", "path", "score", "predicted", "probability", "label"} and row["predicted"]


def test_k_larger_than_the_unlabeled_pool_is_refused(labelled):
    with pytest.raises(ValueError, match=r"-k 37 is larger than what is unlabeled \(36 of 45 samples\)"):
        query_project(labelled("proj"), 37, device="cpu")


def test_classes_that_change_between_rounds_are_refused(labelled, pool, classes, fast):
    project = labelled("proj")
    with pytest.raises(RunDirectoryError, match="classes cannot change between rounds"):
        init_project(project, f"folder:{pool[0]}", ["red", "green", "yellow"], **fast)
    with ProjectStore(project / DB_NAME) as store:  # a database changed behind tidal's back
        store.set_meta(classes=["red", "green", "yellow"])
    with pytest.raises(RunDirectoryError, match="the classes changed between rounds"):
        query_project(project, 3, device="cpu")


def test_one_process_at_a_time(labelled, tmp_path, monkeypatch):
    from tidal.rundir import RunDirLock

    monkeypatch.setattr("tidal.project.project.LOCK_WAIT_S", 0.2)  # the refusal after the wait, not the wait
    project = labelled("proj")
    with RunDirLock(project):
        with pytest.raises(RunDirectoryError, match="is in use by another tidal process .*still after 0.2 s"):
            query_project(project, 3, device="cpu")
        with pytest.raises(RunDirectoryError, match="is in use by another tidal process"):
            import_labels(project, tmp_path / "proj.csv")


@pytest.mark.slow
def test_a_query_killed_by_sigkill_mid_training_gives_the_same_round_when_run_again(tmp_path, pool, classes, answer):
    """A real kill: `tidal query` in its own process, SIGKILLed while it trains, then run again."""
    import os
    import signal
    import subprocess
    import sys

    root, truth = pool
    slow = {"train": {"epochs": 200, "width": 4, "batch_size": 16}, "strategy": {}}
    projects = []
    for name in ("twin", "killed"):
        project = tmp_path / name
        init_project(project, f"folder:{root}", classes, **slow)
        query_project(project, 10, device="cpu")
        import_labels(project, answer(round_dir(project, 1) / "to_label.csv", truth, tmp_path / f"{name}.csv"))
        projects.append(project)
    twin, killed = projects
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "tidal", "query", "-k", "6", "--device", "cpu"]
    proc = subprocess.Popen(cmd + [str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen = b""
    while b"round 2" not in seen:  # the training bar of round 2 has appeared: it is training
        piece = os.read(proc.stderr.fileno(), 4096)
        assert piece, f"tidal query ended before it trained: {seen[-2000:]!r}"
        seen += piece
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    proc.stderr.close()
    cmd.append("--quiet")
    with ProjectStore(killed / DB_NAME) as store:
        assert store.num_rounds() == 1  # nothing of round 2 was stored
    subprocess.run(cmd + [str(twin)], env=env, check=True, capture_output=True)
    subprocess.run(cmd + [str(killed)], env=env, check=True, capture_output=True)
    assert (round_dir(killed, 2) / "to_label.csv").read_bytes() == (round_dir(twin, 2) / "to_label.csv").read_bytes()
    assert not list(killed.glob("rounds/*/.*.tmp"))


# --- pool files that vanish after init (issue 21, case 3) ----------------------------------------

def test_excluded_ids_are_never_selected_nor_trained_on(tiny_splits):
    labeled = list(range(0, 40))
    labels = tiny_splits.train.labels[:40].tolist()
    exclude = [0, 1, 50, 51, 52]
    r = query("auto", tiny_splits.train, labeled, labels, 8, "entropy", config=QueryConfig(TINY), exclude=exclude)
    assert not set(r.ids.tolist()) & set(exclude) and r.n_labeled == 38
    assert r.excluded.tolist() == exclude and r.excluded_labeled == 2
    draw = query("auto", tiny_splits.train, [], [], 230, exclude=exclude[2:])  # a random round too
    assert not set(draw.ids.tolist()) & set(exclude[2:]) and len(draw.ids) == 230
    with pytest.raises(ValueError, match=r"k=238 is larger than the 237 unlabeled samples \(3 excluded\)"):
        query("auto", tiny_splits.train, [], [], 238, exclude=exclude[2:])
    with pytest.raises(ValueError, match="excluded id 999 is outside"):
        query("auto", tiny_splits.train, [], [], 3, exclude=[999])


def test_without_exclusions_a_round_is_unchanged(tiny_splits):
    labeled = list(range(0, 40))
    labels = tiny_splits.train.labels[:40].tolist()
    a = query("auto", tiny_splits.train, labeled, labels, 8, "entropy", config=QueryConfig(TINY))
    b = query("auto", tiny_splits.train, labeled, labels, 8, "entropy", config=QueryConfig(TINY), exclude=[])
    assert torch.equal(a.ids, b.ids) and torch.equal(a.scores, b.scores) and len(b.excluded) == 0


def test_deleted_pool_files_are_left_out_listed_and_their_labels_kept(labelled, pool, classes, fast):
    """A pool image deleted after init (labelled or not) no longer blocks the project: the rescan and the next
    rounds list it, it is never selected, a labelled one is not trained on, and its label stays stored."""
    root, _ = pool
    project = labelled("proj")
    with ProjectStore(project / DB_NAME) as store:
        labels, paths = store.labels(), store.paths()
    gone_labelled = sorted(labels)[0]
    gone_unlabelled = next(i for i in range(len(paths)) if i not in labels)
    for i in (gone_labelled, gone_unlabelled):
        (root / paths[i]).unlink()
    r = init_project(project, f"folder:{root}", classes, **fast)  # the rescan lists them
    assert sorted(r.missing) == sorted([(paths[gone_labelled], True), (paths[gone_unlabelled], False)])
    assert (r.samples, r.labeled) == (45, 9)
    rnd, result, out = query_project(project, 6, device="cpu")
    assert rnd == 2 and not result.random and result.n_labeled == 8 and result.excluded_labeled == 1
    assert not {gone_labelled, gone_unlabelled} & set(result.ids.tolist())
    listed = (out / "missing.txt").read_text(encoding="utf-8").splitlines()
    assert sorted(listed) == sorted([f"{gone_labelled}\t{paths[gone_labelled]}\t{classes[labels[gone_labelled]]}",
                                     f"{gone_unlabelled}\t{paths[gone_unlabelled]}\t"])
    with ProjectStore(project / DB_NAME) as store:
        assert store.labels() == labels and store.rounds()[-1].n_labeled == 8
    with pytest.raises(ValueError, match=r"-k 36 is larger than what is unlabeled \(35 of 45 samples, 2 files missing"):
        query_project(project, 36, device="cpu")


def test_a_random_first_round_skips_deleted_files(tmp_path, pool, classes, fast):
    root, _ = pool
    init_project(tmp_path / "p", f"folder:{root}", classes, **fast)
    (root / "img 007.png").unlink()
    _, result, out = query_project(tmp_path / "p", 44, device="cpu")
    assert result.random and 7 not in result.ids.tolist() and len(result.ids) == 44
    assert (out / "missing.txt").read_text(encoding="utf-8") == "7\timg 007.png\t\n"


def test_a_labelled_file_deleted_on_the_on_disk_pool(labelled, pool, monkeypatch):
    import tidal.project.data

    root, _ = pool
    project = labelled("proj")
    with ProjectStore(project / DB_NAME) as store:
        gone = sorted(store.labels())[0]
        (root / store.paths()[gone]).unlink()
    monkeypatch.setattr(tidal.project.data, "IN_MEMORY_BYTES", 1)
    _, result, _ = query_project(project, 4, device="cpu")
    assert result.n_labeled == 8 and gone not in result.ids.tolist()


def test_a_vanished_pool_folder_says_how_to_point_the_project_at_it(labelled, pool):
    from tidal.errors import DatasetError

    root, _ = pool
    project = labelled("proj")
    root.rename(root.with_name("moved"))
    with pytest.raises(DatasetError, match=r"the pool folder .*pool of project .*proj is gone; .*`tidal init .*proj "
                                           r"--data folder:NEWPATH --classes red green blue --moved`"):
        query_project(project, 4, device="cpu")
    for p in root.with_name("moved").iterdir():
        p.unlink()
    root.with_name("moved").rename(root)
    with pytest.raises(DatasetError, match=r"all 45 pool files of project .* are gone"):
        query_project(project, 4, device="cpu")


def test_the_command_line_lists_what_is_gone(labelled, pool, classes, capsys):
    from tidal.cli import main

    root, _ = pool
    project = labelled("proj")
    with ProjectStore(project / DB_NAME) as store:
        gone = store.paths()[sorted(store.labels())[0]]
    (root / gone).unlink()
    assert main(["init", str(project), "--data", f"folder:{root}", "--classes", *classes]) == 0
    out, err = capsys.readouterr()
    assert "45 samples, 1 missing, 9 labelled" in out
    assert f"1 of the project's images are gone from the pool folder ({gone!r})" in err and "--moved" in err
    assert main(["query", str(project), "-k", "3", "--device", "cpu", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "round 2: trained on 8 labels" in out
    assert "1 pool files are gone and were left out (listed in" in err and "1 of them labelled" in err


def test_a_trained_round_reports_its_loss_holdout_confusion_and_fitted_settings(tiny_splits):
    """Issue 21 case 22: 12 labels at batch 128 train at batch 6 (said in ``fitted``); the round keeps
    its final loss and the holdout confusion matrix behind its accuracy (for the report's per-class view)."""
    train = dataclasses.replace(TINY, epochs=1, batch_size=128)
    ids = list(range(12))
    r = query("resnet18", tiny_splits, ids, tiny_splits.train.labels[:12].tolist(), 3, "random",
              config=QueryConfig(train))
    assert r.fitted == ["batch 6 instead of 128 (12 labels would make 1 SGD step per epoch; at least 2)",
                        "crop padding 1 instead of 4 px (at most 1/7 of the 12-px image side)"]
    assert r.final_loss is not None and r.final_loss > 0
    m = torch.tensor(r.confusion)
    assert m.shape == (4, 4) and int(m.sum()) == len(tiny_splits.test)
    assert m.sum(dim=1).tolist() == torch.bincount(tiny_splits.test.labels, minlength=4).tolist()
    assert int(m.diag().sum()) / len(tiny_splits.test) == r.accuracy
    no_holdout = query("resnet18", tiny_splits.train, ids, tiny_splits.train.labels[:12].tolist(), 3, "random",
                       config=QueryConfig(train))
    assert no_holdout.confusion is None and no_holdout.final_loss == r.final_loss
