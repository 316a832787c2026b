"""Training throughput of the quick-preset ResNet-18 with contiguous (NCHW) and channels-last weights.

    python benchmarks/channels_last.py [--widths 8 16] [--threads 1 2] [--labeled 1000] [--epochs 3]

For each width and torch thread count, trains the same model (same initial weights, same
batches and augmentation) on real FashionMNIST with ``tidal.train.train_model``, once with
the convolution weights in each memory layout, and reports images per second and the
speed-up. Since the model keeps its weights channels-last (``tidal.models.resnet``), this is
the gain the package takes. Saves the table to benchmarks/results/channels_last.md.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
from common import write_table

from tidal.config import TrainConfig
from tidal.data import load_dataset
from tidal.loop import initial_labeled
from tidal.models import ResNet18
from tidal.train import train_model


def throughput(train, labeled, config: TrainConfig, layout: torch.memory_format) -> float:
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, config.width, train.image_shape[0]).to(memory_format=layout)
    stats = train_model(model, None, train, labeled, config, torch.Generator().manual_seed(0))
    return stats.images_per_second


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", nargs="+", type=int, default=[8, 16])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--labeled", type=int, default=1000, help="training images per epoch")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "channels_last.md"))
    args = p.parse_args()

    train = load_dataset("fashion-mnist").train
    labeled = initial_labeled(torch.arange(len(train)), args.labeled, seed=0)
    rows = []
    for width in args.widths:
        config = TrainConfig(epochs=args.epochs, width=width)
        throughput(train, labeled, TrainConfig(epochs=1, width=width), torch.channels_last)  # warm-up
        for threads in args.threads:
            torch.set_num_threads(threads)
            nchw = throughput(train, labeled, config, torch.contiguous_format)
            nhwc = throughput(train, labeled, config, torch.channels_last)
            rows.append((width, threads, nchw, nhwc))
            print(f"width {width:3d}, {threads} thread(s): NCHW {nchw:7.0f} img/s, channels-last {nhwc:7.0f} img/s"
                  f" ({nhwc / nchw:.2f}x)", flush=True)

    caption = (f"Training throughput, ResNet-18 on FashionMNIST 28x28, batch 128, {args.labeled} images x "
               f"{args.epochs} epochs; {platform.machine()}, torch {torch.__version__}.")
    write_table(caption, ["width", "threads", "NCHW (img/s)", "channels-last (img/s)", "speed-up"],
                [[w, t, f"{a:.0f}", f"{b:.0f}", f"{b / a:.2f}x"] for w, t, a, b in rows], args.out, left=0)


if __name__ == "__main__":
    main()
