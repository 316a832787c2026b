"""benchmarks/copy_runs.py: a finished run copied between run directories of one experiment is the
run the destination computes itself (checked by running the rest there and comparing);
benchmarks/paired_table.py on a hand-written paired.csv; benchmarks/cycle1_table.py and
benchmarks/cpu_control.py against differences computed by hand from stored rows."""

import dataclasses
import sys
from pathlib import Path

import pytest

from tidal.config import ALConfig, DataConfig, StrategyConfig, TrainConfig, preset
from tidal.experiment import run_experiment
from tidal.results import DB_NAME, ResultStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from copy_runs import copy_runs  # noqa: E402
from cpu_control import table as cpu_table  # noqa: E402
from cycle1_table import table as cycle1  # noqa: E402
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


def _sql(out, statement):
    """Edit a stored run by hand (as another CPU's numbers would differ)."""
    import sqlite3

    with sqlite3.connect(out / DB_NAME) as conn:
        conn.execute(statement)


def _first_accuracies(out, method):
    with ResultStore(out / DB_NAME, readonly=True) as store:
        return {r.seed: 100 * r.accuracy for r in store.records(method=method, cycle=0)}


def test_cycle1_table_pairs_the_first_cycles_by_seed(tiny_splits, tmp_path):
    import math

    from scipy import stats

    _run(_config(), tmp_path / "run", tiny_splits)
    _sql(tmp_path / "run", "UPDATE cycles SET accuracy = accuracy - 0.05 WHERE method = 'random' AND seed = 1")
    rnd, div = _first_accuracies(tmp_path / "run", "random"), _first_accuracies(tmp_path / "run",
                                                                                  "tidal-diverse-entropy")
    d = [div[s] - rnd[s] for s in (0, 1)]
    mean, half = sum(d) / 2, stats.t.ppf(0.975, 1) * abs(d[0] - d[1]) / 2  # sd/sqrt(2) of two values: |d0-d1|/2
    text = cycle1(tmp_path / "run", ["random", "tidal-diverse-entropy", "margin"], ["random"])
    assert f"| random | 0 1 | {(rnd[0] + rnd[1]) / 2:.2f} | · |" in text
    assert (f"| tidal-diverse-entropy | 0 1 | {(div[0] + div[1]) / 2:.2f} | "
            f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] (2) |") in text
    assert "| margin |" not in text and math.isfinite(half) and half > 0


def test_cpu_control_pairs_the_same_method_across_directories(tiny_splits, tmp_path):
    import shutil

    cfg = _config(methods=("random",))
    _run(cfg, tmp_path / "grid", tiny_splits)
    shutil.copytree(tmp_path / "grid", tmp_path / "control")
    same = cpu_table(tmp_path / "grid", tmp_path / "control")
    zero = "+0.00 [+0.00, +0.00]"
    assert f"| 1 | 0 1 | {zero} | {zero} | {zero} | 0: +0.00, 1: +0.00 |" in same
    _sql(tmp_path / "control", "UPDATE cycles SET accuracy = accuracy + 0.01 + 0.02 * seed")  # +1 / +3 pp
    # the area of a curve shifted by c pp is the area + c: mean +2, t-interval 2 ± 12.706 (sd sqrt 2, n 2)
    text = cpu_table(tmp_path / "grid", tmp_path / "control")
    two = "+2.00 [-10.71, +14.71]"
    assert f"| 1 | 0 1 | {two} | {two} | {two} | 0: +1.00, 1: +3.00 |" in text
    _run(_config(methods=("random",), strategy=StrategyConfig(diverse_prefilter=3.0)), tmp_path / "other", tiny_splits)
    with pytest.raises(ValueError, match="hold different experiments"):
        cpu_table(tmp_path / "grid", tmp_path / "other")
