"""Batched inference over any split (evaluation, scoring passes, hooks).

Imports nothing from ``tidal.strategies``, so strategy modules may import it at top level.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from tidal.data.dataset import Split
from tidal.errors import NonFiniteError
from tidal.models.resnet import ModelOutput

__all__ = ["batched_outputs", "evaluate", "non_finite_rows"]


@torch.no_grad()
def batched_outputs(
    model: nn.Module, dataset: Split, indices: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, ModelOutput]]:
    """Yield ``(batch indices [b], ModelOutput)`` over ``indices`` in order, model in eval mode.

    ``dataset`` must already be on the model's device.
    """
    was_training = model.training
    model.eval()
    try:
        for chunk, x in dataset.batches(indices.split(batch_size)):
            yield chunk, model(x)
    finally:
        model.train(was_training)


def non_finite_rows(logits: torch.Tensor) -> int:
    """How many rows of ``logits [b, C]`` hold a NaN or an infinity."""
    return int((~torch.isfinite(logits).all(dim=1)).sum())


def evaluate(model: nn.Module, dataset: Split, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on all of ``dataset``, in [0, 1].

    Raises :class:`~tidal.errors.NonFiniteError` when any logit is NaN or infinite (their argmax
    would count as class 0, an accuracy that means nothing); :func:`tidal.finite.diagnose` says why.
    """
    correct = bad = 0
    for chunk, out in batched_outputs(model, dataset, torch.arange(len(dataset)), batch_size):
        bad += non_finite_rows(out.logits)
        correct += int((out.logits.argmax(dim=1) == dataset.labels[chunk]).sum())
    if bad:
        raise NonFiniteError(f"{bad} of {len(dataset)} test samples have NaN or infinite logits")
    return correct / max(len(dataset), 1)
