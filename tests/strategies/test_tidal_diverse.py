"""TD-weighted k-means++ seeding (issue 20) on hand-made points, blockwise equality, the strategy's encoding."""

import math
import os

import pytest
import torch
from memory_probe import LargestTensor

import tidal.strategies.tidal_diverse as diverse
from tidal.embedstore import EmbeddingStore, StoreSpec
from tidal.strategies import ScoreInputs, create_strategy, select_top_k
from tidal.strategies.tidal_diverse import most_uncertain_mask, weighted_kmeans_pp


def _spy_multinomial(monkeypatch):
    """Record every mass the seeding draws from (and still draw)."""
    masses = []
    real = torch.multinomial

    def spy(mass, n, generator=None):
        masses.append(mass.clone())
        return real(mass, n, generator=generator)

    monkeypatch.setattr(diverse.torch, "multinomial", spy)
    return masses


def test_weighted_d2_masses_by_hand(monkeypatch):
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    w = torch.tensor([1.0, 0.5, 2.0, 0.1])
    masses = _spy_multinomial(monkeypatch)
    picked = weighted_kmeans_pp(x, w, 2, torch.Generator().manual_seed(0))
    assert picked[0] == 2  # the largest weight starts
    # D² to x=3: 9, 4, 0, 49; times the weights: 9, 2, 0, 4.9
    assert torch.allclose(masses[0], torch.tensor([9.0, 2.0, 0.0, 4.9], dtype=torch.float64))
    assert picked[1] in (0, 1, 3)


def test_weighted_d2_frequencies_match_the_hand_computed_probabilities():
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0]])
    w = torch.tensor([1.0, 0.5, 2.0, 0.1])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(3000):
        counts[weighted_kmeans_pp(x, w, 2, g)[1]] += 1
    assert torch.allclose(counts / 3000, torch.tensor([9, 2, 0, 4.9]) / 15.9, atol=0.03)


def test_allowed_mask_zero_weights_and_duplicates(monkeypatch):
    x = torch.tensor([[0.0], [1.0], [3.0], [10.0], [3.0]])
    g = torch.Generator().manual_seed(0)
    allowed = torch.tensor([True, False, True, False, True])
    for _ in range(20):
        assert set(weighted_kmeans_pp(x, torch.ones(5), 3, g, allowed).tolist()) == {0, 2, 4}
    # after x=3 (weight 2) starts, the allowed points left are weightless (x=0) or on it (the second
    # x=3): no D² mass, so each draw is uniform over the allowed points still open
    masses = _spy_multinomial(monkeypatch)
    picked = weighted_kmeans_pp(x, torch.tensor([0.0, 1.0, 2.0, 1.0, 1.0]), 3, g, allowed)
    assert picked[0] == 2
    assert masses[0].tolist() == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert masses[1].tolist() == ([1.0, 0.0, 0.0, 0.0, 0.0] if picked[1] == 4 else [0.0, 0.0, 0.0, 0.0, 1.0])
    assert sorted(picked.tolist()) == [0, 2, 4]
    assert weighted_kmeans_pp(x, torch.ones(5), 0, g).shape == (0,)
    with pytest.raises(ValueError, match="k=6 must be between 0 and the number of points n=5"):
        weighted_kmeans_pp(x, torch.ones(5), 6, g)
    with pytest.raises(ValueError, match=r"one weight per point, \[5\]"):
        weighted_kmeans_pp(x, torch.ones(4), 2, g)


def test_most_uncertain_mask_ties_go_to_the_lower_position():
    u = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.5])
    assert most_uncertain_mask(u, 2).tolist() == [True, True, False, False, False]
    assert most_uncertain_mask(u, 9).all() and not most_uncertain_mask(u, 0).any()


@pytest.mark.parametrize("spec", [StoreSpec(block_rows=64), StoreSpec("disk", block_rows=128),
                                  StoreSpec(dtype="float16", block_rows=64)])
def test_blockwise_store_gives_the_whole_array_picks(spec, tmp_path):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 6, generator=g)
    w = torch.rand(300, generator=g)
    allowed = most_uncertain_mask(w, 120)
    with EmbeddingStore(StoreSpec(spec.kind, spec.dtype, str(tmp_path), spec.block_rows)) as store:
        rows = store.array("embedding", 300, 6)
        rows.write(0, x[:100])
        rows.write(100, x[100:])
        got = weighted_kmeans_pp(rows, w, 25, torch.Generator().manual_seed(7), allowed)
    ref = x.half().float() if spec.dtype == "float16" else x
    want = weighted_kmeans_pp(ref, w, 25, torch.Generator().manual_seed(7), allowed)
    assert torch.equal(got, want) and len(set(got.tolist())) == 25 and bool(allowed[got].all())


class _FixedUncertainty:
    def __init__(self, u):
        self.u = u

    def td_uncertainty(self, candidates, kind):
        assert kind in ("entropy", "margin")
        return self.u


@pytest.mark.parametrize("name", ["tidal-diverse-entropy", "tidal-diverse-margin", "tidal-detached-diverse-entropy"])
def test_strategy_encodes_its_picks_among_the_most_uncertain(name):
    g = torch.Generator().manual_seed(0)
    n, k = 200, 4
    emb, u = torch.randn(n, 5, generator=g), torch.rand(n, generator=g)
    cand = torch.arange(1000, 1000 + n)
    inp = ScoreInputs(cand, torch.tensor([1]), k, torch.Generator().manual_seed(5), embedding=emb,
                      objective=_FixedUncertainty(u))
    scores = create_strategy(name).score(inp)
    picked = weighted_kmeans_pp(emb, u.double(), k, torch.Generator().manual_seed(5),
                                most_uncertain_mask(u, 10 * k))
    ids, top = select_top_k(scores, cand, k)
    assert torch.equal(ids, cand[picked]) and top.tolist() == [4.0, 3.0, 2.0, 1.0]
    assert int((scores > 0).sum()) == k
    assert bool(most_uncertain_mask(u, 10 * k)[picked].all()) and picked[0] == int(u.argmax())


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_prefilter_is_the_config_field(beta):
    """β (``StrategyConfig.diverse_prefilter``) bounds the draws to the ⌈β k⌉ most uncertain;
    β = 1 takes exactly the top-k of u."""
    from tidal.config import StrategyConfig

    g = torch.Generator().manual_seed(1)
    n, k = 100, 6
    emb, u = torch.randn(n, 3, generator=g), torch.rand(n, generator=g)
    inp = ScoreInputs(torch.arange(n), torch.tensor([1]), k, torch.Generator().manual_seed(2), embedding=emb,
                      objective=_FixedUncertainty(u))
    scores = create_strategy("tidal-diverse-entropy", StrategyConfig(diverse_prefilter=beta)).score(inp)
    picked = torch.nonzero(scores > 0).flatten()
    allowed = most_uncertain_mask(u, math.ceil(beta * k))
    assert len(picked) == k and bool(allowed[picked].all())
    if beta == 1.0:
        assert set(picked.tolist()) == set(torch.topk(u, k).indices.tolist())
    expected = weighted_kmeans_pp(emb, u.double(), k, torch.Generator().manual_seed(2), allowed)
    assert set(picked.tolist()) == set(expected.tolist())


# ---- through the loop's selection: the embedding store, in memory or on disk ----------------------

def _setup(n, dim=64, classes=50, seed=0):
    """A clustered feature pool, an MLP, the strategy and its objective (as after training: the
    module is untrained but the objective has seen the model), candidates and labeled ids."""
    from tidal.data.dataset import FeatureDataset
    from tidal.models.mlp import MLP
    from tidal.strategies import TrainContext

    g = torch.Generator().manual_seed(seed)
    centers = 4 * torch.randn(classes, dim, generator=g)
    labels = torch.randint(0, classes, (n + 40,), generator=g)
    split = FeatureDataset(centers[labels] + torch.randn(n + 40, dim, generator=g), labels, classes)
    torch.manual_seed(0)
    model = MLP(dim, classes, hidden=(dim,)).eval()
    strategy = create_strategy("tidal-diverse-margin")
    candidates, labeled = torch.arange(n), torch.arange(n, n + 40)
    ctx = TrainContext(split, labeled, candidates, classes, model.feature_channels, model.embedding_dim, 2,
                       torch.device("cpu"), 64)
    objective = strategy.make_objective(ctx)
    objective.end_epoch(1, model)
    return split, model, strategy, objective, candidates, labeled


def test_selection_is_the_same_from_any_store(tmp_path):
    from tidal.gather import ScoringPass, select

    split, model, strategy, objective, candidates, labeled = _setup(700)
    runs = [select(strategy, ScoringPass(model, objective, split, candidates, labeled, 20,
                                         torch.Generator().manual_seed(2), 64), store=spec)
            for spec in (None, StoreSpec(block_rows=64), StoreSpec("disk", "float32", str(tmp_path), 128))]
    for ids, scores in runs[1:]:
        assert torch.equal(ids, runs[0][0]) and torch.equal(scores, runs[0][1])
    assert len(set(runs[0][0].tolist())) == 20 and os.listdir(tmp_path) == []


def test_a_disk_store_keeps_it_from_allocating_n_by_d(tmp_path):
    from tidal.gather import ScoringPass, select

    dim = 64
    for n in (2_000, 20_000):
        split, model, strategy, objective, candidates, labeled = _setup(n, dim)
        with LargestTensor() as probe:
            ids, _ = select(strategy, ScoringPass(model, objective, split, candidates, labeled, 16,
                                                  torch.Generator().manual_seed(0), 64),
                            store=StoreSpec("disk", "float16", str(tmp_path), 64))
        assert len(ids) == 16
        # a few float64/int64 values per candidate, or one float64 block: never the [n, D] embedding
        assert probe.largest <= max(8 * n, 64 * dim * 8), (n, probe.largest)
        assert probe.largest < n * dim * 4 / 4
