"""Typed, frozen configuration and the two presets (``paper``, ``quick``).

Every field carries its unit. ``ExperimentConfig.validate`` is the one place user input is
checked; everything downstream trusts it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any


__all__ = [
    "AMP_MODES",
    "ALConfig",
    "DataConfig",
    "ExperimentConfig",
    "PRESETS",
    "StrategyConfig",
    "TrainConfig",
    "adapt_train",
    "embedding_store_error",
    "load_config_file",
    "preset",
]


AMP_MODES = ("off", "bf16")  # TrainConfig.amp: float32, or bfloat16 autocast (no loss scaling needed)


def embedding_store_error(kind: str, dtype: str) -> str | None:
    """Why an embedding store of ``kind`` ("memory" or "disk") and ``dtype`` ("float32" or
    "float16") cannot be made, or None; ALConfig and ``tidal.embedstore.StoreSpec`` check with it."""
    if kind not in ("memory", "disk"):
        return f"embedding_store={kind!r} is not a store kind; use 'memory' or 'disk'"
    if dtype not in ("float32", "float16"):
        return f"embedding_dtype={dtype!r} is not supported; use 'float32' or 'float16'"
    return None


@dataclass(frozen=True)
class DataConfig:
    data_dir: str | None = None  # folder with the dataset files (None: standard places, see README)
    download: bool = True  # fetch missing files from the official location when online
    pool_limit: int | None = None  # use a random slice of this many training images (None: all)
    test_limit: int | None = None  # evaluate on the first N test images (None: all)
    image_size: int | None = None  # folder/iNaturalist images: resize (shorter side) and center-crop to this many pixels (None: folder images keep their size, iNaturalist 224)
    workers: int = 2  # DataLoader worker processes that decode disk-backed images (0 = in the main process); changes no number


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100  # epochs per training run (paper: 100 for FashionMNIST, 200 for CIFAR/SVHN)
    lr: float = 0.1  # initial SGD learning rate
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty
    lr_decay_at: float = 0.8  # fraction of the epochs after which lr is multiplied by lr_decay (paper: 80/100, 160/200)
    lr_decay: float = 0.1  # multiplicative learning-rate decay
    batch_size: int = 128  # training batch size, in images (a cycle cuts it to leave 2 SGD steps per epoch when its labels fit one batch: adapt_train)
    model: str = "resnet18"  # network: resnet18 (CIFAR-style), resnet50 (ImageNet layout), mlp (feature vectors), auto, or package.module:function returning an nn.Module for num_classes (see `tidal models`)
    weights: str | None = None  # file of initial weights for the model (e.g. an ImageNet ResNet-50 checkpoint), loaded with weights_only=True
    width: int = 64  # ResNet-18 base width in channels (paper: 64)
    crop_padding: int = 4  # random-crop padding in pixels (0 disables the crop; at most 1/7 of the image side: adapt_train)
    flip: bool = True  # random horizontal flips
    eval_batch_size: int = 1024  # batch size for evaluation and scoring, in images
    amp: str = "off"  # mixed precision of the training step: off (float32, the paper's numbers) or bf16 (bfloat16 autocast on the training device, CPU or CUDA; evaluation and scoring stay float32)
    feature_layers: tuple[str, ...] | None = None  # a model of yours: names (as in model.named_modules()) of the layers whose outputs TiDAL's and Learning Loss's modules read, shallow to deep (none: found by the hooks, see README)
    embedding_layer: str | None = None  # a model of yours: name of the layer whose output is the embedding Core-Set, BADGE and CAL use (none: the input of the last nn.Linear with one output per class)
    channels_last: bool = False  # also put the model's weights and each training batch in channels-last (NHWC) memory format; the built-in ResNets keep NHWC weights either way (benchmarks/channels_last.py)


@dataclass(frozen=True)
class ALConfig:
    initial: int = 1000  # size of the random initial labeled set, in samples
    budget: int = 1000  # samples labeled per cycle (k)
    cycles: int = 10  # training rounds; the last one is evaluated but selects nothing
    subset: int = 10000  # random unlabeled subset scored per cycle (S; paper: 10^4)
    retrain: str = "scratch"  # "scratch" (paper) or "continue" (the authors' code keeps training the model)
    embedding_store: str = "memory"  # where coreset, badge and cal keep the candidates' embeddings (and probs) while scoring: "memory" or "disk" (a memory-mapped file, removed after scoring)
    embedding_dtype: str = "float32"  # dtype of that store: "float32" (exact) or "float16" (half the bytes; each value rounded once, selections may differ slightly)
    store_dir: str | None = None  # folder of the disk store (default: the system's temporary directory)


@dataclass(frozen=True)
class StrategyConfig:
    """Options of the strategies; each strategy reads only its own fields."""

    tidal_weight: float = 1.0  # λ of Eq. 9, weight of the TD-prediction KL term
    mc_samples: int = 10  # T, stochastic forward passes for BALD (Gal et al. 2017)
    dropout: float = 0.5  # BALD: dropout before the classifier, in training and scoring (authors' code: 0.5 CIFAR, 0.2 FashionMNIST)
    lloss_weight: float = 1.0  # λ of Learning Loss's ranking loss (Yoo & Kweon 2019)
    lloss_margin: float = 1.0  # ξ, margin of the pairwise ranking loss
    lloss_stop_at: float = 0.6  # fraction of the epochs after which the loss module stops sending gradients to the backbone (120/200)
    cal_threshold: float = 0.5  # CAL: labeled samples correct in fewer than this fraction of epochs are "uncertain"
    #   (CAL's code bins correctness and uses <= 0.2; 0.5 here because a ResNet fits its labeled set within a few epochs)
    vaal_epochs: int = 10  # VAAL/TA-VAAL: passes over the unlabeled subset when training the VAE and discriminator
    vaal_latent_dim: int = 32  # VAAL/TA-VAAL: latent size of the VAE
    diverse_prefilter: float = 10.0  # tidal-diverse-*: β, draws only among the ⌈β·k⌉ most TD-uncertain candidates


@dataclass(frozen=True)
class ExperimentConfig:
    datasets: tuple[str, ...] = ("fashion-mnist",)  # data sources: fashion-mnist, cifar10, cifar100, svhn, inat2018, folder:PATH, npz:PATH (see `tidal datasets`)
    imbalances: tuple[float, ...] = (1.0,)  # imbalance ratios N_max/N_min of the training pool (1, 10, 100)
    methods: tuple[str, ...] = ("tidal-entropy", "random")  # strategy names (see `tidal methods`)
    seeds: tuple[int, ...] = (0,)  # one trial per seed
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    al: ALConfig = field(default_factory=ALConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)

    def validate(self) -> "ExperimentConfig":
        """Check every field's type and range; raise ``ValueError`` quoting the bad value and the
        fix. Returns self. Whether the dataset, method and model names exist is for the packages
        that own them: :func:`tidal.experiment.validate_experiment` checks everything.
        """

        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        for name, cls in _SECTIONS.items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise TypeError(f"{name}={value!r} must be a {cls.__name__}, not a {type(value).__name__}; build it as "
                                f"{cls.__name__}(...), or pass {name}={{...}} to preset() to change fields of a preset")
        for section, obj in (("", self), ("data.", self.data), ("train.", self.train), ("al.", self.al),
                             ("strategy.", self.strategy)):
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if not isinstance(value, (DataConfig, TrainConfig, ALConfig, StrategyConfig)):
                    need(_type_ok(value, str(f.type)), f"{section}{f.name}={value!r} must be of type {f.type}")
                    for v in value if isinstance(value, tuple) else (value,):
                        need(not isinstance(v, float) or math.isfinite(v),
                             f"{section}{f.name}={value!r} must be a finite number")

        need(len(self.datasets) > 0, "no dataset given; pass --dataset fashion-mnist")
        need(len(set(self.datasets)) == len(self.datasets), f"datasets {list(self.datasets)} repeat a name")
        need(len(self.methods) > 0, "no method given; pass --methods tidal-entropy random")
        need(len(set(self.methods)) == len(self.methods), f"methods {list(self.methods)} repeat a name")
        need(len(self.seeds) > 0, "no seed given; pass --seeds 0")
        need(len(set(self.seeds)) == len(self.seeds), f"seeds {list(self.seeds)} repeat a value")
        need(all(s >= 0 for s in self.seeds), f"seeds {list(self.seeds)} must be >= 0")
        need(all(s < 2**63 for s in self.seeds),
             f"seeds {list(self.seeds)} must be < 2**63 (stored as 64-bit integers)")
        for ir in self.imbalances:
            need(math.isfinite(ir) and ir >= 1, f"imbalance={ir} must be >= 1 (1 = balanced; the paper uses 10 and 100)")
        need(len(self.imbalances) > 0, "no imbalance ratio given; pass --imbalance 1")
        need(len({float(ir) for ir in self.imbalances}) == len(self.imbalances),
             f"imbalances {list(self.imbalances)} repeat a value")
        a, t, d = self.al, self.train, self.data
        need(a.initial >= 2, f"initial={a.initial} must be >= 2 labeled samples (training needs 2)")
        need(a.budget >= 1, f"budget={a.budget} must be >= 1 sample per cycle")
        need(a.cycles >= 1, f"cycles={a.cycles} must be >= 1")
        need(a.subset >= 1, f"subset={a.subset} must be > 0 (the paper scores a random subset of 10000)")
        need(a.subset >= a.budget, f"subset={a.subset} must be >= budget={a.budget}: top-k is taken from the subset")
        need(a.retrain in ("scratch", "continue"), f"retrain={a.retrain!r} must be 'scratch' or 'continue'")
        store_error = embedding_store_error(a.embedding_store, a.embedding_dtype)
        need(store_error is None, str(store_error))
        need(t.epochs >= 1, f"epochs={t.epochs} must be >= 1")
        need(t.lr > 0, f"lr={t.lr} must be > 0")
        need(0 <= t.momentum < 1, f"momentum={t.momentum} must be in [0, 1)")
        need(t.weight_decay >= 0, f"weight_decay={t.weight_decay} must be >= 0")
        need(0 < t.lr_decay_at <= 1, f"lr_decay_at={t.lr_decay_at} must be a fraction of the epochs in (0, 1]")
        need(t.lr_decay > 0, f"lr_decay={t.lr_decay} must be > 0")
        need(t.batch_size >= 2, f"batch_size={t.batch_size} must be >= 2 (batch norm needs 2 samples)")
        need(t.width >= 1, f"width={t.width} must be >= 1 channel")
        need(t.crop_padding >= 0, f"crop_padding={t.crop_padding} must be >= 0 pixels")
        need(t.eval_batch_size >= 1, f"eval_batch_size={t.eval_batch_size} must be >= 1")
        need(t.feature_layers is None or (len(t.feature_layers) > 0 and all(t.feature_layers)),
             f"feature_layers={t.feature_layers!r} must name at least one layer (or be unset: found automatically)")
        need(t.embedding_layer is None or t.embedding_layer != "",
             "embedding_layer='' must name a layer (or be unset: the classifier's input)")
        need(t.amp in AMP_MODES, f"amp={t.amp!r} must be one of {', '.join(AMP_MODES)} (bf16: bfloat16 autocast)")
        need(d.pool_limit is None or d.pool_limit >= 2, f"pool_limit={d.pool_limit} must be >= 2 or unset")
        need(d.test_limit is None or d.test_limit >= 1, f"test_limit={d.test_limit} must be >= 1 or unset")
        sc = self.strategy
        for name in ("tidal_weight", "lloss_weight", "lloss_margin"):
            value = getattr(sc, name)
            need(math.isfinite(value) and value >= 0, f"{name}={value} must be a finite number >= 0")
        need(sc.mc_samples >= 1, f"mc_samples={sc.mc_samples} must be >= 1 stochastic pass (BALD uses T = 10)")
        need(0 <= sc.dropout < 1, f"dropout={sc.dropout} must be in [0, 1)")
        need(0 <= sc.lloss_stop_at <= 1, f"lloss_stop_at={sc.lloss_stop_at} must be a fraction in [0, 1]")
        need(0 <= sc.cal_threshold <= 1, f"cal_threshold={sc.cal_threshold} must be in [0, 1]")
        need(sc.vaal_epochs >= 1, f"vaal_epochs={sc.vaal_epochs} must be >= 1")
        need(sc.vaal_latent_dim >= 1, f"vaal_latent_dim={sc.vaal_latent_dim} must be >= 1")
        need(math.isfinite(sc.diverse_prefilter) and sc.diverse_prefilter >= 1,
             f"diverse_prefilter={sc.diverse_prefilter} must be a finite number >= 1 (1: plain top-k; 10: the default)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentConfig":
        """Inverse of ``to_dict``."""
        return cls(
            datasets=tuple(d["datasets"]),
            imbalances=tuple(float(x) for x in d["imbalances"]),
            methods=tuple(d["methods"]),
            seeds=tuple(int(s) for s in d["seeds"]),
            data=DataConfig(**d["data"]),
            train=TrainConfig(**d["train"]),
            al=ALConfig(**d["al"]),
            strategy=StrategyConfig(**d["strategy"]),
        )

    def identity(self) -> dict[str, Any]:
        """The fields that define *which numbers* a run produces: all but the method/seed/setting
        lists (a run directory may grow by methods or seeds) and where the data files live."""
        d = self.to_dict()
        for key in ("datasets", "imbalances", "methods", "seeds"):
            d.pop(key)
        d["data"].pop("data_dir")
        d["data"].pop("download")
        d["data"].pop("workers")
        d["al"].pop("store_dir")
        return d


def _type_ok(value: Any, spec: str) -> bool:
    """Whether ``value`` fits a field annotation such as ``int``, ``float``, ``str | None``,
    ``tuple[int, ...]`` (ints are accepted for floats; bools only for bools)."""
    spec = spec.strip()
    if spec.endswith("| None"):
        return value is None or _type_ok(value, spec[: -len("| None")])
    if spec.startswith("tuple["):
        inner = spec[len("tuple["):].split(",")[0]
        return isinstance(value, tuple) and all(_type_ok(v, inner) for v in value)
    if spec == "bool":
        return isinstance(value, bool)
    allowed = {"int": (int,), "float": (int, float), "str": (str,)}[spec]
    return isinstance(value, allowed) and not isinstance(value, bool)


PRESETS: dict[str, ExperimentConfig] = {
    # The paper's protocol (§5.1) on FashionMNIST: ResNet-18 width 64, 100 epochs, lr 0.1 decayed
    # at epoch 80, batch 128, subset 10^4; initial set, budget and cycles as in Learning Loss [52].
    "paper": ExperimentConfig(
        methods=("tidal-entropy", "tidal-margin", "random", "entropy", "margin"),
        seeds=(0, 1, 2),
        train=TrainConfig(epochs=100, width=64),
        al=ALConfig(initial=1000, budget=1000, cycles=10, subset=10000),
    ),
    # A CPU-sized version: width 8, 40 epochs; one (method, seed) run of 5 cycles with
    # 500 initial + 500 per cycle takes 2-3 minutes on a 2-core machine (README, "Measured").
    # §5.1 for the other datasets: ResNet-18 width 64, 200 epochs, lr 0.1 decayed at epoch 160,
    # batch 128, subset 10^4; initial set, budget and cycles as in Learning Loss [52].
    **{f"paper-{name}": ExperimentConfig(
        datasets=(name,),
        methods=("tidal-entropy", "tidal-margin", "random", "entropy", "margin"),
        seeds=(0, 1, 2),
        train=TrainConfig(epochs=200, width=64, lr_decay_at=0.8),
        al=ALConfig(initial=1000, budget=1000, cycles=10, subset=10000),
    ) for name in ("cifar10", "cifar100", "svhn")},
    # §5.1, iNaturalist 2018: ResNet-50 pretrained on ImageNet (pass its checkpoint with --weights),
    # 50 epochs, lr 0.01 decayed at epoch 40, batch 256, subset 10^6. The paper does not give the
    # initial set and budget for iNaturalist; 10,000 of each is our choice (set --initial/--budget).
    "paper-inat2018": ExperimentConfig(
        datasets=("inat2018",),
        methods=("tidal-entropy", "tidal-margin", "random", "entropy", "margin"),
        seeds=(0, 1, 2),
        train=TrainConfig(model="resnet50", epochs=50, lr=0.01, lr_decay_at=0.8, batch_size=256),
        al=ALConfig(initial=10000, budget=10000, cycles=10, subset=1_000_000),
    ),
    "quick": ExperimentConfig(
        methods=("tidal-entropy", "random", "entropy", "margin"),
        seeds=(0,),
        train=TrainConfig(epochs=40, width=8),
        strategy=StrategyConfig(vaal_epochs=2),  # VAAL's VAE costs ~2 min per cycle at 10 passes on this CPU
        al=ALConfig(initial=500, budget=500, cycles=5, subset=10000),
    ),
}


# How a run fits the configured training settings to its data (adapt_train). Both rules leave the
# FashionMNIST presets and the regression guard's tiny config exactly as configured (README, "Presets").
MIN_STEPS = 2  # SGD steps per epoch that the batch size must leave at least (50 labels at batch 128: one step)
CROP_SHARE = 7  # crop padding is at most 1/CROP_SHARE of the shorter image side, in pixels (28 px -> 4, 8 px -> 1)


def _steps(n: int, batch: int) -> int:
    """SGD steps of an epoch over ``n`` samples (``tidal.train.epoch_batches``: a trailing batch of
    one joins the previous one)."""
    steps = -(-n // batch)
    return steps - 1 if steps > 1 and n % batch == 1 else steps


def adapt_train(train: TrainConfig, n_labeled: int, input_shape: tuple[int, ...],
                min_batch: int = 2) -> tuple[TrainConfig, list[str]]:
    """The training settings one cycle runs with, and a note per setting that differs from ``train``.

    * batch size: when ``n_labeled`` samples at the configured batch make fewer than
      :data:`MIN_STEPS` SGD steps per epoch (the whole labeled set in one batch), the batch is cut to
      ``ceil(n_labeled / MIN_STEPS)`` (never below ``min_batch``); re-checked every cycle.
    * crop padding: for images (``input_shape`` ``(C, H, W)``), at most ``min(H, W) //``
      :data:`CROP_SHARE` pixels: the paper's 4 px on 28-32 px images, 1 px on 8x8 digits.

    Settings that already fit are returned unchanged (the same object when nothing changes).
    """
    changes: dict[str, Any] = {}
    notes = []
    if _steps(n_labeled, train.batch_size) < MIN_STEPS:
        batch = max(min_batch, -(-n_labeled // MIN_STEPS))
        if batch < train.batch_size:
            changes["batch_size"] = batch
            notes.append(f"batch {batch} instead of {train.batch_size} ({n_labeled} labels would make "
                         f"{_steps(n_labeled, train.batch_size)} SGD step per epoch; at least {MIN_STEPS})")
    if len(input_shape) == 3:
        side = min(input_shape[1:])
        padding = min(train.crop_padding, side // CROP_SHARE)
        if padding < train.crop_padding:
            changes["crop_padding"] = padding
            notes.append(f"crop padding {padding} instead of {train.crop_padding} px "
                         f"(at most 1/{CROP_SHARE} of the {side}-px image side)")
    return (dataclasses.replace(train, **changes) if changes else train), notes


def preset(name: str, **overrides: Any) -> ExperimentConfig:
    """A preset with fields replaced, e.g. ``preset("quick", seeds=(0, 1), train={"epochs": 15})``.

    Top-level fields (``datasets``, ``imbalances``, ``methods``, ``seeds``) replace the preset's.
    A section (``data``, ``train``, ``al``, ``strategy``) takes a dict of field overrides merged
    onto the preset's section (``train={"epochs": 15}`` keeps the quick preset's width 8), or a
    whole section dataclass, used as it is: every field it does not set is that class's default,
    not the preset's, so ``train=TrainConfig(epochs=15)`` warns about the preset values it
    resets (e.g. width 8 -> 64). Anything else raises ``TypeError``; unknown names ``ValueError``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    base = PRESETS[name]
    valid = [f.name for f in dataclasses.fields(ExperimentConfig)]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"preset({name!r}): unknown field(s) {unknown}; valid: {', '.join(valid)}")
    fields: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in _SECTIONS:
            fields[key] = value
            continue
        cls, current = _SECTIONS[key], getattr(base, key)
        if isinstance(value, dict):
            names = {f.name for f in dataclasses.fields(cls)}
            bad = sorted(map(str, set(value) - names))
            if bad:
                raise ValueError(f"preset({name!r}, {key}=...): unknown field(s) {bad} of {cls.__name__}; "
                                 f"valid: {', '.join(sorted(names))}")
            fields[key] = dataclasses.replace(current, **value)
        elif isinstance(value, cls):
            reset = [f"{f.name}={getattr(value, f.name)!r} (the {cls.__name__} default) replaces the preset's "
                     f"{getattr(current, f.name)!r}" for f in dataclasses.fields(cls)
                     if getattr(value, f.name) == getattr(cls(), f.name) != getattr(current, f.name)]
            if reset:
                import warnings

                warnings.warn(f"preset({name!r}, {key}={cls.__name__}(...)): {'; '.join(reset)}; pass {key}=dict(...) "
                              "to change only the fields you name", UserWarning, stacklevel=2)
            fields[key] = value
        else:
            raise TypeError(f"preset({name!r}, {key}={value!r}): {key} must be a dict of {cls.__name__} fields "
                            f"(merged onto the preset's, e.g. {key}={{...}}) or a {cls.__name__}, not a "
                            f"{type(value).__name__}")
    return dataclasses.replace(base, **fields)


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "al": ALConfig, "strategy": StrategyConfig}
_LISTS = ("datasets", "imbalances", "methods", "seeds")


def config_from_mapping(d: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """An ExperimentConfig from a nested mapping: ``preset`` (default ``quick``), the list fields,
    and ``[data]``, ``[train]``, ``[al]``, ``[strategy]`` tables overriding the preset's fields.
    Unknown keys raise a ``ValueError`` naming the valid ones."""
    d = dict(d)
    cfg = preset(str(d.pop("preset", "quick")))
    top: dict[str, Any] = {}
    sections = {name: getattr(cfg, name) for name in _SECTIONS}
    for key, value in d.items():
        if key in _LISTS:
            top[key] = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ValueError(f"{source}: [{key}] must be a table of fields, got {value!r}")
            valid = {f.name for f in dataclasses.fields(_SECTIONS[key])}
            unknown = sorted(set(value) - valid)
            if unknown:
                raise ValueError(f"{source}: unknown field(s) {unknown} in [{key}]; valid: {sorted(valid)}")
            sections[key] = dataclasses.replace(sections[key], **value)
        else:
            raise ValueError(f"{source}: unknown key {key!r}; valid: preset, {', '.join(_LISTS)}, "
                             f"{', '.join(_SECTIONS)}")
    return dataclasses.replace(cfg, **top, **sections)


def load_config_file(path: str) -> ExperimentConfig:
    """Read an experiment from a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file.

    Example (TOML)::

        preset = "quick"
        methods = ["tidal-entropy", "random"]
        seeds = [0, 1, 2]
        imbalances = [1, 10, 100]
        [train]
        epochs = 40
    """
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {path!r} does not exist")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ValueError(f"config file {path}: byte 0x{raw[exc.start]:02x} on line {line} is not UTF-8 text; "
                         "save the file as UTF-8") from None
    if p.suffix == ".toml":
        try:
            import tomllib  # Python >= 3.11
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError as exc:
                raise ValueError("reading TOML on Python 3.10 needs `pip install tomli`") from exc
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: invalid TOML ({exc})") from exc
    elif p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ModuleNotFoundError as exc:
            raise ValueError(f"{path}: reading YAML needs `pip install pyyaml` (or use a .toml file)") from exc
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML ({exc})") from exc
    else:
        raise ValueError(f"config file {path!r} must end in .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of settings at the top level")
    return config_from_mapping(data, source=str(path))
