"""The active-learning cycle (paper §5.1) for one (dataset setting, method, seed).

Cycle ``c``: draw a random subset (size S) of the unlabeled pool; train a fresh model (and
the strategy's auxiliary objective) on the labeled set (with ``retrain="continue"``: the
previous cycle's model, and the objective's module that ``AuxObjective.carried`` names with
its previous weights); evaluate on the test set; if it is not the last cycle, gather what
the strategy needs for the subset, score it and label the top-k. Each cycle's randomness
comes from its own generator seeded by ``(seed, cycle)``, so a run can be resumed at any
cycle boundary from the stored labeled set (and, in continue mode, the checkpointed weights)
alone and gives the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from tidal.config import ALConfig, TrainConfig, adapt_train
from tidal.data.dataset import Split
from tidal.errors import ModelError, NonFiniteError, TidalError, TrainingDivergedError
from tidal.embedstore import StoreSpec
from tidal.finite import check_weights, diagnose, input_problem
from tidal.gather import ScoringPass, select
from tidal.inference import evaluate
from tidal.pool import LabelPool
from tidal.strategies.base import Strategy, TrainContext
from tidal.train import EpochHook, train_model

if TYPE_CHECKING:
    from tidal.distributed import Ranks

__all__ = ["CycleResult", "ModelFactory", "active_learning", "check_pool_fits", "configured_model", "derive_seed",
           "initial_labeled", "run_cycle"]

# Builds a fresh, randomly initialised model: (num_classes, input_shape, dropout) -> nn.Module whose
# forward returns a tidal.models.ModelOutput (logits, embedding, multi-scale features). Called at
# the start of every cycle under that cycle's seed; the loop never knows which network it is.
ModelFactory = Callable[[int, tuple[int, ...], float], nn.Module]


def configured_model(train_config: TrainConfig, model: object = None) -> ModelFactory:
    """The factory for ``model`` (a spec string, a callable ``f(num_classes)`` or an ``nn.Module``;
    None: ``train_config.model``) with the configured width, weights file and hooked layers
    (:func:`tidal.models.build_model`)."""
    from tidal.models.factory import build_model

    spec = train_config.model if model is None else model
    return partial(build_model, spec, width=train_config.width, weights=train_config.weights,
                   feature_layers=train_config.feature_layers, embedding_layer=train_config.embedding_layer)


@dataclass
class CycleResult:
    """One cycle's outcome; ``selected`` is empty on the last cycle."""

    cycle: int  # 0-based
    labeled: torch.Tensor  # absolute indices trained on this cycle [m]
    accuracy: float  # test accuracy in [0, 1]
    class_counts: list[int]  # labeled samples per class
    selected: torch.Tensor  # absolute indices labeled at the end of this cycle [k]
    scores: torch.Tensor  # their scores [k], best first
    train_seconds: float
    score_seconds: float
    eval_seconds: float
    final_loss: float
    model_state: dict[str, torch.Tensor] | None = None  # backbone weights after training (retrain="continue" only)
    # With retrain="continue", the weights of the objective's carried module after training
    # (AuxObjective.carried: TiDAL's TD module, Learning Loss's module); None when it has none.
    objective_state: dict[str, torch.Tensor] | None = None


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. ``(seed, cycle)``), well mixed by numpy's SeedSequence."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32).view(np.uint64)[0]
               >> np.uint64(1))


_INITIAL_STREAM = 1_000_003  # stream id for the initial-set draw (distinct from every cycle number)


def initial_labeled(pool: torch.Tensor, initial: int, seed: int) -> torch.Tensor:
    """The random initial labeled set: ``initial`` absolute indices of ``pool``, sorted."""
    if initial > len(pool):
        raise ValueError(f"initial={initial} is larger than the pool ({len(pool)} samples); lower --initial")
    g = torch.Generator().manual_seed(derive_seed(seed, _INITIAL_STREAM))
    return torch.sort(pool[torch.randperm(len(pool), generator=g)[:initial]]).values


def check_pool_fits(al: ALConfig, pool_size: int, pool_name: str = "the pool") -> None:
    """Raise ``ValueError`` unless the initial set and every cycle's budget fit a pool of ``pool_size``."""
    if al.initial > pool_size:
        raise ValueError(f"initial={al.initial} is larger than {pool_name} ({pool_size} samples); lower --initial")
    needed = al.initial + (al.cycles - 1) * al.budget
    if needed > pool_size:
        raise ValueError(f"initial={al.initial} + {al.cycles - 1} cycles x budget={al.budget} = {needed} labels, "
                         f"but {pool_name} holds {pool_size} samples; lower --initial, --budget or --cycles")


def active_learning(
    train: Split,
    test: Split,
    pool: torch.Tensor,
    strategy: Strategy,
    al: ALConfig,
    train_config: TrainConfig,
    seed: int,
    device: torch.device | str = "cpu",
    start_cycle: int = 0,
    labeled: torch.Tensor | None = None,
    progress: bool = False,
    epoch_hooks: Callable[[int], EpochHook | None] | None = None,
    model_state: dict[str, torch.Tensor] | None = None,
    objective_state: dict[str, torch.Tensor] | None = None,
    model_factory: ModelFactory | None = None,
    chunk_size: int | None = None,
    ranks: "Ranks | None" = None,
) -> Iterator[CycleResult]:
    """Run (or resume) the cycles of one method and seed, yielding each finished cycle.

    Args:
        train, test: splits already on ``device``.
        pool: absolute indices of the training samples that may be labeled, ``[N]``.
        start_cycle, labeled: resume at ``start_cycle`` with this labeled set (default: the
            random initial set at cycle 0).
        epoch_hooks: a hook factory, called with the cycle number before each cycle's training;
            the hook it returns (or None) is passed to ``train_model`` as ``epoch_hook``. The
            caller keeps what the hooks record (e.g. ``tidal.analysis.TDTrackerFactory``).
        model_state: with ``retrain="continue"``, the backbone weights to resume from (the
            ``model_state`` of the last stored cycle); ignored models are rebuilt from scratch.
        objective_state: with ``retrain="continue"``, the weights of the objective's carried
            module to resume from (the ``objective_state`` of the last stored cycle; None: a
            fresh module, as a run that never carried one).
        model_factory: builds each cycle's model (default: ``train_config.model``, see
            :func:`configured_model` and :data:`ModelFactory`).
        chunk_size: candidates scored at a time by a ``per_sample`` strategy (default: the eval
            batch size); the selection does not depend on it (:func:`tidal.gather.select`).
        ranks: under torchrun, this process's ranks (:mod:`tidal.distributed`): training,
            evaluation and scoring are shared out and every rank yields the same cycles (the
            caller writes them on rank 0 alone). None: one process.
    Raises:
        ValueError: the initial set or the budget does not fit the pool; ``model_state`` or
            ``objective_state`` does not fit this run's networks.
        TrainingDivergedError: NaN loss; the message names the cycle and the seed.
        NonFiniteError: the starting weights, the test logits or the selection scores are NaN or
            infinite (or the loss is, because of the data); the message names the method, seed
            and cycle and the cause :mod:`tidal.finite` found. Nothing of that cycle is yielded.
    """
    device = torch.device(device)
    check_pool_fits(al, len(pool))
    state = LabelPool(pool)
    state.label(initial_labeled(pool, al.initial, seed) if labeled is None else labeled, round=start_cycle)
    factory = model_factory or configured_model(train_config)
    model = None
    if (model_state is not None or objective_state is not None) and al.retrain != "continue":
        raise ValueError("model_state and objective_state are only used with retrain='continue'")
    if model_state is not None:
        model = factory(train.num_classes, train.input_shape, strategy.dropout)
        _load_weights(model, model_state, "model_state")
    carried = objective_state
    for cycle in range(start_cycle, al.cycles):
        result, model = run_cycle(train, test, state, strategy, al, train_config, seed, cycle, device, model,
                                  factory, progress, None if epoch_hooks is None else epoch_hooks(cycle), carried,
                                  chunk_size, ranks)
        carried = result.objective_state
        yield result


def run_cycle(train: Split, test: Split, state: LabelPool, strategy: Strategy, al: ALConfig,
              train_config: TrainConfig, seed: int, cycle: int, device: torch.device | str,
              model: nn.Module | None, factory: ModelFactory, progress: bool = False,
              epoch_hook: EpochHook | None = None, carried: dict[str, torch.Tensor] | None = None,
              chunk_size: int | None = None, ranks: "Ranks | None" = None,
              desc: str | None = None) -> tuple[CycleResult, nn.Module]:
    """One cycle of :func:`active_learning` on ``state`` (labels the selection in it): draw the
    subset, (re)build or keep ``model``, train, evaluate on ``test`` and, when ``cycle <
    al.cycles - 1``, select ``al.budget`` samples. Returns the result and the trained model.
    The labelling workflow (:mod:`tidal.project.query`) runs its rounds through this function;
    ``desc`` names the training progress bar (default: method, seed and cycle).
    """
    device = torch.device(device)
    # Everything random in a cycle (dropout masks included) is drawn from generators seeded
    # by (seed, cycle), so a cycle's numbers do not depend on what ran before it in the process.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, cycle, 3))
        try:
            return _cycle(train, test, state, strategy, al, train_config, seed, cycle, device, model, factory,
                          progress, epoch_hook, carried, chunk_size, ranks, desc)
        except Exception as exc:
            from tidal.models.factory import raised_in_user_code

            if isinstance(exc, TidalError) or not raised_in_user_code(exc):
                raise
            text = " ".join(str(exc).split())
            raise ModelError(f"{strategy.name}, seed {seed}, cycle {cycle + 1}: your code (the model, or a strategy of "
                             f"yours) failed while tidal trained, evaluated or scored it on inputs of shape "
                             f"{tuple(train.input_shape)} in batches of up to {train_config.batch_size} (training) / "
                             f"{train_config.eval_batch_size} (inference), {train.num_classes} classes: "
                             f"{type(exc).__name__}{': ' + text if text else ''} (TIDAL_DEBUG=1 shows the traceback)"
                             ) from exc


def _load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(state)``, a ``ValueError`` naming ``what`` when it does not fit."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"{what} does not fit this run's {type(module).__name__} (other keys or shapes): it was "
                         "saved by a run with another method or configuration") from exc


def _cycle(train: Split, test: Split, state: LabelPool, strategy: Strategy, al: ALConfig,
           train_config: TrainConfig, seed: int, cycle: int, device: torch.device, model: nn.Module | None,
           factory: ModelFactory, progress: bool, epoch_hook: EpochHook | None,
           carried: dict[str, torch.Tensor] | None = None,
           chunk_size: int | None = None, ranks: "Ranks | None" = None,
           desc: str | None = None) -> tuple[CycleResult, nn.Module]:
    """One cycle: subset draw, (re)build, train, evaluate, and select unless it is the last.

    ``carried``: with ``retrain="continue"``, the previous cycle's weights of the objective's
    carried module, loaded into this cycle's fresh objective (its per-cycle state stays fresh).
    """
    g = torch.Generator().manual_seed(derive_seed(seed, cycle))
    unlabeled = state.unlabeled
    candidates = unlabeled[torch.randperm(len(unlabeled), generator=g)[: al.subset]]
    lab = state.labeled
    selects = cycle < al.cycles - 1
    if model is None or al.retrain == "scratch":
        with torch.random.fork_rng(devices=[]):  # weights drawn on the CPU, from this cycle's seed
            torch.manual_seed(derive_seed(seed, cycle, 1))
            model = factory(train.num_classes, train.input_shape, strategy.dropout)
    ctx = TrainContext(train, lab.to(device), candidates.to(device), train.num_classes, model.feature_channels,
                       model.embedding_dim, train_config.epochs, device, train_config.eval_batch_size, selects)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, cycle, 2))
        objective = strategy.make_objective(ctx)
    keep = al.retrain == "continue"
    module = objective.carried() if keep and objective is not None else None
    if module is not None and carried is not None:
        _load_weights(module, carried, "objective_state")
    model.to(device)
    if objective is not None:
        objective.to(device)
    where = f"{strategy.name}, seed {seed}, cycle {cycle + 1}"
    bs = train_config.eval_batch_size
    try:  # NaN weights, or a batch-norm variance below 0, give NaN logits whatever training does
        check_weights(model, f"from --weights {train_config.weights}" if train_config.weights else
                      "carried from the previous cycle" if keep and cycle > 0 else "as the model built them")
    except NonFiniteError as exc:
        raise NonFiniteError(f"{where}: {exc}") from exc
    # The batch and crop fitted to this cycle's labels and image size (config.adapt_train; README, "Presets").
    fitted, _ = adapt_train(train_config, len(lab), tuple(train.input_shape),
                            min_batch=2 if ranks is None else 2 * ranks.world_size)
    try:
        stats = train_model(model, objective, train, lab, fitted, g, progress,
                            desc=desc or f"{strategy.name} seed {seed} cycle {cycle + 1}/{al.cycles}",
                            epoch_hook=epoch_hook,
                            ranks=ranks)
    except TrainingDivergedError as exc:
        data = input_problem(train, lab.to(device), bs, "training")
        if data is not None:  # the data, not the learning rate: say so
            raise NonFiniteError(f"{where}: {str(exc).split('; lower the learning rate')[0]}: {data}") from exc
        raise TrainingDivergedError(f"{where}: {exc}") from exc
    t0 = time.perf_counter()
    try:
        accuracy = (evaluate if ranks is None else ranks.evaluate)(model, test, bs)
    except NonFiniteError as exc:
        cause = diagnose(model, [(test, torch.arange(len(test)), "test"), (train, lab, "training")], bs,
                         train_config.lr)
        raise NonFiniteError(f"{where}: {exc}: {cause}; nothing of this cycle was stored") from exc
    eval_seconds = time.perf_counter() - t0
    selected = torch.zeros(0, dtype=torch.int64)
    scores = torch.zeros(0)
    t0 = time.perf_counter()
    if selects:
        store = StoreSpec(al.embedding_store, al.embedding_dtype, al.store_dir)
        try:
            scoring = ScoringPass(model, objective, train, candidates.to(device), lab.to(device), al.budget, g,
                                  train_config.eval_batch_size)
            selected, scores = (select if ranks is None else ranks.select)(strategy, scoring, chunk_size, store=store)
            if not bool(torch.isfinite(scores).all()):  # under torchrun: the selection every rank got
                raise NonFiniteError(f"{int((~torch.isfinite(scores)).sum())} of the {len(scores)} selected "
                                     f"candidates got NaN or infinite {strategy.name} scores")
        except NonFiniteError as exc:
            cause = ("" if "a bug of the strategy" in str(exc) else
                     ": " + diagnose(model, [(train, candidates, "candidate"), (train, lab, "training")], bs,
                                     train_config.lr))
            raise NonFiniteError(f"{where}: {exc}{cause}; nothing of this cycle was stored") from exc
        state.label(selected, round=cycle + 1)
    score_seconds = time.perf_counter() - t0
    counts = torch.bincount(train.labels[lab.to(device)].cpu(), minlength=train.num_classes).tolist()
    result = CycleResult(cycle, lab, accuracy, counts, selected, scores.float(), stats.seconds, score_seconds,
                         eval_seconds, stats.final_loss, _cpu_state(model) if keep else None,
                         _cpu_state(module) if module is not None else None)
    return result, model


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
