"""Uncertainty scores as plain functions of probability tensors.

Every function takes probabilities ``[n, C]`` (rows sum to 1) and returns ``[n]``. Each is
the *value* of the paper's estimator; the strategies turn them into "higher = more
informative" scores.
"""

from __future__ import annotations

import torch

__all__ = ["entropy", "margin", "least_confidence"]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """``H(p) = -sum_c p(c) log p(c)`` (Eq. 2; Eq. 10 with the predicted TD ``p̃``), 0 log 0 = 0."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1)


def margin(probs: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
    """``M(p) = p(ŷ) - max_{c != ŷ} p(c)`` (Eqs. 3 and 11).

    ``reference``: the class ``ŷ`` per row, int64 ``[n]``; when None, ``ŷ = argmax p``,
    which gives the usual top-1 minus top-2 margin. With an external ``ŷ`` (TiDAL's Eq. 11
    takes ``ŷ`` from the classifier and ``p`` from the TD module) the margin can be negative.
    Smaller margin = more uncertain.
    """
    if reference is None:
        top2 = probs.topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]
    p_ref = probs.gather(1, reference.view(-1, 1)).squeeze(1)
    others = probs.scatter(1, reference.view(-1, 1), float("-inf"))
    return p_ref - others.max(dim=1).values


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """``1 - max_c p(c)``."""
    return 1.0 - probs.max(dim=1).values
