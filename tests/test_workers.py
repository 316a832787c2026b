"""`run_experiment(..., jobs=N)` / `tidal run --jobs N`: runs trained by worker processes."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tidal.cli import main
from tidal.config import ALConfig, DataConfig, TrainConfig, preset
from tidal.errors import TrainingDivergedError
from tidal.experiment import experiment_runs, run_experiment
from tidal.results import RunKey
from tidal.results import DB_NAME, ResultStore


def _config(**kw):
    cfg = preset("quick", methods=("tidal-entropy", "random", "bald"), seeds=(0, 1), imbalances=(1.0, 4.0),
                 train=TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64),
                 al=ALConfig(initial=20, budget=10, cycles=3, subset=40), data=DataConfig(download=False))
    return dataclasses.replace(cfg, **kw)


def _rows(out):
    with ResultStore(out / DB_NAME) as store:
        cycles = [(r.dataset, r.imbalance, r.method, r.seed, r.cycle, r.accuracy, r.labeled, r.selected, r.scores)
                  for r in store.records()]
        tracking = [dataclasses.astuple(t) for t in store.td_tracking()]
    return cycles, tracking


def test_jobs_give_the_numbers_of_a_serial_run(tiny_splits, tmp_path, one_thread):
    cfg, splits = _config(), {"fashion-mnist": tiny_splits}
    serial = run_experiment(cfg, tmp_path / "serial", progress=False, log=lambda s: None, splits=splits, track_td=True)
    lines = []
    parallel = run_experiment(cfg, tmp_path / "jobs", progress=False, log=lines.append, splits=splits, track_td=True,
                              jobs=3)
    assert serial.ran_cycles == parallel.ran_cycles == 2 * 2 * 3 * 3
    lines = [line for line in lines if not line.startswith("note: ")]  # the crop fitted to 12-px images, said once
    assert len(lines) == 36 and all("accuracy" in line for line in lines)  # every worker's cycle reached the parent
    cycles, tracking = _rows(tmp_path / "jobs")
    assert (cycles, tracking) == _rows(tmp_path / "serial")
    assert tracking and {t[2] for t in tracking} == {"tidal-entropy"}  # Figure 7 rows come from the workers too
    again = run_experiment(cfg, tmp_path / "jobs", progress=False, log=lambda s: None, splits=splits, jobs=3)
    assert (again.ran_cycles, again.skipped_cycles) == (0, 36)  # nothing left: no worker is started


def test_runs_go_seed_by_seed():
    keys = experiment_runs(_config())
    assert [k.seed for k in keys] == [0] * 6 + [1] * 6
    assert keys[:3] == [RunKey("fashion-mnist", 1.0, m, 0) for m in ("tidal-entropy", "random", "bald")]


def test_a_worker_error_reaches_the_caller_and_finished_runs_stay(tiny_splits, tmp_path, one_thread):
    bad = _config(methods=("random",), seeds=(3,), imbalances=(1.0,),
                  train=TrainConfig(epochs=3, width=2, batch_size=16, eval_batch_size=64, lr=1e30))
    with pytest.raises(TrainingDivergedError, match=r"random, seed 3, cycle 1: training loss became"):
        run_experiment(bad, tmp_path / "a", progress=False, log=lambda s: None,
                       splits={"fashion-mnist": tiny_splits}, jobs=2)
    assert _rows(tmp_path / "a") == ([], [])


@pytest.mark.parametrize("jobs", [0, -2, 1.5, True, "2"])
def test_bad_jobs_are_refused_before_anything_is_written(tiny_splits, tmp_path, jobs):
    with pytest.raises(ValueError, match=rf"jobs={jobs!r} must be a whole number >= 1"):
        run_experiment(_config(), tmp_path / "b", progress=False, splits={"fashion-mnist": tiny_splits}, jobs=jobs)
    assert not (tmp_path / "b").exists()


def test_cli_refuses_zero_jobs(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "c"), "--jobs", "0", "--no-download"]) == 2
    assert "jobs=0 must be a whole number >= 1" in capsys.readouterr().err


# --- real processes: kill a worker, kill the parent -------------------------------------------

ARGS = ["--methods", "random", "entropy", "--seeds", "0", "1", "--cycles", "3", "--initial", "40", "--budget", "20",
        "--subset", "200", "--epochs", "2", "--width", "2", "--pool-limit", "1000", "--test-limit", "300",
        "--quiet", "--device", "cpu", "--no-download", "--jobs", "2"]


def _start(out, data_dir):
    """`tidal run --jobs 2` in a process group of its own (as a terminal runs a command), with
    SIGINT at its default even where this test runs in the background."""
    env = dict(os.environ, OMP_NUM_THREADS="2")  # 2 threads // 2 jobs: one thread per worker
    return subprocess.Popen([sys.executable, "-m", "tidal", "run", "--out", str(out), "--data-dir", str(data_dir),
                             *ARGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _children(pid):
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for_workers(proc, n=2, deadline=120):
    """The pids of the parent's worker processes (the spawn start method also starts a resource
    tracker, whose command line differs)."""
    end = time.time() + deadline
    while time.time() < end and proc.poll() is None:
        workers = [c for c in _children(proc.pid) if _alive(c) and "spawn_main" in _cmdline(c)]
        if len(workers) >= n:
            return workers
        time.sleep(0.05)
    pytest.fail(f"no {n} workers appeared (exit code {proc.poll()})")


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:
        return ""


def _stored(out):
    if not (out / DB_NAME).exists():
        return 0
    try:
        with ResultStore(out / DB_NAME) as store:
            return len(store.records())
    except Exception:  # not created yet, or locked for a moment
        return 0


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


@needs_proc
def test_a_killed_worker_stops_the_run_with_a_clear_error(fmnist_dir, tmp_path):
    proc = _start(tmp_path / "k", fmnist_dir)
    workers = _wait_for_workers(proc)
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f"(pid {workers[0]}) died with signal 9" in err and "run the same command again" in err
    assert not any(_alive(w) for w in workers)  # the other worker was stopped too


@needs_proc
def test_killing_the_parent_kills_its_workers_and_resume_matches(fmnist_dir, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    done = _start(full, fmnist_dir)
    assert done.wait(timeout=600) == 0, done.stderr.read()
    proc = _start(cut, fmnist_dir)
    workers = _wait_for_workers(proc)
    while proc.poll() is None and _stored(cut) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-run: both workers are training
    proc.wait()
    assert 3 <= _stored(cut) < 12
    end = time.time() + 30
    while any(_alive(w) for w in workers) and time.time() < end:
        time.sleep(0.05)
    assert not any(_alive(w) for w in workers), "workers outlived a killed parent"
    resumed = _start(cut, fmnist_dir)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "cycles trained" in out
    assert _rows(cut) == _rows(full)


@needs_proc
def test_ctrl_c_stops_every_process_and_says_what_was_saved(fmnist_dir, tmp_path):
    proc = _start(tmp_path / "c", fmnist_dir)
    workers = _wait_for_workers(proc)
    while proc.poll() is None and _stored(tmp_path / "c") < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    n = _stored(tmp_path / "c")
    assert f"interrupted: {n} finished cycles of" in err and "run the same command again" in err
    assert "Traceback" not in err  # the workers ignore SIGINT; the parent stops them
    assert not any(_alive(w) for w in workers)
    assert "leaked" not in err  # the stopped workers released their semaphores (resource_tracker's warning)


_SIGTERM_TWICE = """
import os, signal, time
from tidal import workers
signal.signal(signal.SIGTERM, workers._stop)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
    print("not stopped")
except workers._Stopped:
    os.kill(os.getpid(), signal.SIGTERM)  # the second one comes while the worker unwinds
    time.sleep(0.2)
    print("stopped once, then unwound")
"""

_WORKER_EXIT = """
import os, queue, signal, time, types
from tidal import workers
spec = workers._WorkerSpec(None, ".", types.SimpleNamespace(device="bogus"), 1, os.getppid())
tasks, events = queue.Queue(), queue.Queue()
workers._worker(spec, tasks, events)  # fails at once (the device), reports it, returns
print(events.get_nowait()[0])
os.kill(os.getpid(), signal.SIGTERM)  # a terminate() that finds the worker exiting
time.sleep(0.2)
print("exited whole")
"""


@pytest.mark.parametrize("script, said", [(_SIGTERM_TWICE, "stopped once, then unwound\n"),
                                          (_WORKER_EXIT, "error\nexited whole\n")])
def test_a_late_sigterm_cannot_break_off_a_worker_unwinding_or_exiting(script, said):
    """Only the first SIGTERM stops a worker; one that comes while it unwinds or runs its exit's
    cleanup (semaphores, the store) is ignored, so nothing is left half cleaned."""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, said), done.stderr
