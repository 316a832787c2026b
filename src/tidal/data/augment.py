"""Batch-wise augmentation and normalisation on tensors (no per-sample Python).

All functions take a batch ``[B, C, H, W]``; randomness comes from an explicit generator.
"""

from __future__ import annotations

import torch

__all__ = ["to_float", "random_crop", "random_flip", "augment"]


def to_float(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``[B, C, H, W]`` -> normalised float32 ``[B, C, H, W]``: ``(x / 255 - mean) / std``."""
    x = images.float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels then crop back to ``H x W`` at a random offset per sample."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=generator.device).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """The paper's training augmentation: random crop with padding, then horizontal flip."""
    x = random_crop(x, padding, generator)
    return random_flip(x, generator) if flip else x
