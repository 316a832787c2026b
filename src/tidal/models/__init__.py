"""Backbones, the hook wrapper for any classifier, the model factory and auxiliary heads."""

from tidal.models.factory import (ModelInfo, build_model, check_model_spec, describe_layers, list_models,
                                  model_capabilities, model_info, model_name, register_model)
from tidal.models.heads import MultiScaleHead
from tidal.models.hooks import HookedModel
from tidal.models.mlp import MLP
from tidal.models.resnet import BasicBlock, ModelOutput, ResNet18
from tidal.models.resnet50 import Bottleneck, ResNet50, load_weights
from tidal.models.vae import VAE, LatentDiscriminator, vae_loss
from tidal.models.vae_mlp import MLPVAE

__all__ = [
    "MLP", "MLPVAE", "VAE", "BasicBlock", "Bottleneck", "HookedModel", "LatentDiscriminator", "ModelInfo",
    "ModelOutput", "MultiScaleHead", "ResNet18", "ResNet50", "build_model", "check_model_spec", "describe_layers",
    "list_models", "load_weights", "model_capabilities", "model_info", "model_name", "register_model", "vae_loss",
]
