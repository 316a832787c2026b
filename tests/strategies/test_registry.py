"""Every registered strategy through a tiny two-cycle loop (new strategies join automatically)."""

import pytest
import torch

from tidal.config import ALConfig, StrategyConfig, TrainConfig
from loop_helpers import cycles
from tidal.strategies import create_strategy, list_strategies, strategy_class

# Small, fast settings for the options that cost time; defaults for the rest.
FAST = StrategyConfig(mc_samples=2, vaal_epochs=1)
AL = ALConfig(initial=24, budget=8, cycles=2, subset=40)
TC = TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64)


@pytest.mark.parametrize("name", list_strategies())
def test_two_cycles_select_k_new_distinct_indices(name, tiny_splits):
    pool = torch.arange(0, len(tiny_splits.train), 2)
    results = list(cycles(tiny_splits.train, tiny_splits.test, pool, create_strategy(name, FAST), AL, TC,
                                   seed=0))
    first, last = results
    sel = first.selected.tolist()
    assert len(sel) == AL.budget and len(set(sel)) == AL.budget
    assert not set(sel) & set(first.labeled.tolist()) and set(sel) <= set(pool.tolist())
    assert torch.isfinite(first.scores).all()
    assert first.scores.tolist() == sorted(first.scores.tolist(), reverse=True)  # best first
    assert set(last.labeled.tolist()) == set(first.labeled.tolist()) | set(sel)


@pytest.mark.parametrize("name", list_strategies())
def test_registry_metadata(name):
    cls = strategy_class(name)
    assert cls.name == name and cls.description
    assert create_strategy(name).score.__func__ is not __import__("tidal").strategies.Strategy.score


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        create_strategy("tidal-entropyy")
    assert all(n in str(err.value) for n in list_strategies())


@pytest.mark.parametrize("name", list_strategies())
def test_resume_mid_run_gives_the_same_numbers(name, tiny_splits):
    """Whatever a strategy draws at random (dropout masks, k-means++ seeds, VAE noise), a run
    resumed at cycle 1 in a process whose global RNG is elsewhere reproduces the original."""
    pool = torch.arange(0, len(tiny_splits.train), 2)
    al = ALConfig(initial=24, budget=8, cycles=3, subset=40)
    full = list(cycles(tiny_splits.train, tiny_splits.test, pool, create_strategy(name, FAST), al, TC, 0))
    torch.rand(17)  # move the global generator: a resumed process starts from another state
    labeled = torch.cat([full[0].labeled, full[0].selected])
    resumed = list(cycles(tiny_splits.train, tiny_splits.test, pool, create_strategy(name, FAST), al, TC,
                                   0, start_cycle=1, labeled=labeled))
    for a, b in zip(full[1:], resumed):
        assert a.accuracy == b.accuracy and torch.equal(a.selected, b.selected)
        assert torch.allclose(a.scores, b.scores, equal_nan=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", list_strategies())
def test_two_cycles_on_cuda(name, tiny_splits):
    dev = torch.device("cuda")
    pool = torch.arange(0, len(tiny_splits.train), 2)
    results = list(cycles(tiny_splits.train.to(dev), tiny_splits.test.to(dev), pool,
                                   create_strategy(name, FAST), AL, TC, seed=0, device=dev))
    assert len(set(results[0].selected.tolist())) == AL.budget


def test_a_mistyped_method_suggests_the_main_method_not_the_costly_oracle():
    from tidal.strategies import create_strategy

    with pytest.raises(ValueError, match=r"unknown method 'tidal'.*\(did you mean 'tidal-entropy'\?\)$"):
        create_strategy("tidal")
    with pytest.raises(ValueError, match=r"did you mean 'tidal-margin'\?"):
        create_strategy("tidal-margn")  # a plain misspelling still gets the closest name
