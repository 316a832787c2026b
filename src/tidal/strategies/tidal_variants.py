"""TD variants beyond the paper (issue 20): a detached TD module, and a calibrated predicted TD.

Each variant is TiDAL with one change and states the hypothesis it tests. Neither has a
hyper-parameter to choose: the detached module has none of its own, and the calibration
temperature is fitted on each cycle's labeled record.

* ``tidal-detached-entropy`` / ``tidal-detached-margin``: the TD module reads the backbone's
  feature maps through a stop-gradient (:class:`~tidal.strategies.tidal.TDPredictionObjective`
  with ``detach=True``). The module is trained exactly as in the paper (Eq. 8 against the record
  of Eq. 5), but Eq. 9's KL term no longer reaches the backbone, whose gradients are those of the
  cross-entropy alone. *Hypothesis*: the KL term is what costs TiDAL its cycle-1 accuracy (at
  IR 100, 57.5% with plain CE vs 49.9% with TiDAL on the same random labels); without it the
  backbone is the plain-CE one and the predicted TD still orders the candidates.
* ``tidal-calibrated-entropy`` / ``tidal-calibrated-margin``: after training, one temperature
  ``T`` is fitted on the labeled set so that ``softmax(m(x) / T)``, the module's prediction in
  eval mode, matches the labeled samples' *recorded* TD ``p̄`` (:func:`fit_td_temperature`);
  the candidates are scored with Eq. 10 / Eq. 11 on the calibrated ``p̃``. *Hypothesis*: the
  module's raw output is mis-scaled as a TD (trained in train mode on augmented inputs, read in
  eval mode; over- or under-confident), and entropy and margin rank differently once its scale
  matches the actual TD the labeled record holds.

Both keep the paper's training otherwise (the calibrated one trains exactly as ``tidal-*``).
"""

from __future__ import annotations

import math
import weakref

import torch
from torch import nn

from tidal.inference import batched_outputs
from tidal.models.resnet import ModelOutput
from tidal.strategies.base import AuxObjective, ScoreInputs, TrainContext, register
from tidal.strategies.scores import entropy, margin
from tidal.strategies.tidal import TDPredictionObjective, TiDALEntropy, TiDALMargin

__all__ = [
    "ScoringTDObjective",
    "TiDALCalibratedEntropy",
    "TiDALCalibratedMargin",
    "TiDALDetachedEntropy",
    "TiDALDetachedMargin",
    "fit_on_record",
    "fit_td_temperature",
]

# Search range of the calibration temperature T (dimensionless): softmax(m(x) / T) with T in it.
T_RANGE = (0.01, 100.0)


def fit_td_temperature(logits: torch.Tensor, targets: torch.Tensor, t_range: tuple[float, float] = T_RANGE,
                       iters: int = 100) -> float:
    """The temperature ``T`` minimising ``mean_i KL(p̄_i || softmax(z_i / T))`` over ``T`` in ``t_range``.

    ``logits`` ``z [m, C]``: the TD module's raw outputs ``m(x)`` for the labeled samples;
    ``targets`` ``p̄ [m, C]``: their recorded TD (Eq. 5; rows sum to 1). With ``β = 1/T`` the
    objective is ``f(β) = mean_i [logsumexp(β z_i) - β <p̄_i, z_i>]`` up to a constant: convex in
    ``β``, with ``f'(β) = mean_i (<softmax(β z_i), z_i> - <p̄_i, z_i>)`` increasing (its derivative
    is a variance). So ``f'`` is bisected (in ``log β``, float64, ``iters`` halvings) for its
    zero; when ``f'`` has one sign over the whole range the nearer end is returned, and when it
    is 0 everywhere (every row of ``z`` constant: ``T`` changes nothing) ``T = 1``.
    Returns ``T`` as a float. ``m = 0``: ``T = 1``.
    """
    if logits.shape != targets.shape or logits.dim() != 2:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be [m, C]")
    if len(logits) == 0:
        return 1.0
    z = logits.double()
    target_dot = (targets.double() * z).sum(dim=1)  # <p̄_i, z_i>, [m]

    def slope(beta: float) -> float:
        return float((torch.softmax(beta * z, dim=1) * z).sum(dim=1).sub(target_dot).mean())

    lo, hi = math.log(1.0 / t_range[1]), math.log(1.0 / t_range[0])  # log β bounds
    s_lo, s_hi = slope(math.exp(lo)), slope(math.exp(hi))
    if s_lo >= 0 and s_hi <= 0:
        return 1.0  # f' is 0 on the whole range (it is increasing): no temperature changes anything
    if s_lo >= 0:
        return t_range[1]
    if s_hi <= 0:
        return t_range[0]
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if slope(math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return 1.0 / math.exp(0.5 * (lo + hi))


def fit_on_record(logits: torch.Tensor, record: torch.Tensor) -> float:
    """:func:`fit_td_temperature` of module logits ``[m, C]`` against the TD record ``[m, C]`` of the
    same samples, on the rows the record updated (a row never updated is all zero: not a TD)."""
    record = record.float()
    seen = record.sum(dim=1) > 0
    return fit_td_temperature(logits[seen], record[seen])


class ScoringTDObjective(TDPredictionObjective):
    """TiDAL's objective (same training, same record) that also runs the module at scoring time.

    ``end_epoch`` keeps a weak reference to the backbone; after training, :meth:`temperature`
    runs one eval pass over the labeled set (batches of ``ctx.eval_batch_size``) and fits
    :func:`fit_td_temperature` against the record, and :meth:`td_uncertainty` runs one over
    given candidates. ``predict`` adds the module's raw output ``td_logits`` to ``td``.
    """

    def __init__(self, ctx: TrainContext, weight: float = 1.0, detach: bool = False) -> None:
        super().__init__(ctx, weight=weight, detach=detach)
        self.dataset = ctx.dataset
        self.labeled = ctx.labeled
        self.batch_size = ctx.eval_batch_size
        self._model: weakref.ref | None = None  # the backbone, seen by end_epoch (a weak reference: not a submodule)
        self._temperature: float | None = None  # fitted once per training run, on first use

    def end_epoch(self, epoch: int, model: nn.Module) -> None:
        self._model = weakref.ref(model)

    def predict(self, out: ModelOutput) -> dict[str, torch.Tensor]:
        """``td``: ``p̃ = softmax(m(x))``; ``td_logits``: ``m(x)``, both ``[B, C]``."""
        logits = self.module(out.features)
        return {"td": torch.softmax(logits, dim=1), "td_logits": logits}

    def _outputs(self, indices: torch.Tensor):
        """``(batch ids, module logits [b, C], classifier logits [b, C])`` over ``indices``: eval mode, CPU."""
        model = self._model() if self._model is not None else None
        if model is None:
            raise RuntimeError("the TD module is read after training, and this objective has not been trained")
        indices = indices.to(self.dataset.device)
        was_training = self.module.training
        self.module.eval()
        try:
            for chunk, out in batched_outputs(model, self.dataset, indices, self.batch_size):
                with torch.no_grad():
                    yield chunk.cpu(), self.module(out.features).float().cpu(), out.logits.float().cpu()
        finally:
            self.module.train(was_training)

    def temperature(self) -> float:
        """``T`` fitted on the labeled samples the record holds (:func:`fit_td_temperature`), cached."""
        if self._temperature is None:
            logits = [z for _, z, _ in self._outputs(self.labeled)]
            z = torch.cat(logits) if logits else torch.zeros(0, self.dynamics.sums.shape[1])
            self._temperature = fit_on_record(z, self.dynamics.targets(self.labeled).cpu())
        return self._temperature

    def td_uncertainty(self, candidates: torch.Tensor, kind: str) -> torch.Tensor:
        """TD uncertainty of ``candidates`` (absolute indices ``[n]``), float64 ``[n]``, all >= 0:
        ``kind="entropy"``: ``H̄(p̃)`` (Eq. 10); ``kind="margin"``: ``(1 - M̄(p̃))/2`` with ``ŷ`` the
        classifier's prediction (Eq. 11; ``M̄`` in [-1, 1], so this is in [0, 1], larger = less sure)."""
        parts = []
        for _, td_logits, logits in self._outputs(candidates):
            td = torch.softmax(td_logits, dim=1)
            if kind == "entropy":
                parts.append(entropy(td))
            else:
                parts.append((1.0 - margin(td, reference=logits.argmax(dim=1))) / 2)
        return torch.cat(parts).double() if parts else torch.zeros(0, dtype=torch.float64)


class _Detached:
    """Mixin: the paper's strategy with its TD module behind a stop-gradient (score inherited)."""

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return TDPredictionObjective(ctx, weight=self.config.tidal_weight, detach=True)


@register
class TiDALDetachedEntropy(_Detached, TiDALEntropy):
    """TiDAL-entropy with the TD module behind a stop-gradient: the backbone trains on CE alone.

    Hypothesis: removes TiDAL's cycle-1 handicap (module docstring); the score is ``tidal-entropy``'s.
    No hyper-parameter of its own (λ = ``tidal_weight`` now scales the module's loss only).
    """

    name = "tidal-detached-entropy"
    description = "TiDAL variant: entropy of the predicted TD; the module trains behind a stop-gradient (backbone: CE)"


@register
class TiDALDetachedMargin(_Detached, TiDALMargin):
    """TiDAL-margin with the TD module behind a stop-gradient: the backbone trains on CE alone.

    Hypothesis: removes TiDAL's cycle-1 handicap (module docstring); the score is ``tidal-margin``'s.
    """

    name = "tidal-detached-margin"
    description = "TiDAL variant: margin of the predicted TD at ŷ, module trained behind a stop-gradient"


class _Calibrated:
    """Mixin: the paper's strategy (its needs; ``per_sample``: T is one number per cycle, fitted on the
    labeled set, so each candidate's score is its own) scored on the temperature-calibrated TD."""

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return ScoringTDObjective(ctx, weight=self.config.tidal_weight)

    @staticmethod
    def calibrated(inputs: ScoreInputs) -> torch.Tensor:
        """``softmax(m(x) / T)`` of the candidates, ``[n, C]``; ``T``: :meth:`ScoringTDObjective.temperature`."""
        return torch.softmax(inputs.aux["td_logits"].double() / inputs.objective.temperature(), dim=1).float()


@register
class TiDALCalibratedEntropy(_Calibrated, TiDALEntropy):
    """TiDAL-entropy on the predicted TD calibrated by one temperature fitted on the labeled record.

    Hypothesis: the module's output is mis-scaled as a TD; matching it to the recorded TD of the
    labeled set before Eq. 10 orders the candidates better. Defaults: one temperature,
    searched in ``T_RANGE`` = [0.01, 100], fitted by forward KL on every labeled sample.
    Cost: one eval pass over the labeled set per cycle.
    """

    name = "tidal-calibrated-entropy"
    description = "TiDAL variant: entropy of the predicted TD, temperature fitted to the labeled set's actual TD"

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return entropy(self.calibrated(inputs))


@register
class TiDALCalibratedMargin(_Calibrated, TiDALMargin):
    """TiDAL-margin (Eq. 11, ŷ from the classifier) on the temperature-calibrated predicted TD.

    Hypothesis and defaults: as ``tidal-calibrated-entropy``.
    """

    name = "tidal-calibrated-margin"
    description = "TiDAL variant: margin at ŷ of the predicted TD, temperature fitted to the labeled set's actual TD"

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return -margin(self.calibrated(inputs), reference=inputs.probs.argmax(dim=1))
