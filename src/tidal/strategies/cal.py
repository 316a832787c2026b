"""Cartography Active Learning (Zhang & Plank, Findings of EMNLP 2021), the paper's ``CAL`` baseline.

Training: plain cross-entropy. The objective only *records*, for every labeled sample and
every epoch, whether the classifier's prediction on the training pass was correct (the
"correctness" axis of a data map, Swayamdipta et al. 2020); no extra inference is run.

Selection (blockwise: the candidates' embeddings are read from the store of
:mod:`tidal.embedstore` in row blocks; the labeled set's ``[m, D]`` is read whole for the
fit): labeled samples whose fraction of epochs classified correctly is below
``threshold`` are "uncertain" (hard-to-learn/ambiguous), the rest "certain". A binary
logistic regression is fitted on the frozen labeled embeddings ``[m, D]`` to tell the two
apart. Two rankings of the candidates are registered:

* ``cal`` (CAL as released): the candidates the binary classifier is *least sure about*,
  i.e. the lowest max-softmax ``max(p, 1 - p)`` with ``p = P(uncertain)``. The authors'
  ``project/src/train/train_cal_estimator.py`` (``CALEstimator.predict``) sorts the pool
  ascending by ``torch.amax`` of the classifier's softmax (``DALMLP.predict_proba`` in
  ``project/src/estimators/dal_estimator.py``) and labels the first ``k``. The score is
  ``min(p, 1 - p) = sigmoid(-|logit|)`` in [0, 0.5] (higher = more ambiguous = more
  informative), computed from the logit so it keeps its precision near 0.
* ``cal-uncertain`` (a variant, not the authors' rule): the highest ``p = P(uncertain)``,
  i.e. the candidates that look most like the hard-to-learn labeled samples. It is what this
  package ran as ``cal`` before the comparison with the released code.

Choices (CAL leaves them to the implementer, or they do not transfer from its text tasks):

* **Threshold.** CAL's released code rounds the correctness fraction to bins of 0.2 and
  calls a sample hard when the binned value is <= 0.2 (roughly: correct on under 30% of
  the epochs). That threshold was set for small text MLPs trained for a few epochs. A
  ResNet-18 trained for 100-200 epochs fits nearly every labeled image early, so with 0.2
  almost no sample would be uncertain; the default here (``StrategyConfig.cal_threshold
  = 0.5``, no binning) calls a sample uncertain when it was misclassified on most epochs.
  The comparison is strict: a sample correct on exactly half the epochs is certain.
* **Classifier.** Logistic regression rather than an MLP: the labeled set is small
  (hundreds to a few thousand samples against a 512-dim embedding) and usually very
  unbalanced, and a convex, L2-regularised model has one optimum (the seed from
  ``inputs.generator`` only picks the starting point), no hidden size or epoch count to
  tune, and fits in well under a second. CAL's own estimator is a single linear layer too.
  Embeddings are standardised with the labeled set's statistics; classes are weighted
  inversely to their size, as in CAL's class-weighted cross-entropy; the L2 strength
  matches scikit-learn's default ``C = 1``.
* **Degenerate split.** When every labeled sample falls in one class there is nothing to
  discriminate. Every candidate then gets the same score (``cal``: 0.0; ``cal-uncertain``:
  that class's prior, 0.0 when all are certain and 1.0 when all are uncertain, which is
  what the logistic model converges to with one class). All candidates tie, so the top-k
  keeps the subset's order, which the loop draws uniformly at random: the cycle degrades to
  random sampling instead of inventing a signal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tidal.dynamics import TrainingDynamics
from tidal.embedstore import as_rows
from tidal.strategies.base import AuxObjective, ScoreInputs, StepBatch, Strategy, TrainContext, register

__all__ = ["CartographyObjective", "CartographyStrategy", "CartographyUncertainStrategy", "cartography_split",
           "fit_logistic_regression"]


def cartography_split(fraction_correct: torch.Tensor, threshold: float) -> torch.Tensor:
    """Uncertain (True) vs certain (False) per sample: ``fraction_correct < threshold``.

    fraction_correct: share of epochs each labeled sample was classified correctly, ``[m]``
    in [0, 1]; returns bool ``[m]``.
    """
    return fraction_correct < threshold


class CartographyObjective(AuxObjective):
    """Records each labeled sample's per-epoch correctness from the training pass.

    Every sample passes through training once per epoch, so the running mean of its 0/1
    correctness is the fraction of epochs it was classified correctly. The running mean is
    kept by a one-column :class:`~tidal.dynamics.TrainingDynamics` (the "probability" it
    averages is 1 for correct, 0 for wrong). Adds nothing to the loss.
    """

    def __init__(self, ctx: TrainContext) -> None:
        super().__init__()
        self.correctness = TrainingDynamics(ctx.labeled, 1, ctx.device)

    def loss(self, batch: StepBatch) -> torch.Tensor:
        correct = batch.out.logits.detach().argmax(dim=1) == batch.y
        self.correctness.update(batch.indices, correct.unsqueeze(1).float())
        return batch.ce.new_zeros(())

    def records(self) -> list[TrainingDynamics]:
        """The correctness record, updated in :meth:`loss`."""
        return [self.correctness]

    def fraction_correct(self, indices: torch.Tensor) -> torch.Tensor:
        """Share of epochs each of ``indices`` (absolute, ``[m]``) was correct, ``[m]`` on the CPU."""
        return self.correctness.targets(indices)[:, 0].cpu()


def fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, l2: float | None = None,
                            max_iter: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-balanced, L2-regularised binary logistic regression, fitted with L-BFGS.

    Minimises ``sum_i w_{y_i} BCE(x_i · θ + b, y_i) / sum_i w_{y_i} + l2/2 · |θ|²`` with
    ``w_c`` inversely proportional to class ``c``'s size.

    Args:
        x: features ``[m, D]`` (already standardised); y: bool labels ``[m]``, both classes
            present.
        generator: draws the starting weights.
        l2: penalty per unit of mean loss (default ``1/m``, scikit-learn's ``C = 1``).
    Returns:
        ``(θ [D], b [])`` in float64.
    """
    x = x.double()
    target = y.double()
    n_pos = target.sum()
    weights = torch.where(y, 0.5 / n_pos, 0.5 / (len(y) - n_pos))  # each class carries half the loss
    l2 = 1.0 / len(y) if l2 is None else l2
    theta = (0.01 * torch.randn(x.shape[1], generator=generator, dtype=torch.float64)).requires_grad_()
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        bce = F.binary_cross_entropy_with_logits(x @ theta + bias, target, reduction="none")
        loss = (weights * bce).sum() + 0.5 * l2 * theta.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return theta.detach(), bias.detach()


def _uncertain_logit(inputs: ScoreInputs, threshold: float) -> torch.Tensor | bool:
    """Logit of P(uncertain) for each candidate, float64 ``[n]``, from a classifier fitted on the
    labeled embeddings; when the labeled set falls in one class only, that class (True = uncertain)."""
    uncertain = cartography_split(inputs.objective.fraction_correct(inputs.labeled), threshold)
    if bool(uncertain.all()) or not bool(uncertain.any()):  # one class only, see the module docstring
        return bool(uncertain[0])
    lab = as_rows(inputs.labeled_embedding).whole().double()  # [m, D]: the fit needs it whole
    mean, std = lab.mean(dim=0), lab.std(dim=0, correction=0)
    # A dimension constant on the labeled set (a dead ReLU channel) carries no information
    # to fit; dividing by inf maps it to 0 for the candidates too instead of amplifying it.
    std = torch.where(std > 1e-6, std, torch.inf)
    theta, bias = fit_logistic_regression((lab - mean) / std, uncertain, inputs.generator)
    del lab
    # The candidates, one row block at a time (equal to the whole product: see tidal.embedstore).
    emb = as_rows(inputs.embedding)
    logits = [(block.double() - mean) / std @ theta + bias for _, _, block in emb.blocks()]
    return torch.cat(logits) if logits else torch.zeros(0, dtype=torch.float64)


@register
class CartographyStrategy(Strategy):
    """CAL as the authors released it: the lowest max-softmax of the certain/uncertain classifier."""

    name = "cal"
    description = ("Cartography Active Learning (Zhang & Plank 2021): candidates the hard-to-learn classifier "
                   "is least sure about (lowest max-softmax)")
    needs = frozenset({"embedding", "labeled_embedding"})
    blockwise = True  # candidates scored in row blocks of the store; the labeled set is read whole for the fit

    def make_objective(self, ctx: TrainContext) -> AuxObjective:
        return CartographyObjective(ctx)

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """``min(p, 1 - p) = sigmoid(-|logit|)``, float64 ``[n]`` in [0, 0.5]; all 0.0 on a one-class split."""
        logit = _uncertain_logit(inputs, self.config.cal_threshold)
        if isinstance(logit, bool):
            return torch.zeros(len(inputs.candidates), dtype=torch.float64)
        return torch.sigmoid(-logit.abs())


@register
class CartographyUncertainStrategy(CartographyStrategy):
    """Variant: the highest P(uncertain), i.e. what looks most like the hard-to-learn labeled samples."""

    name = "cal-uncertain"
    description = "CAL variant: highest P(hard-to-learn) from the classifier on embeddings (not the authors' rule)"

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """``p = sigmoid(logit)``, float64 ``[n]`` in [0, 1]; the class prior on a one-class split."""
        logit = _uncertain_logit(inputs, self.config.cal_threshold)
        if isinstance(logit, bool):
            return torch.full((len(inputs.candidates),), float(logit), dtype=torch.float64)
        return torch.sigmoid(logit)
