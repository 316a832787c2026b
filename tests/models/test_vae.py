import math

import pytest
import torch

from tidal.models.vae import VAE, LatentDiscriminator, VAEOutput, vae_loss


@pytest.mark.parametrize("in_ch,size", [(1, (28, 28)), (3, (32, 32)), (3, (20, 12))])
def test_output_shapes(in_ch, size):
    vae = VAE(in_ch, size, latent_dim=5, channels=(4, 8, 8))
    out = vae(torch.randn(3, in_ch, *size), generator=torch.Generator().manual_seed(0))
    assert out.recon.shape == (3, in_ch, *size)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (3, 5)


def test_condition_is_appended_to_the_latent():
    vae = VAE(1, (28, 28), latent_dim=4, channels=(4, 8), cond_dim=1).eval()
    mu, _ = vae.encode(torch.randn(2, 1, 28, 28))
    a, b = vae.decode(mu, torch.zeros(2, 1)), vae.decode(mu, torch.ones(2, 1))
    assert a.shape == (2, 1, 28, 28) and not torch.allclose(a, b)
    d = LatentDiscriminator(4, cond_dim=1, hidden=8)
    assert d(mu, torch.zeros(2, 1)).shape == (2,)


def test_too_small_image_is_rejected_with_the_size():
    with pytest.raises(ValueError, match=r"image_size=\(6, 6\).*>= 8"):
        VAE(1, (6, 6), channels=(4, 4, 4))


@pytest.mark.parametrize("kl_reduction", ["sum", "mean"])
def test_vae_loss_perfect_reconstruction_and_prior_is_zero(kl_reduction):
    x = torch.randn(2, 1, 4, 4)
    zero = torch.zeros(2, 3)
    assert vae_loss(x, VAEOutput(x, zero, zero, zero), kl_reduction=kl_reduction).item() == 0.0


@pytest.mark.parametrize("kl_reduction, kl", [
    # Per element -1/2 (1 + logvar - mu^2 - exp(logvar)): mu^2/2 where logvar = 0, so
    # 0.5, 0, 2 | 0, 0.5, and (e^2 - 3)/2 for mu = 0, logvar = 2; 6 elements in all.
    ("sum", 3.0 + (math.e ** 2 - 3) / 2),  # VAAL's solver.py: torch.sum
    ("mean", (3.0 + (math.e ** 2 - 3) / 2) / 6),  # TA-VAAL's selection_methods.py: torch.mean
])
def test_vae_loss_hand_values_for_each_kl_reduction(kl_reduction, kl):
    x = torch.randn(2, 1, 4, 4)
    mu = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]])
    logvar = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    out = VAEOutput(x + 1, mu, logvar, mu)  # recon off by 1 everywhere: MSE 1 (a mean in both codebases)
    assert vae_loss(x, out, beta=2.0, kl_reduction=kl_reduction).item() == pytest.approx(1.0 + 2.0 * kl, rel=1e-6)


def test_vae_loss_unknown_kl_reduction_is_rejected_quoting_it():
    x, zero = torch.zeros(1, 1, 2, 2), torch.zeros(1, 2)
    with pytest.raises(ValueError, match=r"kl_reduction='batchmean'"):
        vae_loss(x, VAEOutput(x, zero, zero, zero), kl_reduction="batchmean")


def test_vae_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    vae = VAE(1, (28, 28), latent_dim=4, channels=(4, 8))
    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 0.1 + 2  # learnable: mostly offset
    g = torch.Generator().manual_seed(2)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = vae_loss(x, vae(x, generator=g), kl_reduction="mean")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.8 * losses[0]


def test_discriminator_separates_two_latent_clusters():
    # Known answer: "labeled" latents around +1, "unlabeled" around -1 in every dimension.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    lab = torch.randn(64, 8, generator=g) * 0.5 + 1
    unl = torch.randn(64, 8, generator=g) * 0.5 - 1
    d = LatentDiscriminator(8, hidden=32)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    target = torch.cat([torch.ones(64), torch.zeros(64)])
    for _ in range(20):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(d(torch.cat([lab, unl])), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    p_unlabeled = torch.sigmoid(-d(torch.cat([lab, unl])))
    assert p_unlabeled[64:].min() > p_unlabeled[:64].max()  # every unlabeled-looking one ranks higher
    assert ((p_unlabeled > 0.5) == (target == 0)).float().mean() == 1.0
