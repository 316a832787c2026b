"""The TD variants (issue 20) under ``--jobs`` and torchrun give a serial run's numbers.

Their scoring-time passes (the calibration's over the labeled set, the diverse variant's over the
candidates) run in whichever process or rank scores, through the objective that trained there.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tidal.config import ALConfig, DataConfig, TrainConfig, preset
from tidal.experiment import run_experiment
from tidal.results import DB_NAME, ResultStore

VARIANTS = ("tidal-detached-margin", "tidal-calibrated-entropy", "tidal-diverse-margin")
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _rows(out: Path) -> list[tuple]:
    with ResultStore(out / DB_NAME, readonly=True) as store:
        return [(r.method, r.seed, r.cycle, r.accuracy, r.labeled, r.selected, r.scores, r.final_loss)
                for r in store.records()]


@pytest.mark.slow
def test_jobs_give_the_numbers_of_a_serial_run(tiny_splits, tmp_path, one_thread):
    cfg = preset("quick", methods=VARIANTS, seeds=(0, 1), imbalances=(1.0,),
                 train=TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=20, budget=10, cycles=3, subset=40), data=DataConfig(download=False))
    splits = {"fashion-mnist": tiny_splits}
    run_experiment(cfg, tmp_path / "serial", progress=False, log=lambda s: None, splits=splits)
    run_experiment(cfg, tmp_path / "jobs", progress=False, log=lambda s: None, splits=splits, jobs=2)
    serial, jobs = _rows(tmp_path / "serial"), _rows(tmp_path / "jobs")
    assert len(serial) == len(VARIANTS) * 2 * 3 and jobs == serial


@pytest.mark.slow
def test_two_ranks_select_what_one_process_does(tmp_path, one_thread):
    """As tests/test_distributed.py's check for the paper's methods: an MLP (no batch norm) on feature
    vectors, two ranks against one process; equal up to the order of float sums."""
    g = np.random.default_rng(0)
    y = g.integers(0, 4, 700)
    x = (np.eye(4, 16)[y] * 2 + g.normal(size=(700, 16))).astype(np.float32)
    np.savez(tmp_path / "feat.npz", x_train=x[:500], y_train=y[:500], x_test=x[500:], y_test=y[500:])
    args = ["--dataset", f"npz:{tmp_path / 'feat.npz'}", "--model", "mlp", "--methods", *VARIANTS, "--seeds", "0",
            "--cycles", "2", "--initial", "40", "--budget", "20", "--subset", "200", "--epochs", "3",
            "--batch-size", "16", "--eval-batch-size", "64", "--quiet", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "tidal",
           "run", "--out", str(tmp_path / "two"), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    cfg = preset("quick", datasets=(f"npz:{tmp_path / 'feat.npz'}",), methods=VARIANTS, seeds=(0,),
                 train=TrainConfig(model="mlp", epochs=3, width=8, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=40, budget=20, cycles=2, subset=200))
    run_experiment(cfg, tmp_path / "one", device="cpu", progress=False, log=lambda s: None)
    two, one = _rows(tmp_path / "two"), _rows(tmp_path / "one")
    assert len(two) == len(one) == 2 * len(VARIANTS)
    for a, b in zip(two, one):
        assert a[:6] == b[:6]  # method, seed, cycle, accuracy, labeled and selected sets
        assert a[6] == pytest.approx(b[6], rel=1e-5, abs=1e-6) and a[7] == pytest.approx(b[7], rel=1e-5)

