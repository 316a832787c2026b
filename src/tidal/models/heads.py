"""Auxiliary heads that read the backbone's multi-scale feature maps.

TiDAL's TD prediction module (paper §4.1, Appendix C) and Learning Loss's loss-prediction
module (Yoo & Kweon 2019) share one architecture: each feature map is global-average-
pooled, mapped by Linear(c_i, 128) and ReLU; the results are concatenated and a final
Linear maps ``4 * 128`` to the output size. A 2-D feature ``[B, c_i]`` (an MLP's hidden
layer) skips the pooling; 4-D maps are computed exactly as before it was allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MultiScaleHead"]


class MultiScaleHead(nn.Module):
    """GAP -> Linear(c_i, hidden) -> ReLU per feature map; concat; Linear(k * hidden, out_dim).

    Args:
        in_channels: channels ``c_i`` of each feature map (e.g. ``model.feature_channels``),
            so nothing depends on the input resolution or the backbone width.
        out_dim: ``C`` for TiDAL (predicted TD logits), 1 for Learning Loss.
        hidden: per-scale width (128 in both papers).
    """

    def __init__(self, in_channels: Sequence[int], out_dim: int, hidden: int = 128) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("in_channels is empty; pass the channel count of each feature map")
        self.fcs = nn.ModuleList(nn.Linear(c, hidden) for c in in_channels)
        self.out = nn.Linear(hidden * len(in_channels), out_dim)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: maps ``[B, c_i, h_i, w_i]`` and/or vectors ``[B, c_i]``; returns ``[B, out_dim]``."""
        if len(features) != len(self.fcs):
            raise ValueError(f"got {len(features)} feature maps, the head was built for {len(self.fcs)}")
        pooled = [F.relu(fc(_pool(f))) for f, fc in zip(features, self.fcs)]
        return self.out(torch.cat(pooled, dim=1))


def _pool(f: torch.Tensor) -> torch.Tensor:
    """``[B, c, h, w]`` -> GAP ``[B, c]``; ``[B, c]`` (an MLP's hidden vector) as it is."""
    if f.dim() == 4:
        return torch.flatten(F.adaptive_avg_pool2d(f, 1), 1)
    if f.dim() == 2:
        return f
    raise ValueError(f"a feature of shape {list(f.shape)} is neither a map [B, c, h, w] nor a vector [B, c]; "
                     "tap layers that give one of those")
