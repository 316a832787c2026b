"""Backbones and auxiliary heads."""

from tidal.models.heads import MultiScaleHead
from tidal.models.resnet import BasicBlock, ModelOutput, ResNet18
from tidal.models.vae import VAE, LatentDiscriminator, vae_loss

__all__ = ["VAE", "BasicBlock", "LatentDiscriminator", "ModelOutput", "MultiScaleHead", "ResNet18", "vae_loss"]
