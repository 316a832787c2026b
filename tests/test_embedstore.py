"""The embedding store and the blockwise set strategies: equal to the whole-array algorithms bit for bit
(float32), close on a float16 disk store, bounded in what they allocate, and strict about bad input."""

from __future__ import annotations

import os

import pytest
import torch
from memory_probe import LargestTensor

from tidal.config import ALConfig, ExperimentConfig, StrategyConfig, TrainConfig
from tidal.data.dataset import FeatureDataset
from tidal.embedstore import ALIGN, EmbeddingStore, StoreSpec, StoredRows, as_rows, row_spans
from tidal.gather import ScoringPass, gather, select
from tidal.loop import configured_model, new_model, new_objective
from tidal.models.mlp import MLP
from tidal.strategies import TrainContext, create_strategy, select_top_k
from tidal.strategies.cal import fit_logistic_regression
from tidal.strategies.diversity import (
    _sq_dists,
    badge_seeding,
    gradient_embedding_factors,
    kcenter_greedy,
    kmeans_pp_seeding,
    outer_product_sq_dists,
    pick_order_scores,
)
from tidal.train import train_model

SET_STRATEGIES = ["coreset", "badge", "cal", "cal-uncertain"]
TC = TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=16)


def _trained(name, tiny_splits):
    """A strategy, its model and objective after a short training on the tiny split's first 48 samples."""
    strategy = create_strategy(name)
    train, labeled = tiny_splits.train, torch.arange(0, 48)
    torch.manual_seed(0)
    model = new_model(configured_model(TC), train, strategy)
    objective = new_objective(strategy, model, train, (labeled, torch.arange(49, 240)), TC, torch.device("cpu"))
    train_model(model, objective, train, labeled, TC, torch.Generator().manual_seed(1))
    return strategy, model, objective, labeled


# ---- the whole-array algorithms as they were before the store (the reference) --------------------

def _whole_kcenter(candidates, centers, k, block=1 << 22):
    n = candidates.shape[0]
    picked = torch.empty(k, dtype=torch.int64)
    if k == 0:
        return picked
    x_sq = (candidates * candidates).sum(dim=1)
    if len(centers) > 0:
        min_d = torch.full((n,), float("inf"), dtype=candidates.dtype)
        for chunk in centers.split(max(1, block // n)):
            min_d = torch.minimum(min_d, _sq_dists(candidates, x_sq, chunk).min(dim=1).values)
    else:
        min_d = _sq_dists(candidates, x_sq, candidates.mean(dim=0, keepdim=True)).squeeze(1)
    for step in range(k):
        i = int(torch.argmax(min_d))
        picked[step] = i
        d_new = _sq_dists(candidates, x_sq, candidates[i: i + 1]).squeeze(1)
        min_d = d_new if step == 0 and len(centers) == 0 else torch.minimum(min_d, d_new)
        min_d[i] = -1.0
    return picked


def _whole_kmeans_pp(a, b, k, generator):
    n = a.shape[0]
    picked = torch.empty(k, dtype=torch.int64)
    a, b = a.double(), b.double()
    self_sq = (a * a).sum(dim=1) * (b * b).sum(dim=1)
    taken = torch.zeros(n, dtype=torch.bool)
    min_d = torch.full((n,), float("inf"), dtype=torch.float64)
    for step in range(k):
        if step == 0:
            i = int(torch.argmax(self_sq))
        else:
            weights = min_d.masked_fill(taken, 0.0)
            if not weights.sum() > 0:
                weights = (~taken).double()
            i = int(torch.multinomial(weights, 1, generator=generator))
        picked[step] = i
        taken[i] = True
        min_d = torch.minimum(min_d, outer_product_sq_dists(a, b, a[i], b[i], self_sq))
    return picked


def _whole_scores(name, inputs, threshold=0.5):
    """Today's (pre-store) score of a set strategy on whole gathered tensors."""
    if name == "coreset":
        return pick_order_scores(_whole_kcenter(inputs.embedding, inputs.labeled_embedding, inputs.k), len(inputs.candidates))
    if name == "badge":
        a, b = gradient_embedding_factors(inputs.probs, inputs.embedding)
        return pick_order_scores(_whole_kmeans_pp(a, b, inputs.k, inputs.generator), len(a))
    from tidal.strategies.cal import cartography_split

    uncertain = cartography_split(inputs.objective.fraction_correct(inputs.labeled), threshold)
    if bool(uncertain.all()) or not bool(uncertain.any()):
        pytest.skip("one-class split: nothing blockwise to compare")
    lab = inputs.labeled_embedding.double()
    mean, std = lab.mean(dim=0), lab.std(dim=0, correction=0)
    std = torch.where(std > 1e-6, std, torch.inf)
    theta, bias = fit_logistic_regression((lab - mean) / std, uncertain, inputs.generator)
    logit = (inputs.embedding.double() - mean) / std @ theta + bias
    return torch.sigmoid(-logit.abs()) if name == "cal" else torch.sigmoid(logit)


# ---- bit-identical to the whole arrays ------------------------------------------------------------

def test_row_spans_are_aligned_and_never_leave_a_single_row():
    for n in range(0, 300):
        spans = row_spans(n, 64)
        assert [i for s, e in spans for i in range(s, e)] == list(range(n))
        assert all(s % 64 == 0 for s, _ in spans)
        assert all(e - s >= 2 for s, e in spans) or n == 1


@pytest.mark.parametrize("n, dim, m", [(1000, 16, 30), (705, 64, 0), (257, 7, 3), (129, 512, 40)])
@pytest.mark.parametrize("rows", [64, 128, None])
def test_blockwise_kcenter_equals_the_whole_array_one(n, dim, m, rows):
    g = torch.Generator().manual_seed(n + m)
    x, c = torch.randn(n, dim, generator=g), torch.randn(m, dim, generator=g)
    want = _whole_kcenter(x, c, 40)
    got = kcenter_greedy(as_rows(x, rows), as_rows(c, rows), 40)
    assert torch.equal(got, want)
    if m:
        assert len(set(want.tolist())) == 40  # a real selection, not a degenerate tie


@pytest.mark.parametrize("n, classes, dim", [(1000, 10, 16), (385, 3, 64), (129, 50, 8)])
@pytest.mark.parametrize("rows", [64, 192, None])
def test_blockwise_badge_equals_the_whole_array_one(n, classes, dim, rows):
    g = torch.Generator().manual_seed(n)
    probs = torch.softmax(3 * torch.randn(n, classes, generator=g), dim=1)
    emb = torch.randn(n, dim, generator=g).relu()
    a, b = gradient_embedding_factors(probs, emb)
    want = _whole_kmeans_pp(a, b, 30, torch.Generator().manual_seed(5))
    got = badge_seeding(as_rows(probs, rows), as_rows(emb, rows), 30, torch.Generator().manual_seed(5))
    assert torch.equal(got, want)
    plain = kmeans_pp_seeding(as_rows(a, rows), as_rows(b, rows), 30, torch.Generator().manual_seed(5))
    assert torch.equal(plain, want)


@pytest.mark.parametrize("name", SET_STRATEGIES)
def test_set_strategies_over_the_store_equal_todays_selection(name, tiny_splits, tmp_path):
    strategy, model, objective, labeled = _trained(name, tiny_splits)
    train, k = tiny_splits.train, 25
    candidates = torch.arange(49, 240)  # 191 candidates: blocks of 64, 64, 63
    inputs = gather(ScoringPass(model, objective, train, candidates, labeled, k, torch.Generator().manual_seed(3), 16),
                    strategy.needs)
    want_ids, want = select_top_k(_whole_scores(name, inputs), candidates, k)
    for spec in (None, StoreSpec(block_rows=64), StoreSpec("disk", "float32", str(tmp_path), 64)):
        ids, scores = select(strategy, ScoringPass(model, objective, train, candidates, labeled, k,
                                                   torch.Generator().manual_seed(3), 16), store=spec)
        assert torch.equal(ids, want_ids), spec
        assert scores.dtype == want.dtype and torch.equal(scores, want), spec
    assert os.listdir(tmp_path) == []  # the disk store removed its files


# ---- float16 on disk: almost the same set, files removed ----------------------------------------

def _pool(n, dim, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Clustered features, so that a different pick is a real choice and not a rounding tie.
    centers = 4 * torch.randn(classes, dim, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    features = centers[labels] + torch.randn(n, dim, generator=g)
    return FeatureDataset(features, labels, classes)


@pytest.mark.parametrize("name", ["coreset", "badge"])
def test_a_float16_disk_store_selects_almost_the_same_set(name, tmp_path):
    split, n, k = _pool(3000, 16, 10), 2900, 100
    torch.manual_seed(0)
    model = MLP(16, 10, hidden=(32,)).eval()
    strategy = create_strategy(name)
    candidates, labeled = torch.arange(n), torch.arange(n, 3000)
    seen = []
    real_score = strategy.score

    def score(inputs):  # the store's folder exists while scoring
        seen.append(sorted(os.listdir(tmp_path)))
        return real_score(inputs)

    strategy.score = score
    exact, _ = select(strategy, ScoringPass(model, None, split, candidates, labeled, k, torch.Generator().manual_seed(1),
                                            256))
    half, _ = select(strategy, ScoringPass(model, None, split, candidates, labeled, k, torch.Generator().manual_seed(1),
                                           256), store=StoreSpec("disk", "float16", str(tmp_path), 128))
    overlap = len(set(exact.tolist()) & set(half.tolist())) / k
    assert overlap >= 0.95, overlap
    assert seen[0] == [] and len(seen[1]) == 1 and seen[1][0].startswith("tidal-store-")
    assert os.listdir(tmp_path) == []


def test_the_disk_store_is_removed_when_scoring_fails(tmp_path):
    split = _pool(300, 8, 4)
    strategy = create_strategy("coreset")

    def boom(inputs):
        raise RuntimeError("scoring failed")

    strategy.score = boom
    with pytest.raises(RuntimeError, match="scoring failed"):
        select(strategy, ScoringPass(MLP(8, 4, hidden=(8,)), None, split, torch.arange(200), torch.arange(200, 300), 5,
                                     torch.Generator().manual_seed(0), 64),
               store=StoreSpec("disk", "float16", str(tmp_path)))
    assert os.listdir(tmp_path) == []


def test_stored_rows_round_trip_and_float16_rounding(tmp_path):
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    for kind in ("memory", "disk"):
        for dtype, want in (("float32", x), ("float16", x.half().float())):
            with EmbeddingStore(StoreSpec(kind, dtype, str(tmp_path), 64)) as store:
                rows = store.array("x", 300, 5)
                for s in range(0, 300, 70):
                    rows.write(s, x[s: s + 70])
                assert torch.equal(rows.whole(), want) and rows.whole().dtype == torch.float32
                assert torch.equal(torch.cat([b for _, _, b in rows.blocks()]), want)
                assert torch.allclose(rows.column_mean(), want.mean(dim=0), atol=1e-6)
                assert rows.nbytes == 300 * 5 * (4 if dtype == "float32" else 2)
    assert os.listdir(tmp_path) == []


# ---- memory: what the strategies allocate does not grow with n * D -----------------------------

def _largest(name, n, spec, dim=64, classes=50):
    split = _pool(n + 40, dim, classes)
    torch.manual_seed(0)
    model = MLP(dim, classes, hidden=(dim,)).eval()
    strategy = create_strategy(name)
    objective = None
    if name.startswith("cal"):
        labeled = torch.arange(n, n + 40)
        ctx = TrainContext(split, labeled, torch.arange(n), classes, model.feature_channels, model.embedding_dim, 2,
                           torch.device("cpu"), 64)
        objective = strategy.make_objective(ctx)
        objective.correctness.update(labeled, (torch.arange(40) % 2).float().unsqueeze(1))  # half "uncertain"
    candidates, labeled = torch.arange(n), torch.arange(n, n + 40)  # [n] ids: the caller's, not scoring's
    with LargestTensor() as probe:
        ids, _ = select(strategy, ScoringPass(model, objective, split, candidates, labeled, 16,
                                              torch.Generator().manual_seed(0), 64), store=spec)
    assert len(ids) == 16
    return probe.largest


@pytest.mark.parametrize("name", ["coreset", "badge", "cal"])
def test_set_strategies_over_a_disk_store_allocate_no_n_by_d_array(name, tmp_path):
    spec = StoreSpec("disk", "float16", str(tmp_path), 64)
    small, large = _largest(name, 2_000, spec), _largest(name, 20_000, spec)
    dim, classes = 64, 50
    # One block of float64 factors (64 rows x (C + D)) or of float32 distances, or a few float64
    # values per candidate: far below the [n, D] float32 embedding (5 MiB at n = 20,000).
    bound = lambda n: max(64 * (classes + dim) * 8, 64 * 2 * (1 << 22) // n * 4, 8 * n)  # noqa: E731
    assert small <= bound(2_000) and large <= bound(20_000), (small, large)
    assert large < 20_000 * dim * 4 / 4
    # The probe sees whole arrays when they exist: the in-memory store holds [n, D] (or [n, C]).
    assert _largest(name, 2_000, StoreSpec()) >= 2_000 * min(dim, classes) * 4


def test_per_sample_scoring_allocates_the_same_whatever_n():
    # Entropy streams: the largest tensor is a chunk's, for 10x the candidates too.
    assert _largest("entropy", 640, None) == _largest("entropy", 6_400, None)


# ---- MC dropout without logits_from_embedding: chunked ------------------------------------------

class _NoHead(torch.nn.Module):
    """A model with dropout inside its forward and no ``logits_from_embedding``."""

    def __init__(self, dim, classes):
        super().__init__()
        self.body, self.drop, self.head = torch.nn.Linear(dim, 32), torch.nn.Dropout(0.5), torch.nn.Linear(32, classes)

    def forward(self, x):
        from tidal.models.resnet import ModelOutput

        emb = self.body(x).relu()
        return ModelOutput(self.head(self.drop(emb)), emb, [emb])


def test_mc_dropout_of_other_models_runs_batch_by_batch():
    split, n = _pool(500, 8, 6), 500
    torch.manual_seed(0)
    model = _NoHead(8, 6)
    strategy = create_strategy("bald", StrategyConfig(mc_samples=4))
    runs = []
    for chunk in (1, 7, None, 1000):
        torch.manual_seed(3)
        runs.append(select(strategy, ScoringPass(model, None, split, torch.arange(n), torch.zeros(0, dtype=torch.int64),
                                                 20, torch.Generator().manual_seed(0), 64), chunk))
    for ids, scores in runs[1:]:
        assert torch.equal(ids, runs[0][0]) and torch.equal(scores, runs[0][1])
    assert runs[0][1].min() > 0  # dropout really sampled: the passes disagree
    assert model.training  # the caller's mode is restored
    # What the pass holds: [T, batch, C] of samples, never [T, n, C].
    with LargestTensor() as probe:
        select(strategy, ScoringPass(model, None, split, torch.arange(n), torch.zeros(0, dtype=torch.int64), 20,
                                     torch.Generator().manual_seed(0), 64), 64)
    assert probe.largest < 4 * n * 6 * 4 / 2


# ---- bad input: one line that quotes the value ---------------------------------------------------

@pytest.mark.parametrize("make, match", [
    (lambda: StoreSpec("ssd"), "embedding_store='ssd'"),
    (lambda: StoreSpec(dtype="bfloat16"), "embedding_dtype='bfloat16'"),
    (lambda: StoreSpec(block_rows=100), "block_rows=100"),
    (lambda: StoreSpec(block_rows=0), "block_rows=0"),
    (lambda: ExperimentConfig(al=ALConfig(embedding_store="cloud")).validate(), "embedding_store='cloud'"),
    (lambda: ExperimentConfig(al=ALConfig(embedding_dtype="int8")).validate(), "embedding_dtype='int8'"),
])
def test_bad_store_settings_are_refused_in_one_line(make, match):
    with pytest.raises(ValueError, match=match) as exc:
        make()
    assert "\n" not in str(exc.value)


def test_an_unwritable_store_dir_is_refused_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for where in (str(blocker), str(tmp_path / "missing" / "deeper")):
        with pytest.raises(ValueError, match="store_dir=.* is not a writable directory") as exc:
            EmbeddingStore(StoreSpec("disk", directory=where))
        assert "\n" not in str(exc.value) and "--store-dir" in str(exc.value)
    from tidal.experiment import validate_experiment

    with pytest.raises(ValueError, match="is not a writable directory"):
        validate_experiment(ExperimentConfig(al=ALConfig(embedding_store="disk", store_dir=str(blocker))))
    StoreSpec("memory", directory=str(blocker)).check_directory()  # a memory store writes nothing


@pytest.mark.parametrize("chunk", [0, -3])
def test_a_bad_chunk_size_is_refused_in_one_line(chunk):
    split = _pool(100, 4, 3)
    for name in ("entropy", "coreset"):
        with pytest.raises(ValueError, match=f"chunk_size={chunk} must be") as exc:
            select(create_strategy(name), ScoringPass(MLP(4, 3, hidden=(4,)), None, split, torch.arange(90),
                                                      torch.arange(90, 100), 5, torch.Generator(), 16), chunk)
        assert "\n" not in str(exc.value)


def test_values_beyond_float16_are_refused(tmp_path):
    with EmbeddingStore(StoreSpec("disk", "float16", str(tmp_path))) as store:
        rows = store.array("embedding", 4, 2)
        with pytest.raises(ValueError, match="beyond float16's range.*--embedding-dtype float32"):
            rows.write(0, torch.tensor([[1.0, 7e4], [0.0, 0.0]]))
        with pytest.raises(ValueError, match="do not fit"):
            rows.write(3, torch.zeros(2, 2))


def test_the_store_dir_is_not_part_of_the_experiment_identity():
    a = ExperimentConfig(al=ALConfig(embedding_store="disk", store_dir="/a"))
    b = ExperimentConfig(al=ALConfig(embedding_store="disk", store_dir="/b"))
    assert a.identity() == b.identity()
    assert a.identity() != ExperimentConfig(al=ALConfig(embedding_dtype="float16")).identity()
    assert isinstance(as_rows(torch.zeros(3, 2)), StoredRows) and as_rows(torch.zeros(3, 2)).block_rows % ALIGN == 0
