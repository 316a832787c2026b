import pytest
import torch

from tidal.config import ExperimentConfig, StrategyConfig
from tidal.data import ImageDataset
from tidal.models import ResNet18
from tidal.strategies import ScoreInputs, TrainContext, create_strategy, strategy_class
from tidal.strategies.vaal import TAVAALObjective, VAALObjective, normalized_rank


def _context(images: torch.Tensor, labeled: torch.Tensor, candidates: torch.Tensor, model: torch.nn.Module,
             epochs: int = 2) -> TrainContext:
    ds = ImageDataset(images, torch.zeros(len(images), dtype=torch.int64), 2, (0.5,), (0.25,))
    return TrainContext(ds, labeled, candidates, 2, model.feature_channels, model.embedding_dim, epochs,
                        torch.device("cpu"), eval_batch_size=16)


def _tiny_run(name: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (40, 1, 28, 28), generator=g, dtype=torch.uint8)
    labeled, candidates = torch.arange(10), torch.arange(10, 40)
    model = ResNet18(2, width=2, in_channels=1)
    ctx = _context(images, labeled, candidates, model)
    strategy = create_strategy(name, StrategyConfig(vaal_epochs=1, vaal_latent_dim=4))
    torch.manual_seed(seed)
    objective = strategy.make_objective(ctx)
    objective.end_epoch(ctx.epochs - 1, model)  # the last epoch: the VAE and D train here
    inputs = ScoreInputs(candidates=candidates, labeled=labeled, k=5, generator=g, objective=objective)
    return strategy.score(inputs)


@pytest.mark.parametrize("name", ["vaal", "ta-vaal"])
def test_tiny_run_scores_every_candidate(name):
    scores = _tiny_run(name)
    assert scores.shape == (30,) and torch.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()  # a probability of "unlabeled"


def test_same_seed_same_scores():
    assert torch.equal(_tiny_run("vaal", seed=3), _tiny_run("vaal", seed=3))


@pytest.mark.parametrize("name", ["vaal", "ta-vaal"])
def test_metadata(name):
    cls = strategy_class(name)
    assert cls.semi_supervised
    assert cls.description.endswith("[semi-supervised: trains on unlabeled data]")


def test_unlabeled_looking_candidates_score_higher():
    # Known answer: every labeled image is dark; half the candidates are dark, half bright.
    # D can only tell bright ones apart, so they must get the higher "unlabeled" probability.
    g = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 40, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
    bright = torch.randint(215, 256, (16, 1, 8, 8), generator=g, dtype=torch.uint8)
    images = torch.cat([dark, bright])  # 0..47 labeled, 48..63 dark candidates, 64..79 bright ones
    model = ResNet18(2, width=2, in_channels=1)
    ctx = _context(images, torch.arange(48), torch.arange(48, 80), model)
    torch.manual_seed(0)
    # The mechanism under test is D. With VAAL's summed KL (64x a mean here) this toy VAE's
    # latent collapses onto the prior within 15 passes and D has nothing left to separate.
    objective = VAALObjective(ctx, passes=15, latent_dim=4, channels=(4, 8), hidden=32, batch_size=16, lr=2e-3,
                              kl_reduction="mean")
    objective.end_epoch(ctx.epochs - 1, model)
    p = objective.unlabeled_probability(torch.arange(48, 80))
    assert p[16:].min() > p[:16].max()


def test_nothing_trains_before_the_last_epoch():
    model = ResNet18(2, width=2, in_channels=1)
    images = torch.zeros(12, 1, 8, 8, dtype=torch.uint8)
    objective = VAALObjective(_context(images, torch.arange(4), torch.arange(4, 12), model, epochs=3),
                              passes=1, latent_dim=2, channels=(2,), hidden=4)
    objective.end_epoch(0, model)
    with pytest.raises(RuntimeError, match="end_epoch of the last epoch"):
        objective.unlabeled_probability(torch.arange(4, 12))


def test_normalized_rank_hand_values():
    r = normalized_rank(torch.tensor([0.3, -1.0, 2.0, 0.3]))
    assert torch.allclose(r, torch.tensor([1 / 3, 0.0, 1.0, 2 / 3]))  # ties keep input order


def test_ta_vaal_condition_is_the_rank_over_labeled_and_candidates():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 1, 8, 8), generator=g, dtype=torch.uint8)
    model = ResNet18(2, width=2, in_channels=1)
    ctx = _context(images, torch.arange(5), torch.arange(5, 15), model)  # 15..19 are in neither
    objective = create_strategy("ta-vaal").make_objective(ctx)
    assert isinstance(objective, TAVAALObjective)
    objective.prepare(model)
    r = objective.condition(torch.arange(15))
    assert r.shape == (15, 1)
    assert torch.allclose(r.squeeze(1).sort().values, torch.arange(15) / 14.0)


@pytest.mark.parametrize("name, kl_reduction", [("vaal", "sum"), ("ta-vaal", "mean")])
def test_each_method_reduces_the_kl_term_as_its_authors_code(name, kl_reduction, monkeypatch):
    # VAAL's solver.py sums the KL term, TA-VAAL's selection_methods.py averages it.
    import tidal.strategies.vaal as vaal_module

    seen = []
    real = vaal_module.vae_loss

    def spy(*args, **kwargs):
        seen.append(kwargs["kl_reduction"])
        return real(*args, **kwargs)

    monkeypatch.setattr(vaal_module, "vae_loss", spy)
    _tiny_run(name)
    assert seen and set(seen) == {kl_reduction}


def test_vaal_epochs_below_one_is_rejected_quoting_the_value():
    with pytest.raises(ValueError, match="vaal_epochs=0"):
        ExperimentConfig(strategy=StrategyConfig(vaal_epochs=0)).validate()
