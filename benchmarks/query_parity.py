"""Does a labelling round's time depend on the parity of the label count? Before and after the kernel fix.

    python benchmarks/query_parity.py --before PATH/TO/OLD/src [--labels 59 60 100 1000] [--repeats 2]
                                      [--threads 2]

Times ``tidal.query`` (what ``tidal query`` runs: train on the labels from scratch with the quick
preset's settings, then score the rest with TiDAL) on real FashionMNIST, for each label count,
with the code at ``--before`` (e.g. a checkout of the commit before issue 17, whose odd-batch
workaround turned oneDNN off and sent the channels-last model through torch's slow fallback)
and with this checkout's code. Each (code, labels) point runs in its own process, the two codes
alternating, ``--repeats`` times, so the machine's load hits both alike (both with
``OMP_WAIT_POLICY=PASSIVE``, which the old code did not set, so that only the kernels differ); the table gives the best
time of each and the after/before ratio, and says where a round's time goes (training, scoring,
the rest: start-up and data). Saves benchmarks/results/query_parity.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import write_table

SRC = Path(__file__).resolve().parents[1] / "src"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from tidal.data import load_dataset
from tidal.project.query import QueryConfig, query
n, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
splits = load_dataset("fashion-mnist", download=False)
train = splits.train
ids = torch.arange(n)
labels = splits.train.labels[:n]
t1 = time.perf_counter()
r = query("auto", train, ids, labels, 30, "tidal-entropy", config=QueryConfig(subset=1000, seed=0))
t2 = time.perf_counter()
print(json.dumps({"total": t2 - t0, "setup": t1 - t0, "train": r.train_seconds, "score": r.score_seconds,
                  "query": t2 - t1}))
"""


def once(src: Path, n: int, threads: int) -> dict:
    # the same OpenMP wait policy for both codes (the old one did not set it), so that only the kernels differ
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    run = subprocess.run([sys.executable, "-c", CHILD, str(n), str(threads)], capture_output=True,
                         text=True, env=env, timeout=3600)
    if run.returncode != 0:
        return {"error": f"exit {run.returncode}: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else ''}"}
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="the src/ folder of the code to compare with")
    p.add_argument("--labels", nargs="+", type=int, default=[59, 60, 100, 1000])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads of each round")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "query_parity.md"))
    args = p.parse_args()
    codes = {"before": Path(args.before).resolve(), "after": SRC}
    best: dict[tuple[str, int], dict] = {}
    start = time.time()
    for rep in range(args.repeats):
        for n in args.labels:
            for name, src in codes.items():
                got = once(src, n, args.threads)
                print(f"repeat {rep + 1} {name:6s} {n:5d} labels: {got}", flush=True)
                old = best.get((name, n))
                if old is None or "error" in old or ("error" not in got and got["query"] < old["query"]):
                    best[(name, n)] = got
    rows = []
    for n in args.labels:
        b, a = best[("before", n)], best[("after", n)]
        fmt = (lambda r: r["error"] if "error" in r else f"{r['query']:.1f} (train {r['train']:.1f}, "
               f"score {r['score']:.1f}, other {r['query'] - r['train'] - r['score']:.1f})")
        ratio = "-" if "error" in a or "error" in b else f"{a['query'] / b['query']:.2f}"
        rows.append((n, fmt(b), fmt(a), ratio))
    caption = (f"One labelling round (`tidal.query`: quick-preset training from scratch, TiDAL on 1,000 candidates, "
               f"k=30) on real FashionMNIST, {args.threads} torch thread(s), best of {args.repeats}, seconds; "
               f"before = {args.before}, after = this checkout; {platform.machine()}, "
               f"`python benchmarks/query_parity.py {' '.join(sys.argv[1:])}` ({time.time() - start:.0f} s in all)")
    write_table(caption, ["labels", "before (s)", "after (s)", "after/before"], rows, args.out)


if __name__ == "__main__":
    main()
