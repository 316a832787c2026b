"""Decoding throughput of ``FileDataset.batches`` from a folder of JPEG files.

    python benchmarks/disk_throughput.py [--n 2000] [--workers 0 2] [--repeats 2]

Writes ``n`` random 64x64 JPEG files into a temporary folder, then times full passes of
``FileDataset.batches`` over them in batches of 128 (train transform: random resized crop to
32 px + flip; eval transform: resize + centre crop to 32 px) with each worker count, and
reports images per second (best of ``repeats`` passes, worker start-up included, since
training starts the workers once per epoch). A third column adds a simulated training step
per batch (``--step-ms`` of sleep, as when the main process waits for a GPU): there workers
decode the next batches during the step, which is what they are for. Saves the table to
benchmarks/results/disk_throughput.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
import torch
from common import write_table
from PIL import Image

from tidal.data.dataset import Augment
from tidal.data.files import FileDataset


def make_files(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        # smooth random images (noise would make unusually large JPEGs)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        p = folder / f"{i:05d}.jpg"
        Image.fromarray(small).resize((64, 64), Image.BILINEAR).save(p, quality=90)
        paths.append(p)
    return paths


def images_per_second(ds: FileDataset, batch: int, train: bool, repeats: int, step_ms: float = 0.0) -> float:
    best = float("inf")
    for r in range(repeats):
        batches = list(torch.randperm(len(ds), generator=torch.Generator().manual_seed(r)).split(batch))
        g = torch.Generator().manual_seed(r)
        start = time.perf_counter()
        seen = 0
        for ids, _ in ds.batches(batches, Augment() if train else None, g):
            seen += len(ids)
            time.sleep(step_ms / 1000)
        best = min(best, time.perf_counter() - start)
    return seen / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="JPEG files to write and decode")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 2])
    p.add_argument("--size", type=int, default=32, help="model input side in pixels")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--step-ms", type=float, default=50.0, help="simulated training step per batch (ms)")
    p.add_argument("--repeats", type=int, default=2, help="passes per setting; the fastest is reported")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "disk_throughput.md"))
    args = p.parse_args()

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_files(Path(tmp), args.n)
        labels = torch.zeros(args.n, dtype=torch.int64)
        for workers in args.workers:
            ds = FileDataset(paths, labels, 1, args.size, (0.5,) * 3, (0.25,) * 3, resize_eval=False,
                             num_workers=workers)
            train = images_per_second(ds, args.batch, True, args.repeats)
            evaluation = images_per_second(ds, args.batch, False, args.repeats)
            stepped = images_per_second(ds, args.batch, True, args.repeats, args.step_ms)
            rows.append((workers, train, evaluation, stepped))
            print(f"{workers} worker(s): train {train:7.0f} img/s, eval {evaluation:7.0f} img/s, train with a "
                  f"{args.step_ms:.0f} ms step {stepped:7.0f} img/s", flush=True)

    load = os.getloadavg()[0]
    caption = (f"FileDataset.batches throughput: {args.n} JPEG files of 64x64 px to {args.size} px inputs, batch "
               f"{args.batch}, best of {args.repeats} passes (worker start-up included); {os.cpu_count()} CPUs "
               f"(load average {load:.1f} at the end), {platform.machine()}, torch {torch.__version__}, "
               f"Pillow {PIL.__version__}.")
    header = ["workers", "train: crop + flip (img/s)", "eval: resize + crop (img/s)",
              f"train + {args.step_ms:.0f} ms step per batch (img/s)"]
    write_table(caption, header, [[w, f"{t:.0f}", f"{e:.0f}", f"{s:.0f}"] for w, t, e, s in rows], args.out, left=0)


if __name__ == "__main__":
    main()
