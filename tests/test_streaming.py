"""Streaming scoring: chunked selections equal the whole-array ones, in memory bounded by the chunk and k."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import tidal.gather as gather_module
from tidal.config import StrategyConfig, TrainConfig
from tidal.data.dataset import FeatureDataset
from tidal.gather import ScoringPass, gather, select
from tidal.loop import configured_model, new_model, new_objective
from tidal.models.mlp import MLP
from tidal.strategies import RunningTopK, TrainContext, create_strategy, list_strategies, select_top_k, strategy_class
from tidal.train import train_model

PER_SAMPLE = [n for n in list_strategies() if strategy_class(n).per_sample]
FAST = StrategyConfig(mc_samples=3, vaal_epochs=1)
TC = TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=16)


def test_the_per_sample_strategies_are_the_expected_ones():
    assert set(PER_SAMPLE) == {"random", "entropy", "margin", "least-confidence", "bald", "lloss", "tidal-entropy",
                               "tidal-margin", "tidal-margin-self", "tidal-exact", "vaal", "ta-vaal",
                               "tidal-detached-entropy", "tidal-detached-margin", "tidal-calibrated-entropy",
                               "tidal-calibrated-margin"}
    # VAAL/TA-VAAL's VAE gives batch-dependent float results (see vaal.py): chunks follow the eval batches.
    assert {n for n in PER_SAMPLE if strategy_class(n).batch_aligned} == {"vaal", "ta-vaal"}
    assert {"coreset", "badge", "cal", "cal-uncertain", "tidal-diverse-entropy", "tidal-diverse-margin",
            "tidal-detached-diverse-entropy"} <= set(
        list_strategies()) - set(PER_SAMPLE)


# Few distinct values so that ties, NaNs and infinities are common.
VALUES = st.sampled_from([0.0, 1.0, 2.0, -1.0, 0.5, float("nan"), float("inf"), float("-inf")])


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUES, max_size=40), data=st.data())
def test_running_top_k_equals_select_top_k(values, data):
    scores = torch.tensor(values, dtype=data.draw(st.sampled_from([torch.float32, torch.float64])))
    n = len(values)
    candidates = torch.randperm(n, generator=torch.Generator().manual_seed(n)) + 100
    k = data.draw(st.integers(0, n))
    chunk = data.draw(st.integers(1, n + 2))
    top = RunningTopK(k)
    for s, c in zip(scores.split(chunk), candidates.split(chunk)):
        top.add(s, c)
    ids, kept = top.result()
    want_ids, want = select_top_k(scores, candidates, k)
    assert torch.equal(ids, want_ids)
    assert kept.dtype == want.dtype and torch.equal(kept.isnan(), want.isnan())
    assert torch.equal(kept.nan_to_num(), want.nan_to_num())
    assert top.peak_bytes <= (k + chunk) * (scores.element_size() + 8)


def test_running_top_k_refuses_more_than_it_saw():
    top = RunningTopK(3)
    top.add(torch.tensor([1.0, 2.0]), torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="k=3"):
        top.result()


def _trained(name: str, tiny_splits):
    """A strategy, its model and objective after a short training on the tiny split; candidates; labeled."""
    strategy = create_strategy(name, FAST)
    train = tiny_splits.train
    labeled, candidates = torch.arange(0, 48), torch.arange(100, 153)  # 53 candidates: not a multiple of 7 or 16
    torch.manual_seed(0)
    model = new_model(configured_model(TC), train, strategy)
    objective = new_objective(strategy, model, train, (labeled, candidates), TC, torch.device("cpu"))
    train_model(model, objective, train, labeled, TC, torch.Generator().manual_seed(1))
    return strategy, model, objective, candidates, labeled


def _select(strategy, model, objective, train, candidates, labeled, k, chunk_size):
    torch.manual_seed(7)  # MC dropout masks come from the global generator
    return select(strategy, ScoringPass(model, objective, train, candidates, labeled, k,
                                        torch.Generator().manual_seed(3), TC.eval_batch_size), chunk_size)


@pytest.mark.parametrize("name", PER_SAMPLE)
def test_chunked_selection_equals_the_whole_array_one(name, tiny_splits):
    strategy, model, objective, candidates, labeled = _trained(name, tiny_splits)
    train, k = tiny_splits.train, 11
    torch.manual_seed(7)
    inputs = gather(ScoringPass(model, objective, train, candidates, labeled, k, torch.Generator().manual_seed(3),
                                TC.eval_batch_size), strategy.needs, strategy.mc_samples)
    want_ids, want = select_top_k(strategy.score(inputs), candidates, k)  # today's unchunked path
    for chunk_size in (1, 7, None, len(candidates) + 10):
        ids, scores = _select(strategy, model, objective, train, candidates, labeled, k, chunk_size)
        assert torch.equal(ids, want_ids), f"chunk_size={chunk_size}"
        assert scores.dtype == want.dtype and torch.equal(scores, want), f"chunk_size={chunk_size}"


@pytest.mark.parametrize("name", ["entropy", "bald"])
def test_loop_selection_does_not_depend_on_the_chunk_size(name, tiny_splits, monkeypatch):
    from tidal.config import ALConfig
    from loop_helpers import cycles

    pool = torch.arange(0, len(tiny_splits.train), 2)
    al = ALConfig(initial=24, budget=8, cycles=2, subset=40)

    def run(chunk_size):
        return list(cycles(tiny_splits.train, tiny_splits.test, pool, create_strategy(name, FAST), al, TC,
                                    seed=0, chunk_size=chunk_size))[0]

    chunked = [run(c) for c in (1, 7)]
    monkeypatch.setattr(strategy_class(name), "per_sample", False)  # today's whole-array path
    whole = run(None)
    for r in chunked:
        assert torch.equal(r.selected, whole.selected) and torch.equal(r.scores, whole.scores)


def _held_bytes(name: str, n: int, monkeypatch) -> tuple[int, int]:
    """Scoring ``n`` synthetic candidates (C = 50, MLP): the most bytes of gathered inputs handed to
    ``score`` at once, and the running top-k's peak; chunk 32, batch 32, k 16."""
    classes, dim = 50, 8
    features = torch.randn(n, dim, generator=torch.Generator().manual_seed(0))
    split = FeatureDataset(features, torch.zeros(n, dtype=torch.int64), classes)
    strategy = create_strategy(name, FAST)
    torch.manual_seed(0)
    model = MLP(dim, classes, hidden=(16,), dropout=strategy.dropout)
    seen, tops = [], []

    def score(inputs):
        held = [inputs.probs, inputs.embedding, inputs.mc_probs, *inputs.aux.values()]
        seen.append(sum(t.nbytes for t in held if t is not None))
        return type(strategy).score(strategy, inputs)

    class Recording(RunningTopK):
        def __init__(self, k):
            super().__init__(k)
            tops.append(self)

    monkeypatch.setattr(strategy, "score", score)
    monkeypatch.setattr(gather_module, "RunningTopK", Recording)
    select(strategy, ScoringPass(model, None, split, torch.arange(n), torch.zeros(0, dtype=torch.int64), 16,
                                 torch.Generator().manual_seed(0), batch_size=32), chunk_size=32)
    return max(seen), tops[0].peak_bytes


@pytest.mark.parametrize("name", ["entropy", "bald"])
def test_scoring_memory_does_not_grow_with_the_pool(name, monkeypatch):
    small, large = _held_bytes(name, 320, monkeypatch), _held_bytes(name, 3200, monkeypatch)
    assert small == large  # chunks of 32 candidates and a top-16, whatever n
    inputs_bytes, top_bytes = large
    assert inputs_bytes <= 32 * 3 * 50 * 4  # at most [T=3, 32, C=50] float32 MC samples
    assert top_bytes <= (16 + 32) * (4 + 8)  # kept + one chunk of float32 scores and int64 ids


@pytest.mark.parametrize("per_sample", [True, False])
def test_non_finite_scores_from_finite_outputs_are_an_error_naming_the_strategy(per_sample):
    """Scores are never ranked with NaN among them (NaN would rank last and hide the problem);
    from finite model outputs it is the strategy's bug, and the message says so (issue 21, case 6)."""
    from tidal.errors import NonFiniteError
    from tidal.strategies.base import Strategy

    class HalfNaN(Strategy):
        name = "half-nan"
        needs = frozenset({"probs"})

        def score(self, inputs):
            s = inputs.probs[:, 0].clone()
            s[::2] = float("nan")
            return s

    HalfNaN.per_sample = per_sample
    g = torch.Generator().manual_seed(0)
    data = FeatureDataset(torch.randn(40, 5, generator=g), torch.arange(40) % 2, 2)
    model = MLP(5, 2)
    with pytest.raises(NonFiniteError, match=r"candidates.* got NaN or infinite half-nan scores \(first: sample 0\); "
                                             r"from finite model outputs: HalfNaN.score gives non-finite values"):
        select(HalfNaN(StrategyConfig()), ScoringPass(model, None, data, torch.arange(40), torch.arange(0), 5, g,
                                                      batch_size=16))
