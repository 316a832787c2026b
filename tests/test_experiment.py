import dataclasses
import os
import re
import sqlite3
import sys
from pathlib import Path

import pytest
import torch

from tidal.config import ALConfig, DataConfig, TrainConfig, preset
from tidal.errors import RunDirectoryError
from tidal.experiment import make_pool, prepare_out, run_experiment
from tidal.results import DB_NAME, ResultStore


def _config(**kw):
    cfg = preset("quick", methods=("tidal-entropy", "random"), seeds=(0,), imbalances=(1.0,),
                 train=TrainConfig(epochs=1, width=2, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=20, budget=10, cycles=3, subset=40),
                 data=DataConfig(download=False))
    return dataclasses.replace(cfg, **kw)


def _run(cfg, out, splits):
    return run_experiment(cfg, out, progress=False, log=lambda s: None, splits={"fashion-mnist": splits})


def test_records_and_resume(tiny_splits, tmp_path):
    cfg = _config()
    s = _run(cfg, tmp_path / "a", tiny_splits)
    assert s.ran_cycles == 6 and s.skipped_cycles == 0
    with ResultStore(tmp_path / "a" / DB_NAME) as store:
        recs = store.records()
        assert [(r.method, r.cycle) for r in recs] == [("random", 0), ("random", 1), ("random", 2),
                                                       ("tidal-entropy", 0), ("tidal-entropy", 1),
                                                       ("tidal-entropy", 2)]
        r = recs[0]
        assert r.n_labeled == 20 and len(r.selected) == 10 and len(r.scores) == 10 and sum(r.class_counts) == 20
        assert store.config().identity() == cfg.identity()
        assert store.class_names() == {"fashion-mnist": ["c0", "c1", "c2", "c3"]}  # the report's class labels
    # simulate a run killed after the second cycle of tidal-entropy, then resume
    con = sqlite3.connect(tmp_path / "a" / DB_NAME)
    with con:
        con.execute("DELETE FROM cycles WHERE method = 'tidal-entropy' AND cycle = 2")
    con.close()
    s2 = _run(cfg, tmp_path / "a", tiny_splits)
    assert s2.ran_cycles == 1 and s2.skipped_cycles == 5
    with ResultStore(tmp_path / "a" / DB_NAME) as store:
        again = store.records()
    assert [(r.accuracy, r.labeled, r.selected) for r in again] == [(r.accuracy, r.labeled, r.selected)
                                                                     for r in recs]
    assert _run(cfg, tmp_path / "a", tiny_splits).ran_cycles == 0  # everything done: nothing to train


def test_methods_and_seeds_may_be_added(tiny_splits, tmp_path):
    _run(_config(methods=("random",)), tmp_path / "b", tiny_splits)
    s = _run(_config(methods=("random", "entropy"), seeds=(0, 1)), tmp_path / "b", tiny_splits)
    assert s.skipped_cycles == 3 and s.ran_cycles == 9


def test_different_experiment_is_refused_and_nothing_changes(tiny_splits, tmp_path):
    _run(_config(methods=("random",)), tmp_path / "c", tiny_splits)
    before = (tmp_path / "c" / DB_NAME).read_bytes()
    other = _config(methods=("random",), train=TrainConfig(epochs=2, width=2, batch_size=16))
    with pytest.raises(RunDirectoryError, match=r"different experiment \(train.epochs: stored 1, given 2"):
        _run(other, tmp_path / "c", tiny_splits)
    with ResultStore(tmp_path / "c" / DB_NAME) as store:
        assert len(store.records()) == 3
    del before


def test_foreign_directory_is_refused(tiny_splits, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not a tidal run directory"):
        _run(_config(), tmp_path / "d", tiny_splits)


def test_a_folder_with_another_programs_results_sqlite_is_refused(tiny_splits, tmp_path):
    """A file named results.sqlite is no pass for a non-empty folder: an empty SQLite database of
    another program (user_version 7, beside its notes) is refused, and neither file changes."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    con = sqlite3.connect(other / DB_NAME)
    con.execute("PRAGMA user_version = 7")
    con.close()
    before = (other / DB_NAME).read_bytes()
    with pytest.raises(RunDirectoryError, match=r"not a tidal results database \(an empty database, user_version 7"):
        _run(_config(), other, tiny_splits)
    with pytest.raises(RunDirectoryError, match="is not a tidal results database"):
        prepare_out(other)
    assert (other / DB_NAME).read_bytes() == before
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt", DB_NAME]
    (other / DB_NAME).write_bytes(b"")  # a 0-byte file is no database, and no run directory either
    with pytest.raises(RunDirectoryError, match="exists and is not a tidal run directory"):
        prepare_out(other)
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt", DB_NAME]


def test_what_a_killed_creation_leaves_does_not_stop_a_rerun(tiny_splits, tmp_path):
    """SIGKILL while results.sqlite is being created leaves its temporary file (and maybe the lock
    file, or a 0-byte results.sqlite from something that looked for it): still an empty directory."""
    out = tmp_path / "k"
    out.mkdir()
    (out / ".tidal.lock").write_text("")
    (out / f".{DB_NAME}.ab_cd123.tmp").write_bytes(b"SQLite format 3\x00" + bytes(100))
    (out / DB_NAME).write_bytes(b"")
    s = _run(_config(methods=("random",)), out, tiny_splits)
    assert s.ran_cycles == 3
    assert not (out / f".{DB_NAME}.ab_cd123.tmp").exists()  # removed under the lock


def test_an_empty_out_is_refused(tiny_splits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--out '' is empty; pass a directory path"):
        _run(_config(), "", tiny_splits)
    assert list(tmp_path.iterdir()) == []


def test_budget_checked_before_training(tiny_splits, tmp_path):
    with pytest.raises(ValueError, match=r"= 1020 labels, but the fashion-mnist pool at imbalance 1 holds 240"):
        _run(_config(al=ALConfig(initial=20, budget=500, cycles=3, subset=1000)), tmp_path / "e", tiny_splits)
    with pytest.raises(ValueError, match="initial=300 is larger than the fashion-mnist pool"):
        _run(_config(al=ALConfig(initial=300, budget=10, cycles=1, subset=40)), tmp_path / "e", tiny_splits)
    assert not (tmp_path / "e").exists()  # nothing written


def test_pool_is_long_tailed_and_seeded(tiny_splits):
    a = make_pool(tiny_splits.train, 10, None, seed=0)
    counts = tiny_splits.train.labels[a].bincount().tolist()
    assert counts[0] == 60 and counts[-1] == 6 and counts == sorted(counts, reverse=True)
    assert make_pool(tiny_splits.train, 10, None, 0).equal(a)
    assert len(make_pool(tiny_splits.train, 1, 50, 0)) == 50


def _row(r):
    return (r.cycle, r.n_labeled, r.accuracy, r.class_counts, r.labeled, r.selected, r.scores, r.final_loss)


def _stop_after_two_commits(monkeypatch):
    original, calls = ResultStore.add_cycle, []

    def add_then_stop(self, record, td_tracking=()):  # the process dies right after the 2nd commit
        original(self, record, td_tracking)
        calls.append(record.cycle)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(ResultStore, "add_cycle", add_then_stop)
    return lambda: monkeypatch.setattr(ResultStore, "add_cycle", original)


def _continue_config(method):
    return _config(methods=(method,), al=ALConfig(initial=20, budget=10, cycles=3, subset=40, retrain="continue"))


@pytest.mark.parametrize("method", ["tidal-entropy", "lloss"])
def test_continue_mode_resumes_from_the_stored_model_and_objective(tiny_splits, tmp_path, monkeypatch, method):
    cfg = _continue_config(method)
    _run(cfg, tmp_path / "full", tiny_splits)
    with ResultStore(tmp_path / "full" / DB_NAME) as store:
        full = store.records()
    ckpts = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir())
    assert ckpts == [f"fashion-mnist-ir1-{method}-seed0-cycle2.pt"]  # older ones removed after each commit
    state = torch.load(tmp_path / "full" / "checkpoints" / ckpts[0], weights_only=True)
    assert set(state) == {"model", "objective"} and state["objective"]  # the module's weights travel along

    restore = _stop_after_two_commits(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, tmp_path / "cut", tiny_splits)
    restore()
    assert _run(cfg, tmp_path / "cut", tiny_splits).ran_cycles == 1
    with ResultStore(tmp_path / "cut" / DB_NAME) as store:
        again = store.records()
    assert [_row(r) for r in again] == [_row(r) for r in full]  # row for row, scores and losses included


def test_continue_mode_checkpoint_of_a_method_without_a_module(tiny_splits, tmp_path):
    _run(_continue_config("random"), tmp_path / "r", tiny_splits)
    state = torch.load(tmp_path / "r" / "checkpoints" / "fashion-mnist-ir1-random-seed0-cycle2.pt", weights_only=True)
    assert set(state) == {"model", "objective"} and state["objective"] is None


def _cut_after_two_cycles(cfg, out, splits, monkeypatch) -> Path:
    """Run ``cfg`` until its 2nd commit; the path of the checkpoint a resume will read."""
    restore = _stop_after_two_commits(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, out, splits)
    restore()
    ckpt = out / "checkpoints" / f"fashion-mnist-ir1-{cfg.methods[0]}-seed0-cycle1.pt"
    assert ckpt.is_file()
    return ckpt


def test_continue_mode_resumes_from_a_backbone_only_checkpoint(tiny_splits, tmp_path, monkeypatch):
    # Files written before the objective was checkpointed hold the backbone's state dict alone.
    ckpt = _cut_after_two_cycles(_continue_config("tidal-entropy"), tmp_path / "old", tiny_splits, monkeypatch)
    torch.save(torch.load(ckpt, weights_only=True)["model"], ckpt)
    assert _run(_continue_config("tidal-entropy"), tmp_path / "old", tiny_splits).ran_cycles == 1


class _NotWeights:  # a pickled object of an arbitrary class: weights_only refuses its global
    pass


@pytest.mark.parametrize("content, says", [
    (b"\x00garbage, not a zip archive" * 10, "is corrupt or not a tidal checkpoint"),
    (_NotWeights, "is corrupt or not a tidal checkpoint (UnpicklingError)"),
    ({"model": "weights", "objective": None}, "does not hold tidal's weights"),
    ({"model": {"conv.weight": torch.zeros(1)}, "objective": None}, "model_state does not fit this run's ResNet18"),
    ({"model": None, "objective": {"fc.weight": torch.zeros(1)}}, "does not hold tidal's weights"),
])
def test_corrupt_or_tampered_checkpoint_is_one_line(tiny_splits, tmp_path, monkeypatch, content, says):
    cfg = _continue_config("tidal-entropy")
    ckpt = _cut_after_two_cycles(cfg, tmp_path / "t", tiny_splits, monkeypatch)
    if isinstance(content, bytes):
        ckpt.write_bytes(content)
    else:
        torch.save(content() if content is _NotWeights else content, ckpt)
    with pytest.raises(ValueError) as err:
        _run(cfg, tmp_path / "t", tiny_splits)
    message = str(err.value)
    assert says in message and "\n" not in message
    assert "weights_only" not in message  # never the advice to unpickle arbitrary code


def test_tampered_objective_weights_are_one_line(tiny_splits, tmp_path, monkeypatch):
    cfg = _continue_config("tidal-entropy")
    ckpt = _cut_after_two_cycles(cfg, tmp_path / "o", tiny_splits, monkeypatch)
    state = torch.load(ckpt, weights_only=True)
    torch.save({"model": state["model"], "objective": {"fc.weight": torch.zeros(1)}}, ckpt)
    with pytest.raises(ValueError, match="objective_state does not fit this run's MultiScaleHead"):
        _run(cfg, tmp_path / "o", tiny_splits)


def test_continue_mode_without_checkpoint_is_refused(tiny_splits, tmp_path):
    cfg = _config(methods=("random",), al=ALConfig(initial=20, budget=10, cycles=3, subset=40, retrain="continue"))
    _run(cfg, tmp_path / "g", tiny_splits)
    con = sqlite3.connect(tmp_path / "g" / DB_NAME)
    with con:
        con.execute("DELETE FROM cycles WHERE cycle = 2")
    con.close()
    for p in (tmp_path / "g" / "checkpoints").iterdir():
        p.unlink()
    with pytest.raises(RunDirectoryError, match="cannot resume random seed 0 with --retrain continue"):
        _run(cfg, tmp_path / "g", tiny_splits)


def test_stale_temporary_files_of_a_killed_writer_are_removed(tiny_splits, tmp_path):
    cfg = _config(methods=("random",), al=ALConfig(initial=20, budget=10, cycles=2, subset=40))
    _run(cfg, tmp_path / "t", tiny_splits)
    (tmp_path / "t" / "figures").mkdir(exist_ok=True)
    stale = [tmp_path / "t" / ".report.md.k2j4_x9a.tmp", tmp_path / "t" / "figures" / ".acc.png.0abcdefg.tmp"]
    theirs = [tmp_path / "t" / "notes.tmp", tmp_path / "t" / ".mine.tmp"]
    for p in stale + theirs:
        p.write_text("partial")
    _run(cfg, tmp_path / "t", tiny_splits)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in theirs)


def test_a_second_process_on_the_same_directory_is_refused_at_once(tiny_splits, tmp_path):
    from tidal.rundir import RunDirLock

    cfg = _config(methods=("random",), al=ALConfig(initial=20, budget=10, cycles=2, subset=40))
    (tmp_path / "l").mkdir()
    with RunDirLock(tmp_path / "l"):  # another process's lock (flock: one per open file)
        with pytest.raises(RunDirectoryError, match=rf"in use by another tidal process \(pid {os.getpid()}: "):
            _run(cfg, tmp_path / "l", tiny_splits)
        assert not (tmp_path / "l" / DB_NAME).exists()
    assert _run(cfg, tmp_path / "l", tiny_splits).ran_cycles == 2  # released: the directory is free again


def test_a_lock_dies_with_its_process(tmp_path):
    import signal
    import subprocess

    from tidal.rundir import RunDirLock

    code = ("import sys, time; from tidal.rundir import RunDirLock; lock = RunDirLock(sys.argv[1]); "
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunDirectoryError, match=rf"pid {proc.pid}: "):
        RunDirLock(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    RunDirLock(tmp_path).release()  # the kernel released it


@pytest.mark.parametrize("flag", ["mlflow", "tensorboard"])
def test_a_missing_tracker_package_fails_before_anything_is_created(tiny_splits, tmp_path, monkeypatch, flag):
    monkeypatch.setitem(sys.modules, "mlflow" if flag == "mlflow" else "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match=f"--{flag} needs the {flag} package: pip install {flag}"):
        run_experiment(_config(), tmp_path / "m", progress=False, splits={"fashion-mnist": tiny_splits},
                       trackers=[flag])
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("trackers", [["wandb"], "mlflow", [True]])
def test_an_unknown_tracker_fails_before_anything_is_created(tiny_splits, tmp_path, trackers):
    with pytest.raises(ValueError, match=r"trackers=.* must be a list of names from mlflow, tensorboard"):
        run_experiment(_config(), tmp_path / "m", progress=False, splits={"fashion-mnist": tiny_splits},
                       trackers=trackers)
    assert not (tmp_path / "m").exists()


def _conv_only(num_classes):
    """A classifier without nn.Linear: no embedding to hook (issue 21, case 16)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, num_classes, 3),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_a_model_without_linear_runs_methods_that_need_no_embedding_and_names_the_hooked_layers(tiny_splits,
                                                                                                  tmp_path):
    lines = []
    cfg = _config(methods=("random",), al=ALConfig(initial=20, budget=10, cycles=2, subset=40))
    s = run_experiment(cfg, tmp_path / "r", progress=False, log=lines.append, splits={"fashion-mnist": tiny_splits},
                       model=_conv_only)
    assert s.ran_cycles == 2
    hooked = [line for line in lines if "hooked" in line]  # printed once per run, before training
    assert len(hooked) == 1 and re.match(r"fashion-mnist: model \S*test_experiment:_conv_only \(Sequential\) on "
                                         r"inputs \(1, 12, 12\), 4 classes; hooked features '1', '3'", hooked[0])
    assert "embedding none (dim 0)" in hooked[0]
    with pytest.raises(ValueError, match=r"method 'coreset' needs the model's embedding.*found no nn.Linear.*"
                                         r"--embedding-layer NAME"):
        run_experiment(_config(methods=("coreset",)), tmp_path / "c", progress=False, log=lambda s: None,
                       splits={"fashion-mnist": tiny_splits}, model=_conv_only)
    with pytest.raises(ValueError, match=r"method 'bald' needs the model's classifier \(an nn.Linear to put MC "
                                         r"dropout before\)"):
        run_experiment(_config(methods=("random", "bald")), tmp_path / "b", progress=False, log=lambda s: None,
                       splits={"fashion-mnist": tiny_splits}, model=_conv_only)
    assert not (tmp_path / "b").exists()  # refused before random's cycles ran
    named = _config(methods=("coreset",), train=dataclasses.replace(_config().train, embedding_layer="5"),
                    al=ALConfig(initial=20, budget=10, cycles=2, subset=40))
    lines.clear()
    assert run_experiment(named, tmp_path / "n", progress=False, log=lines.append,
                          splits={"fashion-mnist": tiny_splits}, model=_conv_only).ran_cycles == 2
    assert "embedding '5' (dim 4)" in next(line for line in lines if "hooked" in line)


def test_layer_names_for_a_builtin_model_are_refused(tiny_splits, tmp_path):
    cfg = _config(methods=("random",), train=dataclasses.replace(_config().train, feature_layers=("layer1",)))
    with pytest.raises(ValueError, match="the built-in 'resnet18' gives its own features and embedding: drop "
                                         "--feature-layers / --embedding-layer"):
        _run(cfg, tmp_path / "b", tiny_splits)


def test_a_run_says_when_it_fits_the_training_settings_to_the_data(tiny_splits, tmp_path):
    """Issue 21 case 22: 20 labels at batch 128 and 12-px images: the run prints the batch and crop it
    trains with (README, "Presets"); with settings that fit it prints nothing of the kind."""
    lines: list[str] = []
    cfg = _config(methods=("random",))
    fits = dataclasses.replace(cfg, al=dataclasses.replace(cfg.al, cycles=1),
                               train=dataclasses.replace(cfg.train, crop_padding=1))
    run_experiment(fits, tmp_path / "a", progress=False, log=lines.append, splits={"fashion-mnist": tiny_splits})
    assert not any("instead of" in line for line in lines)  # batch 16 on 20 labels: two steps; padding 1 of 12 px
    big = dataclasses.replace(fits, train=dataclasses.replace(fits.train, batch_size=128, crop_padding=4))
    run_experiment(big, tmp_path / "b", progress=False, log=lines.append, splits={"fashion-mnist": tiny_splits})
    assert ("note: fashion-mnist: the first cycle trains with batch 10 instead of 128 (20 labels would make 1 SGD step "
            "per epoch; at least 2); crop padding 1 instead of 4 px (at most 1/7 of the 12-px image side); "
            "re-checked every cycle (README, \"Presets\")") in lines
