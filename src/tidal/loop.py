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

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

from tidal.comm import LOCAL, Comm
from tidal.config import ALConfig, TrainConfig, adapt_train
from tidal.data.dataset import Split
from tidal.errors import ModelError, NonFiniteError, TidalError, TrainingDivergedError
from tidal.embedstore import StoreSpec
from tidal.finite import check_weights, diagnose, input_problem
from tidal.gather import ScoringPass
from tidal.pool import LabelPool
from tidal.strategies.base import AuxObjective, Strategy, TrainContext
from tidal.train import EpochHook, train_model

__all__ = ["CycleEnv", "CycleResult", "ModelFactory", "Resume", "active_learning", "check_pool_fits",
           "configured_model", "derive_seed", "initial_labeled", "new_model", "new_objective", "run_cycle"]

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


@dataclass(frozen=True)
class CycleEnv:
    """What every cycle of a run is run with: the settings and where it runs."""

    train: TrainConfig  # the training settings (fitted to each cycle's labels by config.adapt_train)
    al: ALConfig  # the protocol: budget, subset size, cycles, retrain mode, embedding store (StoreSpec)
    device: torch.device  # where the splits live and the model trains
    factory: ModelFactory  # builds each cycle's model (e.g. configured_model(train))
    comm: Comm = LOCAL  # one process, or torchrun's processes (tidal.comm)
    chunk_size: int | None = None  # candidates a per_sample strategy scores at a time (None: the eval batch)
    progress: bool = False  # show the training progress bar


@dataclass(frozen=True)
class Resume:
    """Where a run goes on from: after ``cycle`` stored cycles (0: from the start)."""

    cycle: int = 0  # cycles already done
    labeled: torch.Tensor | None = None  # labeled set to go on with (None: the random initial set)
    model_state: dict[str, torch.Tensor] | None = None  # retrain="continue": backbone weights to go on from
    objective_state: dict[str, torch.Tensor] | None = None  # retrain="continue": the carried module's weights


def new_model(factory: ModelFactory, split: Split, strategy: Strategy, seed: int | None = None) -> nn.Module:
    """A fresh model for ``split`` with the strategy's dropout, its weights drawn on the CPU from
    ``seed`` (None: from the global generator)."""
    with _seeded(seed):
        return factory(split.num_classes, split.input_shape, strategy.dropout)


def new_objective(strategy: Strategy, model: nn.Module, split: Split, ids: tuple[torch.Tensor, torch.Tensor],
                  config: TrainConfig, device: torch.device, selects: bool = True,
                  seed: int | None = None) -> AuxObjective | None:
    """The strategy's fresh objective for ``model`` trained on ``split``; ``ids`` = ``(labeled,
    candidates)`` absolute ids; drawn from ``seed`` (None: from the global generator)."""
    ctx = TrainContext(split, ids[0], ids[1], split.num_classes, model.feature_channels, model.embedding_dim,
                       config.epochs, device, config.eval_batch_size, selects)
    with _seeded(seed):
        return strategy.make_objective(ctx)


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """The CPU generator seeded by ``seed`` inside, restored after (None: left alone)."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def active_learning(train: Split, test: Split, pool: torch.Tensor, strategy: Strategy, seed: int, env: CycleEnv,
                    resume: Resume = Resume(),
                    epoch_hooks: Callable[[int], EpochHook | None] | None = None) -> Iterator[CycleResult]:
    """Run (or resume) the cycles of one method and seed, yielding each finished cycle.

    Args:
        train, test: splits already on ``env.device``.
        pool: absolute indices of the training samples that may be labeled, ``[N]``.
        env: the settings and where it runs (:class:`CycleEnv`; under torchrun every rank
            yields the same cycles, which the caller writes on the main one alone).
        resume: go on after ``resume.cycle`` cycles with its labeled set (default: the random
            initial set) and, with ``retrain="continue"``, its weights (:class:`Resume`).
        epoch_hooks: a hook factory, called with the cycle number before each cycle's training;
            the hook it returns (or None) is passed to ``train_model`` as ``epoch_hook``. The
            caller keeps what the hooks record (e.g. ``tidal.analysis.TDTrackerFactory``).
    Raises:
        ValueError: the initial set or the budget does not fit the pool; the resume weights do
            not fit this run's networks.
        TrainingDivergedError: NaN loss; the message names the cycle and the seed.
        NonFiniteError: the starting weights, the test logits or the selection scores are NaN or
            infinite (or the loss is, because of the data); the message names the method, seed
            and cycle and the cause :mod:`tidal.finite` found. Nothing of that cycle is yielded.
    """
    al = env.al
    check_pool_fits(al, len(pool))
    state = LabelPool(pool)
    state.label(initial_labeled(pool, al.initial, seed) if resume.labeled is None else resume.labeled,
                round=resume.cycle)
    model = None
    if (resume.model_state is not None or resume.objective_state is not None) and al.retrain != "continue":
        raise ValueError("model_state and objective_state are only used with retrain='continue'")
    if resume.model_state is not None:
        model = new_model(env.factory, train, strategy)
        _load_weights(model, resume.model_state, "model_state")
    carried = resume.objective_state
    for cycle in range(resume.cycle, al.cycles):
        result, model = run_cycle(train, test, state, strategy, seed, cycle, env, model=model, carried=carried,
                                  epoch_hook=None if epoch_hooks is None else epoch_hooks(cycle),
                                  selects=cycle < al.cycles - 1)
        carried = result.objective_state
        yield result


def run_cycle(train: Split, test: Split, state: LabelPool, strategy: Strategy, seed: int, cycle: int, env: CycleEnv,
              *, model: nn.Module | None = None, carried: dict[str, torch.Tensor] | None = None,
              epoch_hook: EpochHook | None = None, selects: bool, desc: str | None = None
              ) -> tuple[CycleResult, nn.Module]:
    """One cycle of :func:`active_learning` on ``state`` (labels the selection in it): draw the
    subset, (re)build or keep ``model``, train, evaluate on ``test`` and, when ``selects``,
    select ``env.al.budget`` samples. Returns the result and the trained model.
    The labelling workflow (:mod:`tidal.project.query`) runs its rounds through this function;
    ``desc`` names the training progress bar (default: method, seed and cycle).

    ``carried``: with ``retrain="continue"``, the previous cycle's weights of the objective's
    carried module, loaded into this cycle's fresh objective (its per-cycle state stays fresh).
    """
    # Everything random in a cycle (dropout masks included) is drawn from generators seeded
    # by (seed, cycle), so a cycle's numbers do not depend on what ran before it in the process.
    with torch.random.fork_rng(devices=[env.device] if env.device.type == "cuda" else []):
        torch.manual_seed(derive_seed(seed, cycle, 3))
        try:
            return _cycle(train, test, state, strategy, (seed, cycle), env, model=model, carried=carried,
                          epoch_hook=epoch_hook, selects=selects, desc=desc)
        except Exception as exc:
            from tidal.models.factory import raised_in_user_code

            if isinstance(exc, TidalError) or not raised_in_user_code(exc):
                raise
            text = " ".join(str(exc).split())
            raise ModelError(f"{strategy.name}, seed {seed}, cycle {cycle + 1}: your code (the model, or a strategy of "
                             f"yours) failed while tidal trained, evaluated or scored it on inputs of shape "
                             f"{tuple(train.input_shape)} in batches of up to {env.train.batch_size} (training) / "
                             f"{env.train.eval_batch_size} (inference), {train.num_classes} classes: "
                             f"{type(exc).__name__}{': ' + text if text else ''} (TIDAL_DEBUG=1 shows the traceback)"
                             ) from exc


def _load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(state)``, a ``ValueError`` naming ``what`` when it does not fit."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"{what} does not fit this run's {type(module).__name__} (other keys or shapes): it was "
                         "saved by a run with another method or configuration") from exc


def _cycle(train: Split, test: Split, state: LabelPool, strategy: Strategy, at: tuple[int, int], env: CycleEnv, *,
           model: nn.Module | None, carried: dict[str, torch.Tensor] | None, epoch_hook: EpochHook | None,
           selects: bool, desc: str | None) -> tuple[CycleResult, nn.Module]:
    """One cycle at ``at = (seed, cycle)``: subset draw, (re)build, train, evaluate, and select when ``selects``."""
    (seed, cycle), al, train_config, device, comm = at, env.al, env.train, env.device, env.comm
    g = torch.Generator().manual_seed(derive_seed(seed, cycle))
    unlabeled = state.unlabeled
    candidates = unlabeled[torch.randperm(len(unlabeled), generator=g)[: al.subset]]
    lab = state.labeled
    if model is None or al.retrain == "scratch":  # weights drawn on the CPU, from this cycle's seed
        model = new_model(env.factory, train, strategy, derive_seed(seed, cycle, 1))
    objective = new_objective(strategy, model, train, (lab.to(device), candidates.to(device)), train_config, device,
                              selects, derive_seed(seed, cycle, 2))
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
    fitted, _ = adapt_train(train_config, len(lab), tuple(train.input_shape), min_batch=2 * comm.world_size)
    try:
        stats = train_model(model, objective, train, lab, fitted, g, env.progress,
                            desc=desc or f"{strategy.name} seed {seed} cycle {cycle + 1}/{al.cycles}",
                            epoch_hook=epoch_hook, comm=comm)
    except TrainingDivergedError as exc:
        data = input_problem(train, lab.to(device), bs, "training")
        if data is not None:  # the data, not the learning rate: say so
            raise NonFiniteError(f"{where}: {str(exc).split('; lower the learning rate')[0]}: {data}") from exc
        raise TrainingDivergedError(f"{where}: {exc}") from exc
    t0 = time.perf_counter()
    try:
        accuracy = comm.evaluate(model, test, bs)
    except NonFiniteError as exc:
        cause = diagnose(model, [(test, torch.arange(len(test)), "test"), (train, lab, "training")], bs,
                         train_config.lr)
        raise NonFiniteError(f"{where}: {exc}: {cause}; nothing of this cycle was stored") from exc
    eval_seconds = time.perf_counter() - t0
    selected = torch.zeros(0, dtype=torch.int64)
    scores = torch.zeros(0)
    t0 = time.perf_counter()
    if selects:
        try:
            scoring = ScoringPass(model, objective, train, candidates.to(device), lab.to(device), al.budget, g,
                                  train_config.eval_batch_size)
            store = StoreSpec(al.embedding_store, al.embedding_dtype, al.store_dir)
            selected, scores = comm.select(strategy, scoring, env.chunk_size, store=store)
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
