"""Learning Loss for Active Learning (Yoo & Kweon, CVPR 2019), the paper's ``LLoss`` baseline.

Training: a loss-prediction module (:class:`~tidal.models.MultiScaleHead` with one output,
the same architecture as TiDAL's TD module) reads the backbone's four feature maps and
predicts each sample's cross-entropy ``l̂``. It is trained with a pairwise margin ranking
loss (Yoo & Kweon Eq. 2) against the detached per-sample cross-entropy ``l`` of the same
forward pass; the objective adds ``λ · L_rank`` to the mean cross-entropy (their Eq. 3).
From epoch ``floor(stop_at · epochs)`` on (120 of 200 in their paper) the module reads
detached feature maps, so its loss no longer shapes the backbone.

Selection: ``lloss`` scores each candidate by its predicted loss ``l̂`` (higher = more
informative).

The TiDAL authors' code trains this module with a BCE-on-sigmoid variant of the ranking
loss; here it is Yoo & Kweon's margin loss as published.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tidal.models.heads import MultiScaleHead
from tidal.models.resnet import ModelOutput
from tidal.strategies.base import AuxObjective, ScoreInputs, StepBatch, Strategy, TrainContext, register

__all__ = ["LossPredictionObjective", "LearningLossStrategy", "ranking_loss"]


def ranking_loss(pred: torch.Tensor, target: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Pairwise margin ranking loss of Learning Loss (Yoo & Kweon 2019, Eq. 2), a scalar.

    The batch is split into the pairs ``(i, B-1-i)`` for ``i < B/2`` (first element against
    the last, second against the second-to-last, ...). For each pair

        ``L = max(0, -s · (l̂_i - l̂_j) + ξ)``,  ``s = +1 if l_i > l_j else -1``,

    and the result is the mean over the ``B/2`` pairs. ``s`` follows their paper's
    indicator (a tie ``l_i = l_j`` counts as -1), not ``sign(0) = 0``.

    Args:
        pred: predicted losses ``l̂``, ``[B]``.
        target: actual per-sample losses ``l``, ``[B]``; detached here, so the ranking loss
            never sends gradient through the target.
        margin: ``ξ``, how far apart the predictions of a pair must be to cost nothing.

    An odd batch drops its last sample; a batch of fewer than 2 samples gives 0 (still
    attached to ``pred``'s graph so ``backward`` works).
    """
    half = len(pred) // 2
    if half == 0:
        return pred.sum() * 0.0
    pred, target = pred[: 2 * half], target[: 2 * half].detach()
    pred_diff = (pred - pred.flip(0))[:half]  # l̂_i - l̂_{B-1-i}
    target_diff = (target - target.flip(0))[:half]
    s = torch.where(target_diff > 0, 1.0, -1.0).to(pred_diff.dtype)
    return torch.clamp(margin - s * pred_diff, min=0).mean()


class LossPredictionObjective(AuxObjective):
    """Trains the loss-prediction module jointly with the backbone (Yoo & Kweon Eq. 3).

    ``loss(batch) = weight · ranking_loss(l̂, ce, margin)`` where ``l̂ = m(features)``; the
    feature maps are detached from epoch :attr:`stop_epoch` on (0-based), so from then on
    only the module learns from this term.

    Args:
        ctx: the training run (feature channels, number of epochs).
        weight: ``λ``, the ranking loss's weight (1.0 in Yoo & Kweon).
        margin: ``ξ`` of :func:`ranking_loss` (1.0 in Yoo & Kweon).
        stop_at: fraction of the epochs after which gradients into the backbone stop
            (0.6: 120 of 200 in Yoo & Kweon); 0 detaches from the start, 1 never does.
        hidden: per-scale width of the module (128 in Yoo & Kweon).
    """

    def __init__(self, ctx: TrainContext, weight: float = 1.0, margin: float = 1.0, stop_at: float = 0.6,
                 hidden: int = 128) -> None:
        super().__init__()
        self.weight = weight
        self.margin = margin
        # The small epsilon keeps e.g. 0.7 * 10 = 7.000000000000001 and 0.29 * 100 = 28.999999999999996
        # on the integer a reader expects.
        self.stop_epoch = math.floor(stop_at * ctx.epochs + 1e-9)  # first epoch (0-based) with detached features
        self.module = MultiScaleHead(ctx.feature_channels, 1, hidden)

    def module_features(self, batch: StepBatch) -> list[torch.Tensor]:
        """The feature maps the module reads this step: detached from :attr:`stop_epoch` on."""
        if batch.epoch >= self.stop_epoch:
            return [f.detach() for f in batch.out.features]
        return list(batch.out.features)

    def predicted_loss(self, features: list[torch.Tensor]) -> torch.Tensor:
        """``l̂ = m(features)``, ``[B]``, from the maps ``[B, c_i, h_i, w_i]``."""
        return self.module(features).squeeze(1)

    def loss(self, batch: StepBatch) -> torch.Tensor:
        pred = self.predicted_loss(self.module_features(batch))
        return self.weight * ranking_loss(pred, batch.ce, self.margin)

    def carried(self) -> nn.Module:
        """The loss-prediction module: kept across cycles with the backbone in continue mode, as in
        the TiDAL authors' code (``main.py`` builds ``models['module']`` once per trial)."""
        return self.module

    def predict(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        """``loss``: the predicted loss ``l̂``, ``[B]``."""
        return {"loss": self.predicted_loss(out.features)}


@register
class LearningLossStrategy(Strategy):
    name = "lloss"
    description = "Learning Loss (Yoo & Kweon 2019): loss predicted by a module trained with a ranking loss"
    needs = frozenset({"aux"})
    per_sample = True
    model_needs = frozenset({"features"})  # the module reads the multi-scale feature maps

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        c = self.config
        return LossPredictionObjective(ctx, weight=c.lloss_weight, margin=c.lloss_margin, stop_at=c.lloss_stop_at)

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return inputs.aux["loss"]
