"""Run by tests/test_distributed.py under ``torchrun --nproc-per-node 2`` (gloo, CPU): the pieces of
:mod:`tidal.distributed` against the one-process functions, on every rank. Exits non-zero (an
AssertionError) at the first difference; prints ``ok rank R`` at the end."""

from __future__ import annotations

import hashlib

import torch
import torch.distributed as dist

from conftest import make_tiny_splits  # tests/ is this script's folder, hence on sys.path
from tidal.comm import LOCAL
from tidal.config import StrategyConfig, TrainConfig
from tidal.data import from_arrays
from tidal.distributed import launched, rank_device, start
from tidal.gather import ScoringPass, select
from tidal.inference import evaluate
from tidal.models.factory import build_model
from tidal.strategies import create_strategy
from tidal.strategies.base import TrainContext
from tidal.train import train_model


def same_everywhere(ranks, tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is bit for bit the same on every rank."""
    digest = hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
    return len(set(ranks._objects(digest))) == 1


def trained(split, model_spec, method, labeled, config, ranks, width=2):
    """A model and objective trained on ``labeled`` from seed 0 (``ranks`` None: one process)."""
    torch.manual_seed(0)
    model = build_model(model_spec, split.num_classes, split.input_shape, width=width)
    ctx = TrainContext(split, labeled, torch.arange(0), split.num_classes, model.feature_channels,
                       model.embedding_dim, config.epochs, torch.device("cpu"))
    objective = create_strategy(method, StrategyConfig()).make_objective(ctx)
    train_model(model, objective, split, labeled, config, torch.Generator().manual_seed(1),
                comm=ranks or LOCAL)
    return model, objective


def main() -> None:
    launch = launched()
    assert launch is not None and launch.world_size == 2, launch
    ranks = start(launch, *rank_device(launch, torch.device("cpu")))
    try:
        check(ranks)
    finally:
        ranks.close()
    print(f"ok rank {launch.rank}", flush=True)


def check(ranks) -> None:
    # 1. A ResNet with batch norm, TiDAL's objective, 34 labeled in batches of 8 (the last batch of
    # 2 joins the one before): every sample's TD folded in once per epoch, the record and the
    # weights identical on both ranks.
    images = make_tiny_splits(n_train=120, n_test=50)
    labeled = torch.arange(3, 37)
    config = TrainConfig(epochs=3, batch_size=8, eval_batch_size=16, lr=0.05)
    model, objective = trained(images.train, "resnet18", "tidal-entropy", labeled, config, ranks)
    record = objective.records()[0]
    assert bool((record.counts == config.epochs).all()), record.counts
    assert same_everywhere(ranks, record.sums) and same_everywhere(ranks, record.counts)
    assert all(same_everywhere(ranks, v) for v in model.state_dict().values())
    cal_model, cal = trained(images.train, "resnet18", "cal", labeled, config, ranks)
    assert bool((cal.records()[0].counts == config.epochs).all())

    # 2. Sharded evaluation and scoring on the same weights equal the one-process functions exactly.
    test = images.test
    assert ranks.evaluate(model, test, 16) == evaluate(model, test, 16)
    candidates = torch.arange(40, 113)  # 73 candidates: blocks of whole batches of 16, the last short
    for name, mdl, obj in (("tidal-entropy", model, objective), ("tidal-margin", model, objective),
                           ("entropy", model, None), ("random", model, None), ("coreset", model, None),
                           ("cal", cal_model, cal)):
        strategy = create_strategy(name, StrategyConfig())
        for chunk in (None, 5):
            args = (mdl, obj, images.train, candidates, labeled, 20)
            got = ranks.select(strategy, ScoringPass(*args, torch.Generator().manual_seed(2), 16), chunk)
            want = select(strategy, ScoringPass(*args, torch.Generator().manual_seed(2), 16), chunk)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (name, chunk, got, want)

    # 3. No batch norm (an MLP on features, no augmentation): two ranks train what one process
    # trains, up to the order of float sums, and record the same TD.
    g = torch.Generator().manual_seed(3)
    y = torch.arange(200) % 4
    x = torch.nn.functional.one_hot(y, 16).float() * 2 + torch.randn(200, 16, generator=g)
    features = from_arrays(x, y, x[:20], y[:20]).train
    config = TrainConfig(epochs=4, batch_size=10, lr=0.05)
    labeled = torch.arange(0, 200, 3)  # 67 samples: batches of 10 cut 5 + 5, the last of 7 cut 4 + 3
    two = trained(features, "mlp", "tidal-entropy", labeled, config, ranks)
    one = trained(features, "mlp", "tidal-entropy", labeled, config, None)
    for a, b in zip(two[0].state_dict().values(), one[0].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    r2, r1 = two[1].records()[0], one[1].records()[0]
    assert torch.equal(r2.counts, r1.counts)
    torch.testing.assert_close(r2.sums, r1.sums, rtol=1e-4, atol=1e-5)
    dist.barrier()


if __name__ == "__main__":
    main()
