"""Why TA-VAAL falls behind random on long-tailed FashionMNIST: what its discriminator reads.

    python benchmarks/tavaal_probe.py [--run benchmarks/results/grid] [--imbalance 100] [--seed 0] [--cycle 1]

Takes the labeled set TA-VAAL trained on at cycle ``--cycle`` (0-based) of a stored run,
draws a 10,000-sample candidate subset from the rest of that seed's pool, trains the quick
preset's model with the TA-VAAL objective (classifier + loss-prediction module, then VAE and
discriminator) and reports: the mean normalised rank of the predicted loss of the labeled
set and of the candidates (head and tail classes apart), the discriminator's mean
"unlabeled" probability for head and tail candidates, the correlation between that score
and the rank, and the tail share of the top-k it would select. The model's initial weights
and the subset are this script's own draws, not the run's, so this reproduces the kind of
cycle the run had, not its exact numbers. Saves the table to benchmarks/results/tavaal_probe.md.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch
from common import write_table

from tidal.config import PRESETS
from tidal.data import load_dataset
from tidal.experiment import make_pool
from tidal.models import ResNet18
from tidal.metrics import tail_classes
from tidal.results import DB_NAME, ResultStore
from tidal.strategies import TrainContext, create_strategy
from tidal.train import train_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=str(Path(__file__).parent / "results" / "grid"))
    p.add_argument("--imbalance", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cycle", type=int, default=1, help="0-based cycle whose labeled set to train on")
    p.add_argument("--subset", type=int, default=10_000)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "tavaal_probe.md"))
    args = p.parse_args()

    with ResultStore(Path(args.run) / DB_NAME) as store:
        (rec,) = store.records(dataset="fashion-mnist", imbalance=args.imbalance, method="ta-vaal", seed=args.seed,
                               cycle=args.cycle)
    cfg = PRESETS["quick"]
    train = load_dataset("fashion-mnist").train
    labeled = torch.tensor(rec.labeled)
    pool = make_pool(train, args.imbalance, None, args.seed)
    rest = pool[~torch.isin(pool, labeled)]
    candidates = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(1))[: args.subset]]
    strategy = create_strategy("ta-vaal", cfg.strategy)
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, cfg.train.width, train.image_shape[0], strategy.dropout)
    ctx = TrainContext(train, labeled, candidates, train.num_classes, model.feature_channels, model.embedding_dim,
                       cfg.train.epochs, torch.device("cpu"), cfg.train.eval_batch_size)
    objective = strategy.make_objective(ctx)
    train_model(model, objective, train, labeled, cfg.train, torch.Generator().manual_seed(0))

    rank, score = objective.rank, objective.unlabeled_probability(candidates).float()
    tail = torch.isin(train.labels[candidates], torch.tensor(tail_classes(train.num_classes)))
    top = torch.topk(score, cfg.al.budget).indices
    corr = torch.corrcoef(torch.stack([score, rank[candidates]]))[0, 1].item()
    rows = [
        ["mean predicted-loss rank, labeled set", f"{rank[labeled].mean():.3f}"],
        ["mean predicted-loss rank, candidates (head / tail classes)",
         f"{rank[candidates][~tail].mean():.3f} / {rank[candidates][tail].mean():.3f}"],
        ["mean 'unlabeled' probability 1 - D, candidates (head / tail)",
         f"{score[~tail].mean():.3f} / {score[tail].mean():.3f}"],
        ["correlation of 1 - D with the rank, candidates", f"{corr:+.3f}"],
        [f"tail share of the top {cfg.al.budget} by 1 - D (of the candidates)",
         f"{tail[top].float().mean():.1%} ({tail.float().mean():.1%})"],
    ]
    caption = (f"TA-VAAL probe: FashionMNIST IR {args.imbalance:g}, seed {args.seed}, the labeled set of cycle "
               f"{args.cycle + 1} ({len(labeled)} samples) of `{os.path.relpath(args.run)}`, {len(candidates)} candidates, quick "
               f"preset; {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}.")
    write_table(caption, ["quantity", "value"], rows, args.out)


if __name__ == "__main__":
    main()
