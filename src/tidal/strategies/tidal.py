"""TiDAL: predicted training dynamics as the uncertainty signal (paper §4).

Training: a TD prediction module ``m`` (:class:`~tidal.models.MultiScaleHead`, output
``C``) reads the backbone's feature maps; the objective adds
``λ · KL(p̄ || softmax(m(x)))`` (Eqs. 8-9) to the cross-entropy, where ``p̄`` is each
labeled sample's running-mean softmax (Eq. 5), updated from the same forward pass.

Selection: ``tidal-entropy`` scores ``H̄(p̃)`` (Eq. 10); ``tidal-margin`` scores
``-M̄(p̃)`` with ``ŷ`` the classifier's prediction (Eq. 11).
"""

from __future__ import annotations

import torch
from torch import nn

from tidal.dynamics import TrainingDynamics, td_kl_loss
from tidal.models.heads import MultiScaleHead
from tidal.models.resnet import ModelOutput
from tidal.strategies.base import AuxObjective, ScoreInputs, StepBatch, Strategy, TrainContext, register
from tidal.strategies.scores import entropy, margin

__all__ = ["TDPredictionObjective", "TiDALEntropy", "TiDALMargin"]


class TDPredictionObjective(AuxObjective):
    """Trains the TD prediction module jointly with the backbone (Eq. 9).

    Each step folds the batch's detached softmax into the running TD record, then
    returns ``weight * KL(p̄ || softmax(m(features)))`` with the updated ``p̄``; gradients
    flow into both the module and the backbone's features, as in the paper.

    ``detach=True`` (the ``tidal-detached-*`` variants, :mod:`tidal.strategies.tidal_variants`):
    the module reads the features through a stop-gradient, so the KL term trains the module
    alone and the backbone's gradients are those of the cross-entropy exactly; the record and
    the module's target (Eqs. 5, 8) are unchanged. ``detach=False`` (the paper's) runs exactly
    the code it ran before the flag existed.
    """

    def __init__(self, ctx: TrainContext, weight: float = 1.0, hidden: int = 128, detach: bool = False) -> None:
        super().__init__()
        self.weight = weight
        self.detach = detach  # True: stop-gradient between the backbone's features and the module
        self.module = MultiScaleHead(ctx.feature_channels, ctx.num_classes, hidden)
        self.dynamics = TrainingDynamics(ctx.labeled, ctx.num_classes, ctx.device)

    def loss(self, batch: StepBatch) -> torch.Tensor:
        self.dynamics.update(batch.indices, torch.softmax(batch.out.logits.detach(), dim=1))
        target = self.dynamics.targets(batch.indices)
        features = [f.detach() for f in batch.out.features] if self.detach else batch.out.features
        return self.weight * td_kl_loss(self.module(features), target)

    def records(self) -> list[TrainingDynamics]:
        """The TD record (Eq. 5), updated in :meth:`loss`."""
        return [self.dynamics]

    def carried(self) -> nn.Module:
        """The TD module: kept across cycles with the backbone in continue mode, as the authors' code
        (``main.py`` builds ``models['module']`` once per trial). The TD record is per cycle: their
        ``moving_prob`` folds epoch 0 in with weight ``epoch = 0``, which discards the last cycle's values."""
        return self.module

    def predict(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        """``td``: the predicted TD ``p̃ = softmax(m(x))``, ``[B, C]``."""
        return {"td": torch.softmax(self.module(out.features), dim=1)}


class _TiDAL(Strategy):
    needs = frozenset({"aux", "probs"})
    per_sample = True
    model_needs = frozenset({"features"})  # the module reads the multi-scale feature maps

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return TDPredictionObjective(ctx, weight=self.config.tidal_weight)


@register
class TiDALEntropy(_TiDAL):
    name = "tidal-entropy"
    description = "TiDAL: entropy H̄(p̃) of the predicted training dynamics (Eq. 10)"

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return entropy(inputs.aux["td"])


@register
class TiDALMargin(_TiDAL):
    name = "tidal-margin"
    description = "TiDAL: margin M̄(p̃) of the predicted TD at the classifier's ŷ, smallest first (Eq. 11)"

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return -margin(inputs.aux["td"], reference=inputs.probs.argmax(dim=1))
