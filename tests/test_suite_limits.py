"""The suite's own safety net (issue 17): a test stuck in a kernel fails within its time limit,
naming itself and dumping every thread's stack, instead of holding CI for its 90 minutes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_a_stuck_test_is_stopped_and_named(tmp_path):
    stuck = tmp_path / "test_stuck.py"
    # A lock acquired twice never returns: a deadlocked barrier, as torch's OpenMP threads were in.
    stuck.write_text("import _thread\n\ndef test_waits_forever():\n    lock = _thread.allocate_lock()\n"
                     "    lock.acquire()\n    lock.acquire()\n")
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", str(stuck), "-c", str(ROOT / "pyproject.toml"),
                          "--rootdir", str(tmp_path), "-p", "no:cacheprovider", "-o", "timeout=3",
                          "-o", "faulthandler_timeout=0"], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - start
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "Timeout" in out and "test_waits_forever" in out, out[-3000:]
    assert "lock.acquire()" in out  # the stuck thread's stack is printed
    assert took < 60, took


def test_the_configured_limit_is_in_force(pytestconfig):
    assert pytestconfig.getini("timeout") == "300" and pytestconfig.getini("timeout_method") == "thread"
    assert pytestconfig.pluginmanager.hasplugin("timeout")


@pytest.mark.timeout(900)
def test_a_test_can_ask_for_more(request):
    assert request.node.get_closest_marker("timeout").args == (900,)
