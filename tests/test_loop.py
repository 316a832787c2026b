import pytest
import torch

from tidal.config import ALConfig, TrainConfig
from tidal.errors import TrainingDivergedError
from tidal.loop import active_learning, initial_labeled
from tidal.strategies import create_strategy

AL = ALConfig(initial=20, budget=10, cycles=3, subset=50)
TC = TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64)


def _run(splits, method="tidal-entropy", pool=None, seed=0, **kw):
    pool = torch.arange(0, len(splits.train), 2) if pool is None else pool  # only even indices
    return list(active_learning(splits.train, splits.test, pool, create_strategy(method), kw.pop("al", AL), TC,
                                seed, **kw))


def test_invariants(tiny_splits):
    pool = torch.arange(0, len(tiny_splits.train), 2)
    results = _run(tiny_splits, pool=pool)
    assert [len(r.labeled) for r in results] == [20, 30, 40]  # grows by exactly k
    seen = set()
    for r, nxt in zip(results, results[1:] + [None]):
        lab = set(r.labeled.tolist())
        assert lab >= seen and lab <= set(pool.tolist())  # only pool samples (the test set never enters)
        sel = r.selected.tolist()
        assert len(sel) == len(set(sel)) and not lab & set(sel)  # distinct, previously unlabeled
        if nxt is not None:
            assert set(nxt.labeled.tolist()) == lab | set(sel) and len(sel) == AL.budget
        else:
            assert sel == []  # the last cycle selects nothing
        assert sum(r.class_counts) == len(lab)
        assert 0.0 <= r.accuracy <= 1.0
        seen = lab


def test_same_seed_same_selection_and_different_seed_differs(tiny_splits):
    a, b, c = _run(tiny_splits, seed=3), _run(tiny_splits, seed=3), _run(tiny_splits, seed=4)
    assert all(torch.equal(x.selected, y.selected) and x.accuracy == y.accuracy for x, y in zip(a, b))
    assert not torch.equal(a[0].labeled, c[0].labeled)


def test_resume_from_a_cycle_gives_the_same_numbers(tiny_splits):
    full = _run(tiny_splits, seed=1)
    labeled = torch.cat([full[1].labeled, full[1].selected])
    resumed = _run(tiny_splits, seed=1, start_cycle=2, labeled=labeled)
    assert resumed[0].accuracy == full[2].accuracy and torch.equal(resumed[0].labeled, full[2].labeled)


def test_initial_set_is_seeded_and_bounded():
    pool = torch.arange(100, 200)
    assert torch.equal(initial_labeled(pool, 10, 0), initial_labeled(pool, 10, 0))
    assert set(initial_labeled(pool, 10, 0).tolist()) <= set(range(100, 200))
    with pytest.raises(ValueError, match="initial=101 is larger than the pool"):
        initial_labeled(pool, 101, 0)


def test_budget_larger_than_the_pool(tiny_splits):
    with pytest.raises(ValueError, match="lower --initial, --budget or --cycles"):
        _run(tiny_splits, al=ALConfig(initial=100, budget=100, cycles=3, subset=100))


def test_nan_loss_names_cycle_and_seed(tiny_splits):
    bad = TrainConfig(epochs=3, width=2, batch_size=16, lr=1e30)
    with pytest.raises(TrainingDivergedError, match=r"random, seed 5, cycle 1: training loss became"):
        list(active_learning(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"),
                             AL, bad, 5))


def test_continue_mode_runs(tiny_splits):
    results = _run(tiny_splits, method="random", al=ALConfig(initial=20, budget=10, cycles=2, subset=50,
                                                              retrain="continue"))
    assert len(results) == 2


@pytest.mark.parametrize("method", ["tidal-entropy", "lloss", "ta-vaal"])
def test_continue_mode_keeps_the_objective_module_across_cycles(tiny_splits, monkeypatch, method):
    import tidal.loop as loop_module
    from tidal.config import StrategyConfig

    at_start = []  # per cycle: (carried module's weights, the objective) when training starts
    real = loop_module.train_model

    def spy(model, objective, *args, **kwargs):
        at_start.append(({k: v.clone() for k, v in objective.carried().state_dict().items()}, objective))
        return real(model, objective, *args, **kwargs)

    monkeypatch.setattr(loop_module, "train_model", spy)
    al = ALConfig(initial=20, budget=10, cycles=2, subset=50, retrain="continue")
    pool = torch.arange(0, len(tiny_splits.train), 2)
    results = list(active_learning(tiny_splits.train, tiny_splits.test, pool,
                                   create_strategy(method, StrategyConfig(vaal_epochs=1)), al, TC, 0))
    end_of_cycle_1 = results[0].objective_state
    start_of_cycle_2, objective_2 = at_start[1]
    assert end_of_cycle_1 and start_of_cycle_2.keys() == end_of_cycle_1.keys()
    assert all(torch.equal(start_of_cycle_2[k], end_of_cycle_1[k]) for k in end_of_cycle_1)
    assert not all(torch.equal(at_start[0][0][k], end_of_cycle_1[k]) for k in end_of_cycle_1)  # it did train
    if method == "tidal-entropy":  # the TD record is per cycle (the authors' moving_prob restarts at epoch 0)
        assert objective_2.dynamics.counts.sum() == len(results[1].labeled) * TC.epochs


def test_scratch_mode_builds_a_fresh_objective_every_cycle(tiny_splits):
    results = _run(tiny_splits, al=ALConfig(initial=20, budget=10, cycles=2, subset=50))
    assert all(r.objective_state is None and r.model_state is None for r in results)


def test_each_cycle_trains_with_the_batch_fitted_to_its_labels(tiny_splits, monkeypatch):
    """Issue 21 case 22: 20 labels at batch 128 would be one SGD step per epoch; the first cycle
    trains at batch 10 (two steps), and once the labels fill two batches the configured one is used."""
    import tidal.loop

    used = []
    real = tidal.loop.train_model

    def spy(model, objective, dataset, labeled, config, *args, **kw):
        used.append((len(labeled), config.batch_size, config.crop_padding))
        return real(model, objective, dataset, labeled, config, *args, **kw)

    monkeypatch.setattr(tidal.loop, "train_model", spy)
    tc = TrainConfig(epochs=1, width=2, batch_size=16, eval_batch_size=64)
    list(active_learning(tiny_splits.train, tiny_splits.test, torch.arange(0, len(tiny_splits.train), 2),
                         create_strategy("random"), ALConfig(initial=12, budget=10, cycles=2, subset=50), tc, 0))
    side = min(tiny_splits.train.input_shape[1:])
    assert used == [(12, 6, min(4, side // 7)), (22, 16, min(4, side // 7))]
