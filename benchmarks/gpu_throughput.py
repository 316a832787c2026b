"""Training and scoring throughput at the paper's width 64: TiDAL against plain training and
against entropy scoring, float32 against bfloat16 autocast, and several runs sharing one GPU.

    python benchmarks/gpu_throughput.py --device cuda            # the GPU check (benchmarks/gpu_check.sh)
    python benchmarks/gpu_throughput.py --device cpu --small     # the same tables in seconds, on a CPU

Real FashionMNIST ($TIDAL_DATA or /usr/share/datasets/fashion-mnist; never downloaded), held
on the device as tensors (the in-memory data path). Three tables, each printed and saved under
``--out`` (default ``benchmarks/results/gpu/``; the file names carry the device and ``-small``):

1. training: images per second of ``tidal.train.train_model`` (batch 128) on ``--labeled``
   images for ``--epochs`` epochs after a one-epoch warm-up, with no auxiliary objective
   (what ``random``, ``entropy`` and ``margin`` train) and with TiDAL's objective (the TD
   record and the TD-prediction module of Eq. 9, what ``tidal-entropy`` trains), each with
   ``amp`` off (float32) and bf16;
2. scoring: candidates per second of ``tidal.gather.select`` over ``--candidates`` unlabeled
   images (budget 1000) for ``entropy`` (softmax of the backbone) and ``tidal-entropy``
   (entropy of the module's predicted TD), float32 (the library scores in float32; the bf16
   column wraps the same call in ``torch.autocast`` to show what it would gain);
3. sharing: ``--share`` processes (spawned, like ``tidal run --jobs N``) each training the
   plain float32 model at once on the one device; total images per second over all of them.

Wall times are taken after ``torch.cuda.synchronize()`` on CUDA.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import write_table  # noqa: E402

from tidal.config import StrategyConfig, TrainConfig  # noqa: E402
from tidal.data import load_dataset  # noqa: E402
from tidal.gather import ScoringPass, select  # noqa: E402
from tidal.loop import initial_labeled  # noqa: E402
from tidal.models import ResNet18  # noqa: E402
from tidal.runs import resolve_device, set_deterministic  # noqa: E402
from tidal.strategies import create_strategy  # noqa: E402
from tidal.strategies.base import TrainContext  # noqa: E402
from tidal.train import train_model  # noqa: E402

SYSTEM_DATA = "/usr/share/datasets/fashion-mnist"


def data_dir() -> str:
    for d in (os.environ.get("TIDAL_DATA"), SYSTEM_DATA):
        if d and Path(d, "train-images-idx3-ubyte.gz").is_file():
            return d
    raise SystemExit(f"FashionMNIST not found: set TIDAL_DATA to a folder with the four .gz files (or install "
                     f"them in {SYSTEM_DATA})")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(method: str, train, labeled: torch.Tensor, candidates: torch.Tensor, config: TrainConfig,
          device: torch.device):
    """A fresh width-``config.width`` ResNet-18 and the method's objective (None for plain training)."""
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, config.width, train.image_shape[0]).to(device)
    strategy = create_strategy(method, StrategyConfig())
    ctx = TrainContext(train, labeled.to(device), candidates.to(device), train.num_classes, model.feature_channels,
                       model.embedding_dim, config.epochs, device, config.eval_batch_size, True)
    objective = strategy.make_objective(ctx)
    if objective is not None:
        objective.to(device)
    return strategy, model, objective


def time_training(method: str, train, labeled, candidates, config: TrainConfig, device: torch.device) -> float:
    """Images per second of ``config.epochs`` epochs, after a one-epoch warm-up (kernels, autotuning)."""
    one_epoch = dataclasses.replace(config, epochs=1)
    _, model, objective = build(method, train, labeled, candidates, config, device)
    train_model(model, objective, train, labeled, one_epoch, torch.Generator().manual_seed(1))
    _, model, objective = build(method, train, labeled, candidates, config, device)
    sync(device)
    t0 = time.perf_counter()
    train_model(model, objective, train, labeled, config, torch.Generator().manual_seed(0))
    sync(device)
    return len(labeled) * config.epochs / (time.perf_counter() - t0)


def time_scoring(method: str, train, labeled, candidates, config: TrainConfig, device: torch.device,
                 bf16: bool, repeats: int = 3) -> float:
    """Candidates per second of one selection pass (gather + score + top-k), best of ``repeats``."""
    one_epoch = dataclasses.replace(config, epochs=1)
    strategy, model, objective = build(method, train, labeled, candidates, one_epoch, device)
    train_model(model, objective, train, labeled, one_epoch, torch.Generator().manual_seed(0))
    cand, lab = candidates.to(device), labeled.to(device)
    budget = min(1000, len(candidates) // 2)
    times = []
    for _ in range(repeats + 1):  # the first pass warms up
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            select(strategy, ScoringPass(model, objective, train, cand, lab, budget, torch.Generator().manual_seed(0),
                                         config.eval_batch_size))
        sync(device)
        times.append(time.perf_counter() - t0)
    return len(candidates) / min(times[1:])


def _share_worker(args: tuple) -> tuple[float, float]:
    """One of the processes sharing the device: (start, end) wall clock of its training."""
    device_name, directory, n_labeled, config, threads, barrier = args
    torch.set_num_threads(threads)
    device = resolve_device(device_name)
    set_deterministic(device)
    train = load_dataset("fashion-mnist", directory, download=False).train.to(device)
    labeled = initial_labeled(torch.arange(len(train)), n_labeled, seed=0)
    candidates = labeled[:2]
    time_training("random", train, labeled, candidates, dataclasses.replace(config, epochs=1), device)  # warm-up
    _, model, _ = build("random", train, labeled, candidates, config, device)
    barrier.wait()
    sync(device)
    t0 = time.time()
    train_model(model, None, train, labeled, config, torch.Generator().manual_seed(0))
    sync(device)
    return t0, time.time()


def time_sharing(k: int, device: torch.device, directory: str, n_labeled: int, config: TrainConfig,
                 threads: int) -> float:
    """Total images per second of ``k`` processes training at once on ``device``."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(k)
        pool = ctx.Pool(k)
        try:
            spans = pool.map(_share_worker, [(str(device), directory, n_labeled, config, threads, barrier)] * k)
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.close()  # workers exit on their own (a terminate() on success would leak their semaphores)
            pool.join()
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    return k * n_labeled * config.epochs / wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    p.add_argument("--small", action="store_true",
                   help="a quick run: width 8, 256 labeled images, 1 epoch, 512 candidates, sharing 1 and 2")
    p.add_argument("--width", type=int, default=64, help="ResNet-18 base width (paper: 64)")
    p.add_argument("--labeled", type=int, default=10_000, help="training images per epoch")
    p.add_argument("--epochs", type=int, default=3, help="timed training epochs")
    p.add_argument("--candidates", type=int, default=10_000, help="scored candidates (paper: subset of 10^4)")
    p.add_argument("--share", type=int, nargs="*", default=[1, 2, 4], help="processes sharing the device")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu"))
    args = p.parse_args()
    if args.small:
        args.width, args.labeled, args.epochs, args.candidates, args.share = 8, 256, 1, 512, [1, 2]

    device = resolve_device(args.device)
    set_deterministic(device)
    directory = data_dir()
    train = load_dataset("fashion-mnist", directory, download=False).train.to(device)
    everything = torch.arange(len(train))
    labeled = initial_labeled(everything, args.labeled, seed=0)
    rest = everything[~torch.isin(everything, labeled)]
    candidates = rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(0))[: args.candidates]]
    config = TrainConfig(epochs=args.epochs, width=args.width)
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, torch {torch.__version__}"
    else:
        where = f"{platform.machine()} CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"
    tag = device.type + ("-small" if args.small else "")
    out = Path(args.out)
    command = "python benchmarks/gpu_throughput.py " + " ".join(sys.argv[1:])

    rows = []
    for method, what in (("random", "plain (random, entropy, margin)"), ("tidal-entropy", "TiDAL (Eq. 9 objective)")):
        fp32 = time_training(method, train, labeled, candidates, config, device)
        bf16 = time_training(method, train, labeled, candidates, dataclasses.replace(config, amp="bf16"), device)
        rows.append([what, f"{fp32:,.0f}", f"{bf16:,.0f}", f"{bf16 / fp32:.2f}x"])
    rows.append(["TiDAL / plain", f"{_ratio(rows, 1):.2f}", f"{_ratio(rows, 2):.2f}", ""])
    write_table(f"Training throughput (images/s), ResNet-18 width {args.width}, batch {config.batch_size}, "
                f"{args.labeled} FashionMNIST images x {args.epochs} epochs; {where}. `{command}`",
                ["training", "float32", "bf16 autocast", "bf16 / float32"], rows, out / f"train-{tag}.md")

    rows = []
    for method in ("entropy", "tidal-entropy"):
        fp32 = time_scoring(method, train, labeled, candidates, config, device, bf16=False)
        bf16 = time_scoring(method, train, labeled, candidates, config, device, bf16=True)
        rows.append([method, f"{fp32:,.0f}", f"{bf16:,.0f}", f"{bf16 / fp32:.2f}x"])
    rows.append(["tidal-entropy / entropy", f"{_ratio(rows, 1):.2f}", f"{_ratio(rows, 2):.2f}", ""])
    budget = min(1000, len(candidates) // 2)
    write_table(f"Scoring throughput (candidates/s): one selection pass (gather, score, top-{budget}) over "
                f"{len(candidates)} candidates, batch {config.eval_batch_size}, width {args.width}; {where}. The "
                f"library scores in float32; the bf16 column wraps the same call in torch.autocast. `{command}`",
                ["method", "float32", "bf16 autocast", "bf16 / float32"], rows, out / f"score-{tag}.md")

    threads = 1 if device.type == "cpu" else max(1, torch.get_num_threads() // max(args.share or [1]))
    rows, single = [], None
    for k in args.share:
        total = time_sharing(k, device, directory, args.labeled, config, threads)
        single = single or total
        rows.append([str(k), f"{total:,.0f}", f"{total / k:,.0f}", f"{total / single:.2f}x"])
    if rows:
        write_table(f"Runs sharing one device: k spawned processes (as `tidal run --jobs k`), each training ResNet-18 "
                    f"width {args.width} float32 on {args.labeled} images x {args.epochs} epochs at once, "
                    f"{threads} torch thread(s) each; {where}. `{command}`",
                    ["processes", "total images/s", "per process", "total vs 1"], rows, out / f"share-{tag}.md")


def _ratio(rows: list[list[str]], column: int) -> float:
    return float(rows[1][column].replace(",", "")) / float(rows[0][column].replace(",", ""))


if __name__ == "__main__":
    main()
