import pytest
import torch

from tidal.models import MLPVAE, LatentDiscriminator, vae_loss
from tidal.models.vae import VAEOutput


@pytest.mark.parametrize("hidden", [(32,), (24, 16)])
@pytest.mark.parametrize("cond_dim", [0, 1])
def test_shapes_like_the_conv_vae(hidden, cond_dim):
    vae = MLPVAE(10, latent_dim=4, hidden=hidden, cond_dim=cond_dim)
    x = torch.randn(6, 10)
    cond = torch.rand(6, 1) if cond_dim else None
    out = vae(x, cond, torch.Generator().manual_seed(0))
    assert isinstance(out, VAEOutput)
    assert out.recon.shape == (6, 10) and out.mu.shape == out.logvar.shape == out.z.shape == (6, 4)
    mu, logvar = vae.encode(x)
    assert mu.shape == (6, 4) and vae.decode(mu, cond).shape == (6, 10)
    assert out[:2].recon.shape == (2, 10)
    loss = vae_loss(x, out, kl_reduction="mean")
    loss.backward()
    assert loss.ndim == 0 and all(p.grad is not None for p in vae.parameters())
    assert LatentDiscriminator(4, cond_dim, 8)(out.mu, cond).shape == (6,)


def test_noise_comes_from_the_generator():
    vae = MLPVAE(5, latent_dim=3).eval()
    x = torch.randn(2, 5)
    a = vae(x, generator=torch.Generator().manual_seed(1))
    b = vae(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.z, b.z)


def test_bad_sizes():
    with pytest.raises(ValueError, match=r"in_dim=0"):
        MLPVAE(0)
    with pytest.raises(ValueError, match=r"hidden=\(\)"):
        MLPVAE(4, hidden=())


def test_vaal_picks_the_vae_by_input_shape():
    from tidal.data.dataset import FeatureDataset, ImageDataset
    from tidal.models.vae import VAE
    from tidal.strategies.base import TrainContext
    from tidal.strategies.vaal import VAALObjective

    def ctx(dataset):
        return TrainContext(dataset, torch.arange(4), torch.arange(4, 8), 2, (4,), 4, 1, torch.device("cpu"), 8,
                            True)

    vectors = FeatureDataset(torch.randn(8, 6), torch.zeros(8, dtype=torch.long), 2)
    objective = VAALObjective(ctx(vectors), passes=1, latent_dim=3, hidden=8, batch_size=4, vector_hidden=(8,))
    assert isinstance(objective.vae, MLPVAE) and objective.vae.in_dim == 6
    objective.fit()
    scores = objective.unlabeled_probability(torch.arange(4, 8))
    assert scores.shape == (4,) and scores.dtype == torch.float64 and bool(((scores > 0) & (scores < 1)).all())

    images = ImageDataset(torch.zeros(8, 1, 8, 8, dtype=torch.uint8), torch.zeros(8, dtype=torch.long), 2,
                          (0.5,), (0.25,))
    assert isinstance(VAALObjective(ctx(images), latent_dim=3, channels=(4,)).vae, VAE)
