"""Training time of plain cross-entropy vs TiDAL with a detached TD module vs TiDAL (issue 20).

    python benchmarks/td_overhead.py [--labeled 500] [--epochs 4] [--width 8] [--reps 7] [--threads 1]

Trains the same ResNet-18 (same initial weights, batches and augmentation) on real FashionMNIST
with ``tidal.train.train_model`` three ways: no objective (plain CE, what ``random``/``entropy``
train), ``TDPredictionObjective(detach=True)`` (``tidal-detached-*``) and the paper's
``TDPredictionObjective`` (``tidal-entropy``/``tidal-margin``). The arms are interleaved: each
repetition runs all three, in an order rotated from one repetition to the next, so that a
machine getting busier or quieter weighs on every arm alike. Two clocks: wall seconds
(``TrainStats.seconds``: the training loop alone) and the process's CPU seconds around
``train_model`` (``time.process_time``; with one torch thread this is the work itself, and it
moves far less than wall time when other processes share the cores). Reported per arm: median
and minimum of each, and the median (and range) over repetitions of the ratio to plain CE in the
same repetition. The goal for the detached arm is <= 1.03x. Saves the table to
benchmarks/results/td_overhead.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from common import write_table

from tidal.config import TrainConfig
from tidal.data import load_dataset
from tidal.loop import initial_labeled
from tidal.models import ResNet18
from tidal.strategies import TrainContext
from tidal.strategies.tidal import TDPredictionObjective
from tidal.train import train_model

ARMS = ("plain CE", "TiDAL, detached module", "TiDAL (paper)")


def run(arm: str, train, labeled: torch.Tensor, config: TrainConfig) -> tuple[float, float]:
    """``(wall seconds of the loop, CPU seconds of train_model)`` of one training run of ``arm``."""
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, config.width, train.image_shape[0])
    objective = None
    if arm != ARMS[0]:
        ctx = TrainContext(train, labeled, labeled[:0], train.num_classes, model.feature_channels,
                           model.embedding_dim, config.epochs, torch.device("cpu"))
        objective = TDPredictionObjective(ctx, detach=arm == ARMS[1])
    cpu = time.process_time()
    wall = train_model(model, objective, train, labeled, config, torch.Generator().manual_seed(0)).seconds
    return wall, time.process_time() - cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labeled", type=int, default=500, help="images per epoch (quick preset: first cycle)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--width", type=int, default=8, help="ResNet-18 width (the quick preset's)")
    p.add_argument("--reps", type=int, default=7, help="interleaved repetitions of the three arms")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a --jobs worker trains with 1)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "td_overhead.md"))
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    train = load_dataset("fashion-mnist").train
    labeled = initial_labeled(torch.arange(len(train)), args.labeled, seed=0)
    config = TrainConfig(epochs=args.epochs, width=args.width)
    for arm in ARMS:  # warm-up: allocator, oneDNN primitives, first-touch pages
        run(arm, train, labeled, TrainConfig(epochs=1, width=args.width))
    wall: dict[str, list[float]] = {arm: [] for arm in ARMS}
    cpu: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for rep in range(args.reps):
        order = ARMS[rep % 3:] + ARMS[:rep % 3]
        for arm in order:
            w, c = run(arm, train, labeled, config)
            wall[arm].append(w)
            cpu[arm].append(c)
        print(f"rep {rep + 1}/{args.reps}: " + ", ".join(f"{a} {wall[a][-1]:.2f} s wall / {cpu[a][-1]:.2f} s CPU"
                                                        for a in ARMS), flush=True)

    def ratio(times: dict[str, list[float]], arm: str) -> str:
        r = [s / b for s, b in zip(times[arm], times[ARMS[0]])]
        return f"{statistics.median(r):.3f}x ({min(r):.3f}-{max(r):.3f})"

    rows = [[arm, f"{statistics.median(wall[arm]):.2f}", f"{min(wall[arm]):.2f}", ratio(wall, arm),
             f"{statistics.median(cpu[arm]):.2f}", f"{min(cpu[arm]):.2f}", ratio(cpu, arm)] for arm in ARMS]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    caption = (f"Training time, ResNet-18 width {args.width} on FashionMNIST 28x28, batch 128, {args.labeled} images x "
               f"{args.epochs} epochs, {args.threads} torch thread(s), {args.reps} interleaved repetitions "
               f"(order rotated); {platform.processor() or platform.machine()}, torch {torch.__version__}, "
               f"load average {load:.1f} at the end. Ratio: per repetition, the arm's time over plain CE's "
               "in the same repetition.")
    write_table(caption, ["arm", "wall median (s)", "wall min (s)", "wall ratio to plain CE: median (range)",
                          "CPU median (s)", "CPU min (s)", "CPU ratio to plain CE: median (range)"], rows, args.out)


if __name__ == "__main__":
    main()
