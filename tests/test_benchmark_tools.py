"""benchmarks/copy_runs.py: a finished run copied between run directories of one experiment is the
run the destination computes itself (checked by running the rest there and comparing);
benchmarks/paired_table.py on a hand-written paired.csv."""

import dataclasses
import sys
from pathlib import Path

import pytest

from tidal.config import ALConfig, DataConfig, StrategyConfig, TrainConfig, preset
from tidal.experiment import run_experiment
from tidal.results import DB_NAME, ResultStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from copy_runs import copy_runs  # noqa: E402
from paired_table import tables  # noqa: E402


def _config(**kw):
    cfg = preset("quick", methods=("tidal-diverse-entropy", "random"), seeds=(0, 1), imbalances=(1.0,),
                 train=TrainConfig(epochs=1, width=2, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=20, budget=10, cycles=2, subset=40), data=DataConfig(download=False))
    return dataclasses.replace(cfg, **kw)


def _run(cfg, out, splits):
    return run_experiment(cfg, out, progress=False, log=lambda s: None, splits={"fashion-mnist": splits})


def _rows(out):
    with ResultStore(out / DB_NAME, readonly=True) as store:
        return [(r.method, r.seed, r.cycle, r.accuracy, r.labeled, r.selected, r.scores) for r in store.records()]


def test_copied_runs_are_the_runs_the_destination_computes(tiny_splits, tmp_path):
    _run(_config(), tmp_path / "whole", tiny_splits)
    _run(_config(seeds=(0,)), tmp_path / "src", tiny_splits)
    _run(_config(methods=("random",), seeds=(1,)), tmp_path / "dst", tiny_splits)
    copied = copy_runs(tmp_path / "src", tmp_path / "dst", ["tidal-diverse-entropy"])
    assert copied == [("fashion-mnist", 1.0, "tidal-diverse-entropy", 0)]
    assert copy_runs(tmp_path / "src", tmp_path / "dst", ["tidal-diverse-entropy"]) == []  # already there
    summary = _run(_config(), tmp_path / "dst", tiny_splits)  # computes only what is missing
    assert summary.skipped_cycles == 4 and summary.ran_cycles == 4
    assert _rows(tmp_path / "dst") == _rows(tmp_path / "whole")


def test_another_experiment_is_refused(tiny_splits, tmp_path):
    _run(_config(seeds=(0,), methods=("random",)), tmp_path / "src", tiny_splits)
    _run(_config(seeds=(0,), methods=("random",), strategy=StrategyConfig(diverse_prefilter=3.0)), tmp_path / "dst",
         tiny_splits)
    with pytest.raises(SystemExit, match="hold different experiments; nothing copied"):
        copy_runs(tmp_path / "src", tmp_path / "dst", ["random"])
    assert len(_rows(tmp_path / "dst")) == 2


def test_paired_table_marks_wins_and_counts_the_pairs_that_ran(tmp_path):
    head = "dataset,imbalance,a,b,seeds,auc_mean,auc_lo,auc_hi\n"
    rows = ["d,10.0,x,r,0 1 2,1.5,0.25,2.75", "d,10.0,x,m,0 1 2,0.5,-1.0,2.0", "d,10.0,y,r,0,-2.0,nan,nan",
            "d,1.0,r,x,0 1,0.0,-1.0,1.0"]
    (tmp_path / "paired.csv").write_text(head + "\n".join(rows) + "\n")
    text = tables(tmp_path / "paired.csv", ["x", "y"], ["r", "m"])
    assert "IR 1:" not in text  # no row method there
    assert "| x | **+1.50 [+0.25, +2.75] (3)** | +0.50 [-1.00, +2.00] (3) | 1/2 |" in text
    assert "| y | -2.00 (1) | – | 0/1 |" in text
    # x wins against r only; y ran against r alone: x is the closest, by its smaller difference (against m)
    assert ("Beats every column: none. Closest: x, above zero against 1 of 2; its smallest difference is "
            "+0.50 [-1.00, +2.00] (3) (against m).") in text


def test_paired_table_names_the_methods_that_beat_every_column(tmp_path):
    head = "dataset,imbalance,a,b,seeds,auc_mean,auc_lo,auc_hi\n"
    rows = ["d,10.0,x,r,0 1 2,1.5,0.25,2.75", "d,10.0,x,m,0 1 2,0.5,0.1,0.9",  # x: both intervals above zero
            "d,10.0,y,r,0 1 2,3.0,1.0,5.0",  # y: above zero against r, but never ran against m
            "d,10.0,z,r,0 1 2,2.0,0.5,3.5", "d,10.0,z,m,0 1 2,0.75,0.2,1.3"]
    (tmp_path / "paired.csv").write_text(head + "\n".join(rows) + "\n")
    text = tables(tmp_path / "paired.csv", ["x", "y", "z"], ["r", "m"])
    assert ("Beats every column: x, by **+0.50 [+0.10, +0.90] (3)** at the least (against m); "
            "z, by **+0.75 [+0.20, +1.30] (3)** at the least (against m).") in text
