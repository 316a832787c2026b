"""`tidal run` end to end on the official formats, from files the tests write: CIFAR-10's
tarball, CIFAR-100's extracted folder and SVHN's .mat files, two cycles, long-tailed too."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tidal.cli import main
from tidal.data.cifar import CIFAR100

SMALL = ["--cycles", "2", "--initial", "20", "--budget", "10", "--subset", "40", "--epochs", "1", "--width", "2",
         "--batch-size", "16", "--eval-batch-size", "64", "--quiet", "--device", "cpu", "--no-download",
         "--methods", "tidal-entropy", "random"]


@pytest.mark.parametrize("spec,imbalance", [("cifar10", "1"), ("cifar100", "1"), ("svhn", "1"), ("cifar10", "2")])
def test_run_on_official_files(writers, tmp_path, capsys, spec, imbalance):
    data = tmp_path / "data"
    if spec == "cifar10":
        writers["cifar"](data, per_file=30)
    elif spec == "cifar100":
        writers["cifar"](data, CIFAR100, per_file=150, as_tar=False)
    else:
        writers["svhn"](data, n_train=150, n_test=30)
    out = tmp_path / "run"
    code = main(["run", "--dataset", spec, "--data-dir", str(data), "--imbalance", imbalance, "--out", str(out),
                 *SMALL])
    err = capsys.readouterr().err
    assert code == 0, err
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT dataset, method, cycle, n_labeled, class_counts FROM cycles "
                       "ORDER BY method, cycle").fetchall()
    names = con.execute("SELECT value FROM meta WHERE key = 'class_names'").fetchone()[0]
    con.close()
    assert [r[:4] for r in rows] == [(spec, m, c, 20 + 10 * c) for m in ("random", "tidal-entropy") for c in (0, 1)]
    assert len(json.loads(rows[0][4])) == (100 if spec == "cifar100" else 10)  # one count per class
    assert ("class0" if spec != "svhn" else '"0"') in names
