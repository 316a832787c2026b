"""`run_experiment(..., backend="ray")` / `tidal run --backend ray`: runs as Ray tasks, the driver writes.

The tests that start Ray (a local Ray of 2 CPUs, started once for the module) are skipped only
when ``import ray`` fails, with the reason; the checks of the edges run without Ray.
"""

import dataclasses
import functools
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from tidal.cli import main
from tidal.config import ALConfig, DataConfig, TrainConfig, preset
from tidal.experiment import Backend, run_experiment
from tidal.results import DB_NAME, ResultStore

try:
    import ray
except ImportError as exc:  # the optional extra is not installed
    ray, RAY_MISSING = None, f"ray cannot be imported ({exc}); install it with: pip install -e '.[ray]'"
else:
    RAY_MISSING = ""

needs_ray = pytest.mark.skipif(ray is None, reason=RAY_MISSING)
pytestmark = pytest.mark.timeout(900)  # real servers and process groups start slowly on a busy machine

DRIVER_PID = os.getpid()  # pickled by value into the tasks below: "am I a Ray worker?"


def _config(**kw):
    cfg = preset("quick", methods=("tidal-entropy", "random"), seeds=(0,),
                 train=TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=20, budget=10, cycles=3, subset=40), data=DataConfig(download=False))
    return dataclasses.replace(cfg, **kw)


def _rows(out: Path):
    """Everything a run stores except wall-clock times."""
    with ResultStore(out / DB_NAME) as store:
        cycles = [(r.dataset, r.imbalance, r.method, r.seed, r.cycle, r.n_labeled, r.accuracy, r.class_counts,
                   r.labeled, r.selected, r.scores, r.final_loss) for r in store.records()]
        tracking = [dataclasses.astuple(t) for t in store.td_tracking()]
        config = store.config()
    return cycles, tracking, config


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for this module's tests; run_experiment uses it and leaves it running."""
    if ray is None:
        pytest.skip(RAY_MISSING)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray
    ray.shutdown()


# --- the edges: no Ray needed ----------------------------------------------------------------

def test_without_ray_the_backend_is_one_line_with_the_install_command(tiny_splits, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    from tidal.ray_backend import RayNotInstalledError

    with pytest.raises(RayNotInstalledError, match=r"pip install 'ray\[default\]>=2.9'"):
        run_experiment(_config(), tmp_path / "r", progress=False, splits={"fashion-mnist": tiny_splits},
                       backend="ray")
    assert not (tmp_path / "r").exists()  # refused before anything was written
    code = main(["run", "--out", str(tmp_path / "cli"), "--backend", "ray", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'ray[default]>=2.9'" in err


def test_address_without_the_ray_backend_is_refused(tiny_splits, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"address='head:6379' .* add --backend ray"):
        run_experiment(_config(), tmp_path / "a", progress=False, splits={"fashion-mnist": tiny_splits},
                       backend=Backend(address="head:6379"))
    assert main(["run", "--out", str(tmp_path / "cli"), "--address", "head:6379"]) == 2
    assert "add --backend ray" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "cli").exists()


@pytest.mark.parametrize("backend", ["Ray", "dask", "", Backend("dask")])
def test_unknown_backend_is_refused(tiny_splits, tmp_path, backend):
    name = backend.name if isinstance(backend, Backend) else backend
    with pytest.raises(ValueError, match=f"backend={name!r} must be one of local, ray"):
        run_experiment(_config(), tmp_path / "b", progress=False, splits={"fashion-mnist": tiny_splits},
                       backend=backend)


@pytest.mark.parametrize("device", ["mps", "meta", "gpu", "cuda:x"])
def test_devices_ray_cannot_assign_are_refused(device):
    from tidal.ray_backend import check_ray_device

    with pytest.raises(ValueError, match=f"device={device!r} cannot be used with --backend ray"):
        check_ray_device(device)
    assert check_ray_device("cuda:3") == "cuda" and check_ray_device("auto") == "auto"


@pytest.mark.parametrize("address", ["head", "head:port", "http://head:6379", ":6379", "head:6379/x"])
def test_malformed_addresses_are_refused(address):
    from tidal.ray_backend import check_address

    with pytest.raises(ValueError, match=f"address={address!r} must be HOST:PORT"):
        check_address(address)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nobody_answers_is_refused_at_once(tmp_path, tiny_splits):
    from tidal.ray_backend import check_address

    port = _closed_port()
    with pytest.raises(ConnectionError, match=rf"cannot reach the Ray cluster at 127.0.0.1:{port} .*ray start --head"):
        check_address(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(ConnectionError, match="cannot reach"):
        check_address(f"ray://127.0.0.1:{port}", timeout=2)
    if ray is not None:  # through run_experiment: refused before the run directory exists
        with pytest.raises(ConnectionError, match="cannot reach"):
            run_experiment(_config(), tmp_path / "r", progress=False, splits={"fashion-mnist": tiny_splits},
                           backend=Backend("ray", address=f"127.0.0.1:{port}"))
        assert not (tmp_path / "r").exists()


# --- with a local Ray ------------------------------------------------------------------------

@needs_ray
@pytest.mark.slow
def test_cli_starts_a_local_ray_of_jobs_cpus_and_stops_it(tiny_splits, tmp_path, capsys):
    """Before the module's shared Ray starts: `tidal run --backend ray --jobs 2` starts its own."""
    import numpy as np

    assert not ray.is_initialized()
    tr, te = tiny_splits.train, tiny_splits.test
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=tr.images.permute(0, 2, 3, 1).numpy(), y_train=tr.labels.numpy(),
             x_test=te.images.permute(0, 2, 3, 1).numpy(), y_test=te.labels.numpy())
    out = tmp_path / "run"
    code = main(["run", "--out", str(out), "--dataset", f"npz:{data}", "--methods", "random", "entropy",
                 "--epochs", "1", "--width", "2", "--batch-size", "16", "--initial", "20", "--budget", "10",
                 "--cycles", "2", "--subset", "40", "--backend", "ray", "--jobs", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "starting a local Ray of 2 CPUs" in captured.out and "4 cycles trained" in captured.out
    assert not ray.is_initialized()  # the Ray it started is shut down
    with ResultStore(out / DB_NAME) as store:
        assert sorted((r.method, r.cycle) for r in store.records()) == [("entropy", 0), ("entropy", 1),
                                                                        ("random", 0), ("random", 1)]


@needs_ray
@pytest.mark.slow
def test_ray_runs_store_what_a_serial_run_stores_and_resume(tiny_splits, tmp_path, local_ray, one_thread):
    cfg, splits = _config(), {"fashion-mnist": tiny_splits}
    serial = run_experiment(cfg, tmp_path / "serial", progress=False, log=lambda s: None, splits=splits, track_td=True)
    lines = []
    ran = run_experiment(cfg, tmp_path / "ray", progress=False, log=lines.append, splits=splits, track_td=True,
                         backend="ray")
    assert serial.ran_cycles == ran.ran_cycles == 2 * 3
    assert sum("accuracy" in line for line in lines) == 6  # each stored cycle reached the progress log
    rows = _rows(tmp_path / "ray")
    assert rows == _rows(tmp_path / "serial")
    assert rows[1] and {t[2] for t in rows[1]} == {"tidal-entropy"}  # Figure 7 rows travel back too
    assert local_ray.is_initialized()  # a Ray the caller started is left to the caller

    # Resume: one more seed and one more cycle's worth of a run cut short are sent, nothing else.
    with ResultStore(tmp_path / "ray" / DB_NAME) as store:
        store._conn.execute("DELETE FROM cycles WHERE method = 'random' AND cycle = 2")
        store._conn.commit()
    more = dataclasses.replace(cfg, seeds=(0, 1))
    again = run_experiment(more, tmp_path / "ray", progress=False, log=lambda s: None, splits=splits, backend="ray")
    assert (again.ran_cycles, again.skipped_cycles) == (1 + 2 * 3, 5)
    run_experiment(more, tmp_path / "serial", progress=False, log=lambda s: None, splits=splits)
    assert _rows(tmp_path / "ray")[0] == _rows(tmp_path / "serial")[0]

    # A different experiment on the same directory is refused before any task is sent.
    from tidal.errors import RunDirectoryError

    other = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=3))
    with pytest.raises(RunDirectoryError, match="different experiment"):
        run_experiment(other, tmp_path / "ray", progress=False, splits=splits, backend="ray")


def killed_once_model(num_classes: int, marker: str = "") -> torch.nn.Module:
    """The built-in ResNet-18 (width 2), except that in a Ray worker, the first time any worker
    builds one, the worker process SIGKILLs itself; the ``marker`` file says that it happened."""
    from tidal.models import ResNet18

    if marker and os.getpid() != DRIVER_PID:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os.kill(os.getpid(), signal.SIGKILL)
    return ResNet18(num_classes, 2, 1)


@needs_ray
@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_results_are_a_serial_runs(tiny_splits, tmp_path, local_ray, one_thread):
    # The test module is not importable in a Ray worker: send the model function by value.
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    model = functools.partial(killed_once_model, marker=str(marker))
    cfg, splits = _config(), {"fashion-mnist": tiny_splits}
    run_experiment(cfg, tmp_path / "ray", progress=False, log=lambda s: None, splits=splits, backend="ray",
                   model=model)
    assert marker.is_file() and int(marker.read_text()) != os.getpid()  # a worker really died
    run_experiment(cfg, tmp_path / "serial", progress=False, log=lambda s: None, splits=splits, model=model)
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "serial")


@needs_ray
@pytest.mark.slow
def test_continue_mode_checkpoints_travel_both_ways(tiny_splits, tmp_path, local_ray, one_thread):
    """retrain="continue": a task returns its last checkpoint, and a resumed run gets it back."""
    cfg = _config(methods=("tidal-entropy",), al=ALConfig(initial=20, budget=10, cycles=3, subset=40,
                                                          retrain="continue"))
    splits = {"fashion-mnist": tiny_splits}
    run_experiment(cfg, tmp_path / "serial", progress=False, log=lambda s: None, splits=splits)
    short = dataclasses.replace(cfg, al=dataclasses.replace(cfg.al, cycles=2))
    run_experiment(cfg, tmp_path / "ray", progress=False, log=lambda s: None, splits=splits, backend="ray")
    with ResultStore(tmp_path / "ray" / DB_NAME) as store:  # cut the run short after cycle 2 ...
        store._conn.execute("DELETE FROM cycles WHERE cycle = 2")
        store._conn.commit()
    last = tmp_path / "ray" / "checkpoints" / "fashion-mnist-ir1-tidal-entropy-seed0-cycle2.pt"
    assert last.is_file()
    serial_ckpt = sorted(p.name for p in (tmp_path / "serial" / "checkpoints").iterdir())
    assert sorted(p.name for p in last.parent.iterdir()) == serial_ckpt
    # ... with the checkpoint of cycle 2 as a serial run cut there leaves it (cycle 1's file)
    run_experiment(short, tmp_path / "cut", progress=False, log=lambda s: None, splits=splits)
    last.unlink()
    for p in (tmp_path / "cut" / "checkpoints").iterdir():
        (last.parent / p.name).write_bytes(p.read_bytes())
    again = run_experiment(cfg, tmp_path / "ray", progress=False, log=lambda s: None, splits=splits, backend="ray")
    assert again.ran_cycles == 1
    assert _rows(tmp_path / "ray")[0] == _rows(tmp_path / "serial")[0]
    assert sorted(p.name for p in last.parent.iterdir()) == serial_ckpt  # cycle 1's file replaced by cycle 2's
