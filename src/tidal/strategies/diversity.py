"""Batch-mode diversity baselines: Core-Set (k-center greedy) and BADGE (k-means++ on gradients).

Both choose the whole batch jointly, so their ``score`` is not a per-sample informativeness
but an encoding of the batch they pick, such that the loop's top-k *is* that batch:

    the point picked at step ``r`` (0-based) scores ``k - r`` (so ``k, k-1, ..., 1``, best
    first, in pick order); every point not picked scores ``0``.

The scores are finite (they are stored in the results) and ``select_top_k``'s stable
descending sort returns exactly the picked points, in pick order.

The math lives in plain functions: :func:`kcenter_greedy` (Sener & Savarese 2018, Alg. 1)
and :func:`badge_seeding`, k-means++ over BADGE's gradient embedding (Ash et al. 2020, Alg. 1),
whose distances are computed from the factors of the outer product without materialising
the ``[n, C*D]`` embedding. Both are ``blockwise``: they read the candidates' stored arrays
(:mod:`tidal.embedstore`, in memory or on disk) in row blocks and hold ``O(n)`` scalars
besides one block, with results equal to the whole-array computation's bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tidal.embedstore import StoredRows, as_rows, row_spans
from tidal.strategies.base import ScoreInputs, Strategy, register

__all__ = [
    "BADGEStrategy",
    "CoreSetStrategy",
    "badge_seeding",
    "factored_kmeans_pp",
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


def kcenter_greedy(candidates: "torch.Tensor | StoredRows", centers: "torch.Tensor | StoredRows", k: int,
                   block: int = _BLOCK) -> torch.Tensor:
    """Greedy k-center (Sener & Savarese 2018, Algorithm 1): positions into ``candidates``, ``[k]``.

    ``candidates [n, D]``: embeddings of the unlabeled candidates; ``centers [m, D]``: the
    labeled set's embeddings, the initial centers (tensors or :class:`~tidal.embedstore.StoredRows`).
    Each step adds the candidate farthest from its nearest center, ``argmax_i min_j ||x_i - c_j||``
    (Euclidean), and makes it a center. Returns int64 positions in pick order; ties go to the
    lowest position.

    Blockwise: the candidates are read in row blocks (``StoredRows.spans``), so apart from the
    blocks only one running minimum distance and one norm per candidate (``[n]`` each) are held.
    The initial nearest-center distances take the centers ``max(1, block // n)`` at a time
    (memory ``O(n + block)``); then each step updates the running minimum against the new
    center, ``O(n D)``. The result equals the whole-array computation's bit for bit (aligned
    blocks: see :mod:`tidal.embedstore`).

    ``m = 0`` (no labeled set): the first pick is the candidate farthest from the mean of the
    candidates (a deterministic, order-free start; any start keeps the greedy's factor-2
    guarantee), after which the mean is discarded and the greedy proceeds from that center.
    """
    x, c = as_rows(candidates), as_rows(centers)
    n = len(x)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and the number of candidates n={n}")
    picked = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return picked
    spans = x.spans()
    x_sq = torch.cat([(b * b).sum(dim=1) for _, _, b in x.blocks()])  # [n]
    if len(c) > 0:
        min_d = torch.full((n,), float("inf"), dtype=x_sq.dtype)
        per = max(1, block // n)
        for s, e, b in x.blocks():
            for cs in range(0, len(c), per):
                chunk = c.rows(cs, min(cs + per, len(c)))
                min_d[s:e] = torch.minimum(min_d[s:e], _sq_dists(b, x_sq[s:e], chunk).min(dim=1).values)
    else:
        mean = x.column_mean()[None, :]
        min_d = torch.cat([_sq_dists(b, x_sq[s:e], mean).squeeze(1) for s, e, b in x.blocks()])
    for step in range(k):
        i = int(torch.argmax(min_d))  # first maximal position
        picked[step] = i
        center = x.rows(i, i + 1)
        for s, e in spans:
            d_new = _sq_dists(x.rows(s, e), x_sq[s:e], center).squeeze(1)
            min_d[s:e] = d_new if step == 0 and len(c) == 0 else torch.minimum(min_d[s:e], d_new)
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


Factors = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def kmeans_pp_seeding(a: "torch.Tensor | StoredRows", b: "torch.Tensor | StoredRows", k: int,
                      generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) of the points ``g_i = a_i ⊗ b_i``: positions ``[k]``.

    ``a [n, C]``, ``b [n, D]``: the factors of each point (plain points ``x [n, D]``:
    ``a = ones(n, 1)``, ``b = x``); BADGE uses :func:`badge_seeding`. See :func:`factored_kmeans_pp`.
    """
    ra, rb = as_rows(a), as_rows(b)
    if len(ra) != len(rb):
        raise ValueError(f"the factors have {len(ra)} and {len(rb)} rows; give one row of each per point")
    return factored_kmeans_pp(len(ra), lambda s, e: (ra.rows(s, e).double(), rb.rows(s, e).double()),
                              row_spans(len(ra), min(ra.block_rows, rb.block_rows)), k, generator)


def badge_seeding(probs: "torch.Tensor | StoredRows", embedding: "torch.Tensor | StoredRows", k: int,
                  generator: torch.Generator) -> torch.Tensor:
    """BADGE's selection: :func:`factored_kmeans_pp` over ``(p - onehot(ŷ)) ⊗ z``
    (:func:`gradient_embedding_factors`), the factors computed block by block from the stored
    ``probs [n, C]`` and ``embedding [n, D]``, so neither ``[n, C*D]`` nor a float64 ``[n, C]`` is built."""
    p, z = as_rows(probs), as_rows(embedding)
    if len(p) != len(z):
        raise ValueError(f"probs has {len(p)} rows but embedding {len(z)}; give one row of each per candidate")

    def factors(s: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        scale, emb = gradient_embedding_factors(p.rows(s, e), z.rows(s, e))
        return scale.double(), emb.double()

    return factored_kmeans_pp(len(p), factors, row_spans(len(p), min(p.block_rows, z.block_rows)), k, generator)


def factored_kmeans_pp(n: int, factors: Factors, spans: list[tuple[int, int]], k: int,
                       generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding of ``n`` points ``g_i = a_i ⊗ b_i`` given blockwise: positions ``[k]``.

    ``factors(s, e)`` returns float64 ``(a [e-s, C], b [e-s, D])`` of points ``s:e``; ``spans``
    are the row blocks to read. As in BADGE (Ash et al. 2020, Alg. 1 and the authors' code)
    the first point is the one with the largest norm ``||g_i||`` (ties: lowest position); each
    later point is drawn with probability proportional to ``D(g_i)^2``, its squared distance
    to the nearest point already chosen (D² sampling, distances from the factors by
    :func:`outer_product_sq_dists`), from the points not yet chosen, using ``generator`` (a
    CPU generator). If every remaining point lies on a chosen one (all ``D^2 = 0``) the draw
    is uniform over the remaining points. Returns int64 positions in pick order, all distinct.
    Computed in float64; holds one block and three values per point (``[n]`` each).
    """
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and the number of points n={n}")
    picked = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return picked
    parts = []
    for s, e in spans:
        a, b = factors(s, e)
        parts.append((a * a).sum(dim=1) * (b * b).sum(dim=1))
    self_sq = torch.cat(parts)  # ||g_i||^2, [n]
    taken = torch.zeros(n, dtype=torch.bool)
    min_d = torch.full((n,), float("inf"), dtype=torch.float64)
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
        a_c, b_c = factors(i, i + 1)
        for s, e in spans:
            a, b = factors(s, e)
            min_d[s:e] = torch.minimum(min_d[s:e], outer_product_sq_dists(a, b, a_c[0], b_c[0], self_sq[s:e]))
    return picked


@register
class CoreSetStrategy(Strategy):
    """Core-Set: greedy k-center cover of the penultimate embeddings, labeled set as initial centers."""

    name = "coreset"
    description = "Core-Set: greedy k-center over penultimate embeddings (Sener & Savarese 2018)"
    needs = frozenset({"embedding", "labeled_embedding"})
    blockwise = True

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Pick-order scores (module docstring) of ``kcenter_greedy(embedding, labeled_embedding, k)``."""
        emb = as_rows(inputs.embedding)
        centers = inputs.labeled_embedding if inputs.labeled_embedding is not None else torch.zeros(0, emb.shape[1])
        return pick_order_scores(kcenter_greedy(emb, centers, inputs.k), len(emb))


@register
class BADGEStrategy(Strategy):
    """BADGE: k-means++ seeding over hallucinated-label gradient embeddings."""

    name = "badge"
    description = "BADGE: k-means++ seeding on gradient embeddings (p - onehot(ŷ)) ⊗ z (Ash et al. 2020)"
    needs = frozenset({"probs", "embedding"})
    blockwise = True

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Pick-order scores (module docstring) of k-means++ seeding with ``inputs.generator``."""
        picked = badge_seeding(inputs.probs, inputs.embedding, inputs.k, inputs.generator)
        return pick_order_scores(picked, len(inputs.candidates))
