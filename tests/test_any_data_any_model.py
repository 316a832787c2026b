"""Every registered strategy x {built-in ResNet-18, a user CNN found by hooks, an MLP on feature
vectors} x {in memory, on disk}, and every registered model with the main method, two cycles
each, through the public ``run_experiment``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tidal import ExperimentConfig, run_experiment
from tidal.config import ALConfig, DataConfig, StrategyConfig, TrainConfig
from tidal.data import DatasetSplits, FeatureDataset, from_arrays
from tidal.results import DB_NAME, ResultStore
from tidal.models import list_models, model_info
from tidal.strategies import list_strategies

CLASSES = 3


def user_cnn(num_classes: int) -> nn.Module:
    """A small CNN as a user writes it: no tidal contract, layers found by forward hooks."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    )


def _images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 16x16 RGB images: class c brightens channel c, HWC uint8 (numpy's layout)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    x = rng.integers(0, 80, (n, 16, 16, 3))
    x[np.arange(n), :, :, y] += 150
    return x.astype(np.uint8), y


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, ...]:
    x_train, y_train = _images(120, 0)
    x_test, y_test = _images(30, 1)
    return x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory, arrays: tuple[np.ndarray, ...]) -> Path:
    """The same images as PNG files in ``train/<class>/`` and ``test/<class>/`` folders."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder")
    x_train, y_train, x_test, y_test = arrays
    for part, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            d = root / part / f"class{y}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x).save(d / f"{i:04d}.png")
    return root


def _features(on_disk: bool, tmp: Path) -> DatasetSplits:
    rng = np.random.default_rng(2)
    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % CLASSES
        x = rng.normal(size=(n, 12)).astype(np.float32)
        x[np.arange(n), y] += 3.0
        return x, y
    (xa, ya), (xb, yb) = make(120), make(30)
    if not on_disk:
        return from_arrays(xa, ya, xb, yb, name="features")
    # On disk: memory-mapped .npy files, read as the batches are asked for.
    splits = []
    for part, x, y in (("train", xa, ya), ("test", xb, yb)):
        np.save(tmp / f"{part}.npy", x)
        mm = np.load(tmp / f"{part}.npy", mmap_mode="c")
        splits.append(FeatureDataset(torch.from_numpy(np.asarray(mm)), torch.from_numpy(y), CLASSES))
    return DatasetSplits("features-mmap", splits[0], splits[1], tuple(f"class{c}" for c in range(CLASSES)))


def _config(methods: tuple[str, ...], model: str) -> ExperimentConfig:
    return ExperimentConfig(
        methods=methods, seeds=(0,), data=DataConfig(workers=0),
        train=TrainConfig(epochs=2, width=4, batch_size=16, eval_batch_size=64, model=model),
        al=ALConfig(initial=20, budget=10, cycles=2, subset=40),
        strategy=StrategyConfig(vaal_epochs=1, mc_samples=2, vaal_latent_dim=4),
    )


MODELS = ("resnet18", "user-cnn", "mlp")
STORAGE = ("memory", "disk")


@pytest.mark.slow
@pytest.mark.parametrize("storage", STORAGE)
@pytest.mark.parametrize("model", MODELS)
def test_every_strategy_runs_two_cycles(model: str, storage: str, arrays, image_folder, tmp_path: Path) -> None:
    methods = tuple(list_strategies())
    if model == "mlp":
        dataset = _features(storage == "disk", tmp_path)
    elif storage == "memory":
        dataset = from_arrays(*arrays, class_names=[f"class{c}" for c in range(CLASSES)], name="arrays")
    else:
        from tidal.data.folder import load_folder

        dataset = load_folder(image_folder, workers=0, in_memory=False)
        assert type(dataset.train).__name__ == "FileDataset"
    cfg = _config(methods, "auto" if model == "mlp" else "resnet18")
    run_experiment(cfg, tmp_path / "run", progress=False, log=lambda _: None, dataset=dataset,
                   model=user_cnn if model == "user-cnn" else None)
    store = ResultStore(tmp_path / "run" / DB_NAME)
    try:
        rows = store.records()
        stored = store.config()
    finally:
        store.close()
    assert stored is not None and stored.datasets == (dataset.name,)
    if model == "user-cnn":
        assert stored.train.model.endswith(":user_cnn")
    assert {(r.method, r.cycle) for r in rows} == {(m, c) for m in methods for c in (0, 1)}
    for r in rows:
        assert 0.0 <= r.accuracy <= 1.0
        assert r.n_labeled == 20 + 10 * r.cycle
        if r.cycle == 0:
            assert len(r.selected) == 10 and not set(r.selected) & set(r.labeled)


@pytest.mark.parametrize("model", list_models())
def test_every_registered_model_runs_two_cycles_of_the_main_method(model: str, arrays, tmp_path: Path) -> None:
    """The model registry's loop test (the strategy registry's is tests/strategies/test_registry.py):
    tidal-entropy reads the features, the embedding and the TD module's outputs of every model."""
    images = "images" in model_info(model).inputs
    dataset = from_arrays(*arrays, name="arrays") if images else _features(False, tmp_path)
    cfg = _config(("tidal-entropy",), model)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=1, batch_size=32))  # ResNet-50 on CPU
    run_experiment(cfg, tmp_path / "run", progress=False, log=lambda _: None, dataset=dataset)
    store = ResultStore(tmp_path / "run" / DB_NAME)
    try:
        rows, stored = store.records(), store.config()
    finally:
        store.close()
    assert stored is not None and stored.train.model == model
    assert sorted(r.cycle for r in rows) == [0, 1] and len(rows[0].selected) == 10
    assert all(0.0 <= r.accuracy <= 1.0 for r in rows)


@pytest.mark.slow
def test_python_dataset_and_model_reach_jobs_workers(arrays, tmp_path: Path, monkeypatch) -> None:
    """Arrays and a model function given in Python train in --jobs worker processes, with exactly
    the numbers of the serial run; a lambda cannot be sent and is refused before anything starts."""
    import importlib
    import textwrap

    (tmp_path / "user_nets.py").write_text(textwrap.dedent('''
        from torch import nn

        def cnn(num_classes):
            return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    cnn = importlib.import_module("user_nets").cnn
    data = from_arrays(*arrays, name="arrays")
    cfg = _config(("tidal-entropy", "random"), "resnet18")
    rows = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the serial run with the workers' thread count
    try:
        for jobs in (1, 2):
            out = tmp_path / f"jobs{jobs}"
            run_experiment(cfg, out, progress=False, log=lambda _: None, dataset=data, model=cnn, jobs=jobs)
            store = ResultStore(out / DB_NAME)
            try:
                rows[jobs] = sorted((r.method, r.cycle, r.accuracy, r.selected) for r in store.records())
            finally:
                store.close()
    finally:
        torch.set_num_threads(threads)
    assert len(rows[1]) == 4 and rows[1] == rows[2]
    with pytest.raises(ValueError, match="cannot be sent to --jobs worker processes"):
        run_experiment(cfg, tmp_path / "lambda", dataset=data, model=lambda c: cnn(c), jobs=2)
    assert not (tmp_path / "lambda").exists()


class _NoTaps(nn.Module):
    """A model that gives logits and an embedding but no feature maps (ModelOutput already)."""

    feature_channels: tuple[int, ...] = ()
    embedding_dim = 8

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, 8), nn.ReLU())
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        from tidal.models import ModelOutput

        e = self.body(x)
        return ModelOutput(self.head(e), e, [])


def test_a_method_the_model_cannot_serve_is_refused_before_training(arrays, tmp_path: Path) -> None:
    data = from_arrays(*arrays, name="arrays")
    cfg = _config(("random", "tidal-entropy"), "resnet18")
    with pytest.raises(ValueError, match="method 'tidal-entropy' needs the model's features"):
        run_experiment(cfg, tmp_path / "run", progress=False, dataset=data, model=_NoTaps)
    assert not (tmp_path / "run").exists()
