"""Two analyses of the TiDAL paper, stored in a run directory and drawn by the report.

* **Figure 7** (§5.4, "predictive performance of the TD prediction module"): while a cycle
  trains, after every epoch ``t`` the test-set softmax ``p(t)`` and the module's predicted TD
  ``p̃_m(t)`` are recorded; at the end, the actual TD of the test samples is
  ``p̄(T) = mean_t p(t)`` (Eq. 5) and each epoch gets the test-set means of
  ``KL(p̄(T) || p̃_m(t))`` and ``KL(p̄(T) || p(t))``. :class:`TDTracker` is the
  ``train_model`` epoch hook; :class:`TDTrackerFactory` gives ``active_learning`` one per
  cycle (``run_experiment(track_td=True)``, ``tidal run --track-td``).
* **Figure 2** (§3.1): :func:`analyze_scores` trains TiDAL on long-tailed samples, then scores
  those samples with the snapshot estimators ``H(p)``, ``M(p)`` and the TD-based ``H̄``,
  ``M̄`` (from the actual TD and from the module's predicted TD), and measures how well each
  tells tail-class from head-class samples (AUROC). ``tidal analyze-scores``.
"""

from __future__ import annotations

import dataclasses
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tidal.config import PRESETS, ExperimentConfig
from tidal.data import DatasetSplits, Split, check_source_spec, load_dataset
from tidal.runs import make_pool, prepare_out, resolve_device
from tidal.td_tracking import TDTracker, TDTrackerFactory, kl_to_final_td  # noqa: F401 (re-exported)
from tidal.io import atomic_path
from tidal.inference import batched_outputs
from tidal.loop import configured_model, derive_seed, new_model, new_objective
from tidal.metrics import auroc, tail_classes
from tidal.results import ANALYSIS_DIR
from tidal.strategies import AuxObjective, Strategy, create_strategy
from tidal.strategies.tidal import TDPredictionObjective
from tidal.strategies.tidal_variants import fit_on_record
from tidal.strategies.scores import entropy, margin
from tidal.train import train_model

__all__ = [
    "METHOD",
    "OPTIONAL_SCORES",
    "SCORES",
    "ScoreAnalysis",
    "TDTracker",
    "TDTrackerFactory",
    "analyze_scores",
    "format_aurocs",
    "kl_to_final_td",
    "load_score_analysis",
    "save_score_analysis",
    "score_file_name",
]

# -- Figure 2: score distributions after long-tailed training ------------------------------------

# Stored scores: the estimators' values for each trained sample. H: entropy (Eq. 2 / 10), higher =
# more uncertain. M: margin at the true label (Eq. 3 / 11 with ŷ = y), smaller = more uncertain.
SCORES: dict[str, str] = {
    "H": "H(p), snapshot",
    "M": "M(p), snapshot",
    "H_td": "H̄(p̄), actual TD",
    "M_td": "M̄(p̄), actual TD",
    "H_pred": "H̄(p̃_m), predicted TD",
    "M_pred": "M̄(p̃_m), predicted TD",
    "H_cal": "H̄(p̃_m/T), calibrated",
    "M_cal": "M̄(p̃_m/T), calibrated",
}
# Scores a file written before they existed may lack (the report shows "–" for them).
OPTIONAL_SCORES = ("H_cal", "M_cal")
METHOD = "tidal-entropy"  # the paper's TiDAL objective, what the analysis trains unless told otherwise
_SCORES_STREAM = 3_000_003  # stream id of this analysis's randomness (distinct from the loop's and the pool's)


@dataclass
class ScoreAnalysis:
    """Per-sample uncertainty scores of the samples a TiDAL model was trained on (Figure 2)."""

    dataset: str
    imbalance: float  # imbalance ratio of the long-tailed pool the samples come from
    seed: int
    epochs: int  # training epochs
    width: int  # ResNet-18 base width
    num_classes: int  # C
    indices: np.ndarray  # absolute training-set indices, int64 [n]
    labels: np.ndarray  # their labels, int64 [n]
    scores: dict[str, np.ndarray]  # SCORES key -> float64 [n], the estimator's value
    path: Path | None = None  # the .npz it was stored in / read from
    method: str = METHOD  # the strategy whose objective trained the model and its TD module
    temperature: float = float("nan")  # T of the calibrated scores (NaN: a file without them)

    @property
    def is_tail(self) -> np.ndarray:
        """bool ``[n]``: the sample belongs to the tail half of the classes (``summary.tail_classes``)."""
        return np.isin(self.labels, tail_classes(self.num_classes))

    def uncertainty(self, key: str) -> np.ndarray:
        """Score ``key`` oriented so that higher = more uncertain: ``H`` as is, ``-M`` for margins."""
        return -self.scores[key] if key.startswith("M") else self.scores[key]

    def aurocs(self) -> dict[str, float]:
        """AUROC of each score's uncertainty direction at telling tail from head samples
        (1 = every tail sample rated more uncertain than every head sample, 0.5 = chance)."""
        return {key: auroc(self.uncertainty(key), self.is_tail) for key in self.scores}


def score_file_name(dataset: str, imbalance: float, seed: int, method: str = METHOD) -> str:
    """``scores_<dataset>_ir<IR>_seed<seed>.npz``, e.g. ``scores_fashion-mnist_ir10_seed0.npz``;
    another method than tidal-entropy adds ``_<method>`` before ``.npz``."""
    return f"scores_{dataset}_ir{imbalance:g}_seed{seed}{'' if method == METHOD else '_' + method}.npz"


def save_score_analysis(analysis: ScoreAnalysis, run_dir: str | Path) -> Path:
    """Write ``analysis`` to ``run_dir/analysis/<score_file_name>`` atomically; returns the path.

    The .npz holds ``labels`` and ``indices`` (int64 ``[n]``), one float64 ``[n]`` array per
    :data:`SCORES` key, and the scalars ``dataset``, ``imbalance``, ``seed``, ``epochs``,
    ``width``, ``num_classes``, ``method``, ``temperature``.
    """
    folder = Path(run_dir) / ANALYSIS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / score_file_name(analysis.dataset, analysis.imbalance, analysis.seed, analysis.method)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, dataset=np.array(analysis.dataset), imbalance=np.float64(analysis.imbalance),
                 seed=np.int64(analysis.seed), epochs=np.int64(analysis.epochs), width=np.int64(analysis.width),
                 num_classes=np.int64(analysis.num_classes), indices=analysis.indices.astype(np.int64),
                 labels=analysis.labels.astype(np.int64), method=np.array(analysis.method),
                 temperature=np.float64(analysis.temperature),
                 **{key: np.asarray(v, dtype=np.float64) for key, v in analysis.scores.items()})
    analysis.path = path
    return path


_META = ("dataset", "imbalance", "seed", "epochs", "width", "num_classes", "indices", "labels")


def load_score_analysis(path: str | Path) -> ScoreAnalysis:
    """Read a file written by :func:`save_score_analysis`; a ``ValueError`` names missing keys.
    A file written before the calibrated scores existed reads without them (:data:`OPTIONAL_SCORES`)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in (*_META, *SCORES) if k not in f.files and k not in OPTIONAL_SCORES]
            if missing:
                raise ValueError(f"{path} is not a tidal score analysis (missing {', '.join(missing)}); "
                                 "write it with `tidal analyze-scores`")
            a = ScoreAnalysis(str(f["dataset"]), float(f["imbalance"]), int(f["seed"]), int(f["epochs"]),
                              int(f["width"]), int(f["num_classes"]), f["indices"], f["labels"],
                              {key: f[key] for key in SCORES if key in f.files}, path,
                              str(f["method"]) if "method" in f.files else METHOD,
                              float(f["temperature"]) if "temperature" in f.files else float("nan"))
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"cannot read {path} ({exc}); write it again with `tidal analyze-scores`") from exc
    n_tail = int(a.is_tail.sum())
    if any(v.shape != a.labels.shape for v in a.scores.values()) or n_tail in (0, len(a.labels)):
        raise ValueError(f"{path} is inconsistent ({len(a.labels)} labels, {n_tail} of them tail; scores of shapes "
                         f"{sorted({v.shape for v in a.scores.values()})}); write it again with `tidal analyze-scores`")
    return a


def format_aurocs(analysis: ScoreAnalysis) -> str:
    """The AUROC of every score as lines of text (what ``tidal analyze-scores`` prints)."""
    tail = tail_classes(analysis.num_classes)
    n_tail = int(analysis.is_tail.sum())
    lines = [f"{analysis.dataset}, imbalance ratio {analysis.imbalance:g}, seed {analysis.seed}, {analysis.method}: "
             f"{len(analysis.labels)} trained samples, {n_tail} from the tail classes {tail[0]}-{tail[-1]}; "
             f"calibration temperature T = {analysis.temperature:.3g}.",
             "AUROC at telling tail- from head-class samples (higher = rates tail samples as more uncertain; "
             "margins enter as -M, a smaller margin being more uncertain):"]
    for key, value in analysis.aurocs().items():
        sign = "-" if key.startswith("M") else " "
        lines.append(f"  {sign}{SCORES[key]:24s} {value:.3f}")
    return "\n".join(lines)


def analyze_scores(
    out: str | Path,
    *,
    dataset: str = "fashion-mnist",
    imbalance: float = 10.0,
    seed: int = 0,
    size: int = 3000,
    epochs: int | None = None,
    width: int | None = None,
    method: str = METHOD,
    data_dir: str | None = None,
    device: str | torch.device = "auto",
    progress: bool = False,
    splits: DatasetSplits | None = None,
) -> ScoreAnalysis:
    """Figure 2: train TiDAL on ``size`` long-tailed samples and store their uncertainty scores.

    The samples are a seeded random slice of :func:`tidal.experiment.make_pool` at
    ``imbalance`` (so their classes keep the long-tailed profile). A fresh ResNet-18 with the
    objective of ``method`` (default ``tidal-entropy``: the TD prediction module, Eq. 9; any
    strategy that trains a TD prediction module, e.g. ``tidal-detached-entropy``, whose module
    reads the features through a stop-gradient) trains on them for ``epochs`` (training
    settings of the quick preset; ``epochs``/``width`` default to it). Then, for the trained
    samples, with ``y`` the true label:

    * ``H``, ``M``: entropy and margin of the final model's softmax ``p`` (eval mode);
    * ``H_td``, ``M_td``: of the actual TD ``p̄(T)``, the objective's running record (free);
    * ``H_pred``, ``M_pred``: of the module's predicted TD ``p̃_m(T) = softmax(m(x))`` (eval mode);
    * ``H_cal``, ``M_cal``: of ``softmax(m(x) / T)``, one temperature fitted on these samples'
      recorded TD (:func:`~tidal.strategies.tidal_variants.fit_on_record`, the
      ``tidal-calibrated-*`` strategies' rule).

    Stored in ``out/analysis/`` (:func:`save_score_analysis`; the same dataset, imbalance,
    seed and method replace an earlier file). ``out`` may be a run directory or a new one. ``splits``
    replaces the dataset files (tests, notebooks).

    Raises:
        ValueError: bad settings, ``size`` larger than the pool, or no tail/head sample drawn.
        RunDirectoryError: ``out`` is a non-empty directory that is not tidal's.
    """
    quick = PRESETS["quick"]
    train_cfg = dataclasses.replace(quick.train, epochs=quick.train.epochs if epochs is None else epochs,
                                    width=quick.train.width if width is None else width)
    config = dataclasses.replace(quick, datasets=(dataset,), imbalances=(float(imbalance),),
                                 methods=("tidal-entropy",), seeds=(seed,), train=train_cfg,
                                 data=dataclasses.replace(quick.data, data_dir=data_dir)).validate()
    check_source_spec(dataset)
    strategy = create_strategy(method, config.strategy)  # an unknown name: ValueError listing the valid ones
    if size < 2:
        raise ValueError(f"size={size} must be >= 2 samples (training needs at least 2)")
    dev = resolve_device(device)
    train = (splits or load_dataset(dataset, data_dir, config.data.download)).train.to(dev)
    pool = make_pool(train, imbalance, None, seed)
    if size > len(pool):
        raise ValueError(f"size={size} is larger than the {dataset} pool at imbalance {imbalance:g} "
                         f"({len(pool)} samples); lower --size")
    g = torch.Generator().manual_seed(derive_seed(seed, _SCORES_STREAM))
    idx = torch.sort(pool[torch.randperm(len(pool), generator=g)[:size]]).values
    labels = train.labels[idx.to(dev)].cpu().numpy()
    n_tail = int(np.isin(labels, tail_classes(train.num_classes)).sum())
    if n_tail in (0, size):
        raise ValueError(f"the {size} drawn samples hold {n_tail} tail-class samples; AUROC needs tail and head "
                         "samples: raise --size or lower --imbalance")
    model, objective = _build(train, idx.to(dev), config, strategy, seed, dev)
    out = Path(out)
    prepare_out(out)
    train_model(model, objective, train, idx.to(dev), config.train, g, progress, desc=f"{method} (analysis)")
    scores, temperature = _scores(model, objective, train, idx.to(dev), config.train.eval_batch_size)
    analysis = ScoreAnalysis(dataset, float(imbalance), seed, train_cfg.epochs, train_cfg.width, train.num_classes,
                             idx.numpy(), labels, scores, method=method, temperature=temperature)
    save_score_analysis(analysis, out)
    return analysis


def _build(train: Split, idx: torch.Tensor, config: ExperimentConfig, strategy: Strategy, seed: int,
           device: torch.device) -> tuple[nn.Module, AuxObjective]:
    """A fresh model (``config.train.model``: the quick preset's ResNet-18) and ``strategy``'s
    objective for training on ``train[idx]``; refuses an objective that is no TD prediction module."""
    # weights drawn on the CPU from this analysis's seed
    model = new_model(configured_model(config.train), train, strategy, derive_seed(seed, _SCORES_STREAM, 1))
    objective = new_objective(strategy, model, train, (idx, idx[:0]), config.train, device,
                              seed=derive_seed(seed, _SCORES_STREAM, 2))
    if not isinstance(objective, TDPredictionObjective):
        raise ValueError(f"method {strategy.name!r} trains no TD prediction module; choose a TiDAL strategy, e.g. "
                         "tidal-entropy or tidal-detached-entropy (`tidal methods 'tidal-*'`)")
    return model.to(device), objective.to(device)


@torch.no_grad()
def _scores(model: nn.Module, objective: TDPredictionObjective, train: Split, idx: torch.Tensor,
            batch_size: int) -> tuple[dict[str, np.ndarray], float]:
    """Each :data:`SCORES` entry for the samples ``idx`` ``[n]`` (float64 ``[n]`` arrays), and the
    calibration temperature ``T`` of ``H_cal``/``M_cal``."""
    objective.eval()
    probs, predicted, td_logits = [], [], []
    for _, out in batched_outputs(model, train, idx, batch_size):
        probs.append(torch.softmax(out.logits, dim=1).cpu())
        z = objective.module(out.features)  # m(x), run once: p̃_m = softmax(m(x)) is what predict() gives
        predicted.append(torch.softmax(z, dim=1).cpu())
        td_logits.append(z.float().cpu())
    record = objective.dynamics.targets(idx).cpu()
    z = torch.cat(td_logits)
    temperature = fit_on_record(z, record)
    dists = {"": torch.cat(probs), "_td": record, "_pred": torch.cat(predicted),
             "_cal": torch.softmax(z.double() / temperature, dim=1).float()}
    y = train.labels[idx].cpu()
    scores = {}
    for suffix, p in dists.items():
        scores["H" + suffix] = entropy(p).double().numpy()
        scores["M" + suffix] = margin(p, reference=y).double().numpy()
    return scores, temperature
