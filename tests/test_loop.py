import re

import pytest
import torch

from tidal.config import ALConfig, TrainConfig
from tidal.errors import TrainingDivergedError
from loop_helpers import cycles
from tidal.loop import initial_labeled
from tidal.strategies import create_strategy

AL = ALConfig(initial=20, budget=10, cycles=3, subset=50)
TC = TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64)


def _run(splits, method="tidal-entropy", pool=None, seed=0, **kw):
    pool = torch.arange(0, len(splits.train), 2) if pool is None else pool  # only even indices
    return list(cycles(splits.train, splits.test, pool, create_strategy(method), kw.pop("al", AL), TC,
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
        list(cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"),
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
    results = list(cycles(tiny_splits.train, tiny_splits.test, pool,
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


# --- non-finite numbers are an error naming the cause, never a stored cycle (issue 21, case 6) ----------------

def _features(n: int, seed: int, scale_rows: dict[int, float] | None = None):
    from tidal.data.dataset import FeatureDataset

    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=g) + torch.nn.functional.one_hot(labels, 6)[:, :6].float() * 2
    for i, s in (scale_rows or {}).items():
        x[i] *= s
    return FeatureDataset(x, labels, 3)


def _feature_cycles(train, method="random", tc=None, **kw):
    from tidal.loop import configured_model

    tc = tc or TrainConfig(epochs=2, batch_size=16, eval_batch_size=64, model="mlp")
    pool = torch.arange(len(train))
    gen = cycles(train, _features(60, 1), pool, create_strategy(method), ALConfig(initial=20, budget=10,
                          cycles=2, subset=100), tc, 0, model_factory=configured_model(tc), **kw)
    done = []
    with pytest.raises(Exception) as info:
        for result in gen:
            done.append(result)
    return done, info


def test_non_finite_test_logits_after_a_runaway_learning_rate_are_an_error_not_a_stored_accuracy(tiny_splits,
                                                                                                  monkeypatch):
    """lr=1e30 and one SGD step (16 labels, batch 16): the loss, taken before the step, is finite,
    the weights after it are ~1e30 and finite, and every test logit overflows. (One step an epoch is
    what config.adapt_train now prevents; it is switched off here to reach the evaluation check.)"""
    import tidal.loop
    from tidal.errors import NonFiniteError

    monkeypatch.setattr(tidal.loop, "adapt_train", lambda train, *args, **kwargs: (train, []))

    bad = TrainConfig(epochs=1, width=2, batch_size=16, lr=1e30, eval_batch_size=64)
    al = ALConfig(initial=16, budget=10, cycles=3, subset=50)
    gen = cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"), al, bad, 5)
    with pytest.raises(NonFiniteError, match=r"^random, seed 5, cycle 1: 60 of 60 test samples have NaN or infinite "
                                             r"logits: training grew the weights to \|w\| = \S+ \(in '\S+'\), so the "
                                             r"outputs overflow; lower the learning rate \(lr=1e\+30\); nothing of "
                                             r"this cycle was stored$"):
        next(gen)


def test_a_model_whose_eval_logits_are_nan_is_an_error_naming_the_model_not_the_learning_rate(tiny_splits):
    from torch import nn

    from tidal.errors import NonFiniteError

    class NaNInEval(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(144, 8), nn.ReLU(), nn.Linear(8, num_classes))

        def forward(self, x):
            out = self.net(x)
            return out if self.training else out / 0.0 * 0.0

    from tidal.models import build_model

    def factory(num_classes, input_shape, dropout):
        return build_model(NaNInEval, num_classes, input_shape, dropout)

    gen = cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"), AL, TC, 0,
                          model_factory=factory)
    with pytest.raises(NonFiniteError, match=r"random, seed 0, cycle 1: 60 of 60 test samples have NaN or infinite "
                                             r"logits: the model's eval-mode forward gives them although its inputs "
                                             r"and weights are finite"):
        next(gen)


def test_a_checkpoint_with_negative_batch_norm_variance_is_refused_before_training(tiny_splits, monkeypatch):
    import tidal.loop as loop_module
    from tidal.errors import NonFiniteError
    from tidal.models import build_model

    def factory(num_classes, input_shape, dropout):
        model = build_model("resnet18", num_classes, input_shape, dropout, width=2)
        model.bn1.running_var.fill_(-1.0)  # what a corrupt --weights file leaves
        return model

    trained = []
    monkeypatch.setattr(loop_module, "train_model", lambda *a, **k: trained.append(1))
    gen = cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"), AL, TC, 0,
                          model_factory=factory)
    with pytest.raises(NonFiniteError, match=r"random, seed 0, cycle 1: the model's weights before training \(as the "
                                             r"model built them\) hold negative batch-norm variances in "
                                             r"'bn1.running_var'; fix how the model initialises"):
        next(gen)
    assert not trained


def test_a_weights_file_with_nan_is_named_as_the_cause_before_training(tiny_splits, monkeypatch, tmp_path):
    import tidal.loop as loop_module
    from tidal.errors import NonFiniteError
    from tidal.loop import configured_model
    from tidal.models import ResNet50

    state = ResNet50(4, 1, 0.0).state_dict()
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    tc = TrainConfig(epochs=1, batch_size=16, eval_batch_size=64, model="resnet50", weights=str(tmp_path / "nan.pth"))
    monkeypatch.setattr(loop_module, "train_model", lambda *a, **k: pytest.fail("trained on NaN weights"))
    gen = cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"), AL, tc, 0,
                          model_factory=configured_model(tc))
    with pytest.raises(NonFiniteError, match=r"random, seed 0, cycle 1: the model's weights before training \(from "
                                             r"--weights \S+nan.pth\) hold NaN or infinite values in 'fc.weight'; the "
                                             r"checkpoint is corrupt or not for this model: use another weights file"):
        next(gen)


def test_huge_training_features_are_named_as_the_cause_not_the_learning_rate():
    from tidal.errors import NonFiniteError

    train = _features(200, 0)
    signs = torch.randn(200, generator=torch.Generator().manual_seed(0)).sign()
    train.features[:, 0] = 1e38 * signs  # finite, but the first layer overflows
    done, info = _feature_cycles(train)
    assert not done and isinstance(info.value, NonFiniteError), info.value
    assert re.search(r"random, seed 0, cycle 1: .*the training inputs reach \|x\| = \S+ \(sample \d+\), too large "
                     r"for float32 layers; scale or standardise the data", str(info.value))
    assert "lower the learning rate" not in str(info.value)


def test_nan_entropy_scores_of_candidates_are_an_error_and_the_cycle_is_not_yielded():
    """The labeled set and the test set are clean, so training and evaluation are finite; some
    unlabeled candidates have overflowing features, so their probabilities and entropy are NaN."""
    from tidal.errors import NonFiniteError

    train = _features(200, 0)
    train.features[150:, :] = 3e38  # finite, but they overflow the first layer
    done, info = _feature_cycles(train, method="entropy", labeled=torch.arange(20))
    assert not done and isinstance(info.value, NonFiniteError), info.value
    assert re.search(r"entropy, seed 0, cycle 1: \d+ candidates \(in a chunk of \d+\) got NaN or infinite entropy "
                     r"scores \(first: sample 1\d\d\); the model's probs for them are NaN or infinite: the candidate inputs reach "
                     r"\|x\| = \S+ \(sample 1\d\d\).*; nothing of this cycle was stored", str(info.value))


class _FailsOnBigBatches(torch.nn.Module):
    """Passes tidal's probe (2 inputs) but not training: the user's own error (issue 21, case 12)."""

    def __init__(self, num_classes):
        super().__init__()
        self.fc = torch.nn.Linear(144, num_classes)

    def forward(self, x):
        if x.shape[0] > 2:
            raise RuntimeError(f"cannot take a batch of {x.shape[0]}")
        return self.fc(x.flatten(1))


def test_a_user_model_failing_in_training_is_a_model_error_and_tidal_errors_pass_through(tiny_splits, monkeypatch):
    import functools

    import tidal.loop as loop_module
    from tidal.errors import ModelError
    from tidal.models import build_model
    from tidal.strategies.base import select_top_k

    def factory(num_classes, input_shape, dropout):
        return build_model(_FailsOnBigBatches, num_classes, input_shape, dropout)

    gen = cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"), AL, TC, 0,
                          model_factory=factory)
    with pytest.raises(ModelError, match=r"^random, seed 0, cycle 1: your code \(the model, or a strategy of yours\) "
                                         r"failed while tidal trained, evaluated or scored it on inputs of shape "
                                         r"\(1, 12, 12\) in batches of up to 16 \(training\) / 64 \(inference\), 4 "
                                         r"classes: RuntimeError: cannot take a batch of 16 \(TIDAL_DEBUG=1"):
        next(gen)
    # an error raised in tidal's own code (here: a call with the wrong arguments) is not blamed on the user
    import tidal.inference

    monkeypatch.setattr(tidal.inference, "evaluate", functools.partial(select_top_k, torch.zeros(2), torch.zeros(3)))
    with pytest.raises(TypeError):
        next(cycles(tiny_splits.train, tiny_splits.test, torch.arange(100), create_strategy("random"), AL,
                             TC, 0))


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
    list(cycles(tiny_splits.train, tiny_splits.test, torch.arange(0, len(tiny_splits.train), 2),
                         create_strategy("random"), ALConfig(initial=12, budget=10, cycles=2, subset=50), tc, 0))
    side = min(tiny_splits.train.input_shape[1:])
    assert used == [(12, 6, min(4, side // 7)), (22, 16, min(4, side // 7))]
