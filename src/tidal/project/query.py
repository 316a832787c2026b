"""One query round: train on every label so far, score the unlabeled pool, pick the top k.

:func:`query` is the library call (``tidal.query``); ``tidal query PROJECT`` runs it on a
project's stored state (:func:`query_project`) and writes the round's files. Training,
evaluation and selection are the simulation's own: the round is one
:func:`tidal.loop.run_cycle` (the body of every simulated cycle: a fresh model from the
factory, :func:`tidal.train.train_model` with the strategy's objective, evaluation on the
holdout, and :func:`tidal.gather.select`), so a strategy scores the same way in both.

Randomness: round ``r`` with seed ``s`` draws everything (the subset, the initial weights,
the batches, a random round's draw) from generators seeded by ``(s, r)``, so the same labels
and seed give the same round, however often it is run or wherever it was killed.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from tidal.config import PRESETS, ALConfig, StrategyConfig, TrainConfig, adapt_train
from tidal.data.dataset import DatasetSplits, Split
from tidal.errors import DatasetError, RunDirectoryError

__all__ = ["MISSING_NAME", "QueryConfig", "QueryResult", "WarmStart", "query", "query_project", "round_dir"]

_RANDOM_STREAM = 4_000_037  # stream id of a random round's draw (distinct from the cycle streams)
MISSING_NAME = "missing.txt"  # a round's pool files that were gone: "id<TAB>path<TAB>stored label (or empty)" a line


@dataclass(frozen=True)
class QueryConfig:
    """A round's settings (``tidal query``'s flags over a project's stored ones)."""

    train: TrainConfig = field(default_factory=lambda: PRESETS["quick"].train)  # training (default: the quick preset's)
    strategy: StrategyConfig = field(default_factory=lambda: PRESETS["quick"].strategy)  # the strategy's settings
    subset: int | None = None  # score a random subset of this many unlabeled samples (None: all of them)
    seed: int = 0  # with the round number, seeds everything the round draws
    retrain: str = "scratch"  # "scratch" (the paper) or "continue": from ``warm``, keeping the weights for the next


class WarmStart(NamedTuple):
    """The last round's weights that ``retrain="continue"`` goes on from."""

    model: dict[str, torch.Tensor]  # the backbone's state_dict
    objective: dict[str, torch.Tensor] | None = None  # the objective's carried module's (same method only)


@dataclass
class QueryResult:
    """A round's selection, best first, and how it was made."""

    ids: torch.Tensor  # selected sample ids, int64 [k], most informative first
    scores: torch.Tensor  # their scores, float [k] (higher = more informative; NaN in a random round)
    predicted: torch.Tensor  # the model's class of each, int64 [k] (-1 in a random round)
    probability: torch.Tensor  # the model's probability of that class, float [k] (NaN in a random round)
    random: bool  # True: drawn at random, no model (fewer than 2 labels to train on)
    accuracy: float | None  # holdout accuracy in [0, 1] of the round's model (None: no holdout or no model)
    n_labeled: int  # labels trained on
    class_counts: list[int]  # labels per class trained on
    train_seconds: float
    score_seconds: float
    model: nn.Module | None  # the trained model (None in a random round)
    objective_state: dict[str, torch.Tensor] | None = None  # the objective's carried module (retrain="continue")
    excluded: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))  # ids left out, [m]
    excluded_labeled: int = 0  # of them, labelled ones (given labels not trained on)
    final_loss: float | None = None  # mean training loss of the last epoch (None in a random round)
    confusion: list[list[int]] | None = None  # holdout counts [true class][predicted class] (None: no holdout or model)
    fitted: list[str] = field(default_factory=list)  # training settings fitted to the labels and images (adapt_train)


def query(
    model: Any,
    dataset: Split | DatasetSplits,
    labeled_ids: Sequence[int] | torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    k: int,
    method: str = "tidal-entropy",
    *,
    config: QueryConfig | None = None,
    round: int = 1,
    exclude: Sequence[int] | torch.Tensor = (),
    warm: WarmStart | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> QueryResult:
    """Train on ``labels`` of ``labeled_ids`` and select the ``k`` most informative other samples.

    Args:
        model: a model spec (``"auto"``, ``"resnet18"``, ``"pkg.mod:fn"``, a function of
            ``num_classes`` or an ``nn.Module``; see :func:`tidal.models.build_model`).
        dataset: the pool, a split whose ids are its positions (its own labels are ignored);
            a :class:`DatasetSplits` gives its ``train`` split, and its ``test`` split as the
            holdout that accuracy is measured on.
        labeled_ids, labels: the labelled samples and their class indices ``0..C-1``.
        k: samples to select; at most the number of unlabeled samples.
        method: a registered strategy (``tidal methods``).
        config: training, strategy, subset, seed and retrain mode (:class:`QueryConfig`;
            default: the quick preset's, the whole pool, seed 0, from scratch).
        round: the round's randomness comes from ``(config.seed, round)``.
        exclude: ids left out of the round (e.g. samples whose file is gone): never selected,
            and not trained on when labelled; the result counts them.
        warm: with ``retrain="continue"``, the last round's weights to go on from (None: a
            fresh model, as in a first round).
    Returns:
        :class:`QueryResult`: ``ids`` and ``scores`` best first, with the predicted classes.
        With fewer than 2 labels nothing can be trained: the round draws ``k`` at random.
    Raises:
        ValueError: a bad ``k``, ``subset``, id or label, an unknown method.
    """
    from tidal.loop import CycleEnv, configured_model, derive_seed, run_cycle
    from tidal.pool import LabelPool
    from tidal.strategies import create_strategy, strategy_class

    dataset, holdout = (dataset.train, dataset.test) if isinstance(dataset, DatasetSplits) else (dataset, None)
    config = config or QueryConfig()
    train_config, strategy_config, subset, seed, retrain = (config.train, config.strategy, config.subset, config.seed,
                                                            config.retrain)
    strategy_class(method)  # unknown names: ValueError listing the valid ones
    if retrain not in ("scratch", "continue"):
        raise ValueError(f"retrain={retrain!r} must be 'scratch' or 'continue'")
    if warm is not None and retrain != "continue":
        raise ValueError("warm weights are only used with retrain='continue'; drop warm or set "
                         "QueryConfig(retrain='continue')")
    n, c = len(dataset), dataset.num_classes
    ids = torch.as_tensor(labeled_ids, dtype=torch.int64).flatten().cpu()
    y = torch.as_tensor(labels, dtype=torch.int64).flatten().cpu()
    if len(ids) != len(y):
        raise ValueError(f"{len(ids)} labeled ids but {len(y)} labels; give one label per id")
    _check_range("labeled id", ids, n, "pool's ids")
    if len(torch.unique(ids)) != len(ids):
        raise ValueError("labeled_ids hold an id twice; give each labelled sample once")
    _check_range("label", y, c, "class indices")
    out = torch.as_tensor(exclude, dtype=torch.int64).flatten().cpu().unique()
    _check_range("excluded id", out, n, "pool's ids")
    usable = torch.ones(n, dtype=torch.bool)
    usable[out] = False
    excluded_labeled = int((~usable[ids]).sum())
    ids, y = ids[usable[ids]], y[usable[ids]]  # labelled but excluded: not trained on
    unlabeled_n = int(usable.sum()) - len(ids)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be an integer >= 1")
    if k > unlabeled_n:
        left = f" ({len(out)} excluded)" if len(out) else ""
        raise ValueError(f"k={k} is larger than the {unlabeled_n} unlabeled samples{left}; ask for at most "
                         f"{unlabeled_n}")
    subset = unlabeled_n if subset is None else subset
    if subset < k:
        raise ValueError(f"subset={subset} must be >= k={k}: the top k are taken from the subset")
    device = torch.device(device)
    full = torch.full((n,), -1, dtype=torch.int64)
    full[ids] = y
    pool = dataset.with_labels(full).to(device)
    state = LabelPool(torch.arange(n)[usable])  # excluded ids are never candidates
    if len(ids):
        state.label(ids, round=0)
    counts = torch.bincount(y, minlength=c).tolist()
    if len(ids) < 2:  # nothing to train on: a random draw, as the simulation's initial set
        g = torch.Generator().manual_seed(derive_seed(seed, round, _RANDOM_STREAM))
        unlabeled = state.unlabeled
        chosen = unlabeled[torch.randperm(len(unlabeled), generator=g)[:k]]
        nan = torch.full((k,), float("nan"))
        return QueryResult(chosen, nan, torch.full((k,), -1, dtype=torch.int64), nan.clone(), True, None, len(ids),
                           counts, 0.0, 0.0, None, excluded=out, excluded_labeled=excluded_labeled)
    strategy = create_strategy(method, strategy_config)
    factory = configured_model(train_config, model)
    env = CycleEnv(train_config, ALConfig(initial=len(ids), budget=k, subset=subset, retrain=retrain), device,
                   factory, progress=progress)
    start_model = None
    if warm is not None:
        start_model = factory(c, pool.input_shape, strategy.dropout)
        try:
            start_model.load_state_dict(warm.model)
        except (RuntimeError, KeyError) as exc:
            raise ValueError("the warm weights do not fit this model (other keys or shapes): the last round used "
                             "another model; query with --retrain scratch") from exc
    test = holdout.to(device) if holdout is not None else pool.subset(torch.zeros(0, dtype=torch.int64))
    _, fitted = adapt_train(train_config, len(ids), tuple(pool.input_shape))  # what run_cycle trains with
    result, trained = run_cycle(pool, test, state, strategy, seed, round, env, model=start_model,
                                carried=warm.objective if warm is not None else None, selects=True,
                                desc=f"round {round} {method}")
    predicted, probability = _predictions(trained, pool, result.selected, train_config.eval_batch_size)
    confusion = None
    if holdout is not None and len(test):
        confusion = _confusion(trained, test, train_config.eval_batch_size)
    return QueryResult(result.selected, result.scores.float(), predicted, probability, False,
                       result.accuracy if holdout is not None else None, len(ids), counts, result.train_seconds,
                       result.score_seconds, trained, result.objective_state, excluded=out,
                       excluded_labeled=excluded_labeled, final_loss=result.final_loss, confusion=confusion,
                       fitted=fitted)


def _check_range(what: str, values: torch.Tensor, n: int, among: str) -> None:
    """``ValueError`` quoting a value of ``values`` outside ``0..n-1`` (the largest when one is too large)."""
    if len(values) and (int(values.min()) < 0 or int(values.max()) >= n):
        bad = int(values.max()) if int(values.max()) >= n else int(values.min())
        raise ValueError(f"{what} {bad} is outside the {among} 0..{n - 1}")


def _confusion(model: nn.Module, holdout: Split, batch_size: int) -> list[list[int]]:
    """Holdout counts ``[true class][predicted class]`` of ``model`` (the per-class view of its accuracy)."""
    from tidal.inference import batched_outputs

    c = holdout.num_classes
    counts = torch.zeros(c * c, dtype=torch.int64)
    for chunk, out in batched_outputs(model, holdout, torch.arange(len(holdout)), batch_size):
        pairs = holdout.labels[chunk].cpu() * c + out.logits.argmax(dim=1).cpu()
        counts += torch.bincount(pairs, minlength=c * c)
    return counts.view(c, c).tolist()


def _predictions(model: nn.Module, pool: Split, ids: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's class and its probability for ``ids``: int64 [k], float [k]."""
    from tidal.inference import batched_outputs

    classes, probs = [], []
    for _, out in batched_outputs(model, pool, ids.to(pool.device), batch_size):
        p = torch.softmax(out.logits.float(), dim=1).cpu()
        top = p.max(dim=1)
        classes.append(top.indices)
        probs.append(top.values)
    if not classes:
        return torch.zeros(0, dtype=torch.int64), torch.zeros(0)
    return torch.cat(classes), torch.cat(probs)


# --- the project command --------------------------------------------------------------------

def round_dir(project: Path, rnd: int) -> Path:
    return Path(project) / "rounds" / f"{rnd:03d}"


def _model_path(project: Path, rnd: int) -> Path:
    return round_dir(project, rnd) / "model.pt"


def _fmt(x: float | None, digits: int = 6) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}g}"


def _image_url(template: str, project: Path, root: Path | None) -> Any:
    """``path -> URL`` for a round's tasks: ``template`` with ``{path}`` (the sample's path),
    ``{abspath}`` (its absolute file path) and ``{pool}`` (the pool folder's name), URL-quoted."""
    from urllib.parse import quote

    def url(path: str) -> str:
        absolute = (root / path) if root is not None else (project / path)
        return template.format(path=quote(path), abspath=quote(str(absolute)),
                               pool=quote(root.name if root is not None else ""))

    return url


def query_project(project: str | Path, k: int, method: str | None = None, subset: int | None = None,
                  seed: int | None = None, retrain: str = "scratch", device: str = "auto",
                  progress: bool = False, data_dir: str | None = None) -> tuple[int, QueryResult, Path]:
    """Run the next round of ``project`` and store it; returns ``(round, result, round folder)``.

    Holds the project's lock; writes ``rounds/NNN/to_label.csv``, ``tasks.json`` and the
    round's weights (``model.pt``, the latest round's only) atomically, then stores the round.
    Pool files deleted since ``init`` are left out (not selected; labelled ones not trained on,
    their labels kept) and listed in ``rounds/NNN/missing.txt``.
    """
    from tidal.io import atomic_path, atomic_write_text
    from tidal.project.labelstudio import TaskRow, write_tasks
    from tidal.project.project import check_image_url, open_project
    from tidal.project.store import RoundRecord, Selection
    from tidal.runs import resolve_device, set_deterministic
    from tidal.strategies import strategy_class

    project = Path(project)
    dev = resolve_device(device)
    with open_project(project) as (store, _lock):
        settings = store.meta("settings")
        try:  # a project made before templates were checked: refuse before training, not after
            check_image_url(settings["image_url"])
        except ValueError as exc:
            raise ValueError(f"project {project}: {exc}; set a valid one with `tidal init {project} --data "
                             f"{store.meta('source')} --classes {' '.join(store.classes)} --image-url TEMPLATE`"
                             ) from None
        method = method or settings["method"]
        strategy_class(method)
        seed = settings["seed"] if seed is None else seed
        if seed < 0:
            raise ValueError(f"--seed {seed} must be >= 0")
        classes = store.classes
        rounds = store.rounds()
        if rounds and rounds[-1].classes != classes:
            raise RunDirectoryError(f"the classes changed between rounds (round {rounds[-1].round}: "
                                    f"{rounds[-1].classes}, now {classes}); classes are fixed when a project is "
                                    "created: start a new project for new classes")
        labels = store.labels()
        n = store.num_samples()
        from tidal.project.data import load_pool, missing_samples

        missing = missing_samples(store)  # files gone since init: left out of the round, labels kept
        if len(missing) == n:
            raise DatasetError(f"all {n} pool files of project {project} are gone from {store.meta('pool_root')}; "
                               f"restore them, or if the pool moved: `tidal init {project} --data folder:NEWPATH "
                               f"--classes {' '.join(classes)} --moved`")
        unlabeled = n - len(labels) - sum(1 for i in missing if i not in labels)
        if k < 1:
            raise ValueError(f"-k {k} must be >= 1")
        if k > unlabeled:
            gone = f", {len(missing)} files missing" if missing else ""
            raise ValueError(f"-k {k} is larger than what is unlabeled ({unlabeled} of {n} samples{gone}); ask for "
                             f"at most {unlabeled}")
        if subset is not None and not k <= subset:
            raise ValueError(f"--subset {subset} must be >= -k {k}: the top k are taken from the subset")
        rnd = len(rounds) + 1

        t0 = time.perf_counter()
        set_deterministic(dev)
        data = load_pool(store, dev, data_dir, skip=missing)
        warm, last = None, _model_path(project, rounds[-1].round) if rounds else None
        if retrain == "continue" and last is not None and last.is_file():
            saved = torch.load(last, map_location="cpu", weights_only=True)
            warm = WarmStart(saved["model"], saved.get("objective") if saved.get("method") == method else None)
        config = QueryConfig(TrainConfig(**settings["train"]), StrategyConfig(**settings["strategy"]), subset, seed,
                             retrain)
        pool = data.pool if data.holdout is None else DatasetSplits("pool", data.pool, data.holdout, tuple(classes))
        result = query(config.train.model, pool, list(labels), list(labels.values()), k, method, config=config,
                       round=rnd, exclude=missing, warm=warm, device=dev, progress=progress)
        total = time.perf_counter() - t0
        out = round_dir(project, rnd)
        out.mkdir(parents=True, exist_ok=True)
        paths = store.paths()
        if missing:
            atomic_write_text(out / MISSING_NAME, "".join(
                f"{i}\t{paths[i]}\t{classes[labels[i]] if i in labels else ''}\n" for i in missing))
        rows = []
        for rank, (i, s, p, q) in enumerate(zip(result.ids.tolist(), result.scores.tolist(),
                                                 result.predicted.tolist(), result.probability.tolist()), start=1):
            rows.append((rank, i, paths[i], s, classes[p] if p >= 0 else "", q))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["rank", "id", "path", "score", "predicted", "probability", "label"])
        for rank, i, path, s, pred, q in rows:
            w.writerow([rank, i, path, _fmt(s), pred, _fmt(q, 4), ""])
        atomic_write_text(out / "to_label.csv", buf.getvalue())
        root = Path(store.meta("pool_root")) if store.meta("pool_root") else None
        write_tasks(out / "tasks.json", [TaskRow(i, path, s if math.isfinite(s) else float("nan"), pred,
                                                 q if math.isfinite(q) else float("nan"), rnd)
                                         for _, i, path, s, pred, q in rows],
                    _image_url(settings["image_url"], project, root))
        if result.model is not None:
            state = {key: v.detach().cpu() for key, v in result.model.state_dict().items()}
            with atomic_path(_model_path(project, rnd)) as tmp:
                torch.save({"model": state, "objective": result.objective_state, "method": method}, tmp)
        holdout_size = len(data.holdout) if data.holdout is not None else 0
        store.add_round(RoundRecord(
            rnd, "random" if result.random else method, seed, k, subset if subset is not None else unlabeled,
            retrain, result.random, result.n_labeled, result.class_counts, result.accuracy, holdout_size,
            result.train_seconds, result.score_seconds, total, classes, time.time(),
            [Selection(rank, i, None if not math.isfinite(s) else s, classes.index(pred) if pred else None,
                       None if not math.isfinite(q) else q) for rank, i, _, s, pred, q in rows],
            result.final_loss, result.confusion))
        for old in rounds:  # only the latest round's weights are kept (the next --retrain continue reads them)
            _model_path(project, old.round).unlink(missing_ok=True)
        return rnd, result, out
