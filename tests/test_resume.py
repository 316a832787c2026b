"""Kill a real `tidal run` with SIGKILL mid-run, resume it, and compare with an uninterrupted run."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

ARGS = ["--methods", "tidal-entropy", "random", "--seeds", "0", "--cycles", "4", "--initial", "40", "--budget", "20",
        "--subset", "200", "--epochs", "2", "--width", "2", "--pool-limit", "1000", "--test-limit", "300",
        "--quiet", "--device", "cpu", "--no-download"]


def _cmd(out, data_dir):
    return [sys.executable, "-m", "tidal", "run", "--out", str(out), "--data-dir", str(data_dir), *ARGS]


def _rows(out):
    con = sqlite3.connect(out / "results.sqlite")
    rows = con.execute("SELECT method, seed, cycle, accuracy, labeled, selected, scores FROM cycles "
                       "ORDER BY method, seed, cycle").fetchall()
    con.close()
    return rows


def _count(out):
    try:
        con = sqlite3.connect(out / "results.sqlite", timeout=1)
        n = con.execute("SELECT COUNT(*) FROM cycles").fetchone()[0]
        con.close()
        return n
    except sqlite3.Error:
        return 0


def test_sigkill_then_resume_equals_uninterrupted(fmnist_dir, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(full, fmnist_dir), check=True, capture_output=True, env=env, timeout=600)

    proc = subprocess.Popen(_cmd(killed, fmnist_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while _count(killed) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-run: in the middle of the next cycle's training or scoring
    proc.wait()
    n_before = _count(killed)
    assert 3 <= n_before < 8, n_before
    resumed = subprocess.run(_cmd(killed, fmnist_dir), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{8 - n_before} cycles trained, {n_before} already stored" in resumed.stdout
    assert _rows(killed) == _rows(full)  # same accuracies, labeled sets, selections and scores
