"""Time and accuracy of the quick preset: one (method, seed) run of 5 cycles on real FashionMNIST.

    python benchmarks/quick_preset.py [--methods random tidal-entropy] [--seeds 0] [--epochs 40] [--width 8]

Runs each (method, seed) through `tidal.run_experiment` in a fresh run directory, then prints
and saves a table of wall time per run and test accuracy per cycle
(benchmarks/results/quick_preset.md). The README's "Measured" numbers come from this script.
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

from tidal.config import preset
from tidal.results import DB_NAME, ResultStore
from tidal.experiment import run_experiment


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=["random", "tidal-entropy"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--width", type=int, default=None, help="override the preset's width")
    p.add_argument("--imbalance", type=float, default=1.0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "quick_preset.md"))
    args = p.parse_args()

    cfg = preset("quick", imbalances=(args.imbalance,))
    train = dataclasses.replace(cfg.train, **{k: v for k, v in (("epochs", args.epochs), ("width", args.width))
                                              if v is not None})
    cfg = dataclasses.replace(cfg, train=train)
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            run = dataclasses.replace(cfg, methods=(method,), seeds=(seed,))
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                run_experiment(run, tmp, device="cpu", progress=False, log=lambda s: None)
                seconds = time.perf_counter() - t0
                with ResultStore(Path(tmp) / DB_NAME) as store:
                    recs = store.records()
            accs = [100 * r.accuracy for r in recs]
            sizes = [r.n_labeled for r in recs]
            rows.append((method, seed, seconds, accs))
            print(f"{method:16s} seed {seed}: {seconds:6.1f} s  " + "  ".join(f"{a:.2f}" for a in accs), flush=True)

    caption = (f"Quick preset (width {train.width}, {train.epochs} epochs, initial {cfg.al.initial}, budget "
               f"{cfg.al.budget}, {cfg.al.cycles} cycles, subset {cfg.al.subset}), FashionMNIST imbalance "
               f"{args.imbalance:g}; {platform.machine()}, {torch.get_num_threads()} threads, torch "
               f"{torch.__version__}.")
    write_table(caption, ["method", "seed", "wall time (s)", *map(str, sizes)],
                [[m, s, f"{t:.0f}", *(f"{a:.2f}" for a in accs)] for m, s, t, accs in rows], args.out)


if __name__ == "__main__":
    main()
