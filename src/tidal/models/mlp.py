"""A multilayer perceptron for feature vectors (e.g. a foundation model's embeddings).

``[B, D] -> Linear -> ReLU -> ... -> (dropout) -> Linear -> [B, C]``. The hidden layers'
outputs (after ReLU) are the "features" the auxiliary heads read: 2-D ``[B, h_i]`` vectors,
which :class:`tidal.models.MultiScaleHead` takes as they are (no pooling).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tidal.models.resnet import ModelOutput

__all__ = ["MLP"]


class MLP(nn.Module):
    """MLP classifier with the package's ModelOutput contract.

    Args:
        in_dim: ``D``, the size of one input vector.
        num_classes: ``C``.
        hidden: widths of the hidden layers (at least one); the last is the embedding size.
        dropout: dropout probability before the classifier (0 = none; BALD's MC dropout uses it).
    """

    def __init__(self, in_dim: int, num_classes: int, hidden: Sequence[int] = (256, 256), dropout: float = 0.0) -> None:
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        if in_dim < 1 or num_classes < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"in_dim={in_dim}, num_classes={num_classes}, hidden={hidden}: all must be >= 1 "
                             "and hidden must name at least one layer, e.g. hidden=(256, 256)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        self.in_dim = in_dim
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip((in_dim, *hidden[:-1]), hidden))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden[-1], num_classes)
        self.feature_channels: tuple[int, ...] = hidden  # d of each [B, d] feature
        self.embedding_dim = hidden[-1]

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """``x``: float ``[B, in_dim]`` -> logits ``[B, C]``, embedding ``[B, h_last]``, features ``[B, h_i]``."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"MLP expects inputs [B, {self.in_dim}], got {list(x.shape)}; "
                             "build it with in_dim equal to the feature size")
        features = []
        for layer in self.hidden:
            x = F.relu(layer(x))
            features.append(x)
        return ModelOutput(self.logits_from_embedding(x), x, features)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """Dropout (if any) then ``fc``: ``[B, h_last] -> [B, C]``."""
        return self.fc(self.dropout(embedding))
