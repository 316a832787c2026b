"""VAAL's generator and adversary: a small convolutional β-VAE and a latent discriminator.

VAAL (Sinha, Ebrahimi & Darrell, "Variational Adversarial Active Learning", ICCV 2019,
§3) learns a latent space with a β-VAE whose encoder also tries to fool a discriminator
that tells labeled from unlabeled latents; TA-VAAL (Kim et al., CVPR 2021, §3.3)
conditions the decoder and the discriminator on the sample's normalised loss rank.

The paper's networks are large (conv widths 128-1024, built for 32x32 or 64x64 inputs);
here the widths are a constructor argument (default ``(16, 32, 64)``, CPU-sized) and all
shapes are inferred from ``image_size``, so 28x28x1 FashionMNIST and 32x32x3 CIFAR both
work. Each stage is Conv(k=4, s=2, p=1) + BN + ReLU, which maps a side ``s`` to
``s // 2``; the decoder mirrors it with transposed convolutions whose ``output_padding``
restores odd sides exactly (28 -> 14 -> 7 -> 3 -> 7 -> 14 -> 28).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["KL_REDUCTIONS", "LatentDiscriminator", "VAE", "VAEOutput", "vae_loss"]


@dataclass
class VAEOutput:
    """recon: ``[B, C, H, W]``; mu, logvar, z: ``[B, latent_dim]`` (z = mu + σ·ε)."""

    recon: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor
    z: torch.Tensor

    def __getitem__(self, rows: slice) -> "VAEOutput":
        """The same rows of every field, e.g. ``out[:m]``."""
        return VAEOutput(self.recon[rows], self.mu[rows], self.logvar[rows], self.z[rows])


def _halve(side: int) -> int:
    """Output side of Conv2d(kernel 4, stride 2, padding 1): ``floor(side / 2)``."""
    return (side + 2 - 4) // 2 + 1


class ReparameterisedVAE(nn.Module):
    """What both VAEs share: ``encoder -> (fc_mu, fc_logvar)``, the reparameterised sample, and
    a decoder fed ``z`` (with the condition appended). A subclass builds ``encoder``, ``fc_mu``,
    ``fc_logvar`` and ``cond_dim`` and implements :meth:`_decode` (``[B, latent (+cond)]`` ->
    reconstruction shaped like ``x``)."""

    cond_dim: int

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, ...]`` -> ``(mu, logvar)``, each ``[B, latent_dim]``."""
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``z [B, latent_dim]`` (+ ``cond [B, cond_dim]``) -> reconstruction shaped like ``x``."""
        if self.cond_dim:
            z = torch.cat([z, cond], dim=1)
        return self._decode(z)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> VAEOutput:
        """Encode, sample ``z = mu + exp(logvar / 2) · ε`` (ε from ``generator``), decode."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        return VAEOutput(self.decode(z, cond), mu, logvar, z)


class VAE(ReparameterisedVAE):
    """Convolutional β-VAE with an optional condition vector appended to the latent.

    Args:
        in_channels: image channels (1 for FashionMNIST, 3 for CIFAR).
        image_size: ``(H, W)``; every side must be ``>= 2 ** len(channels)``.
        latent_dim: size of ``z`` (VAAL: 32).
        channels: encoder widths, one stride-2 stage each (the decoder mirrors them).
        cond_dim: size of the condition concatenated to ``z`` before decoding
            (0 for VAAL, 1 for TA-VAAL's loss rank).
    """

    def __init__(self, in_channels: int, image_size: tuple[int, int], latent_dim: int = 32,
                 channels: Sequence[int] = (16, 32, 64), cond_dim: int = 0) -> None:
        super().__init__()
        channels = tuple(channels)
        if in_channels < 1 or latent_dim < 1 or cond_dim < 0 or not channels or min(channels) < 1:
            raise ValueError(f"bad VAE sizes: in_channels={in_channels}, latent_dim={latent_dim}, "
                             f"channels={channels}, cond_dim={cond_dim}; all must be >= 1 (cond_dim >= 0)")
        sizes = [tuple(image_size)]
        for _ in channels:
            sizes.append((_halve(sizes[-1][0]), _halve(sizes[-1][1])))
        if min(sizes[-1]) < 1:
            raise ValueError(f"image_size={tuple(image_size)} is too small for {len(channels)} stride-2 stages; "
                             f"each side must be >= {2 ** len(channels)} (or pass fewer channels)")
        self.latent_dim, self.cond_dim = latent_dim, cond_dim
        self._bottom = (channels[-1], *sizes[-1])  # (c, h, w) of the deepest feature map
        flat = channels[-1] * sizes[-1][0] * sizes[-1][1]

        enc, prev = [], in_channels
        for c in channels:
            enc += [nn.Conv2d(prev, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            prev = c
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        self.fc_mu = nn.Linear(flat, latent_dim)
        self.fc_logvar = nn.Linear(flat, latent_dim)

        self.fc_dec = nn.Linear(latent_dim + cond_dim, flat)
        dec = []
        for j in reversed(range(len(channels))):  # stage j: sizes[j + 1] -> sizes[j]
            out_c = channels[j - 1] if j > 0 else channels[0]
            pad = (sizes[j][0] - 2 * sizes[j + 1][0], sizes[j][1] - 2 * sizes[j + 1][1])  # 0 or 1 per side
            dec += [nn.ConvTranspose2d(channels[j], out_c, 4, 2, 1, output_padding=pad, bias=False),
                    nn.BatchNorm2d(out_c), nn.ReLU(inplace=True)]
        # Linear output: the targets are mean/std-normalised images, not values in [0, 1].
        self.decoder = nn.Sequential(*dec, nn.Conv2d(channels[0], in_channels, 3, 1, 1))

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim (+ cond_dim)]`` -> reconstruction ``[B, C, H, W]``."""
        return self.decoder(self.fc_dec(z).view(-1, *self._bottom))


KL_REDUCTIONS = ("sum", "mean")  # VAAL's code sums the KL term, TA-VAAL's averages it


def vae_loss(x: torch.Tensor, out: VAEOutput, beta: float = 1.0, *, kl_reduction: str) -> torch.Tensor:
    """β-VAE objective (VAAL Eq. 1), a scalar: ``MSE(recon, x) + β · KL(q(z|x) || N(0, I))``.

    The MSE is a mean over the ``B·C·H·W`` pixels in both authors' codebases; the KL term
    ``-½ Σ (1 + logvar - mu² - exp(logvar))`` is reduced over the ``B·latent_dim`` elements
    differently by each:

    * ``kl_reduction="sum"``: VAAL (sinhasam/vaal, ``solver.py``, ``Solver.vae_loss``:
      ``-0.5 * torch.sum(...)``), so the KL weighs ``B·latent_dim`` times more than a mean;
    * ``kl_reduction="mean"``: TA-VAAL (cubeyoung/TA-VAAL, ``selection_methods.py``,
      ``vae_loss``: ``-0.5 * torch.mean(...)``).

    Args:
        x: target images ``[B, C, H, W]``; out: the VAE's output on them.
        beta: β, the KL weight.
        kl_reduction: ``"sum"`` or ``"mean"`` (keyword only: each method names its own).
    """
    if kl_reduction not in KL_REDUCTIONS:
        raise ValueError(f"kl_reduction={kl_reduction!r} must be one of {KL_REDUCTIONS}")
    reduce = torch.sum if kl_reduction == "sum" else torch.mean
    kl = -0.5 * reduce(1 + out.logvar - out.mu.pow(2) - out.logvar.exp())
    return F.mse_loss(out.recon, x) + beta * kl


class LatentDiscriminator(nn.Module):
    """VAAL's adversary: an MLP ``latent (+ cond) -> hidden -> hidden -> 1`` with ReLUs.

    Returns the logit of "labeled" ``[B]`` (VAAL's convention: labeled = 1, unlabeled = 0);
    ``sigmoid(-logit)`` is the probability that a sample is unlabeled.
    """

    def __init__(self, latent_dim: int = 32, cond_dim: int = 0, hidden: int = 512) -> None:
        super().__init__()
        if latent_dim < 1 or cond_dim < 0 or hidden < 1:
            raise ValueError(f"bad discriminator sizes: latent_dim={latent_dim}, cond_dim={cond_dim}, "
                             f"hidden={hidden}; latent_dim and hidden must be >= 1, cond_dim >= 0")
        self.cond_dim = cond_dim
        self.net = nn.Sequential(
            nn.Linear(latent_dim + cond_dim, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``z [B, latent_dim]`` (+ ``cond [B, cond_dim]``) -> logit of "labeled" ``[B]``."""
        if self.cond_dim:
            z = torch.cat([z, cond], dim=1)
        return self.net(z).squeeze(1)
