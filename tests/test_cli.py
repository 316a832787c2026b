"""The CLI end to end on a small slice of real FashionMNIST, and every predictable mistake."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tidal.cli import main
from tidal.data import fashion_mnist as fm

TINY = ["--cycles", "2", "--initial", "40", "--budget", "20", "--subset", "200", "--epochs", "1", "--width", "2",
        "--pool-limit", "1000", "--test-limit", "200", "--quiet", "--device", "cpu", "--no-download"]


def _cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_and_report_on_real_fashion_mnist(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = _cli(capsys, "run", "--methods", "tidal-entropy", "random", "--seeds", "0",
                             "--data-dir", str(fmnist_dir), "--out", str(out), *TINY)
    assert code == 0, err
    # a short aligned summary table and where the report is, not the report's markdown
    lines = stdout.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["method"])
    assert header.split() == ["method", "seeds", "final", "acc.", "(%)", "vs", "random", "(%)", "area", "(%)"]
    rows = {line.split()[0]: line for line in lines if line.split()[:1] in (["random"], ["tidal-entropy"])}
    assert "(reference)" in rows["random"] and len(rows["random"]) == len(rows["tidal-entropy"]) <= len(header)
    assert "|" not in stdout and f"report: {out / 'report.md'}, {out / 'report.html'}" in stdout
    for name in ("results.sqlite", "report.md", "results.csv", "results.json"):
        assert (out / name).stat().st_size > 0
    data = json.loads((out / "results.json").read_text())
    assert len(data["cycles"]) == 4 and data["config"]["al"]["budget"] == 20
    first = data["cycles"][0]
    assert first["dataset"] == "fashion-mnist" and first["n_labeled"] == 40 and len(first["selected"]) == 20
    assert all(0 <= i < 60000 for i in first["selected"])
    # report regenerates from the database alone
    code, stdout, _ = _cli(capsys, "report", str(out))
    assert code == 0 and "tidal-entropy" in stdout
    # the same command again trains nothing
    code, stdout, _ = _cli(capsys, "run", "--methods", "tidal-entropy", "random", "--seeds", "0",
                           "--data-dir", str(fmnist_dir), "--out", str(out), *TINY)
    assert code == 0 and "0 cycles trained, 4 already stored" in stdout


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "tidal", "methods"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "tidal-entropy" in proc.stdout and "random" in proc.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "cifar-11"], "unknown dataset 'cifar-11'; choose one of: fashion-mnist"),
        (["--methods", "tidal", "random"], "unknown method 'tidal'; choose from: .*tidal-entropy"),
        (["--imbalance", "0.5"], "imbalance=0.5 must be >= 1"),
        (["--subset", "0"], "subset=0 must be > 0"),
        (["--budget", "5000", "--subset", "5000"], "but the fashion-mnist pool at imbalance 1 holds 1000 samples"),
        (["--initial", "2000"], "initial=2000 is larger than the fashion-mnist pool"),
        (["--lr", "1e30", "--epochs", "3"], "random, seed 0, cycle 1: training loss became"),
    ],
)
def test_bad_input_is_one_line_and_nothing_half_written(fmnist_dir, tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    code, _, err = _cli(capsys, "run", "--methods", "random", "--data-dir", str(fmnist_dir), "--out", str(out),
                        *TINY, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tidal: error: ")
    import re

    assert re.search(message, lines[0]), lines[0]
    if (out / "results.sqlite").exists():  # only whole cycles, never a partial row
        con = sqlite3.connect(out / "results.sqlite")
        assert con.execute("SELECT COUNT(*) FROM cycles").fetchone()[0] == 0
        con.close()
    assert not (out / "report.md").exists()


def _hide_data(monkeypatch, tmp_path):
    monkeypatch.setattr(fm, "SYSTEM_DIR", tmp_path / "nowhere")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TIDAL_DATA", raising=False)


def test_missing_dataset_files(tmp_path, capsys, monkeypatch):
    _hide_data(monkeypatch, tmp_path)
    code, _, err = _cli(capsys, "run", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "apt-get install dataset-fashion-mnist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_corrupt_dataset_files(tmp_path, capsys, monkeypatch):
    _hide_data(monkeypatch, tmp_path)
    d = tmp_path / "d"
    d.mkdir()
    for name in fm.FILES.values():
        (d / name).write_bytes(b"\x1f\x8b broken")
    code, _, err = _cli(capsys, "run", "--data-dir", str(d), "--out", str(tmp_path / "o"), *TINY)
    assert code == 2 and "cannot read" in err and "fetch the file again" in err


def test_out_dir_of_a_different_experiment(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--methods", "random", "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]
    assert _cli(capsys, *base)[0] == 0
    before = sqlite3.connect(out / "results.sqlite").execute("SELECT accuracy FROM cycles").fetchall()
    code, _, err = _cli(capsys, *base, "--width", "4")
    assert code == 2 and "holds results of a different experiment (train.width: stored 2, given 4)" in err
    assert sqlite3.connect(out / "results.sqlite").execute("SELECT accuracy FROM cycles").fetchall() == before


def test_report_on_a_non_run_directory(tmp_path, capsys):
    code, _, err = _cli(capsys, "report", str(tmp_path))
    assert code == 2 and "holds no results.sqlite" in err


def test_help_lists_methods_and_presets(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "--preset {paper,quick}" in text and "--imbalance" in text and "--quiet" in text
    assert os.environ.get("NO_SUCH_VAR") is None


def test_ctrl_c_says_what_was_saved(tmp_path, capsys, monkeypatch):
    import tidal.experiment
    from tidal.config import preset
    from tidal.results import CycleRecord, ResultStore

    out = tmp_path / "run"
    out.mkdir()
    with ResultStore(out / "results.sqlite") as store:
        store.bind(preset("quick"))
        for cycle in (0, 1):
            store.add_cycle(CycleRecord("fashion-mnist", 1.0, "random", 0, cycle, 500, 0.8, [50] * 10, [1], [2],
                                        [0.1], 1.0, 1.0, 1.0, 0.5, 0.0))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tidal.experiment, "run_experiment", interrupted)
    code, _, err = _cli(capsys, "run", "--out", str(out), "--quiet")
    assert code == 130
    assert "2 finished cycles of 1 (method, seed) runs are saved" in err and "run the same command again" in err


def test_out_under_a_file_is_one_line(tmp_path, capsys, fmnist_dir):
    (tmp_path / "afile").write_text("x")
    code, _, err = _cli(capsys, "run", "--methods", "random", "--data-dir", str(fmnist_dir),
                        "--out", str(tmp_path / "afile" / "run"), *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("tidal: error: ")


def test_corrupt_database_is_one_line(tmp_path, capsys):
    (tmp_path / "results.sqlite").write_bytes(b"this is not a database" * 100)
    code, _, err = _cli(capsys, "report", str(tmp_path))
    assert code == 2 and "results database" in err and len(err.strip().splitlines()) == 1


def test_every_registered_method_runs_on_real_fashion_mnist(fmnist_dir, tmp_path, capsys):
    from tidal.strategies import list_strategies

    methods = list_strategies()
    code, stdout, err = _cli(capsys, "run", "--methods", *methods, "--data-dir", str(fmnist_dir),
                             "--out", str(tmp_path / "all"), "--vaal-epochs", "1", "--mc-samples", "2", *TINY)
    assert code == 0, err
    assert all(any(line.split()[:1] == [m] for line in stdout.splitlines()) for m in methods)
    assert f"{2 * len(methods)} cycles trained" in stdout
