"""Non-finite numbers in a cycle: find them, say what caused them, store nothing.

A cycle whose test logits or selection scores hold NaN or ±inf would otherwise be stored as if
it were a result (an argmax of NaN logits is class 0: "accuracy 10%"). The loop checks them
(:func:`tidal.inference.evaluate`, :func:`tidal.gather.select`) and, when they fail, asks
:func:`diagnose` which of the usual causes it is, so that the message names it:

1. the data: inputs that are NaN/inf, or so large (``|x| >= HUGE_INPUT``) that a layer overflows;
2. the starting weights (a checkpoint, ``--weights``): NaN/inf parameters or buffers, or
   batch-norm variances below zero (:func:`check_weights`, run before training);
3. training: NaN/inf parameters or buffers (batch-norm statistics) after training, or weights
   grown past ``HUGE_WEIGHT``: the learning rate is too high;
4. otherwise the model itself (a user model whose eval-mode forward gives NaN/inf).

Everything here only reads tensors; no number of a healthy run changes.
"""

from __future__ import annotations

import torch
from torch import nn

from tidal.data.dataset import Split
from tidal.errors import NonFiniteError

__all__ = ["HUGE_INPUT", "HUGE_WEIGHT", "check_weights", "diagnose", "input_problem", "weight_problem"]

HUGE_INPUT = 1e6  # |x| above this in a normalised input overflows float32 layers soon; real data stay far below
HUGE_WEIGHT = 1e6  # |w| above this after training: the optimiser ran away (trained weights are O(1))


def _names(bad: list[str]) -> str:
    shown = ", ".join(repr(n) for n in bad[:3])
    return shown + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")


def weight_problem(model: nn.Module) -> str | None:
    """What is wrong with ``model``'s parameters and buffers, in words, or None: NaN/inf values,
    or negative batch-norm variances (``running_var``), naming the first tensors."""
    state = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    bad = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if bad:
        return f"NaN or infinite values in {_names(bad)}"
    negative = [k for k, v in state.items() if k.endswith("running_var") and bool((v < 0).any())]
    if negative:
        return f"negative batch-norm variances in {_names(negative)}"
    return None


def _largest_weight(model: nn.Module) -> tuple[float, str]:
    best, name = 0.0, ""
    for k, v in model.state_dict().items():
        if v.is_floating_point() and v.numel():
            m = float(v.detach().abs().max())
            if m > best:
                best, name = m, k
    return best, name


def check_weights(model: nn.Module, source: str) -> None:
    """Raise :class:`NonFiniteError` when ``model``'s weights before training are unusable
    (:func:`weight_problem`); ``source`` says where they came from (e.g. ``--weights FILE``)."""
    problem = weight_problem(model)
    if problem is not None:
        fix = ("the checkpoint is corrupt or not for this model: use another weights file" if "--weights" in source
               else "fix how the model initialises (or loads) its weights")
        raise NonFiniteError(f"the model's weights before training ({source}) hold {problem}; {fix}")


def input_problem(split: Split, indices: torch.Tensor, batch_size: int, what: str) -> str | None:
    """Whether the inputs of ``split[indices]`` (as the model sees them, normalised) are NaN/inf
    or huge, in words naming the first such sample, or None."""
    largest, at = 0.0, -1
    for ids, x in split.batches(indices.split(batch_size)):
        x = x.float()
        finite = torch.isfinite(x.flatten(1)).all(dim=1)
        if not bool(finite.all()):
            i = int(ids[~finite][0])
            return (f"the {what} inputs hold NaN or infinite values (first: sample {i}); clean the data (replace or "
                    "drop those samples)")
        m, pos = x.flatten(1).abs().max(dim=1)[0].max(dim=0)
        if float(m) > largest:
            largest, at = float(m), int(ids[int(pos)])
    if largest >= HUGE_INPUT:
        return (f"the {what} inputs reach |x| = {largest:.3g} (sample {at}), too large for float32 layers; scale or "
                "standardise the data")
    return None


def diagnose(model: nn.Module, inputs: list[tuple[Split, torch.Tensor, str]], batch_size: int, lr: float) -> str:
    """Why ``model`` gives non-finite outputs, after a training run that started from weights
    :func:`check_weights` passed. ``inputs``: ``(split, indices, what)`` of the samples it failed
    on (``what``: "test", "candidate") and of the labeled set it trained on ("training"). The
    data come first (inputs NaN/inf or huge), then the trained weights (the learning rate
    ``lr``), then the model's own forward."""
    for split, indices, what in inputs:
        data = input_problem(split, indices, batch_size, what)
        if data is not None:
            return data
    problem = weight_problem(model)
    if problem is not None:
        return f"training left {problem}; lower the learning rate (lr={lr:g})"
    largest, name = _largest_weight(model)
    if largest >= HUGE_WEIGHT:
        return (f"training grew the weights to |w| = {largest:.3g} (in {name!r}), so the outputs overflow; lower the "
                f"learning rate (lr={lr:g})")
    return (f"the model's eval-mode forward gives them although its inputs and weights are finite; check the model "
            f"(e.g. a division or log in its forward) or lower the learning rate (lr={lr:g})")
