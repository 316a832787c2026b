"""CIFAR-style ResNet-18 (He et al. 2016) exposing the taps active learning needs.

CIFAR variant: 3x3 stride-1 stem, no max-pool, BasicBlocks [2, 2, 2, 2] at widths
``[w, 2w, 4w, 8w]`` (``w = 64`` in the paper). One forward pass returns the logits, the
penultimate embedding and the four stage feature maps, so auxiliary heads (TiDAL's TD
prediction module, Learning Loss) need no second pass.

The convolution weights are stored channels-last (NHWC): oneDNN and cuDNN then run every
convolution of the network in that layout, which trains this narrow network 1.1-1.4x
faster on a 2-core x86_64 CPU (``benchmarks/channels_last.py``). Inputs may be in either
layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModelOutput", "ResNet18", "BasicBlock"]


@dataclass
class ModelOutput:
    """What a backbone's forward pass gives the rest of the package.

    logits: ``[B, C]``; embedding: ``[B, D]`` (penultimate, after pooling);
    features: the multi-scale feature maps ``[B, c_i, h_i, w_i]``, shallow to deep.
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    features: list[torch.Tensor]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-style ResNet-18.

    Args:
        num_classes: size of the classifier output ``C``.
        width: channels of the first stage (64 in the paper); stages use ``w, 2w, 4w, 8w``.
        in_channels: image channels (1 for FashionMNIST, 3 for CIFAR/SVHN).
        dropout: dropout probability before the classifier (0 = none; BALD's MC dropout uses it).
    """

    def __init__(self, num_classes: int, width: int = 64, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if width < 1 or num_classes < 1 or in_channels < 1:
            raise ValueError(f"width={width}, num_classes={num_classes}, in_channels={in_channels} must all be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        widths = [width, 2 * width, 4 * width, 8 * width]
        stages, in_planes = [], width
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(widths[-1], num_classes)
        self.feature_channels: tuple[int, ...] = tuple(widths)  # channels of each feature map
        self.embedding_dim = widths[-1]
        self.to(memory_format=torch.channels_last)  # 4-D weights NHWC; see the module docstring

    def forward(self, x: torch.Tensor) -> ModelOutput:
        """``x``: float ``[B, in_channels, H, W]`` (any ``H, W >= 8``)."""
        out = F.relu(self.bn1(self.conv1(x)))
        features = []
        for stage in self.stages:
            out = stage(out)
            features.append(out)
        embedding = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return ModelOutput(self.logits_from_embedding(embedding), embedding, features)

    def logits_from_embedding(self, embedding: torch.Tensor) -> torch.Tensor:
        """Classifier head: dropout (if any) then Linear, ``[B, D] -> [B, C]``. Everything stochastic
        in the network is here, so MC dropout can reuse one backbone pass (``tidal.gather``)."""
        return self.linear(self.dropout(embedding))
