"""Time and peak memory of one cycle's scoring on synthetic pools: streamed (chunks + running top-k) vs whole arrays.

A pool of ``n`` random 64-d feature vectors goes through an untrained MLP (hidden 64, ``C``
outputs, dropout 0.5 for BALD) with the strategy's own objective (TiDAL's TD module on the
MLP's features): no training, only the scoring path the loop runs (:func:`tidal.gather.select`,
eval batch 1024, top k = 100). Each case runs in its own process on one torch thread; peak
memory is that process's ``ru_maxrss`` after scoring minus its value just before (the pool,
the model and torch are already loaded), so it counts what scoring adds; glibc's mmap threshold
is fixed at 1 MiB so that freed arrays leave the process at once. "whole" forces
today's pre-streaming path (``per_sample = False``: gather ``[n, C]`` / ``[T, n, C]``, then
score); Core-Set is a set strategy and only has it. Whole-array cases whose arrays would
not fit comfortably in this machine's memory are skipped and marked with the estimate.

    python benchmarks/scoring_memory.py [--sizes 10000 100000 1000000] [--classes 10 8142]
        [--max-n-large-c 100000] [--budget-gib 8]

Prints a markdown table and saves it to benchmarks/results/scoring_memory.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

METHODS = ("entropy", "tidal-entropy", "bald", "coreset")
DIM, HIDDEN, K, LABELED, T, BATCH = 64, 64, 100, 100, 10, 1024


def whole_gib(method: str, n: int, classes: int) -> float:
    """Rough peak of the whole-array path: the gathered arrays and the score's temporaries."""
    per = 4 * n * classes / 2**30  # one [n, C] float32
    return {"entropy": 5 * per, "tidal-entropy": 6 * per, "bald": 4 * T * per,
            "coreset": 4 * n * HIDDEN / 2**30 * 3}[method]


def run_case(method: str, n: int, classes: int, path: str) -> dict:
    """One case, in this process: ``{"seconds", "peak_mib"}``."""
    import torch

    from common import scoring_setup
    from tidal.data.dataset import FeatureDataset
    from tidal.gather import ScoringPass, select

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    pool = FeatureDataset(torch.randn(n + LABELED, DIM, generator=g), torch.zeros(n + LABELED, dtype=torch.int64),
                          classes)
    candidates, labeled = torch.arange(n), torch.arange(n, n + LABELED)
    strategy, model, objective = scoring_setup(pool, method, classes, DIM, HIDDEN, T, candidates, labeled, BATCH)
    if path == "whole":
        type(strategy).per_sample = False
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    ids, _ = select(strategy, ScoringPass(model, objective, pool, candidates, labeled, K, g, BATCH))
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert len(ids) == K
    return {"seconds": seconds, "peak_mib": (after - before) / 1024}  # ru_maxrss is in KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--classes", type=int, nargs="+", default=[10, 8142])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--max-n-large-c", type=int, default=100_000, help="largest n run with C > 1000 (time)")
    p.add_argument("--budget-gib", type=float, default=8.0, help="skip whole-array cases estimated above this")
    p.add_argument("--case", nargs=4, metavar=("METHOD", "N", "C", "PATH"), help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring_memory.md"))
    args = p.parse_args()
    if args.case:
        method, n, c, path = args.case
        print(json.dumps(run_case(method, int(n), int(c), path)))
        return
    from common import write_table

    # A fixed mmap threshold: glibc then returns every freed array above 1 MiB to the system at
    # once, so ru_maxrss measures the arrays alive together and not the arena's fragmentation
    # (which otherwise creeps up with the number of chunks).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    rows = []
    for classes in args.classes:
        for n in args.sizes:
            if classes > 1000 and n > args.max_n_large_c:
                continue
            for method in args.methods:
                cells = [method, str(classes), f"{n:,}"]
                for path in ("streamed", "whole"):
                    if path == "streamed" and method == "coreset":
                        cells += ["set strategy", "-"]
                        continue
                    est = whole_gib(method, n, classes)
                    if path == "whole" and est > args.budget_gib:
                        cells += [f"skipped (~{est:.0f} GiB)", "-"]
                        continue
                    proc = subprocess.run([sys.executable, __file__, "--case", method, str(n), str(classes), path],
                                          capture_output=True, text=True, env=env)
                    if proc.returncode != 0:
                        cells += [f"failed ({proc.returncode})", "-"]
                        print(proc.stderr[-2000:], file=sys.stderr)
                        continue
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    cells += [f"{r['seconds']:.2f}", f"{r['peak_mib']:,.0f}"]
                print(" | ".join(cells), file=sys.stderr, flush=True)
                rows.append(cells)
    header = ["method", "C", "n", "streamed s", "streamed peak MiB", "whole s", "whole peak MiB"]
    caption = (f"Scoring one cycle's pool (top {K}, eval batch {BATCH}, BALD T = {T}), synthetic MLP, one torch "
               f"thread on {platform.processor() or platform.machine()} (a loaded 2-core machine). Peak = "
               "ru_maxrss increase during scoring, per process (MALLOC_MMAP_THRESHOLD_=1 MiB). Streamed = chunks + running top-k (this "
               "branch); whole = the pre-streaming path (gather [n, C] / [T, n, C], then score).")
    write_table(caption, header, rows, args.out, left=1)


if __name__ == "__main__":
    main()
