"""The labeled/unlabeled state of an active-learning run, in absolute dataset indices."""

from __future__ import annotations

import torch

__all__ = ["LabelPool"]


class LabelPool:
    """Owns which pool samples are labeled and in which round each was labeled.

    Args:
        pool: absolute indices of the samples that may ever be labeled, int64 ``[N]``
            (no duplicates; the test set is never part of it).
    """

    def __init__(self, pool: torch.Tensor) -> None:
        pool = torch.as_tensor(pool, dtype=torch.int64).flatten().cpu()
        self.pool = torch.sort(pool).values
        if len(self.pool) > 1 and bool((self.pool[1:] == self.pool[:-1]).any()):
            raise ValueError("pool indices hold duplicates")
        self._round = torch.full((len(self.pool),), -1, dtype=torch.int64)  # -1 = unlabeled

    def _positions(self, indices: torch.Tensor) -> torch.Tensor:
        indices = torch.as_tensor(indices, dtype=torch.int64).flatten().cpu()
        pos = torch.searchsorted(self.pool, indices).clamp_(max=max(len(self.pool) - 1, 0))
        if len(indices) and not bool((self.pool[pos] == indices).all()):
            bad = indices[self.pool[pos] != indices][:5].tolist()
            raise ValueError(f"indices {bad} are not in the pool")
        return pos

    def label(self, indices: torch.Tensor, round: int) -> None:
        """Mark ``indices`` as labeled in ``round``; labeling a sample twice is an error."""
        pos = self._positions(indices)
        if len(torch.unique(pos)) != len(pos):
            raise ValueError("the same index appears twice in one labeling call")
        already = self._round[pos] >= 0
        if bool(already.any()):
            raise ValueError(f"indices {self.pool[pos[already]][:5].tolist()} are already labeled")
        self._round[pos] = round

    @property
    def labeled(self) -> torch.Tensor:
        """Absolute indices of the labeled samples, sorted, ``[m]``."""
        return self.pool[self._round >= 0]

    @property
    def unlabeled(self) -> torch.Tensor:
        """Absolute indices of the unlabeled samples, sorted, ``[N - m]``."""
        return self.pool[self._round < 0]

    def round_of(self, indices: torch.Tensor) -> torch.Tensor:
        """Round in which each of ``indices`` was labeled (-1 = unlabeled), ``[len(indices)]``."""
        return self._round[self._positions(indices)]

    def __len__(self) -> int:
        return len(self.pool)
