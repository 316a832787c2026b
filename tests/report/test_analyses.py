"""The report's Figure 7 and Figure 2 sections: present exactly when their data exists, numbers by hand."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from tidal.analysis import ScoreAnalysis, save_score_analysis
from tidal.config import preset
from tidal.report import write_report
from tidal.results import DB_NAME, EpochKL, ResultStore

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIG7 = "## How well the TD prediction module predicts the TD (Figure 7)"
FIG2 = "## Score distributions after long-tailed training (Figure 2)"
EPOCHS = 5


def kl_module(seed: int, cycle: int, epoch: int) -> float:
    return 1.0 / epoch + 0.01 * seed + 0.1 * cycle


def kl_snapshot(seed: int, cycle: int, epoch: int) -> float:
    return 1.0 + 0.02 * seed


def build_tracked_run(synth, run_dir):
    """The synthetic run of conftest.py, with per-epoch tracking rows for tidal-entropy."""
    run_dir.mkdir(parents=True)
    with ResultStore(run_dir / DB_NAME) as store:
        store.bind(preset("quick"))
        for method in synth.METHODS:
            for seed in synth.SEEDS:
                for cycle in range(len(synth.N_LABELED)):
                    rows = [EpochKL(e, kl_module(seed, cycle, e), kl_snapshot(seed, cycle, e))
                            for e in range(1, EPOCHS + 1)] if method == "tidal-entropy" else []
                    store.add_cycle(synth.make_record(method, seed, cycle), td_tracking=rows)
    return run_dir


def write_scores(run_dir, seed: int = 0) -> None:
    """200 samples of 10 classes: H_td, -M_td and H_pred separate the tail perfectly (AUROC 1), the
    snapshot scores are constant (0.5), and -M_pred rates the head as more uncertain (0)."""
    labels = np.arange(200) % 10
    tail = (labels >= 5).astype(float)
    zeros = np.zeros(200)
    scores = {"H": zeros, "M": zeros, "H_td": tail, "M_td": -tail, "H_pred": 0.5 * tail, "M_pred": tail}
    save_score_analysis(ScoreAnalysis("fashion-mnist", 10.0, seed, 3, 2, 10, np.arange(200), labels, scores), run_dir)


def test_no_analysis_sections_without_their_data(run_dir):
    md = (run_dir / "report.md").read_text()
    assert FIG7 not in md and FIG2 not in md and "td-prediction" not in md
    assert "td_tracking" not in json.loads((run_dir / "results.json").read_text())


def test_figure_7_section_from_tracking_rows(synth, tmp_path):
    run = build_tracked_run(synth, tmp_path / "run")
    summary = write_report(run)
    md = (run / "report.md").read_text()
    assert FIG7 in md and FIG2 not in md
    png = run / "figures" / "fashion-mnist-ir10-td-prediction-tidal-entropy.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert "](figures/fashion-mnist-ir10-td-prediction-tidal-entropy.png)" in md
    assert "last tracked cycle (4, 250 labeled), mean over 3 seed(s)" in md
    # the table: final epoch 5 of every cycle, mean over seeds 0-2 [CI]; half-widths t_{0.975,2} * 0.01 / sqrt(3)
    # = 0.0248 (module) and twice that (snapshot), e.g. cycle 1: 0.210 [0.185, 0.235], 1.020 [0.970, 1.070]
    for cycle in range(4):
        module = np.mean([kl_module(s, cycle, EPOCHS) for s in (0, 1, 2)])
        snapshot = np.mean([kl_snapshot(s, cycle, EPOCHS) for s in (0, 1, 2)])
        row = (f"| fashion-mnist | 10 | tidal-entropy | {cycle + 1} | {synth.N_LABELED[cycle]} | 3 | 5 | "
               f"{module:.3f} [{module - 0.0248:.3f}, {module + 0.0248:.3f}] | "
               f"{snapshot:.3f} [{snapshot - 0.0497:.3f}, {snapshot + 0.0497:.3f}] |")
        assert row in md and row in summary
    assert "| random |" not in md.split(FIG7)[1]  # methods without tracking rows have no row
    data = json.loads((run / "results.json").read_text())
    assert len(data["td_tracking"]) == 3 * 4 * EPOCHS and data["td_tracking"][0]["epoch"] == 1
    page = (run / "report.html").read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 5 + 1  # setting figures + Figure 7


def test_figure_2_section_from_analysis_files(synth, tmp_path):
    run = synth.build_run(tmp_path / "run")
    write_scores(run)
    summary = write_report(run)
    md = (run / "report.md").read_text()
    assert FIG2 in md and FIG7 not in md
    assert (run / "figures" / "scores_fashion-mnist_ir10_seed0.png").read_bytes()[:8] == PNG_MAGIC
    # written without the calibrated scores (as before they existed): shown as –
    row = ("| fashion-mnist | 10 | 0 | tidal-entropy | 3 | 200 | 100 | 0.500 | 0.500 | 1.000 | 1.000 | 1.000 | 0.000 "
           "| – | – |")
    assert row in md and row in summary
    assert "`results.sqlite` and `analysis/*.npz`" in md and "## Configuration" in md


def test_figure_2_rows_go_by_imbalance_then_seed_then_method(tmp_path):
    labels = np.arange(200) % 10
    tail = (labels >= 5).astype(float)
    scores = {k: tail for k in ("H", "M", "H_td", "M_td", "H_pred", "M_pred")}
    for ir, seed, method in [(100.0, 0, "tidal-entropy"), (10.0, 1, "tidal-entropy"),
                             (10.0, 0, "tidal-detached-entropy"), (10.0, 0, "tidal-entropy")]:
        save_score_analysis(ScoreAnalysis("fashion-mnist", ir, seed, 3, 2, 10, np.arange(200), labels, scores,
                                          method=method), tmp_path)
    md = write_report(tmp_path)
    rows = [line.split(" | ")[1:4] for line in md.splitlines() if line.startswith("| fashion-mnist | ")]
    assert rows == [["10", "0", "tidal-entropy"], ["10", "0", "tidal-detached-entropy"], ["10", "1", "tidal-entropy"],
                    ["100", "0", "tidal-entropy"]]


def test_an_analysis_only_directory_is_reported(tmp_path):
    run = tmp_path / "alone"
    write_scores(run, seed=0)
    write_scores(run, seed=1)
    summary = write_report(run)
    md = (run / "report.md").read_text()
    assert FIG2 in md and "## Configuration" not in md and "0 stored cycles" in md
    assert summary.count("| fashion-mnist | 10 |") == 2
    assert not (run / "results.csv").exists() and not (run / DB_NAME).exists()
    assert json.loads((run / "results.json").read_text())["cycles"] == []


def test_an_unreadable_analysis_file_is_skipped_with_a_note(tmp_path):
    run = tmp_path / "run"
    write_scores(run)
    (run / "analysis" / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    write_report(run)
    md = (run / "report.md").read_text()
    assert "Skipped `broken.npz`: cannot read" in md and "| fashion-mnist | 10 | 0 |" in md


def test_without_matplotlib_the_tables_stay(synth, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = build_tracked_run(synth, tmp_path / "run")
    write_scores(run)
    write_report(run)
    md = (run / "report.md").read_text()
    assert FIG7 in md and FIG2 in md and "![" not in md and not (run / "figures").exists()
    assert "| 1.000 | 1.000 | 1.000 | 0.000 |" in md


@pytest.mark.parametrize("broken", ["labels", "tail"])
def test_an_inconsistent_analysis_file_is_refused(tmp_path, broken):
    from tidal.analysis import load_score_analysis

    write_scores(tmp_path)
    path = next((tmp_path / "analysis").glob("*.npz"))
    with np.load(path) as f:
        data = dict(f)
    if broken == "labels":
        data["labels"] = data["labels"][:10]
    else:
        data["labels"] = np.zeros_like(data["labels"])  # no tail sample
    np.savez(path, **data)
    with pytest.raises(ValueError, match="is inconsistent"):
        load_score_analysis(path)


def test_td_tracking_interval_is_clipped_at_zero():
    """KLs 0, 0, 0.3: the t-interval 0.100 ± 0.430 would run below 0, which no KL divergence can."""
    from tidal.report.analyses import td_tracking_table
    from tidal.results import TDTrackingRecord

    rows = [TDTrackingRecord("fashion-mnist", 10.0, "tidal-entropy", seed, 0, 1, kl, 1.0)
            for seed, kl in enumerate([0.0, 0.0, 0.3])]
    table = td_tracking_table(rows)
    assert table.rows[0][-2:] == ["0.100 [0.000, 0.530]", "1.000 [1.000, 1.000]"]
    assert "clipped to the attainable range (>= 0 nats)" in table.caption
