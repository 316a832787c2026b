"""BALD: Bayesian Active Learning by Disagreement with MC dropout (Gal, Islam & Ghahramani 2017).

Selection scores each candidate by the mutual information between its label and the
model's weights, ``I[y; w | x] = H[mean_t p_t] - mean_t H[p_t]``
(:func:`~tidal.strategies.scores.mutual_information`), estimated from ``T``
(``StrategyConfig.mc_samples``, default 10) stochastic forward passes with dropout
active. High when the passes are individually confident but disagree with each other.

Dropout: the strategy sets ``dropout = StrategyConfig.dropout`` (default 0.5), so the loop
builds the backbone with ``Dropout(p)`` between the penultimate embedding and the
classifier, and that dropout is active **in training too**: MC dropout approximates the
posterior ``q(w)`` that training with dropout fits (Gal & Ghahramani 2016), which is the
model Gal et al. (2017) use. At scoring time the batch-norm layers are in eval mode and only
the dropout is stochastic.

Difference from the TiDAL authors' code (github.com/hyperconnect/TiDAL): there the
backbone applies its dropout only when called with ``method='BALD'``, which happens only in
the query pass, so the network is *trained without dropout* and dropout (p = 0.5 for the
CIFAR ResNet-18, p = 0.2 for the FashionMNIST one, 10 passes) is switched on at query time
only. That samples sub-networks of a network that was never trained with dropout, rather
than of one trained as an approximate posterior; in exchange, their BALD model is trained
exactly like every other method's. Here BALD's classifier itself is trained with dropout,
so its test accuracy may differ from the other methods' for that reason alone. Reproducing
the authors' variant would need a backbone whose dropout is off during training and on
only when gathering ``mc_probs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from tidal.strategies.base import ScoreInputs, Strategy, register
from tidal.strategies.scores import mutual_information

if TYPE_CHECKING:
    from tidal.config import StrategyConfig

__all__ = ["BALDStrategy"]


@register
class BALDStrategy(Strategy):
    """Mutual information of MC-dropout predictions; higher = more disagreement between passes."""

    name = "bald"
    description = "BALD: mutual information I[y; w] from T MC-dropout passes (Gal et al. 2017)"
    needs = frozenset({"mc_probs"})
    per_sample = True

    def __init__(self, config: "StrategyConfig") -> None:
        super().__init__(config)
        self.mc_samples = config.mc_samples  # T stochastic passes gathered at scoring time
        self.dropout = config.dropout  # dropout before the classifier, in training and scoring

    @classmethod
    def check_config(cls, config: "StrategyConfig") -> None:
        """With one pass or no dropout every mutual information is 0 and BALD selects at random."""
        if config.mc_samples < 2:
            raise ValueError(f"mc_samples={config.mc_samples}: bald needs >= 2 stochastic passes (default 10)")
        if config.dropout <= 0:
            raise ValueError(f"dropout={config.dropout}: bald needs dropout > 0 to sample (default 0.5)")

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """``mc_probs [T, n, C]`` -> ``I[y; w | x]``, ``[n]``, in nats, within ``[0, log C]``."""
        return mutual_information(inputs.mc_probs)
