"""VAAL's β-VAE for feature vectors: the MLP counterpart of :class:`tidal.models.vae.VAE`.

Same interface (``encode -> (mu, logvar)``, ``decode(z, cond)``, ``forward(x, cond,
generator) -> VAEOutput``), so VAAL and TA-VAAL use it unchanged on ``(D,)`` inputs. Each
encoder stage is Linear + BN + ReLU (the conv VAE's Conv + BN + ReLU); the decoder mirrors
it and ends in a Linear layer, because the targets are real-valued features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tidal.models.vae import ReparameterisedVAE

__all__ = ["MLPVAE"]


def _stage(a: int, b: int) -> list[nn.Module]:
    return [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]


class MLPVAE(ReparameterisedVAE):
    """MLP β-VAE with an optional condition vector appended to the latent.

    Args:
        in_dim: ``D``, the size of one input vector.
        latent_dim: size of ``z`` (VAAL: 32).
        hidden: encoder widths, input side first (the decoder mirrors them).
        cond_dim: size of the condition concatenated to ``z`` before decoding
            (0 for VAAL, 1 for TA-VAAL's loss rank).
    """

    def __init__(self, in_dim: int, latent_dim: int = 32, hidden: Sequence[int] = (256, 128),
                 cond_dim: int = 0) -> None:
        super().__init__()
        hidden = tuple(hidden)
        if in_dim < 1 or latent_dim < 1 or cond_dim < 0 or not hidden or min(hidden) < 1:
            raise ValueError(f"bad MLPVAE sizes: in_dim={in_dim}, latent_dim={latent_dim}, hidden={hidden}, "
                             f"cond_dim={cond_dim}; all must be >= 1 (cond_dim >= 0, hidden non-empty)")
        self.in_dim, self.latent_dim, self.cond_dim = in_dim, latent_dim, cond_dim
        widths = (in_dim, *hidden)
        self.encoder = nn.Sequential(*[m for a, b in zip(widths, widths[1:]) for m in _stage(a, b)])
        self.fc_mu = nn.Linear(hidden[-1], latent_dim)
        self.fc_logvar = nn.Linear(hidden[-1], latent_dim)
        back = widths[::-1]  # hidden[-1], ..., hidden[0], in_dim
        self.decoder = nn.Sequential(*_stage(latent_dim + cond_dim, back[0]),
                                     *[m for a, b in zip(back[:-2], back[1:-1]) for m in _stage(a, b)],
                                     nn.Linear(back[-2], in_dim))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim (+ cond_dim)]`` -> reconstruction ``[B, D]``."""
        return self.decoder(z)
