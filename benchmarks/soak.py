"""Soak check: tidal's training step on the risky convolution shapes while the CPU is oversubscribed.

    python benchmarks/soak.py [--reps 5] [--busy 2] [--isa native AVX2] [--threads 1 2] [--timeout 300]

Starts ``--busy`` busy-loop processes (one per core by default), then trains every built-in
image model (ResNet-18 at widths 2, 4 and 8 on 28x28 and 32x32 images, ResNet-50; the MLP has no
convolution) and a user
CNN made of the shapes ``benchmarks/onednn_sweep.py`` found unsafe (strided 1x1 convolutions
with 2-16 input channels, channels-last) through ``tidal.train.train_model`` — batch sizes odd
and even, 1 and 2 torch threads, oneDNN's own instruction set and AVX2 forced — each training in
a child process, ``--reps`` times. A child that dies is a crash, one that does not finish within
``--timeout`` seconds a hang. Prints and saves the counts to benchmarks/results/soak.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from common import write_table

CHILD = r"""
import sys, torch
from torch import nn
from tidal.config import TrainConfig
from tidal.data.dataset import ImageDataset
from tidal.models.factory import build_model
from tidal.train import train_model

model_name, size, labels, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
channels = 3 if size == 32 else 1
def user_cnn(num_classes):  # the sweep's unsafe shapes: strided 1x1 convolutions on few channels
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 8, 1, stride=2),
                         nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 1, stride=2), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, num_classes))
g = torch.Generator().manual_seed(0)
shape = (channels, size, size)
data = ImageDataset(torch.randint(0, 256, (labels, *shape), dtype=torch.uint8, generator=g),
                    torch.arange(labels) % 4, num_classes=4, mean=(0.5,) * channels, std=(0.25,) * channels)
if model_name.startswith("resnet18-w"):
    model = build_model("resnet18", 4, shape, width=int(model_name.split("-w")[1]))
elif model_name == "user-cnn":
    model = build_model(user_cnn, 4, shape)
else:
    model = build_model(model_name, 4, shape)
stats = train_model(model, None, data, torch.arange(labels), TrainConfig(epochs=2, batch_size=batch, channels_last=True),
                    torch.Generator().manual_seed(1))
print("ok", stats.final_loss)
"""

# (model, image side, labels, batch): odd and even batches, a trailing odd batch
CASES = [(m, s, n, b) for m in ("resnet18-w2", "resnet18-w4", "resnet18-w8", "user-cnn") for s in (28, 32)
         for n, b in ((48, 16), (39, 16), (17, 17), (60, 30))]
CASES += [("resnet50", 32, 17, 17), ("resnet50", 32, 32, 16)]


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--busy", type=int, default=os.cpu_count() or 2, help="busy-loop processes beside the check")
    p.add_argument("--isa", nargs="+", default=["native", "AVX2"])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before a training counts as hung")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "soak.md"))
    args = p.parse_args()
    loops = [busy_loop() for _ in range(args.busy)]
    counts: dict[tuple, list[int]] = {}
    start = time.time()
    try:
        for rep, isa, threads in itertools.product(range(args.reps), args.isa, args.threads):
            env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
            env["OMP_NUM_THREADS"] = str(threads)
            if isa != "native":
                env["ONEDNN_MAX_CPU_ISA"] = isa
            for case in CASES:
                c = counts.setdefault((isa, threads, case[0]), [0, 0, 0])
                try:
                    run = subprocess.run([sys.executable, "-c", CHILD, *map(str, case)], env=env, capture_output=True,
                                         text=True, timeout=args.timeout)
                    c[0 if run.returncode == 0 and "ok" in run.stdout else 1] += 1
                    if run.returncode != 0:
                        print(f"FAILED {isa} threads={threads} {case}: exit {run.returncode} "
                              f"{run.stderr.strip()[-300:]}", flush=True)
                except subprocess.TimeoutExpired:
                    c[2] += 1
                    print(f"HUNG {isa} threads={threads} {case}", flush=True)
            print(f"repeat {rep + 1} isa={isa} threads={threads} done ({time.time() - start:.0f} s)", flush=True)
    finally:
        for loop in loops:
            loop.kill()
    rows = [(isa, threads, model, sum(c), c[0], c[1], c[2]) for (isa, threads, model), c in sorted(counts.items())]
    total = [sum(r[i] for r in rows) for i in (3, 4, 5, 6)]
    caption = (f"Soak: tidal's training step (2 epochs each) of every built-in model and a user CNN on the unsafe "
               f"shapes, {len(CASES)} (model, image, labels, batch) cases x {args.reps} repeats, with {args.busy} "
               f"busy-loop processes on {os.cpu_count()} cores; {platform.machine()}; "
               f"`python benchmarks/soak.py {' '.join(sys.argv[1:])}` ({time.time() - start:.0f} s). "
               f"In all: {total[0]} trainings, {total[1]} ok, {total[2]} crashed, {total[3]} hung.")
    write_table(caption, ["ISA", "threads", "model", "trainings", "ok", "crashed", "hung"], rows, args.out, left=3)


if __name__ == "__main__":
    main()
