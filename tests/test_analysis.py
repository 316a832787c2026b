"""tidal.analysis: Figure 7's per-epoch KLs (hand-computed on a stub model), --track-td in a real
tiny run, Figure 2's analyze-scores (library on the tiny fixture, CLI on real FashionMNIST), errors."""

from __future__ import annotations

import math
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

from tidal.analysis import (
    SCORES,
    TDTracker,
    analyze_scores,
    kl_to_final_td,
    load_score_analysis,
    score_file_name,
)
from tidal.cli import main
from tidal.config import ALConfig, DataConfig, TrainConfig, preset
from tidal.data import ImageDataset
from tidal.errors import RunDirectoryError
from tidal.experiment import prepare_out, run_experiment
from tidal.models.resnet import ModelOutput
from tidal.results import DB_NAME, ResultStore
from tidal.strategies import AuxObjective

# Figure 7 on 3 samples, 2 classes, 2 epochs: snapshot softmax p(t) and module prediction p̃_m(t).
P = [[[0.5, 0.5], [0.8, 0.2], [0.1, 0.9]],
     [[0.7, 0.3], [0.6, 0.4], [0.3, 0.7]]]
Q = [[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]],
     [[0.6, 0.4], [0.7, 0.3], [0.25, 0.75]]]
P_BAR = [[0.6, 0.4], [0.7, 0.3], [0.2, 0.8]]  # (p(1) + p(2)) / 2, Eq. 5


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


def _expected(dists: list) -> list[float]:
    return [sum(_kl(P_BAR[n], dists[t][n]) for n in range(3)) / 3 for t in range(2)]


def test_kl_to_final_td_by_hand():
    kl_module, kl_snapshot = kl_to_final_td([torch.tensor(p, dtype=torch.float64).log() for p in P],
                                            [torch.tensor(q, dtype=torch.float64).log() for q in Q])
    assert kl_module == pytest.approx(_expected(Q), abs=1e-6)
    assert kl_snapshot == pytest.approx(_expected(P), abs=1e-6)
    # epoch 2: the module is exact on samples 0 and 1; sample 2 gives 0.2 log(0.2/0.25) + 0.8 log(0.8/0.75)
    assert kl_module[1] == pytest.approx((0.2 * math.log(0.8) + 0.8 * math.log(0.8 / 0.75)) / 3, abs=1e-9)
    with pytest.raises(ValueError, match="same non-zero number of epochs"):
        kl_to_final_td([torch.zeros(3, 2)], [])


class _StubModel(nn.Module):
    """Logits log p(epoch) for the sample whose single pixel holds its index."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0
        self.bn = nn.BatchNorm1d(1)  # its mode must come back unchanged

    def forward(self, x: torch.Tensor) -> ModelOutput:
        idx = (x.flatten(1)[:, 0] * 255).round().long()  # mean 0, std 1: to_float gives index / 255
        return ModelOutput(torch.tensor(P)[self.epoch, idx].log(), x.flatten(1), [x])


class _StubObjective(AuxObjective):
    def __init__(self, model: _StubModel, predicts_td: bool = True) -> None:
        super().__init__()
        self.clock = [model]  # a list, so the model is not registered as a submodule
        self.predicts_td = predicts_td

    def predict(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        if not self.predicts_td:
            return {"loss": out.logits[:, 0]}
        idx = (out.features[0].flatten(1)[:, 0] * 255).round().long()
        return {"td": torch.tensor(Q)[self.clock[0].epoch, idx]}


def _index_dataset(n: int = 3) -> ImageDataset:
    return ImageDataset(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1), torch.zeros(n, dtype=torch.int64), 2,
                        (0.0,), (1.0,))


def test_tracker_records_each_epoch_and_matches_the_hand_computation():
    model = _StubModel().train()
    objective = _StubObjective(model).train()
    tracker = TDTracker(_index_dataset(), batch_size=2)  # two batches per epoch
    for epoch in range(2):
        model.epoch = epoch
        tracker(epoch, model, objective)
        assert model.training and objective.training  # modes restored
    rows = tracker.result()
    assert [r.epoch for r in rows] == [1, 2]
    assert [r.kl_module for r in rows] == pytest.approx(_expected(Q), abs=1e-6)
    assert [r.kl_snapshot for r in rows] == pytest.approx(_expected(P), abs=1e-6)


def test_tracker_records_nothing_without_a_td_prediction():
    model = _StubModel()
    for objective in (None, _StubObjective(model, predicts_td=False)):
        tracker = TDTracker(_index_dataset(), batch_size=2)
        tracker(0, model, objective)
        tracker(1, model, objective)
        assert tracker.result() == [] and not tracker.active and model.training


def _tiny_config(methods=("tidal-entropy", "random")):
    return preset("quick", methods=methods, seeds=(0,), imbalances=(1.0,),
                  train=TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64),
                  al=ALConfig(initial=20, budget=10, cycles=2, subset=40), data=DataConfig(download=False))


def test_track_td_stores_epoch_rows_for_td_methods_only_and_changes_nothing(tiny_splits, tmp_path):
    cfg = _tiny_config()
    for name, track in (("on", True), ("off", False)):
        run_experiment(cfg, tmp_path / name, progress=False, log=lambda s: None,
                       splits={"fashion-mnist": tiny_splits}, track_td=track)
    with ResultStore(tmp_path / "on" / DB_NAME) as on, ResultStore(tmp_path / "off" / DB_NAME) as off:
        rows = on.td_tracking()
        assert [(r.method, r.cycle, r.epoch) for r in rows] == [("tidal-entropy", c, e) for c in (0, 1) for e in (1, 2)]
        assert all(0 <= r.kl_module < math.inf and 0 <= r.kl_snapshot < math.inf for r in rows)
        assert on.td_tracking(method="random") == [] and off.td_tracking() == []
        same = [(r.method, r.cycle, r.accuracy, r.labeled, r.selected, r.scores) for r in on.records()]
        assert same == [(r.method, r.cycle, r.accuracy, r.labeled, r.selected, r.scores) for r in off.records()]


def test_analyze_scores_on_tiny_long_tailed_samples(tiny_splits, tmp_path):
    kw = dict(dataset="fashion-mnist", imbalance=10, seed=0, size=80, epochs=2, width=2, device="cpu",
              splits=tiny_splits)
    a = analyze_scores(tmp_path / "run", **kw)
    assert a.path == tmp_path / "run" / "analysis" / score_file_name("fashion-mnist", 10, 0)
    assert a.path.name == "scores_fashion-mnist_ir10_seed0.npz" and not list(a.path.parent.glob("*.tmp"))
    with np.load(a.path) as f:
        assert set(f.files) == {"dataset", "imbalance", "seed", "epochs", "width", "num_classes", "indices",
                                "labels", "method", "temperature", *SCORES}
        assert str(f["method"]) == "tidal-entropy" and float(f["temperature"]) == a.temperature > 0
        assert all(f[k].shape == (80,) for k in ("indices", "labels", *SCORES))
        assert np.array_equal(f["labels"], tiny_splits.train.labels[torch.from_numpy(f["indices"])].numpy())
        assert len(set(f["indices"].tolist())) == 80 and str(f["dataset"]) == "fashion-mnist"
    for key in ("H", "H_td", "H_pred", "H_cal"):
        assert (a.scores[key] >= -1e-9).all() and (a.scores[key] <= math.log(4) + 1e-6).all()
    for key in ("M", "M_td", "M_pred", "M_cal"):
        assert (np.abs(a.scores[key]) <= 1 + 1e-6).all()
    assert set(np.unique(a.labels[a.is_tail])) <= {2, 3} and 0 < a.is_tail.sum() < 80  # tail half of 4 classes
    aurocs = a.aurocs()
    assert set(aurocs) == set(SCORES) and all(0 <= v <= 1 for v in aurocs.values())
    back = load_score_analysis(a.path)
    assert back.aurocs() == aurocs and back.epochs == 2 and back.num_classes == 4
    again = analyze_scores(tmp_path / "run", **{**kw, "seed": 1})  # an analysis-only directory may be reused
    assert again.path.name == "scores_fashion-mnist_ir10_seed1.npz"
    prepare_out(tmp_path / "run")  # and is accepted as a run directory


def test_calibrated_scores_are_the_predicted_td_at_the_fitted_temperature(tiny_splits, tmp_path, monkeypatch):
    """H_cal, M_cal: Eqs. 10-11 of softmax(m(x) / T), T fitted on the module's logits against the
    trained samples' recorded TD (here replaced by T = 2 after recording what it was given)."""
    import tidal.strategies.tidal_variants as variants
    from tidal.strategies.scores import entropy, margin

    seen = {}

    def fit(z, target):
        seen.update(z=z.clone(), target=target.clone())
        return 2.0

    monkeypatch.setattr(variants, "fit_td_temperature", fit)  # what fit_on_record calls
    a = analyze_scores(tmp_path / "run", imbalance=10, size=60, epochs=2, width=2, device="cpu", splits=tiny_splits)
    z, y = seen["z"], torch.from_numpy(a.labels)
    assert a.temperature == 2.0 and z.shape == (60, 4) and torch.allclose(seen["target"].sum(1), torch.ones(60))
    assert np.allclose(a.scores["H_pred"], entropy(torch.softmax(z, 1)).double().numpy(), atol=1e-5)
    assert np.allclose(a.scores["H_td"], entropy(seen["target"]).double().numpy(), atol=1e-5)
    assert np.allclose(a.scores["H_cal"], entropy(torch.softmax(z / 2, 1)).double().numpy(), atol=1e-5)
    assert np.allclose(a.scores["M_cal"], margin(torch.softmax(z / 2, 1), reference=y).double().numpy(), atol=1e-5)
    assert not np.allclose(a.scores["H_cal"], a.scores["H_pred"])


def test_analyze_scores_of_a_td_variant_and_an_old_file(tiny_splits, tmp_path):
    from tidal.report.analyses import auroc_table

    kw = dict(imbalance=10, size=60, epochs=1, width=2, device="cpu", splits=tiny_splits)
    a = analyze_scores(tmp_path / "run", method="tidal-detached-entropy", **kw)
    assert a.path.name == "scores_fashion-mnist_ir10_seed0_tidal-detached-entropy.npz"
    assert load_score_analysis(a.path).method == "tidal-detached-entropy"
    with pytest.raises(ValueError, match="method 'random' trains no TD prediction module; choose a TiDAL strategy"):
        analyze_scores(tmp_path / "other", method="random", **kw)
    with pytest.raises(ValueError, match="tidal-entrpy"):
        analyze_scores(tmp_path / "other", method="tidal-entrpy", **kw)
    assert not (tmp_path / "other").exists()
    # a file written before the calibrated scores and the method were stored still reads
    with np.load(a.path) as f:
        old = {k: f[k] for k in f.files if k not in ("H_cal", "M_cal", "method", "temperature")}
    np.savez(tmp_path / "old.npz", **old)
    back = load_score_analysis(tmp_path / "old.npz")
    assert back.method == "tidal-entropy" and math.isnan(back.temperature) and "H_cal" not in back.aurocs()
    row = auroc_table([back]).rows[0]
    assert row[3] == "tidal-entropy" and row[-2:] == ["–", "–"] and row[-3] != "–"


def test_analyze_scores_refuses_bad_input_before_writing(tiny_splits, tmp_path):
    kw = dict(epochs=1, width=2, device="cpu", splits=tiny_splits)
    with pytest.raises(ValueError, match=r"size=1000 is larger than the fashion-mnist pool at imbalance 10 "
                                         r"\(105 samples\); lower --size"):
        analyze_scores(tmp_path / "a", imbalance=10, size=1000, **kw)
    with pytest.raises(ValueError, match="imbalance=0.5 must be >= 1"):
        analyze_scores(tmp_path / "a", imbalance=0.5, size=50, **kw)
    with pytest.raises(ValueError, match="size=1 must be >= 2"):
        analyze_scores(tmp_path / "a", size=1, **kw)
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="is not a tidal run directory"):
        analyze_scores(tmp_path / "b", size=50, **kw)


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_analyze_scores_cli_on_real_fashion_mnist_then_report(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "fig2"
    code, stdout, err = _cli(capsys, "analyze-scores", "--dataset", "fashion-mnist", "--imbalance", "10", "--seed",
                             "0", "--size", "300", "--epochs", "1", "--width", "2", "--data-dir", fmnist_dir,
                             "--device", "cpu", "--quiet", "--out", out)
    assert code == 0, err
    assert "300 trained samples" in stdout and "tail classes 5-9" in stdout and "-M(p), snapshot" in stdout
    npz = out / "analysis" / "scores_fashion-mnist_ir10_seed0.npz"
    a = load_score_analysis(npz)
    assert len(a.labels) == 300 and a.num_classes == 10 and all(0 <= v <= 1 for v in a.aurocs().values())
    code, stdout, err = _cli(capsys, "report", out)
    assert code == 0, err
    assert "report.html, figures/" in stdout and "AUROC of each uncertainty score" in stdout
    wrote = stdout.split("wrote ")[-1]  # an analysis-only directory: no results table is written or named
    assert "results.json" in wrote and "results.csv" not in wrote and not (out / "results.csv").exists()
    assert (out / "figures" / "scores_fashion-mnist_ir10_seed0.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["--size", "100000"], r"size=100000 is larger than the fashion-mnist pool at imbalance 10 \(\d+ samples\)"),
    (["--imbalance", "0.5"], "imbalance=0.5 must be >= 1"),
])
def test_analyze_scores_cli_errors_are_one_line(fmnist_dir, tmp_path, capsys, args, message):
    import re

    code, _, err = _cli(capsys, "analyze-scores", "--data-dir", fmnist_dir, "--device", "cpu", "--quiet",
                        "--out", tmp_path / "o", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("tidal: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "o").exists()


def test_run_flag_track_td_reaches_the_library(monkeypatch, tmp_path, capsys):
    import tidal.experiment
    import tidal.report

    seen = {}

    def fake_run(config, out, **kw):
        seen.update(kw)
        return tidal.experiment.RunSummary(out, 0, 0, 0.0)

    monkeypatch.setattr(tidal.experiment, "run_experiment", fake_run)
    monkeypatch.setattr(tidal.report, "write_report", lambda run_dir: "")
    for flags, expected in (([], False), (["--track-td"], True)):
        code, stdout, _ = _cli(capsys, "run", "--out", tmp_path / "r", *flags)
        assert code == 0 and seen["track_td"] is expected
        assert "report.html, figures/" in stdout


def test_a_tracked_cycle_is_never_half_stored(tiny_splits, tmp_path, monkeypatch):
    """A failing tracking insert during a run leaves neither the cycle nor its rows."""
    import tidal.analysis
    from tidal.results import EpochKL

    # two rows for epoch 1 whenever something was tracked: the second insert fails
    monkeypatch.setattr(tidal.analysis.TDTracker, "result", lambda self: [EpochKL(1, 0.1, 0.2)] * 2 * bool(self.epochs))
    with pytest.raises(sqlite3.IntegrityError):
        run_experiment(_tiny_config(methods=("random", "tidal-entropy")), tmp_path / "r", progress=False,
                       log=lambda s: None, splits={"fashion-mnist": tiny_splits}, track_td=True)
    with ResultStore(tmp_path / "r" / DB_NAME) as store:
        assert [r.method for r in store.records()] == ["random", "random"] and store.td_tracking() == []
