"""Uncertainty scores as plain functions of probability tensors.

Every function takes probabilities ``[n, C]`` (rows sum to 1), or ``[T, n, C]`` for the
Monte-Carlo estimator ``mutual_information``, and returns ``[n]``. Each is the *value* of
the estimator; the strategies turn them into "higher = more informative" scores.
"""

from __future__ import annotations

import torch

__all__ = ["entropy", "margin", "least_confidence", "mutual_information"]


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


def mutual_information(mc_probs: torch.Tensor) -> torch.Tensor:
    """BALD's score: the mutual information between the label and the weights, ``[n]``.

    ``mc_probs``: ``[T, n, C]``, the softmax of ``T`` stochastic forward passes (MC dropout,
    each pass a sample ``w_t ~ q(w)``). The Monte-Carlo estimate of BALD (Houlsby et al.
    2011) with dropout samples, as in Gal, Islam & Ghahramani (2017, §3)::

        I[y; w | x] = H[ mean_t p_t(y|x) ] - mean_t H[ p_t(y|x) ]

    the entropy of the averaged prediction minus the average entropy of the passes. It is 0
    when every pass predicts the same distribution and at most ``log C``, reached when the
    passes are confident (one-hot) and spread evenly over all ``C`` classes. ``0 log 0 = 0``;
    tiny negative values from rounding are clamped to 0 (the true value is >= 0 by Jensen).
    """
    log = torch.log(mc_probs.clamp_min(1e-12))
    mean = mc_probs.mean(dim=0)
    total = -(mean * torch.log(mean.clamp_min(1e-12))).sum(dim=1)  # H[mean_t p_t], [n]
    expected = -(mc_probs * log).sum(dim=2).mean(dim=0)  # mean_t H[p_t], [n]
    return (total - expected).clamp_min(0.0)
