"""Ablations of TiDAL: the actual-TD oracle and a margin variant (paper §4.3, Appendix D.4).

* ``tidal-exact`` measures the *actual* TD ``p̄`` (Eq. 5) of every scored candidate instead
  of predicting it: after each epoch the classifier runs once over the candidate subset
  (eval mode, no augmentation, no gradient) and each candidate's softmax is folded into its
  running mean; the score is ``H̄(p̄)`` (Eq. 10 with ``p̄`` in place of ``p̃``). This is the
  costly oracle TiDAL's module avoids (§4.1: ``S`` extra forward passes every epoch). It
  trains the plain classifier (cross-entropy only, no TD module), so it isolates the value
  of the TD signal from the module's prediction error and from the module's effect on the
  backbone through Eq. 9.
* ``tidal-margin-self`` is TiDAL with the margin ``M̄(p̃)`` of Eq. 11 taken at the module's
  own top class, ``ŷ = argmax p̃`` (top-1 minus top-2 of ``p̃``), instead of the
  classifier's prediction that ``tidal-margin`` uses. Training is TiDAL's, unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from tidal.dynamics import TrainingDynamics
from tidal.inference import batched_outputs
from tidal.strategies.base import AuxObjective, ScoreInputs, Strategy, TrainContext, register
from tidal.strategies.scores import entropy, margin
from tidal.strategies.tidal import TiDALMargin

__all__ = ["ExactTDObjective", "TiDALExact", "TiDALMarginSelf"]


class ExactTDObjective(AuxObjective):
    """Tracks the actual TD of the candidate subset by inference after every epoch.

    Adds nothing to the loss. ``end_epoch`` runs the model in eval mode over
    ``ctx.candidates`` in batches of ``ctx.eval_batch_size`` and folds the softmax ``[S, C]``
    into a :class:`~tidal.dynamics.TrainingDynamics` over the candidates, so after ``t``
    epochs :meth:`td` is ``(1/t) · sum_{i<=t} p(i)`` (Eq. 5).
    """

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__()
        self.dataset = ctx.dataset
        self.candidates = ctx.candidates
        self.batch_size = ctx.eval_batch_size
        self.selects = ctx.selects  # the last cycle scores nothing: no tracking needed
        self.dynamics = TrainingDynamics(ctx.candidates, ctx.num_classes, ctx.device)

    @torch.no_grad()
    def end_epoch(self, epoch: int, model: nn.Module) -> None:
        if not self.selects:
            return
        for chunk, out in batched_outputs(model, self.dataset, self.candidates, self.batch_size):
            self.dynamics.update(chunk, torch.softmax(out.logits, dim=1))

    def td(self, indices: torch.Tensor) -> torch.Tensor:
        """Actual TD ``p̄`` of ``indices`` (absolute, a subset of the candidates), ``[n, C]`` on the CPU."""
        return self.dynamics.targets(indices).cpu()


@register
class TiDALExact(Strategy):
    name = "tidal-exact"
    description = "oracle ablation: entropy of the ACTUAL TD of the subset, by inference every epoch (costly)"
    needs = frozenset()  # everything comes from the objective's record
    per_sample = True  # each candidate's own running mean

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return ExactTDObjective(ctx)

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return entropy(inputs.objective.td(inputs.candidates))


@register
class TiDALMarginSelf(TiDALMargin):
    name = "tidal-margin-self"
    description = "TiDAL ablation (App. D.4): margin M̄(p̃) at the TD module's own top class, smallest first"
    needs = frozenset({"aux"})

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return -margin(inputs.aux["td"])
