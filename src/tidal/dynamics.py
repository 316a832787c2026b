"""Training dynamics (TD) and the TD prediction objective (paper §2, §4.2).

The TD of a labeled sample after ``t`` epochs is the running mean of its softmax output
(Eq. 5): ``p̄(t) = (1/t) * sum_{i<=t} p(i)``. It is recorded from the training forward pass
itself (no extra inference): each time a sample passes through training, its probability
vector is folded into its running mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["TrainingDynamics", "td_kl_loss"]


class TrainingDynamics:
    """Running mean of each labeled sample's softmax over the epochs so far (Eq. 5).

    Args:
        indices: absolute dataset indices of the labeled samples, int64 ``[n]`` (any order,
            no duplicates).
        num_classes: ``C``.
        device: where the record lives (the training device).
    """

    def __init__(self, indices: torch.Tensor, num_classes: int, device: torch.device | str = "cpu") -> None:
        indices = torch.as_tensor(indices, dtype=torch.int64).flatten().cpu()
        self._sorted, self._order = torch.sort(indices)
        if len(indices) > 1 and bool((self._sorted[1:] == self._sorted[:-1]).any()):
            raise ValueError("indices hold duplicates; each labeled sample must appear once")
        self._sorted = self._sorted.to(device)
        self._order = self._order.to(device)
        self.sums = torch.zeros(len(indices), num_classes, device=device)  # [n, C] sum of p(i)
        self.counts = torch.zeros(len(indices), device=device)  # [n] number of epochs folded in

    def _rows(self, indices: torch.Tensor) -> torch.Tensor:
        indices = indices.to(self._sorted.device)
        pos = torch.searchsorted(self._sorted, indices).clamp_(max=len(self._sorted) - 1)
        if not bool((self._sorted[pos] == indices).all()):
            missing = indices[self._sorted[pos] != indices][:5].tolist()
            raise KeyError(f"indices {missing} are not tracked by this TrainingDynamics")
        return self._order[pos]

    @torch.no_grad()
    def update(self, indices: torch.Tensor, probs: torch.Tensor) -> None:
        """Fold ``probs`` (``[B, C]``, detached softmax of the training pass) into the means of ``indices`` (``[B]``)."""
        rows = self._rows(indices)
        self.sums.index_add_(0, rows, probs.detach().to(self.sums.dtype))
        self.counts.index_add_(0, rows, torch.ones_like(rows, dtype=self.counts.dtype))

    def targets(self, indices: torch.Tensor) -> torch.Tensor:
        """Current TD ``p̄`` of ``indices``: ``[B, C]`` (rows never updated are all zero)."""
        rows = self._rows(indices)
        return self.sums[rows] / self.counts[rows].clamp(min=1).unsqueeze(1)


def td_kl_loss(td_logits: torch.Tensor, target_td: torch.Tensor) -> torch.Tensor:
    """Module objective: ``KL(p̄ || softmax(m(x)))`` averaged over the batch (Eq. 8).

    td_logits: the module's raw output ``m(x)``, ``[B, C]``; target_td: actual TD ``p̄``,
    ``[B, C]``, treated as a constant. The paper prints Eq. 8 with the arguments the other
    way round; the authors' code (``F.kl_div(log_softmax(m(x)), p̄)``) and this package
    use ``KL(p̄ || p̃)``, the forward KL that fits a distribution to a target.
    Terms with ``p̄(c) = 0`` contribute 0.
    """
    return F.kl_div(F.log_softmax(td_logits, dim=1), target_td.detach(), reduction="batchmean")
