"""The GPU fast-path options of TrainConfig: bfloat16 autocast (``amp``) and ``channels_last``.

bfloat16 autocast runs on the CPU too, so every strategy is trained with it here; the float32
default is checked bit for bit against a run that never enters an autocast context.
"""

import dataclasses
import math

import pytest
import torch

from tidal.config import AMP_MODES, ALConfig, StrategyConfig, TrainConfig, preset
from tidal.experiment import validate_experiment
from loop_helpers import cycles
from tidal.models import ResNet18
from tidal.strategies import create_strategy, list_strategies
from tidal.train import autocast, train_model

FAST = StrategyConfig(mc_samples=2, vaal_epochs=1)
AL = ALConfig(initial=24, budget=8, cycles=2, subset=40)
TC = TrainConfig(epochs=2, width=2, batch_size=16, eval_batch_size=64)


def _train(tiny_splits, config: TrainConfig) -> tuple[float, dict[str, torch.Tensor]]:
    train = tiny_splits.train
    torch.manual_seed(0)
    model = ResNet18(train.num_classes, config.width, train.image_shape[0])
    stats = train_model(model, None, train, torch.arange(48), config, torch.Generator().manual_seed(0))
    return stats.final_loss, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_amp_off_is_the_float32_step_bit_for_bit(tiny_splits, monkeypatch):
    """``amp="off"`` must not even enter torch.autocast: the same weights as a step without it."""
    loss, weights = _train(tiny_splits, TC)
    entered = []
    real = torch.autocast

    def spy(*args, **kwargs):
        entered.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "autocast", spy)
    loss2, weights2 = _train(tiny_splits, TC)
    assert entered == []
    assert loss == loss2 and all(torch.equal(weights[k], weights2[k]) for k in weights)


def test_bf16_trains_with_finite_loss_and_differs_from_float32(tiny_splits):
    loss32, w32 = _train(tiny_splits, TC)
    loss16, w16 = _train(tiny_splits, dataclasses.replace(TC, amp="bf16"))
    assert math.isfinite(loss16) and abs(loss16 - loss32) < 0.5
    assert all(w.dtype == w32[k].dtype for k, w in w16.items())  # weights stay float32 (autocast casts copies)
    assert any(not torch.equal(w32[k], w16[k]) for k in w32)  # the option really changed the arithmetic


def test_autocast_context_dtype():
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with autocast(dataclasses.replace(TC, amp="bf16"), torch.device("cpu")):
        assert (x @ w).dtype == torch.bfloat16
    with autocast(TC, torch.device("cpu")):
        assert (x @ w).dtype == torch.float32


@pytest.mark.parametrize("name", list_strategies())
def test_every_strategy_runs_two_cycles_in_bf16(name, tiny_splits):
    pool = torch.arange(0, len(tiny_splits.train), 2)
    tc = dataclasses.replace(TC, amp="bf16")
    first, last = cycles(tiny_splits.train, tiny_splits.test, pool, create_strategy(name, FAST), AL, tc,
                                  seed=0)
    assert math.isfinite(first.final_loss) and math.isfinite(last.final_loss)
    assert len(set(first.selected.tolist())) == AL.budget and torch.isfinite(first.scores).all()
    assert first.scores.dtype == torch.float32  # scoring stays float32


def test_channels_last_converts_model_and_batches(tiny_splits):
    seen = []

    class Probe(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
            return self.inner(x)

    train = tiny_splits.train
    torch.manual_seed(0)
    inner = ResNet18(train.num_classes, 2, train.image_shape[0]).to(memory_format=torch.contiguous_format)
    tc = dataclasses.replace(TC, channels_last=True, epochs=1)
    stats = train_model(Probe(inner), None, train, torch.arange(32), tc, torch.Generator().manual_seed(0))
    assert math.isfinite(stats.final_loss) and seen and all(seen)
    assert inner.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_gives_the_function_of_contiguous_training(tiny_splits):
    """NHWC is a memory layout: the trained weights agree with NCHW training to rounding."""
    loss_a, a = _train(tiny_splits, dataclasses.replace(TC, epochs=1))
    loss_b, b = _train(tiny_splits, dataclasses.replace(TC, epochs=1, channels_last=True))
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    for k in a:
        torch.testing.assert_close(a[k], b[k].contiguous(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("bad", ["fp16", "bfloat16", "BF16", "", "on"])
def test_unknown_amp_mode_is_refused_with_the_valid_ones(bad):
    cfg = preset("quick")
    with pytest.raises(ValueError, match=f"amp={bad!r} must be one of {', '.join(AMP_MODES)}"):
        validate_experiment(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, amp=bad)))


def test_amp_and_channels_last_are_flags_and_part_of_the_identity():
    from tidal.cli import build_parser, config_from_args

    args = build_parser().parse_args(["run", "--out", "x", "--amp", "bf16", "--channels-last"])
    cfg = config_from_args(args)
    assert cfg.train.amp == "bf16" and cfg.train.channels_last is True
    base = preset("quick")
    assert cfg.identity() != base.identity()  # a bf16 run is another experiment: resume refuses to mix them
    # a store written before the options existed reads back as float32 / contiguous
    old = base.to_dict()
    del old["train"]["amp"], old["train"]["channels_last"]
    assert type(base).from_dict(old).identity() == base.identity()
