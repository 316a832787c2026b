"""The CLI end to end on a small slice of real FashionMNIST, and every predictable mistake."""

import argparse
import dataclasses
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from tidal.cli import main
from tidal.config import PRESETS, ExperimentConfig
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
    assert header.split() == ["method", "seeds", "final", "acc.", "(%)", "vs", "random", "at", "cycle", "2", "(%)",
                              "vs", "random,", "mean", "of", "cycle", "2", "(%)", "area", "(%)"]
    rows = {line.split()[0]: line for line in lines if line.split()[:1] in (["random"], ["tidal-entropy"])}
    assert "(reference)" in rows["random"] and len(rows["random"]) == len(rows["tidal-entropy"]) <= len(header)
    assert "|" not in stdout and f"report: {out / 'report.md'}, report.html, figures/" in stdout
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


def test_a_closed_pipe_is_not_an_error():
    # `tidal methods | head -1`: the reader stops early; no "Broken pipe" error, exit 0.
    proc = subprocess.Popen([sys.executable, "-m", "tidal", "methods"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and "Broken pipe" not in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--dataset", "cifar-11"], "unknown dataset 'cifar-11'.*choose one of: .*fashion-mnist"),
        (["--methods", "tidal", "random"], "unknown method 'tidal'; choose from: .*tidal-entropy"),
        (["--imbalance", "0.5"], "imbalance=0.5 must be >= 1"),
        (["--subset", "0"], "subset=0 must be > 0"),
        (["--budget", "5000", "--subset", "5000"], "but the fashion-mnist pool at imbalance 1 holds 1000 samples"),
        (["--initial", "2000"], "initial=2000 is larger than the fashion-mnist pool"),
        (["--lr", "1e30", "--epochs", "3"], "random, seed 0, cycle 1: training loss became"),
        (["--lr", "inf"], "train.lr=inf must be a finite number"),
        (["--weight-decay", "inf"], "train.weight_decay=inf must be a finite number"),
        (["--momentum", "nan"], "train.momentum=nan must be a finite number"),
        (["--imbalance", "10", "10"], r"imbalances \[10.0, 10.0\] repeat a value"),
        (["--dataset", "fashion-mnist", "fashion-mnist"], r"datasets \['fashion-mnist', 'fashion-mnist'\] repeat"),
        (["--seeds", str(2**64)], r"seeds \[18446744073709551616\] must be < 2\*\*63"),
        (["--device", "meta"], "device='meta' is not supported"),
        (["--device", "mps"], "device='mps': torch sees no Apple MPS device"),
        (["--device", "cuda:9"], "device='cuda:9'"),
        (["--methods", "tidal-entropi"], "unknown method 'tidal-entropi'; .*did you mean 'tidal-entropy'"),
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
    if "training loss" not in message:  # refused before anything touches the run directory
        assert not out.exists()


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
    assert "--preset {paper,paper-cifar10,paper-cifar100,paper-inat2018,paper-svhn,quick}" in text and "--imbalance" in text and "--quiet" in text
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


def test_tampered_continue_checkpoint_is_one_line(fmnist_dir, tmp_path, capsys):
    out = tmp_path / "c"
    args = ["run", "--methods", "tidal-entropy", "--imbalance", "1", "--retrain", "continue",
            "--data-dir", str(fmnist_dir), "--out", str(out), *TINY]
    assert _cli(capsys, *args)[0] == 0
    con = sqlite3.connect(out / "results.sqlite")
    with con:
        con.execute("DELETE FROM cycles WHERE cycle = 1")  # a resume now reads the checkpoint after cycle 1
    con.close()
    (out / "checkpoints" / "fashion-mnist-ir1-tidal-entropy-seed0-cycle0.pt").write_bytes(b"not a checkpoint" * 64)
    code, _, err = _cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("tidal: error: ")
    assert "is corrupt or not a tidal checkpoint" in err and "weights_only" not in err


# --- the front door: fast help, no abbreviations, suggestions, a flag per field ----------------

def _python(code, *args, **kwargs):
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          **kwargs)


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["run", "--out", "x", "--epoch", "2"], ["rn"]])
def test_help_and_argument_errors_do_not_import_torch(args):
    code = ("import sys\nfrom tidal.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'numpy' in sys.modules, file=sys.stderr)")
    proc = _python(code, *args)
    assert proc.stderr.strip().splitlines()[-1] == "False False", proc.stderr


def test_version(capsys):
    from tidal import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"tidal {__version__}"


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "--out", "x", "--epoch", "2"], "tidal: error: unrecognized argument --epoch; did you mean --epochs?"),
        (["run", "--out", "x", "--batch", "8"], "unrecognized argument --batch; did you mean --batch-size?"),
        (["run", "--out", "x", "--seed", "1"], "unrecognized argument --seed; did you mean --seeds?"),
        (["rn"], "invalid choice: 'rn' .*; did you mean 'run'?"),
        (["run", "--out", "x", "--preset", "quik"], "invalid choice: 'quik' .*; did you mean 'quick'?"),
        (["analyze-scores", "--out", "x", "--seeds", "1"], "unrecognized argument --seeds; did you mean --seed?"),
    ],
)
def test_abbreviations_are_refused_and_typos_get_a_suggestion(capsys, args, message):
    import re

    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_every_configuration_field_has_a_flag_with_its_comment_as_help():
    from tidal.cli import build_parser, config_flags

    parser = build_parser()
    run = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]
    dests = {a.dest: a for a in run._actions}
    cfg = ExperimentConfig()
    expected = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            expected += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            expected.append(f.name)
    assert sorted(flag.dest for flag in config_flags()) == sorted(expected)
    for dest in expected:
        assert dest in dests, f"no flag for {dest}"
        assert dests[dest].help and "(" in dests[dest].help, f"{dest} has no help"
    assert "ResNet-18 base width in channels" in dests["train.width"].help  # the field's own comment


def test_flags_set_every_field_and_the_old_names_still_work(tmp_path):
    from tidal.cli import build_parser, config_from_args

    args = build_parser().parse_args([
        "run", "--out", str(tmp_path), "--dataset", "fashion-mnist", "--imbalance", "10", "100", "--lambda", "0.5",
        "--no-download", "--lr-decay-at", "0.5", "--lr-decay", "0.2", "--no-flip", "--eval-batch-size", "7",
        "--pool-limit", "none", "--test-limit", "100", "--seeds", "3", "4", "--retrain", "continue"])
    cfg = config_from_args(args)
    assert cfg.imbalances == (10.0, 100.0) and cfg.strategy.tidal_weight == 0.5 and cfg.data.download is False
    assert (cfg.train.lr_decay_at, cfg.train.lr_decay, cfg.train.flip, cfg.train.eval_batch_size) == (0.5, 0.2,
                                                                                                      False, 7)
    assert cfg.data.pool_limit is None and cfg.data.test_limit == 100 and cfg.seeds == (3, 4)
    assert cfg.al.retrain == "continue" and cfg.train.epochs == PRESETS["quick"].train.epochs  # unset: the preset's


def test_the_install_hint_names_an_extra_that_exists():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("matplotlib") for dep in extras["report"])
    sources = [p.read_text() for p in (root / "src").rglob("*.py")] + [(root / "README.md").read_text()]
    sources += [p.read_text() for p in (root / "docs").glob("*.md")]
    assert not any("tidal-al[" in text for text in sources)  # not on PyPI: `pip install -e '.[report]'`


# --- other programs' files, other processes ---------------------------------------------------

def _foreign_db(path):
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE contacts (name TEXT)")
        con.execute("INSERT INTO contacts VALUES ('ada')")
    con.close()
    return path.read_bytes()


@pytest.mark.parametrize("command", ["run", "report"])
def test_another_programs_database_is_refused_and_left_alone(tmp_path, capsys, fmnist_dir, command):
    before = _foreign_db(tmp_path / "results.sqlite")
    args = (["run", "--methods", "random", "--data-dir", str(fmnist_dir), "--out", str(tmp_path), *TINY]
            if command == "run" else ["report", str(tmp_path)])
    code, _, err = _cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not a tidal results database (tables contacts)" in err
    assert (tmp_path / "results.sqlite").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.sqlite"]  # no -wal, no lock, no report


@pytest.mark.parametrize("kind", ["empty, user_version 7", "not SQLite"])
def test_another_programs_empty_database_does_not_open_its_folder(tmp_path, capsys, fmnist_dir, kind):
    """The issue's folder: another program's notes.txt and its (empty) results.sqlite. A file of that
    name is no pass for a non-empty folder; run, report and analyze-scores write nothing there."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    db = other / "results.sqlite"
    if kind == "not SQLite":
        db.write_bytes(b"not a database" * 300)
    else:
        con = sqlite3.connect(db)
        con.execute("PRAGMA user_version = 7")
        con.close()
    before = db.read_bytes()
    for args in (["run", "--methods", "random", "--data-dir", str(fmnist_dir), "--out", str(other), *TINY],
                 ["report", str(other)], ["analyze-scores", "--out", str(other), "--size", "50", "--epochs", "1"]):
        code, _, err = _cli(capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{db} is not a tidal results database" in err and "pass a new --out directory" in err
    assert db.read_bytes() == before
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt", "results.sqlite"]


def test_a_report_of_a_damaged_store_is_one_line_naming_the_database_row_and_fix(tmp_path, capsys):
    from tidal.results import DB_NAME

    CycleRecord, ResultStore = _legacy_store(tmp_path / DB_NAME)
    con = sqlite3.connect(tmp_path / DB_NAME)
    with con:
        con.execute("INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    ("fashion-mnist", 1.0, "random", 0, 0, 500, "abc", json.dumps([50] * 10), "[1]", "[2]", "[0.1]",
                     1.0, 1.0, 1.0, 0.5, 0.0))
    con.close()
    code, _, err = _cli(capsys, "report", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"results database {tmp_path / DB_NAME}: the cycles row (dataset 'fashion-mnist', imbalance 1.0, method "
            "'random', seed 0, cycle 0) has accuracy 'abc', not a number") in err and "restore it from a copy" in err
    con = sqlite3.connect(tmp_path / DB_NAME)
    with con:
        con.execute("UPDATE cycles SET accuracy = 0.5")
        con.execute("UPDATE meta SET value = 'x' WHERE key = 'config'")
    con.close()
    code, _, err = _cli(capsys, "report", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"results database {tmp_path / DB_NAME}: its stored configuration (meta key 'config') 'x'" in err


def test_a_corrupt_project_database_is_called_one_with_a_fix_for_projects(tmp_path, capsys):
    from tidal.project.store import DB_NAME, ProjectStore

    project = tmp_path / "proj"
    project.mkdir()
    with ProjectStore(project / DB_NAME, create=True) as store:
        store.set_meta(classes=["a", "b"])
        store.add_samples([f"img{i}.png" for i in range(2000)])
    data = bytearray((project / DB_NAME).read_bytes())
    data[4096 + 100:] = b"Z" * (len(data) - 4096 - 100)  # page 1 (header, schema) intact, the tables' pages not
    (project / DB_NAME).write_bytes(bytes(data))
    for command in ("status", "report"):
        code, _, err = _cli(capsys, command, str(project))
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"project database {project / DB_NAME} is corrupt; restore it from a copy, or pass a new" in err
        assert "results database" not in err and "--out" not in err
    (project / DB_NAME).write_bytes(b"Z" * 8192)  # not even a header
    code, _, err = _cli(capsys, "status", str(project))
    assert code == 2 and "is not a tidal project database" in err and "--out" not in err


@pytest.mark.parametrize("args,flag", [
    (["run", "--methods", "random", "--out", ""], "--out ''"),
    (["run", "--methods", "random", "--out", "x", "--data-dir", ""], "--data-dir ''"),
    (["run", "--methods", "random", "--out", "x", "--weights", ""], "--weights ''"),
    (["run", "--methods", "random", "--out", "x", "--config", ""], "--config ''"),
    (["analyze-scores", "--out", ""], "--out ''"),
    (["report", ""], "RUN_DIR ''"),
    (["status", ""], "PROJECT ''"),
    (["label", "p", ""], "FILE ''"),
    (["init", "p", "--data", "folder:x", "--classes", "a", "b", "--holdout", ""], "--holdout ''"),
])
def test_an_empty_path_is_refused_not_taken_for_the_current_directory(tmp_path, capsys, monkeypatch, args, flag):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, *args, *TINY if args[0] == "run" else ())
    assert code == 2 and len(err.strip().splitlines()) == 1 and f"{flag} is an empty path; pass a" in err, err
    assert list(tmp_path.iterdir()) == []  # nothing written into the current directory


def _legacy_store(path):
    """A store as tidal made it before stores were marked: tidal's tables, no application_id."""
    from tidal.config import preset
    from tidal.results import _SCHEMA, CycleRecord, ResultStore

    con = sqlite3.connect(path)
    with con:
        con.executescript(_SCHEMA)
        con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
        con.execute("INSERT INTO meta VALUES ('config', ?)", (json.dumps(preset("quick").to_dict()),))
    con.close()
    return CycleRecord, ResultStore


def test_a_report_reads_the_database_without_changing_it(tmp_path, capsys):
    from tidal.results import DB_NAME

    CycleRecord, ResultStore = _legacy_store(tmp_path / DB_NAME)
    con = sqlite3.connect(tmp_path / DB_NAME)  # rows in the rollback-journal mode the file is in
    with con:
        for cycle in (0, 1):
            con.execute("INSERT INTO cycles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        ("fashion-mnist", 1.0, "random", 0, cycle, 500 + 500 * cycle, 0.8, json.dumps([50] * 10),
                         "[1]", "[2]", "[0.1]", 1.0, 1.0, 1.0, 0.5, 0.0))
    con.close()
    before = (tmp_path / DB_NAME).read_bytes()
    code, _, err = _cli(capsys, "report", str(tmp_path))
    assert code == 0, err
    assert (tmp_path / DB_NAME).read_bytes() == before  # not marked, not switched to WAL, no table added
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    con.close()


def test_a_store_of_an_earlier_version_is_recognised_and_marked(tmp_path):
    from tidal.results import APPLICATION_ID, DB_NAME, SCHEMA_VERSION

    _, ResultStore = _legacy_store(tmp_path / DB_NAME)
    with ResultStore(tmp_path / DB_NAME) as store:
        assert store.config() is not None
    con = sqlite3.connect(tmp_path / DB_NAME)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


def test_database_errors_say_what_happened(tmp_path):
    from tidal.cli import _database_error

    path = tmp_path / "db.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    errors = {}
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as info:
        ro.execute("INSERT INTO t VALUES (1)")
    errors["read-only"] = info.value
    ro.close()
    full = sqlite3.connect(tmp_path / "full.sqlite")
    full.execute("CREATE TABLE t (x)")
    full.execute("PRAGMA max_page_count = 2")
    with pytest.raises(sqlite3.Error) as info:
        full.execute("INSERT INTO t VALUES (randomblob(100000))")
    errors["disk (or quota) is full"] = info.value
    full.close()
    holder, other = sqlite3.connect(path), sqlite3.connect(path, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.Error) as info:
        other.execute("SELECT * FROM t")
    errors["locked by another process"] = info.value
    holder.rollback()
    holder.close()
    other.close()
    (tmp_path / "junk.sqlite").write_bytes(b"not a database" * 300)
    with pytest.raises(sqlite3.Error) as info:
        sqlite3.connect(tmp_path / "junk.sqlite").execute("SELECT * FROM sqlite_master")
    errors["is not an SQLite database"] = info.value
    for what, exc in errors.items():
        message = _database_error(exc, path)
        assert message.startswith(f"results database {path} ") and what in message, message
        assert "another `tidal run`" not in message or what == "locked by another process"


def test_a_busy_run_directory_is_refused_naming_the_holder(tmp_path, capsys, fmnist_dir):
    from tidal.rundir import RunDirLock

    with RunDirLock(tmp_path):
        code, _, err = _cli(capsys, "run", "--methods", "random", "--data-dir", str(fmnist_dir), "--out",
                            str(tmp_path), *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"is in use by another tidal process (pid {os.getpid()}: " in err


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c(fmnist_dir, tmp_path):
    import signal
    import time

    out = tmp_path / "term"
    args = [*TINY, "--cycles", "20"]  # the last --cycles counts
    proc = subprocess.Popen([sys.executable, "-m", "tidal", "run", "--methods", "random", "--data-dir",
                             str(fmnist_dir), "--out", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.time() + 120
    while proc.poll() is None and time.time() < end and not proc.stdout.readline().startswith("fashion-mnist"):
        pass  # --quiet prints one line per stored cycle
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "finished cycles of 1" in lines[0]


_STUCK = """
import sys, time
import tidal.cli, tidal.loop

tidal.cli._raise_terminated = lambda signum, frame: None  # the main thread never runs it, as inside a C kernel
tidal.cli.TERM_GRACE_S = 1.0

def stuck(*args, **kwargs):  # the second cycle's training never returns
    print("stuck", flush=True)
    while True:
        time.sleep(0.5)

real = tidal.loop.train_model
tidal.loop.train_model = lambda *a, **k: stuck() if tidal.loop.train_model.calls else (
    setattr(tidal.loop.train_model, "calls", 1) or real(*a, **k))
tidal.loop.train_model.calls = 0
sys.exit(tidal.cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_sigterm_ends_a_run_stuck_in_a_kernel_and_says_what_was_saved(fmnist_dir, tmp_path):
    """Issue 17: a process stuck in a C kernel never runs Python's SIGTERM handler; the watchdog
    ends it after the grace period, exit code 143, naming the saved cycles."""
    import signal
    import time

    out = tmp_path / "stuck"
    proc = subprocess.Popen([sys.executable, "-c", _STUCK, "run", "--methods", "random", "--data-dir",
                             str(fmnist_dir), "--out", str(out), *TINY], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    end = time.time() + 120
    while proc.poll() is None and time.time() < end and proc.stdout.readline().strip() != "stuck":
        pass
    assert proc.poll() is None, proc.stderr.read()
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert time.monotonic() - start < 30
    assert "stopped after SIGTERM: still busy 1 s later (stuck in a kernel?); 1 finished cycles of 1" in err, err


def test_a_failing_user_model_is_one_line_and_debug_shows_the_traceback(fmnist_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "cli_user_model.py").write_text(
        "from torch import nn\n\ndef wrong_size(num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("TIDAL_DEBUG", raising=False)
    args = ["run", "--methods", "random", "--seeds", "0", "--data-dir", str(fmnist_dir), "--model",
            "cli_user_model:wrong_size", *TINY]
    code, _, err = _cli(capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "model 'cli_user_model:wrong_size' (Sequential) failed" in err and "shape (1, 28, 28) (10 classes)" in err
    assert "mat1 and mat2 shapes cannot be multiplied" in err
    from tidal.errors import ModelError

    with pytest.raises(ModelError):  # `tidal --debug run ...` lets the traceback through
        main(["--debug", *args, "--out", str(tmp_path / "b")])
    with pytest.raises(ModelError):  # ... and so does `tidal run ... --debug`
        main([*args, "--out", str(tmp_path / "c"), "--debug"])


def test_an_unexpected_error_is_one_line_unless_debugging(capsys, monkeypatch):
    import tidal.cli

    def boom(args):
        raise KeyError("surprise")

    monkeypatch.setattr(tidal.cli, "_run_command", boom)
    monkeypatch.delenv("TIDAL_DEBUG", raising=False)
    code, _, err = _cli(capsys, "methods")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "tidal: error: KeyError: 'surprise' (an unexpected error: run again with `tidal --debug ...` or " \
           "TIDAL_DEBUG=1 for the traceback" in err
    monkeypatch.setenv("TIDAL_DEBUG", "1")
    with pytest.raises(KeyError):
        main(["methods"])
