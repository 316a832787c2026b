"""Training throughput of the in-memory data path: before and after the split interface, same run.

    python benchmarks/data_path.py [--images 2000] [--epochs 3] [--repeats 3] [--width 8]

"Before" is the training step as it was written before the split interface: the step
indexes ``dataset.images`` itself and calls ``to_float`` and ``augment``. "After" is
today's :func:`tidal.train.train_model`, which asks the split for its batches
(``ImageDataset.batches``). Both train the same CIFAR-style ResNet-18 on the same real
FashionMNIST images with the same seeds; they alternate ``--repeats`` times so that a noisy
machine hurts both alike, and the final weights of the two are compared (they must be equal).
Prints and saves the table to benchmarks/results/data_path.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import write_table

from tidal.config import TrainConfig
from tidal.data import load_dataset
from tidal.data.augment import augment, to_float
from tidal.models.resnet import ResNet18
from tidal.train import epoch_batches, train_model


def before(model, dataset, labeled, config, generator) -> None:
    """The pre-interface training loop (plain cross-entropy), kept here as the baseline."""
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    model.train()
    for _ in range(config.epochs):
        for idx in epoch_batches(labeled, config.batch_size, generator):
            x = to_float(dataset.images[idx], dataset.mean, dataset.std)
            x = augment(x, config.crop_padding, config.flip, generator)
            loss = F.cross_entropy(model(x).logits, dataset.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_path.md"))
    args = p.parse_args()
    train = load_dataset("fashion-mnist").train
    labeled = torch.arange(args.images)
    # lr_decay_at=1: no decay inside the timed epochs, as in ``before``.
    config = dataclasses.replace(TrainConfig(), epochs=args.epochs, width=args.width, lr_decay_at=1.0)
    times: dict[str, list[float]] = {"before": [], "after": []}
    weights = {}
    for _ in range(args.repeats):
        for name in ("before", "after"):
            torch.manual_seed(0)
            model = ResNet18(10, args.width, 1)
            g = torch.Generator().manual_seed(1)
            t0 = time.perf_counter()
            if name == "before":
                before(model, train, labeled, config, g)
            else:
                train_model(model, None, train, labeled, config, g)
            times[name].append(time.perf_counter() - t0)
            weights[name] = torch.cat([v.flatten().float() for v in model.state_dict().values()])
    same = torch.equal(weights["before"], weights["after"])
    n = args.images * args.epochs
    rows = [[name, f"{min(t):.2f}", f"{n / min(t):.0f}", f"{n / (sum(t) / len(t)):.0f}"] for name, t in times.items()]
    ratio = min(times["after"]) / min(times["before"])
    caption = (f"In-memory training throughput, before vs after the split interface: ResNet-18 width "
               f"{args.width}, {args.images} FashionMNIST images x {args.epochs} epochs, batch 128, "
               f"{torch.get_num_threads()} torch threads, {args.repeats} alternating repeats "
               f"({platform.machine()}, torch {torch.__version__}). after/before best time = {ratio:.3f}; "
               f"final weights {'identical' if same else 'DIFFERENT'}.")
    write_table(caption, ["path", "best s", "img/s (best)", "img/s (mean)"], rows, args.out)


if __name__ == "__main__":
    main()
