"""Scoring time of every registered strategy on a 10,000-sample subset of real FashionMNIST.

For each strategy: train the quick-preset model (width 8) for a few epochs on 500 labeled
images with the strategy's own training hook, then time what the loop does at selection
time: gather the strategy's needs over the subset (one pass; T passes for MC dropout)
and score it, then top-k. Training time is not included.

    python benchmarks/scoring_time.py [--subset 10000] [--methods ...] [--repeats 1]

Prints a markdown table and saves it to benchmarks/results/scoring_time.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from common import write_table

from tidal.config import PRESETS, TrainConfig
from tidal.data import load_dataset
from tidal.gather import ScoringPass, gather
from tidal.loop import initial_labeled
from tidal.models import ResNet18
from tidal.strategies import TrainContext, create_strategy, list_strategies, select_top_k
from tidal.train import train_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subset", type=int, default=10_000)
    p.add_argument("--labeled", type=int, default=500)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3, help="training epochs before scoring (not timed)")
    p.add_argument("--methods", nargs="+", default=list_strategies())
    p.add_argument("--repeats", type=int, default=1, help="timed scoring repetitions (the minimum is reported)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring_time.md"))
    args = p.parse_args()

    splits = load_dataset("fashion-mnist")
    train, cfg = splits.train, PRESETS["quick"]
    pool = torch.arange(len(train))
    labeled = initial_labeled(pool, args.labeled, seed=0)
    rest = pool[~torch.isin(pool, labeled)]
    candidates = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(0))[: args.subset]]
    tc = TrainConfig(epochs=args.epochs, width=cfg.train.width)
    rows = []
    for name in args.methods:
        strategy = create_strategy(name, cfg.strategy)
        torch.manual_seed(0)
        model = ResNet18(train.num_classes, tc.width, 1, strategy.dropout)
        ctx = TrainContext(train, labeled, candidates, train.num_classes, model.feature_channels,
                           model.embedding_dim, tc.epochs, torch.device("cpu"), tc.eval_batch_size)
        objective = strategy.make_objective(ctx)
        t0 = time.perf_counter()
        train_model(model, objective, train, labeled, tc, torch.Generator().manual_seed(0))
        train_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(1)
            inputs = gather(ScoringPass(model, objective, train, candidates, labeled, args.budget, g,
                                        tc.eval_batch_size), strategy.needs, strategy.mc_samples)
            select_top_k(strategy.score(inputs), candidates, args.budget)
            best = min(best, time.perf_counter() - t0)
        needs = ", ".join(sorted(strategy.needs)) or "—"
        rows.append((name, needs, best, train_s / tc.epochs))
        print(f"{name:20s} scoring {best:7.2f} s   (training {train_s / tc.epochs:.2f} s/epoch)", flush=True)

    caption = (f"Scoring time on a {args.subset}-sample FashionMNIST subset, ResNet-18 width {tc.width}, "
               f"{args.labeled} labeled, k={args.budget}; {platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} threads, torch {torch.__version__}.")
    write_table(caption, ["method", "needs", "scoring time (s)", "training (s/epoch, 500 images)"],
                [[n, needs, f"{s:.2f}", f"{t:.2f}"] for n, needs, s, t in rows], args.out, left=2)


if __name__ == "__main__":
    main()
