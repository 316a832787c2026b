"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2``: ``tidal`` with its
arguments, rank 0 starting ``TIDAL_TEST_RANK_0_LATE_S`` seconds after the others (what a busy
machine may do). Exits with tidal's status."""

from __future__ import annotations

import os
import sys
import time

if os.environ.get("RANK") == "0":
    time.sleep(float(os.environ["TIDAL_TEST_RANK_0_LATE_S"]))

from tidal.cli import main  # noqa: E402 - after the delay, like a slow start

raise SystemExit(main(sys.argv[1:]))
