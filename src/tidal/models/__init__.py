"""Backbones and auxiliary heads."""

from tidal.models.heads import MultiScaleHead
from tidal.models.resnet import BasicBlock, ModelOutput, ResNet18

__all__ = ["BasicBlock", "ModelOutput", "MultiScaleHead", "ResNet18"]
