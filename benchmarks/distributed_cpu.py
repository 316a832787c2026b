"""Wall time of one run trained by one process and by two torchrun ranks, on this CPU.

    python benchmarks/distributed_cpu.py [--epochs 5] [--initial 1000] [--cycles 2] [--repeats 2] [--two-threads]

Runs the same `tidal run` (real FashionMNIST, quick-preset ResNet-18, ``--cycles`` cycles
from ``--initial`` labels) as one process with 1 torch thread and as ``torchrun
--nproc-per-node 2`` (gloo) with 1 thread per rank, alternately ``--repeats`` times (and,
with ``--two-threads``, as one process with 2 threads), each in a fresh run directory and a
fresh process (start-up included). Reports the command's wall time, rank 0's stored
training/scoring seconds, their ratios to the first one-process run, and the final accuracy.
Saves the table to benchmarks/results/distributed_cpu.md.

On a CPU the ranks share the cores the single process would use with its threads; this
measures what the process group costs (start-up, an all-reduce per step), not a speed-up:
torchrun is for several GPUs.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import write_table

from tidal.results import DB_NAME, ResultStore

SRC = str(Path(__file__).resolve().parents[1] / "src")


def timed(command: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=os.pathsep.join([SRC, os.environ.get(
        "PYTHONPATH", "")]))
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def stored_seconds(out: Path) -> tuple[float, float, list[float]]:
    with ResultStore(out / DB_NAME, readonly=True) as store:
        records = store.records()
    return (sum(r.train_seconds for r in records), sum(r.score_seconds for r in records),
            [r.accuracy for r in records])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--initial", type=int, default=1000, help="labeled images in cycle 1")
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--subset", type=int, default=5000, help="candidates scored per cycle")
    p.add_argument("--method", default="tidal-entropy")
    p.add_argument("--test-limit", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=2, help="times each way runs, alternately")
    p.add_argument("--two-threads", action="store_true", help="also one process with 2 threads")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "distributed_cpu.md"))
    args = p.parse_args()
    run = ["run", "--preset", "quick", "--methods", args.method, "--seeds", "0", "--epochs", str(args.epochs),
           "--initial", str(args.initial), "--budget", str(args.budget), "--cycles", str(args.cycles),
           "--subset", str(args.subset), "--test-limit", str(args.test_limit), "--device", "cpu", "--quiet",
           "--no-download"]
    ways = [("1 process, 1 thread", 1, [sys.executable, "-m", "tidal"]),
            ("torchrun, 2 ranks x 1 thread", 1,
             [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "tidal"])]
    ways = ways * args.repeats + ([("1 process, 2 threads", 2, [sys.executable, "-m", "tidal"])]
                                  if args.two_threads else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, threads, prefix) in enumerate(ways):
            out = Path(tmp) / str(i)
            wall = timed([*prefix, *run, "--out", str(out)], threads)
            train, score, acc = stored_seconds(out)
            rows.append((name, wall, train, score, acc))
            print(f"{name}: {wall:.1f} s (train {train:.1f} s, score {score:.1f} s), accuracy {acc}", flush=True)
    base = rows[0]
    caption = (f"`tidal run`, {args.method}, {args.cycles} cycles from {args.initial} labels (+{args.budget}), "
               f"{args.epochs} epochs, {args.subset} candidates scored, {args.test_limit} test images, quick-preset "
               f"ResNet-18 on FashionMNIST; {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}. "
               "Wall: the whole command (start-up included); train/score: rank 0's stored seconds, all cycles. "
               "Ratios: to the first row (> 1 = slower).")
    write_table(caption, ["how", "wall (s)", "wall ratio", "train (s)", "train ratio", "score (s)", "final acc. (%)"],
                [[n, f"{w:.1f}", f"{w / base[1]:.2f}", f"{t:.1f}", f"{t / base[2]:.2f}", f"{s:.1f}",
                  f"{100 * a[-1]:.2f}"] for n, w, t, s, a in rows], args.out)


if __name__ == "__main__":
    main()
