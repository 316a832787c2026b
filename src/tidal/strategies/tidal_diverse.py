"""TD uncertainty with batch diversity (issue 20): TD-weighted k-means++ seeding on the embedding.

``tidal-diverse-entropy`` / ``tidal-diverse-margin`` train exactly as ``tidal-entropy`` /
``tidal-margin`` (the paper's joint objective), but spread the budget over the candidates instead
of taking the top-k of ``H̄(p̃)`` or ``M̄(p̃)``:

1. every candidate gets its TD uncertainty ``u_i >= 0`` (:meth:`ScoringTDObjective.td_uncertainty`:
   ``H̄(p̃)``, or ``(1 - M̄(p̃))/2`` with ``ŷ`` the classifier's prediction), and only the
   ``⌈β k⌉`` most uncertain may be picked (the pre-filter of Zhdanov 2019, "Diverse mini-batch
   active learning");
2. :func:`weighted_kmeans_pp` seeds ``k`` points among them on the penultimate embedding: the
   most uncertain first, then each next one drawn with probability ``∝ u_i · D(x_i)²``, its
   squared distance to the nearest point already picked (k-means++'s D² sampling, weighted by
   the TD uncertainty).

*Hypothesis*: top-k of H̄ or M̄ picks redundant samples (at IR 100 its first round takes 308 of
500 picks from the tail without a matching gain); drawing far-apart points among the uncertain
ones keeps the TD signal and removes the redundancy.

As Core-Set and BADGE (:mod:`tidal.strategies.diversity`), the set choice is encoded in the
scores (``k - r`` for the ``r``-th pick, 0 elsewhere: :func:`pick_order_scores`) so that the
loop's one top-k returns it, and the strategy is ``blockwise``: the embedding comes from the
embedding store (memory or disk, float32 or float16) in row blocks, and besides one block it
holds ``O(n)`` scalars. The TD uncertainty costs one eval pass over the candidates at scoring
time (the store's pass cannot run the TD module: blockwise strategies do not get ``aux``).

``tidal-detached-diverse-entropy`` makes the same draws on the TD module and backbone of
``tidal-detached-entropy`` (:class:`TiDALDetachedDiverseEntropy`).

Defaults: ``β = 10`` (``StrategyConfig.diverse_prefilter``, ``--diverse-prefilter``; chosen among
3, 10 and 20 on FashionMNIST IR 10, seeds 0-1 only: ``benchmarks/td_variants_tuning.sh``), weights
``u`` to the power 1, distances in the classifier's penultimate embedding, no labeled centers.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from tidal.embedstore import StoredRows, as_rows
from tidal.strategies.base import AuxObjective, ScoreInputs, Strategy, TrainContext, register
from tidal.strategies.diversity import pick_order_scores
from tidal.strategies.tidal_variants import ScoringTDObjective

__all__ = ["TiDALDetachedDiverseEntropy", "TiDALDiverseEntropy", "TiDALDiverseMargin", "most_uncertain_mask",
           "weighted_kmeans_pp"]


def most_uncertain_mask(uncertainty: torch.Tensor, m: int) -> torch.Tensor:
    """Boolean ``[n]``: the ``m`` largest of ``uncertainty [n]`` (ties: the lower position), all when ``m >= n``."""
    n = len(uncertainty)
    mask = torch.zeros(n, dtype=torch.bool)
    order = torch.argsort(uncertainty.double().cpu(), descending=True, stable=True)
    mask[order[: min(max(m, 0), n)]] = True
    return mask


def weighted_kmeans_pp(points: "torch.Tensor | StoredRows", weights: torch.Tensor, k: int,
                       generator: torch.Generator, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """k-means++ seeding with per-point weights: positions into ``points``, ``[k]``, in pick order.

    ``points [n, D]`` (a tensor or :class:`~tidal.embedstore.StoredRows`, read in row blocks);
    ``weights [n]`` >= 0; ``allowed [n]`` bool (default: all): the points that may be picked.
    The first pick is the allowed point of largest weight (ties: lowest position). Each later
    pick is drawn, with ``generator``, from the allowed points not yet picked with probability
    ``w_i D_i² / sum_j w_j D_j²``, ``D_i`` the Euclidean distance from ``x_i`` to its nearest
    picked point (Arthur & Vassilvitskii 2007's D² sampling, each term weighted by ``w_i``).
    When that mass is 0 (all remaining weights 0, or all remaining points on picked ones) the
    draw is uniform over the remaining allowed points, then over all remaining points.
    Float64 throughout; holds one block and three ``[n]`` vectors. Requires ``0 <= k <= n``.
    """
    x = as_rows(points)
    n = len(x)
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be between 0 and the number of points n={n}")
    if weights.shape != (n,):
        raise ValueError(f"weights has shape {tuple(weights.shape)}; give one weight per point, [{n}]")
    w = weights.double().cpu()
    allowed = torch.ones(n, dtype=torch.bool) if allowed is None else allowed.cpu()
    picked = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return picked
    x_sq = torch.cat([(b.double() ** 2).sum(dim=1) for _, _, b in x.blocks()])  # ||x_i||², [n]
    taken = torch.zeros(n, dtype=torch.bool)
    min_d = torch.full((n,), float("inf"), dtype=torch.float64)
    for step in range(k):
        if step == 0:
            i = int(torch.argmax(w.masked_fill(~allowed, float("-inf"))))
        else:
            open_ = allowed & ~taken
            mass = (w * min_d).masked_fill(~open_, 0.0)
            if not mass.sum() > 0:
                mass = open_.double() if bool(open_.any()) else (~taken).double()
            i = int(torch.multinomial(mass, 1, generator=generator))
        picked[step] = i
        taken[i] = True
        center = x.rows(i, i + 1).double()[0]
        c_sq = float((center * center).sum())
        for s, e, b in x.blocks():
            d = (x_sq[s:e] + c_sq - 2.0 * (b.double() @ center)).clamp_min(0.0)
            min_d[s:e] = torch.minimum(min_d[s:e], d)
    return picked


class _TiDALDiverse(Strategy):
    needs = frozenset({"embedding"})
    blockwise = True
    model_needs = frozenset({"features"})  # the TD module reads the feature maps
    kind: ClassVar[str] = ""  # "entropy" or "margin": which TD uncertainty weighs the draws
    detach: ClassVar[bool] = False  # True: the TD module reads the features through a stop-gradient

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return ScoringTDObjective(ctx, weight=self.config.tidal_weight, detach=self.detach)

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """Pick-order scores of :func:`weighted_kmeans_pp` on the embedding, weighted by the TD uncertainty."""
        u = inputs.objective.td_uncertainty(inputs.candidates, self.kind)
        allowed = most_uncertain_mask(u, math.ceil(self.config.diverse_prefilter * inputs.k))
        picked = weighted_kmeans_pp(inputs.embedding, u, inputs.k, inputs.generator, allowed)
        return pick_order_scores(picked, len(inputs.candidates))


@register
class TiDALDiverseEntropy(_TiDALDiverse):
    """TiDAL's H̄(p̃) (Eq. 10) as the weight of k-means++ seeding on the embedding (module docstring)."""

    name = "tidal-diverse-entropy"
    description = "TiDAL variant: k-means++ on the embedding, draws ∝ H̄(predicted TD)·D² (β·k most uncertain)"
    kind = "entropy"


@register
class TiDALDiverseMargin(_TiDALDiverse):
    """TiDAL's M̄(p̃) at ŷ (Eq. 11), as ``(1 - M̄)/2``, weighting k-means++ seeding on the embedding."""

    name = "tidal-diverse-margin"
    description = ("TiDAL variant: k-means++ on the embedding, draws ∝ (1-M̄(predicted TD))·D² "
                   "(β·k most uncertain)")
    kind = "margin"


@register
class TiDALDetachedDiverseEntropy(TiDALDiverseEntropy):
    """``tidal-diverse-entropy``'s selection on ``tidal-detached-entropy``'s training: the two changes together.

    Hypothesis: they act on different stages, so they add up: the stop-gradient removes the
    cycle-1 handicap of TiDAL's KL term (:mod:`tidal.strategies.tidal_variants`; at IR 100 the
    detached variants' first cycle is plain CE's), and the TD-weighted k-means++ draws remove
    the top-k's redundancy (the diverse variants did best at IR 10). The entropy flavour only:
    on the tuning setting (IR 10, seeds 0-1, β = 10) ``tidal-diverse-entropy``'s mean area,
    82.07 pp, was above ``tidal-diverse-margin``'s 81.97 (``benchmarks/results/td_tuning``).
    β is the diverse variants' (``StrategyConfig.diverse_prefilter``); nothing else to choose.
    """

    name = "tidal-detached-diverse-entropy"
    description = ("TiDAL variant: tidal-diverse-entropy's k-means++ draws, the TD module trained behind a "
                   "stop-gradient (backbone: CE)")
    detach = True
