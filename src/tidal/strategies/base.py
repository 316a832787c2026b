"""The strategy interface, the training hook, and the one place that does the top-k.

A strategy is a small registered object. It declares what it ``needs`` at scoring time,
optionally returns an :class:`AuxObjective` that the training step adds to the loss, and
maps the gathered inputs to one score per candidate where **higher = more informative**.
The loop gathers the needs in one pass and calls :func:`select_top_k`; neither the loop
nor the training step ever looks at a strategy's name.

A strategy whose score of a candidate depends only on that candidate's gathered inputs sets
``per_sample = True``: the loop then scores the candidates chunk by chunk as they are gathered
and keeps only the best k (:class:`RunningTopK`, the same ranking as :func:`select_top_k`), so
its memory grows with the chunk and k, never with the number of candidates. A set strategy
(Core-Set, BADGE, CAL: every score depends on all candidates) keeps ``per_sample = False`` and
is scored once on all candidates; with ``blockwise = True`` it reads their arrays from a compact
store (:mod:`tidal.embedstore`, in memory or on disk) in row blocks, otherwise as whole tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from tidal.registry import Registry

if TYPE_CHECKING:
    from tidal.config import StrategyConfig
    from tidal.embedstore import StoredRows
    from tidal.data.dataset import Split
    from tidal.dynamics import TrainingDynamics
    from tidal.models.resnet import ModelOutput

__all__ = [
    "NEEDS",
    "AuxObjective",
    "RunningTopK",
    "ScoreInputs",
    "StepBatch",
    "Strategy",
    "TrainContext",
    "create_strategy",
    "list_strategies",
    "register",
    "select_top_k",
]

# What a strategy may ask the loop to gather for the candidates (and the labeled set).
NEEDS = frozenset(
    {
        "probs",  # softmax of the trained classifier, [n, C]
        "embedding",  # penultimate embedding, [n, D]
        "aux",  # outputs of the strategy's AuxObjective.predict, dict name -> [n, ...]
        "mc_probs",  # softmax of T stochastic passes with dropout active, [T, n, C]
        "labeled_embedding",  # penultimate embedding of the labeled set, [m, D]
    }
)


@dataclass
class TrainContext:
    """What a strategy's training hook may know when a cycle's training starts."""

    dataset: "Split"  # the training split, on the training device (in memory or on disk)
    labeled: torch.Tensor  # absolute indices of the labeled set, int64 [m]
    candidates: torch.Tensor  # absolute indices of this cycle's scored subset, int64 [n]
    num_classes: int  # C
    feature_channels: tuple[int, ...]  # channels of the backbone's feature maps
    embedding_dim: int  # D
    epochs: int  # epochs this training run lasts
    device: torch.device
    eval_batch_size: int = 1024  # batch size for any inference the hook runs
    selects: bool = True  # False on the last cycle: nothing will be scored, so skip scoring-only work


@dataclass
class StepBatch:
    """One training step's batch, as the aux objective sees it."""

    x: torch.Tensor  # augmented, normalised inputs [B, C_in, H, W]
    y: torch.Tensor  # labels [B]
    indices: torch.Tensor  # absolute dataset indices [B]
    epoch: int  # 0-based epoch
    out: "ModelOutput"  # the backbone's forward pass on x
    ce: torch.Tensor  # per-sample cross-entropy [B] (its mean is the target loss, Eq. 7)


class AuxObjective(nn.Module):
    """Extra training a strategy plugs into the training step (TiDAL's module, Learning Loss, ...).

    Its parameters are optimised together with the backbone. The training step calls
    ``loss`` on every batch and adds the result to the mean cross-entropy, and calls
    ``end_epoch`` after every epoch; the scoring pass calls ``predict`` on every candidate
    batch and hands the concatenated outputs to the strategy as ``ScoreInputs.aux``.

    With ``retrain="continue"`` the loop keeps the backbone across cycles, and with it the
    module :meth:`carried` returns (TiDAL's TD module, Learning Loss's loss-prediction module):
    each cycle's fresh objective loads the previous cycle's weights of that module, and the
    run directory checkpoints them with the backbone. Everything else an objective holds (the
    TD record of the labeled set, CAL's correctness record, VAAL's VAE) is per cycle.
    """

    def carried(self) -> nn.Module | None:
        """The module kept across cycles with the backbone under ``retrain="continue"`` (default: none)."""
        return None

    def records(self) -> list["TrainingDynamics"]:
        """The per-sample records ``loss`` updates from the samples of its batch (TiDAL's TD record,
        CAL's correctness). Under torchrun each rank sees its share of an epoch; the training
        step copies the rows each rank updated into the others' records after every epoch
        (:mod:`tidal.distributed`), so every rank holds them whole. Default: none."""
        return []

    def loss(self, batch: StepBatch) -> torch.Tensor:
        """A scalar added to the mean cross-entropy (default: 0)."""
        return batch.ce.new_zeros(())

    def end_epoch(self, epoch: int, model: nn.Module) -> None:
        """Called after each epoch with the backbone (default: nothing)."""

    def predict(self, out: "ModelOutput") -> dict[str, torch.Tensor]:
        """Per-sample outputs for scoring, each ``[B, ...]`` (default: none)."""
        return {}


@dataclass
class ScoreInputs:
    """Everything gathered for one cycle's candidates (or, for a ``per_sample`` strategy, for one
    chunk of them: then ``candidates`` and every ``[n, ...]`` field cover that chunk only, and
    ``labeled_embedding`` is None); fields a strategy did not ask for are None."""

    candidates: torch.Tensor  # absolute indices [n]
    labeled: torch.Tensor  # absolute indices of the labeled set [m]
    k: int  # how many will be selected
    generator: torch.Generator  # randomness for stochastic strategies
    # probs, embedding and labeled_embedding are StoredRows (tidal.embedstore) for a blockwise strategy
    probs: "torch.Tensor | StoredRows | None" = None  # [n, C]
    embedding: "torch.Tensor | StoredRows | None" = None  # [n, D]
    mc_probs: torch.Tensor | None = None  # [T, n, C]
    labeled_embedding: "torch.Tensor | StoredRows | None" = None  # [m, D]
    aux: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [n, ...]
    objective: AuxObjective | None = None  # the hook that trained with the model this cycle


class Strategy:
    """Base class: subclass, set ``name``/``description``/``needs``, implement ``score``.

    Constructors only store the configuration; all state that lives for one training run
    belongs to the AuxObjective returned by ``make_objective``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs: ClassVar[frozenset[str]] = frozenset()
    semi_supervised: ClassVar[bool] = False  # True when it trains on unlabeled data
    # True when a candidate's score depends only on that candidate's gathered inputs (and, for
    # stochastic scores, on drawing from ``generator`` in candidate order): the loop then scores
    # chunk by chunk and keeps a running top-k. False (the safe default): scored on whole arrays.
    per_sample: ClassVar[bool] = False
    # per_sample strategies only: True when a candidate's score also depends on which eval batch
    # computes it (a network run over the chunk's candidates, as VAAL's VAE: its float results move
    # with the batch's composition). The loop then cuts chunks at multiples of the eval batch size,
    # so every batch is the one the whole-array pass would run and the scores stay bit-identical.
    batch_aligned: ClassVar[bool] = False
    # Set strategies only: True when ``score`` reads ``probs``, ``embedding`` and ``labeled_embedding``
    # as :class:`~tidal.embedstore.StoredRows` (in row blocks, from memory or a float16 file on disk:
    # ``ALConfig.embedding_store``) instead of whole tensors (Core-Set, BADGE, CAL). False: whole tensors.
    blockwise: ClassVar[bool] = False
    # What the model must give beyond logits: "features" (the multi-scale maps an auxiliary module
    # reads) and/or "embedding"; checked against tidal.models.model_capabilities before training.
    model_needs: ClassVar[frozenset[str]] = frozenset()
    mc_samples: int = 0  # stochastic passes gathered when "mc_probs" is needed
    dropout: float = 0.0  # dropout before the classifier, in training and scoring

    def __init__(self, config: "StrategyConfig") -> None:
        self.config = config

    @classmethod
    def check_config(cls, config: "StrategyConfig") -> None:
        """Raise ``ValueError`` when ``config`` makes this strategy meaningless (default: accept)."""

    def make_objective(self, ctx: TrainContext) -> AuxObjective | None:
        """The training hook for one training run (default: plain cross-entropy)."""
        return None

    def score(self, inputs: ScoreInputs) -> torch.Tensor:
        """One float per candidate, ``[n]``; higher = more informative."""
        raise NotImplementedError


# Suggested for a mistyped name before the other close names: ``tidal`` gets the paper's main
# method, not the costly oracle ablation ``tidal-exact`` that difflib finds closest.
_SUGGESTED_FIRST = ("tidal-entropy", "tidal-margin", "random")
_LOADED = False


def _load_all() -> None:
    """Import every module of ``tidal.strategies`` once, so each registers its strategies.

    Done lazily, on the first registry lookup, so that strategy modules may import any other
    part of the package (train, inference, ...) at top level without an import cycle.
    """
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib
    import pkgutil

    import tidal.strategies as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("base", "scores"):
            importlib.import_module(f"{package.__name__}.{module.name}")


_REGISTRY: Registry[type[Strategy]] = Registry("strategy", "unknown method {name!r}; choose from: {names}{hint}",
                                               preferred=_SUGGESTED_FIRST, load=_load_all)


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    unknown = set(cls.needs) - NEEDS
    if unknown:
        raise ValueError(f"{cls.__name__}.needs has unknown entries {sorted(unknown)}; valid: {sorted(NEEDS)}")
    if cls.per_sample and "labeled_embedding" in cls.needs:
        raise ValueError(f"{cls.__name__} is per_sample but needs 'labeled_embedding', which chunks do not carry; "
                         "set per_sample = False")
    if cls.blockwise and (cls.per_sample or cls.needs & {"aux", "mc_probs"}):
        raise ValueError(f"{cls.__name__} is blockwise, which only set strategies reading 'probs', 'embedding' and "
                         "'labeled_embedding' may be; set blockwise = False")
    if cls.batch_aligned and not cls.per_sample:
        raise ValueError(f"{cls.__name__} is batch_aligned but not per_sample; set batch_aligned = False")
    return _REGISTRY.add(cls.name, cls, cls.description)


def list_strategies(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted."""
    return _REGISTRY.names(pattern)


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name``; unknown names raise a ``ValueError`` listing valid ones."""
    return _REGISTRY[name]


def create_strategy(name: str, config: "StrategyConfig | None" = None) -> Strategy:
    """Instantiate the strategy registered as ``name`` with ``config`` (defaults when None)."""
    from tidal.config import StrategyConfig

    return strategy_class(name)(config or StrategyConfig())


def _rank(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` best of ``scores [n]``, best first: NaN counts as ``-inf`` and ties keep
    position order (stable sort). The one ordering behind :func:`select_top_k` and :class:`RunningTopK`."""
    clean = torch.nan_to_num(scores.double().cpu(), nan=float("-inf"))
    return torch.argsort(clean, descending=True, stable=True)[:k]


def select_top_k(scores: torch.Tensor, candidates: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` candidates with the highest scores: ``(indices [k], scores [k])``, best first.

    NaN scores rank last; ties keep candidate order (stable sort), so results are
    deterministic. This and :class:`RunningTopK` (its streaming form) are the only top-k in the package.
    """
    if scores.shape != candidates.shape:
        raise ValueError(f"scores shape {tuple(scores.shape)} != candidates shape {tuple(candidates.shape)}")
    if not 0 <= k <= len(candidates):
        raise ValueError(f"k={k} must be between 0 and the number of candidates ({len(candidates)})")
    order = _rank(scores, k)
    return candidates.cpu()[order], scores.cpu()[order]


class RunningTopK:
    """:func:`select_top_k` over candidates that arrive in chunks, holding only ``k`` of them.

    ``add(scores, candidates)`` for each chunk in candidate order, then ``result()``: the same
    ``(indices [k], scores [k])`` as ``select_top_k`` on the concatenation, bit for bit. Why it
    is exact: the kept best ``k`` are in rank order and all precede the new chunk, so a stable
    sort of ``kept + chunk`` breaks ties by the original candidate order, and the best ``k`` of
    the concatenation are among the kept and the chunk. Memory: ``k + len(chunk)`` scores.
    """

    def __init__(self, k: int) -> None:
        if k < 0:
            raise ValueError(f"k={k} must be >= 0")
        self.k = k
        self.seen = 0  # candidates added so far
        self.peak_bytes = 0  # most bytes of scores and ids held at once (kept + one chunk)
        self._ids = torch.zeros(0, dtype=torch.int64)
        self._scores: torch.Tensor | None = None

    def add(self, scores: torch.Tensor, candidates: torch.Tensor) -> None:
        """Merge one chunk: ``scores [b]`` of ``candidates [b]`` (the chunk after all earlier ones)."""
        if scores.shape != candidates.shape or scores.dim() != 1:
            raise ValueError(f"scores shape {tuple(scores.shape)} != candidates shape {tuple(candidates.shape)}")
        scores, candidates = scores.cpu(), candidates.cpu()
        kept = scores[:0] if self._scores is None else self._scores
        all_scores, all_ids = torch.cat([kept, scores]), torch.cat([self._ids, candidates])
        self.peak_bytes = max(self.peak_bytes, all_scores.nbytes + all_ids.nbytes)
        order = _rank(all_scores, self.k)
        self._scores, self._ids = all_scores[order], all_ids[order]
        self.seen += len(candidates)

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices [k], scores [k])``, best first; ``ValueError`` when fewer than ``k`` were added."""
        if self.k > self.seen:
            raise ValueError(f"k={self.k} must be between 0 and the number of candidates ({self.seen})")
        scores = torch.zeros(0) if self._scores is None else self._scores
        return self._ids, scores
