"""Batch-mode diversity baselines: Core-Set (k-center greedy) and BADGE (k-means++ on gradients).

Both choose the whole batch jointly, so their ``score`` is not a per-sample informativeness
but an encoding of the batch they pick, such that the loop's top-k *is* that batch:

    the point picked at step ``r`` (0-based) scores ``k - r`` (so ``k, k-1, ..., 1``, best
    first, in pick order); every point not picked scores ``0``.

The scores are finite (they are stored in the results) and ``select_top_k``'s stable
descending sort returns exactly the picked points, in pick order.

The math lives in plain functions: :func:`kcenter_greedy` (Sener & Savarese 2018, Alg. 1)
and :func:`kmeans_pp_seeding` over BADGE's gradient embedding (Ash et al. 2020, Alg. 1),
whose distances are computed from the factors of the outer product without materialising
the ``[n, C*D]`` embedding.
"""

from __future__ import annotations

import torch

from tidal.strategies.base import ScoreInputs, Strategy, register

__all__ = [
    "BADGEStrategy",
    "CoreSetStrategy",
    "gradient_embedding_factors",
    "kcenter_greedy",
    "kmeans_pp_seeding",
    "outer_product_sq_dists",
    "pick_order_scores",
]

_BLOCK = 1 << 22  # entries of one candidates-x-centers distance block (16 MiB in float32)


def pick_order_scores(picked: torch.Tensor, n: int) -> torch.Tensor:
    """Scores ``[n]`` whose top-k is ``picked`` in order: ``k - r`` at ``picked[r]``, 0 elsewhere."""
    scores = torch.zeros(n)
    scores[picked.cpu()] = torch.arange(len(picked), 0, -1, dtype=scores.dtype)
    return scores


def _sq_dists(x: torch.Tensor, x_sq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances ``[n, r]`` between rows of ``x [n, D]`` (norms ``x_sq [n]``)
    and ``c [r, D]``, as ``|x|^2 + |c|^2 - 2 x.c`` (one matmul), clamped at 0 against rounding."""
    return (x_sq[:, None] + (c * c).sum(dim=1)[None, :] - 2.0 * (x @ c.T)).clamp_min(0.0)


def kcenter_greedy(candidates: torch.Tensor, centers: torch.Tensor, k: int, block: int = _BLOCK) -> torch.Tensor:
    """Greedy k-center (Sener & Savarese 2018, Algorithm 1): positions into ``candidates``, ``[k]``.

    ``candidates [n, D]``: embeddings of the unlabeled candidates; ``centers [m, D]``: the
    labeled set's embeddings, the initial centers. Each step adds the candidate farthest from
    its nearest center, ``argmax_i min_j ||x_i - c_j||`` (Euclidean), and makes it a center.
    Returns int64 positions in pick order; ties go to the lowest position.

    Cost: the initial nearest-center distances are computed in blocks of at most ``block``
    candidate-center pairs (memory ``O(n + block)``); then a running minimum ``[n]`` is
    updated against each new center, ``O(n D)`` per step.

    ``m = 0`` (no labeled set): the first pick is the candidate farthest from the mean of the
    candidates (a deterministic, order-free start; any start keeps the greedy's factor-2
    guarantee), after which the mean is discarded and the greedy proceeds from that center.
    """
    n = candidates.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and the number of candidates n={n}")
    picked = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return picked
    x_sq = (candidates * candidates).sum(dim=1)
    if len(centers) > 0:
        min_d = torch.full((n,), float("inf"), dtype=candidates.dtype, device=candidates.device)
        for chunk in centers.split(max(1, block // n)):
            min_d = torch.minimum(min_d, _sq_dists(candidates, x_sq, chunk).min(dim=1).values)
    else:
        min_d = _sq_dists(candidates, x_sq, candidates.mean(dim=0, keepdim=True)).squeeze(1)
    for step in range(k):
        i = int(torch.argmax(min_d))  # first maximal position
        picked[step] = i
        d_new = _sq_dists(candidates, x_sq, candidates[i : i + 1]).squeeze(1)
        min_d = d_new if step == 0 and len(centers) == 0 else torch.minimum(min_d, d_new)
        min_d[i] = -1.0  # a center is never picked again, whatever the rounding (minimum keeps it)
    return picked


def gradient_embedding_factors(probs: torch.Tensor, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BADGE's gradient embedding in factored form (Ash et al. 2020, Alg. 1).

    The gradient of the cross-entropy at the model's own prediction ``ŷ = argmax p`` with
    respect to the last linear layer's weights is ``g(x) = (p - onehot(ŷ)) ⊗ z``, with ``z``
    the penultimate embedding: flattened class-major, ``g[c * D + d] = (p_c - [c = ŷ]) z_d``.
    Returns the two factors ``(p - onehot(ŷ)) [n, C]`` and ``z [n, D]``; ``g`` itself,
    ``[n, C*D]``, is never built.
    """
    scale = probs.clone()
    scale[torch.arange(len(probs)), probs.argmax(dim=1)] -= 1.0
    return scale, embedding


def outer_product_sq_dists(
    a: torch.Tensor, b: torch.Tensor, a_c: torch.Tensor, b_c: torch.Tensor, self_sq: torch.Tensor | None = None
) -> torch.Tensor:
    """``||a_i ⊗ b_i - a_c ⊗ b_c||^2`` for every row ``i``: ``a [n, C]``, ``b [n, D]``, one center
    ``a_c [C]``, ``b_c [D]`` -> ``[n]``, in ``O(n (C + D))`` memory and time.

    Uses ``||u ⊗ v||^2 = ||u||^2 ||v||^2`` and ``<u ⊗ v, s ⊗ t> = <u, s><v, t>``; clamped at 0.
    ``self_sq [n]``: the rows' ``||a_i||^2 ||b_i||^2`` when already known (saves two passes).
    """
    if self_sq is None:
        self_sq = (a * a).sum(dim=1) * (b * b).sum(dim=1)
    center_sq = (a_c * a_c).sum() * (b_c * b_c).sum()
    return (self_sq + center_sq - 2.0 * (a @ a_c) * (b @ b_c)).clamp_min(0.0)


def kmeans_pp_seeding(a: torch.Tensor, b: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) of the points ``g_i = a_i ⊗ b_i``: positions ``[k]``.

    ``a [n, C]``, ``b [n, D]``: the factors of each point (BADGE: :func:`gradient_embedding_factors`;
    plain points ``x [n, D]``: ``a = ones(n, 1)``, ``b = x``). As in BADGE (Ash et al. 2020,
    Alg. 1 and the authors' code) the first point is the one with the largest norm ``||g_i||``
    (ties: lowest position); each later point is drawn with probability proportional to
    ``D(g_i)^2``, its squared distance to the nearest point already chosen (D² sampling), from
    the points not yet chosen, using ``generator`` (a CPU generator). If every remaining point
    lies on a chosen one (all ``D^2 = 0``) the draw is uniform over the remaining points.
    Returns int64 positions in pick order, all distinct. Computed in float64.
    """
    n = a.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and the number of points n={n}")
    picked = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return picked
    a, b = a.double(), b.double()
    self_sq = (a * a).sum(dim=1) * (b * b).sum(dim=1)  # ||g_i||^2, [n]
    taken = torch.zeros(n, dtype=torch.bool, device=a.device)
    min_d = torch.full((n,), float("inf"), dtype=torch.float64, device=a.device)
    for step in range(k):
        if step == 0:
            i = int(torch.argmax(self_sq))
        else:
            weights = min_d.masked_fill(taken, 0.0)
            if not weights.sum() > 0:
                weights = (~taken).double()
            i = int(torch.multinomial(weights.cpu(), 1, generator=generator))
        picked[step] = i
        taken[i] = True
        min_d = torch.minimum(min_d, outer_product_sq_dists(a, b, a[i], b[i], self_sq))
    return picked


@register
class CoreSetStrategy(Strategy):
    """Core-Set: greedy k-center cover of the penultimate embeddings, labeled set as initial centers."""

    name = "coreset"
    description = "Core-Set: greedy k-center over penultimate embeddings (Sener & Savarese 2018)"
    needs = frozenset({"embedding", "labeled_embedding"})

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Pick-order scores (module docstring) of ``kcenter_greedy(embedding, labeled_embedding, k)``."""
        emb = inputs.embedding
        centers = inputs.labeled_embedding if inputs.labeled_embedding is not None else emb.new_zeros(0, emb.shape[1])
        return pick_order_scores(kcenter_greedy(emb, centers, inputs.k), len(emb))


@register
class BADGEStrategy(Strategy):
    """BADGE: k-means++ seeding over hallucinated-label gradient embeddings."""

    name = "badge"
    description = "BADGE: k-means++ seeding on gradient embeddings (p - onehot(ŷ)) ⊗ z (Ash et al. 2020)"
    needs = frozenset({"probs", "embedding"})

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Pick-order scores (module docstring) of k-means++ seeding with ``inputs.generator``."""
        a, b = gradient_embedding_factors(inputs.probs, inputs.embedding)
        return pick_order_scores(kmeans_pp_seeding(a, b, inputs.k, inputs.generator), len(a))
