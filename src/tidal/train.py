"""One training run: SGD over the labeled set, with a strategy's auxiliary objective.

The step is the same for every method: ``loss = mean CE + objective.loss(batch)``
(Eq. 9 for TiDAL). The objective's parameters are optimised with the backbone's.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from tidal.comm import LOCAL, Comm
from tidal.config import TrainConfig
from tidal.data.dataset import Augment, Split
from tidal.errors import TrainingDivergedError
from tidal.kernels import ConvGuard
from tidal.strategies.base import AuxObjective, StepBatch

__all__ = ["EpochHook", "TrainStats", "autocast", "train_model", "epoch_batches"]

# Called after every epoch (after ``objective.end_epoch``) with the 0-based epoch, the backbone
# and the objective, e.g. to run inference for an analysis (tidal.analysis.TDTracker). A hook
# must leave the model's mode and the random generators as it found them, so that it changes
# no number of the run.
EpochHook = Callable[[int, nn.Module, AuxObjective | None], None]


@dataclass
class TrainStats:
    seconds: float  # wall time of the run, without the time spent in the epoch hook
    final_loss: float  # mean total loss of the last epoch
    images_per_second: float  # training throughput
    hook_seconds: float = 0.0  # wall time spent in the epoch hook (not part of ``seconds``)


def epoch_batches(indices: torch.Tensor, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffle ``indices`` and split into batches; a trailing batch of one joins the previous one
    (batch norm cannot train on a single sample)."""
    perm = indices[torch.randperm(len(indices), generator=generator)]
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def autocast(config: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """The mixed-precision context of a training step: ``torch.autocast`` to bfloat16 on
    ``device``'s type when ``config.amp == "bf16"``; with ``"off"`` a no-op context, so the
    float32 step is exactly what it was before the option existed."""
    if config.amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_model(
    model: nn.Module,
    objective: AuxObjective | None,
    dataset: Split,
    labeled: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    progress: bool = False,
    desc: str = "train",
    epoch_hook: EpochHook | None = None,
    comm: Comm = LOCAL,
) -> TrainStats:
    """Train ``model`` (and ``objective``) in place on ``dataset[labeled]``.

    Args:
        dataset: training split on the training device (any :class:`tidal.data.Split`: in
            memory or decoded from disk; the step does not know which).
        labeled: absolute indices of the labeled set, int64 ``[m]``, ``m >= 2``.
        generator: CPU generator for shuffling and augmentation.
        epoch_hook: called as ``epoch_hook(epoch, model, objective)`` after each epoch (after
            ``objective.end_epoch``); its wall time is reported apart, in ``hook_seconds``.
        comm: where it runs (:mod:`tidal.comm`). Under torchrun (:mod:`tidal.distributed`) each
            rank trains on its piece of every batch, gradients are averaged, the objective's
            per-sample records and batch norm's statistics are shared after every epoch, and the
            model and objective leave identical on every rank.
    Raises:
        TrainingDivergedError: the loss became NaN/inf (checked once per epoch), or the weights
            did after the last step.
    """
    if len(labeled) < 2:
        raise ValueError(f"the labeled set has {len(labeled)} sample(s); training needs at least 2")
    params = list(model.parameters()) + (list(objective.parameters()) if objective is not None else [])
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    decay_epoch = int(round(config.lr_decay_at * config.epochs))
    model.train()
    if objective is not None:
        objective.train()
    device = dataset.device
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # 4-D weights NHWC; the batches below follow
    aug = Augment(config.crop_padding, config.flip)
    start, last_loss, hook_seconds = time.perf_counter(), float("nan"), 0.0
    bar = tqdm(range(config.epochs), desc=desc, leave=False, disable=not progress, unit="epoch")
    records = objective.records() if objective is not None else []
    comm.broadcast([model, objective])
    # strided 1x1 convolutions run as unit-stride ones: oneDNN's own path corrupts memory (tidal.kernels)
    guard = ConvGuard(device, model, objective if isinstance(objective, nn.Module) else None)
    try:
        for epoch in bar:
            lr = config.lr * (config.lr_decay if epoch >= decay_epoch else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            total = torch.zeros((), device=device)
            batches = epoch_batches(labeled, config.batch_size, generator)
            before = comm.snapshot(records)  # the same batches and augmentation on every rank; each trains its piece
            steps = comm.shard(dataset.batches(batches, aug, generator))
            n_steps = 0
            for idx_dev, x, share in steps:
                y = dataset.labels[idx_dev]
                if config.channels_last and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                with guard.step():
                    with autocast(config, device):  # bf16: the forward passes and losses; backward follows autocast's dtypes
                        out = model(x)
                        ce = F.cross_entropy(out.logits, y, reduction="none")
                        loss = ce.mean()
                        if objective is not None:
                            loss = loss + objective.loss(StepBatch(x=x, y=y, indices=idx_dev, epoch=epoch, out=out, ce=ce))
                    if share != 1.0:  # this rank's piece is not 1/N of the batch: weight its mean loss
                        loss = loss * share
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                comm.reduce_grads(params)
                optimizer.step()
                total += loss.detach()
                n_steps += 1
            total = comm.mean(total)  # the batches' mean losses, as one process adds them up
            comm.sync_records(records, before)
            comm.sync_buffers([model, objective])
            last_loss = float(total) / n_steps  # one sync per epoch
            if not math.isfinite(last_loss):
                raise TrainingDivergedError(
                    f"training loss became {last_loss} at epoch {epoch + 1}/{config.epochs}; "
                    f"lower the learning rate (lr={config.lr})"
                )
            if objective is not None:
                objective.end_epoch(epoch, model)
            if epoch_hook is not None:
                t0 = time.perf_counter()
                epoch_hook(epoch, model, objective)
                hook_seconds += time.perf_counter() - t0
            bar.set_postfix(loss=f"{last_loss:.3f}")
    finally:
        guard.close()
    comm.broadcast([model, objective])
    seen = len(labeled) * config.epochs  # every sample once an epoch (every rank's pieces together)
    # The loss is taken before each step, so the last step can leave NaN/inf weights behind a
    # finite loss (e.g. lr=1e38): check them once before anyone evaluates the model.
    if params and not bool(torch.stack([p.detach().isfinite().all() for p in params]).all()):
        raise TrainingDivergedError(f"training weights became NaN or infinite in epoch {config.epochs}; lower the "
                                    f"learning rate (lr={config.lr})")
    seconds = time.perf_counter() - start - hook_seconds
    return TrainStats(seconds=seconds, final_loss=last_loss, images_per_second=seen / max(seconds, 1e-9),
                      hook_seconds=hook_seconds)
