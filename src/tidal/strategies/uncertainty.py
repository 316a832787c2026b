"""Random selection and snapshot uncertainty of the final classifier's softmax.

``entropy`` and ``margin`` are the paper's snapshot ablation ``H(p)``, ``M(p)`` (Eqs. 2-3,
Figure 6): the same estimators as TiDAL applied to the fully trained model's output.
"""

from __future__ import annotations

import torch

from tidal.strategies.base import ScoreInputs, Strategy, register
from tidal.strategies.scores import entropy, least_confidence, margin

__all__ = ["RandomStrategy", "EntropyStrategy", "MarginStrategy", "LeastConfidenceStrategy"]


@register
class RandomStrategy(Strategy):
    name = "random"
    description = "uniformly random selection from the subset (the paper's reference)"
    per_sample = True  # one draw per candidate, in candidate order: the same numbers in chunks

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return torch.rand(len(inputs.candidates), generator=inputs.generator)


@register
class EntropyStrategy(Strategy):
    name = "entropy"
    description = "snapshot entropy H(p) of the final classifier (Eq. 2)"
    needs = frozenset({"probs"})
    per_sample = True

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return entropy(inputs.probs)


@register
class MarginStrategy(Strategy):
    name = "margin"
    description = "snapshot margin M(p) of the final classifier, smallest first (Eq. 3)"
    needs = frozenset({"probs"})
    per_sample = True

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return -margin(inputs.probs)


@register
class LeastConfidenceStrategy(Strategy):
    name = "least-confidence"
    description = "1 - max_c p(c|x) of the final classifier"
    needs = frozenset({"probs"})
    per_sample = True

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        return least_confidence(inputs.probs)
