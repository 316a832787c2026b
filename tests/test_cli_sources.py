"""`tidal run` on your data (npz:, folder:) with your model (--model mlp / package.module:function)."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tidal.cli import main

SMALL = ["--cycles", "2", "--initial", "12", "--budget", "6", "--subset", "30", "--epochs", "1", "--batch-size", "8",
         "--eval-batch-size", "64", "--quiet", "--device", "cpu", "--workers", "0"]


def _cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _rows(out: Path) -> list[tuple]:
    con = sqlite3.connect(out / "results.sqlite")
    try:
        return con.execute("SELECT dataset, method, cycle, n_labeled FROM cycles ORDER BY method, cycle").fetchall()
    finally:
        con.close()


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.integers(0, 90, (n, 12, 12, 3))
    x[np.arange(n), :, :, y] += 150
    return x.astype(np.uint8), y


def test_npz_features_with_the_mlp(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    y = np.arange(80) % 2
    np.savez(tmp_path / "feats.npz", x_train=x[:60], y_train=y[:60], x_test=x[60:], y_test=y[60:])
    out = tmp_path / "run"
    code, _, err = _cli(capsys, "run", "--dataset", f"npz:{tmp_path / 'feats.npz'}", "--model", "mlp",
                        "--methods", "tidal-entropy", "coreset", "--out", str(out), *SMALL)
    assert code == 0, err
    assert _rows(out) == [("npz:" + str(tmp_path / "feats.npz"), m, c, 12 + 6 * c)
                          for m in ("coreset", "tidal-entropy") for c in (0, 1)]


def test_folder_with_a_user_model_named_by_module_and_function(tmp_path, capsys, monkeypatch):
    from PIL import Image

    for part, (xs, ys) in (("train", _images(45, 0)), ("test", _images(15, 1))):
        for i, (x, y) in enumerate(zip(xs, ys)):
            d = tmp_path / "imgs" / part / ["cat", "dog", "fish"][y]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(d / f"{i}.png")
    (tmp_path / "my_nets.py").write_text(textwrap.dedent("""
        from torch import nn

        def tiny_cnn(num_classes):
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    code, stdout, err = _cli(capsys, "run", "--dataset", f"folder:{tmp_path / 'imgs'}", "--model", "my_nets:tiny_cnn",
                             "--methods", "tidal-margin", "badge", "--out", str(out), *SMALL)
    assert code == 0, err
    assert {r[1] for r in _rows(out)} == {"tidal-margin", "badge"} and len(_rows(out)) == 4
    con = sqlite3.connect(out / "results.sqlite")
    names = con.execute("SELECT value FROM meta WHERE key = 'class_names'").fetchone()[0]
    con.close()
    assert '["cat", "dog", "fish"]' in names  # the folder's class names are stored for the report
    sys.modules.pop("my_nets", None)


@pytest.mark.parametrize("args,message", [
    (["--model", "resnet81"], r"unknown model spec 'resnet81' \(did you mean 'resnet18'\?\); use one of 'mlp', "
                              r"'resnet18', 'resnet50', 'auto' or 'package.module:function'"),
    (["--dataset", "cifar-10"], r"unknown dataset 'cifar-10' \(did you mean 'cifar10'\?\); choose one of: cifar10, "),
    (["--model", "no_such_pkg_xyz:f"], r"cannot import 'no_such_pkg_xyz'"),
    (["--dataset", "folder:"], r"names no path"),
    (["--dataset", "npz:/nonexistent/x.npz"], r"/nonexistent/x.npz"),
])
def test_bad_sources_and_models_are_one_line(tmp_path, capsys, args, message):
    import re

    out = tmp_path / "run"
    code, _, err = _cli(capsys, "run", "--methods", "random", "--out", str(out), *args, *SMALL)
    assert code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not out.exists()  # refused before the run directory is made


def test_datasets_lists_every_source(capsys):
    code, stdout, _ = _cli(capsys, "datasets")
    assert code == 0
    specs = [line.split()[0] for line in stdout.splitlines()]
    assert specs == ["cifar10", "cifar100", "fashion-mnist", "inat2018", "svhn", "folder:PATH", "npz:PATH"]
    assert all(len(line.split()) > 3 for line in stdout.splitlines())  # each with its description


def test_models_lists_every_registered_model_with_its_inputs(capsys):
    from tidal.models import list_models

    code, stdout, _ = _cli(capsys, "models")
    assert code == 0
    rows = [line.split(maxsplit=2) for line in stdout.splitlines()]
    assert [r[0] for r in rows] == [*list_models(), "auto"] and "resnet18" in list_models()
    assert {r[0]: r[1] for r in rows}["mlp"] == "vectors" and {r[0]: r[1] for r in rows}["resnet50"] == "images"
    assert all(len(r) == 3 and r[2] for r in rows)
