"""Wall time of one small experiment run serially with every core, and with `--jobs N` workers.

    python benchmarks/jobs.py [--runs 4] [--epochs 40] [--initial 1000] [--jobs 2]

Trains the same runs (random selection on real FashionMNIST, quick-preset model, one
cycle of ``--initial`` labels each, one run per seed) through `tidal.run_experiment`
twice in fresh run directories: once serially with all of torch's threads, once with
``--jobs`` worker processes of ``threads // jobs`` threads each (worker start-up
included). Prints and saves the table to benchmarks/results/jobs.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
import time
from pathlib import Path

import torch
from common import write_table

from tidal.config import ALConfig, preset
from tidal.experiment import run_experiment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4, help="runs (seeds) in the experiment")
    p.add_argument("--epochs", type=int, default=40, help="epochs per run (the quick preset's 40)")
    p.add_argument("--initial", type=int, default=1000, help="labeled images each run trains on")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--test-limit", type=int, default=2000, help="test images evaluated per run")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "jobs.md"))
    args = p.parse_args()

    quick = preset("quick")
    cfg = preset("quick", methods=("random",), seeds=tuple(range(args.runs)), imbalances=(1.0,),
                 train=dataclasses.replace(quick.train, epochs=args.epochs),
                 al=ALConfig(initial=args.initial, budget=1, cycles=1, subset=1),
                 data=dataclasses.replace(quick.data, test_limit=args.test_limit))
    threads = torch.get_num_threads()
    rows = []
    for jobs in (1, args.jobs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_experiment(cfg, tmp, device="cpu", progress=False, log=lambda s: None, jobs=jobs)
            seconds = time.perf_counter() - t0
        per_job = threads if jobs == 1 else max(1, threads // jobs)
        rows.append((jobs, per_job, seconds))
        print(f"jobs {jobs}, {per_job} thread(s) each: {seconds:.1f} s", flush=True)

    base = rows[0][2]
    caption = (f"{args.runs} runs of random selection, one cycle of {args.initial} FashionMNIST images x "
               f"{args.epochs} epochs each (ResNet-18 width {cfg.train.width}, {args.test_limit} test images); "
               f"{platform.machine()}, {threads} torch threads in all, torch {torch.__version__}.")
    write_table(caption, ["jobs", "threads per job", "wall time (s)", "speed-up"],
                [[j, t, f"{s:.1f}", f"{base / s:.2f}x"] for j, t, s in rows], args.out, left=0)


if __name__ == "__main__":
    main()
