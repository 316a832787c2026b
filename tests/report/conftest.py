"""Fixtures of the report tests: a synthetic run written with ResultStore directly, no training.

One setting (fashion-mnist, imbalance 10), methods random / tidal-entropy / entropy / margin,
seeds 0-2, four cycles of 100, 150, 200, 250 labeled samples over 10 classes. Every number is
a closed-form function of (method, seed, cycle), so the tests can recompute the report's
statistics by hand. pytest runs with ``--import-mode=importlib``, so test modules cannot import
this file: they get its helpers from the ``synth`` fixture.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

import tidal.config
from tidal.results import DB_NAME, CycleRecord, ResultStore

DATASET, IMBALANCE = "fashion-mnist", 10.0
METHODS = ("random", "tidal-entropy", "entropy", "margin")
SEEDS = (0, 1, 2)
N_LABELED = (100, 150, 200, 250)
NUM_CLASSES = 10
BASE = (0.50, 0.60, 0.66, 0.70)  # random's accuracy per cycle for seed 0
GAIN = {  # added to random's accuracy per cycle (cycle 0 is the shared initial set)
    "random": (0.0, 0.0, 0.0, 0.0),
    "tidal-entropy": (0.0, 0.04, 0.05, 0.06),
    "entropy": (0.0, 0.02, 0.02, 0.03),
    "margin": (0.0, 0.01, 0.03, 0.02),
}
SEED_SHIFT = {"random": 0.01, "tidal-entropy": 0.006, "entropy": -0.004, "margin": 0.002}  # per seed
TAIL_PER_ROUND = {"random": 25, "tidal-entropy": 35, "entropy": 30, "margin": 20}  # of 50 selected, + seed
TIMES = {"random": (10.0, 0.0, 0.5), "tidal-entropy": (12.0, 2.0, 0.5), "entropy": (10.0, 1.0, 0.5),
         "margin": (10.0, 1.0, 0.5)}  # (train, score, eval) seconds in cycle 0; training grows 1 s per cycle


def accuracy(method: str, seed: int, cycle: int) -> float:
    return BASE[cycle] + 0.01 * seed + GAIN[method][cycle] + SEED_SHIFT[method] * seed * (cycle > 0)


def tail_selected(method: str, seed: int) -> int:
    """Tail-half samples (classes 5-9) among the 50 selected in every round."""
    return TAIL_PER_ROUND[method] + seed


def class_counts(method: str, seed: int, cycle: int) -> list[int]:
    """Cumulative labeled samples per class: 10 each at first, then per round the tail picks spread
    over classes 5-9 and the rest over classes 0-4."""
    tail = tail_selected(method, seed)
    head = 50 - tail
    counts = []
    for c in range(NUM_CLASSES):
        share = tail if c >= 5 else head
        per_round = share // 5 + (1 if c % 5 < share % 5 else 0)
        counts.append(10 + cycle * per_round)
    return counts


def make_record(method: str, seed: int, cycle: int, dataset: str = DATASET,
                imbalance: float = IMBALANCE) -> CycleRecord:
    """The stored record of (method, seed, cycle); the last cycle selects nothing."""
    n = N_LABELED[cycle]
    last = cycle == len(N_LABELED) - 1
    train, score, ev = TIMES[method]
    return CycleRecord(
        dataset=dataset, imbalance=imbalance, method=method, seed=seed, cycle=cycle, n_labeled=n,
        accuracy=accuracy(method, seed, cycle), class_counts=class_counts(method, seed, cycle),
        labeled=list(range(n)), selected=[] if last else list(range(n, n + 50)),
        scores=[] if last else [1.0 - i / 50 for i in range(50)],
        train_seconds=train + cycle, score_seconds=0.0 if last else score, eval_seconds=ev,
        final_loss=0.1, finished_at=1.0e9 + cycle,
    )


def build_run(run_dir: Path, extra: list[CycleRecord] = ()) -> Path:
    """Write every (method, seed, cycle) of the synthetic run, plus ``extra`` records, into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with ResultStore(run_dir / DB_NAME) as store:
        quick = tidal.config.preset("quick")  # with the synthetic run's protocol: 100 + 3 x 50 labels
        store.bind(dataclasses.replace(quick, al=dataclasses.replace(quick.al, initial=100, budget=50,
                                                                     cycles=len(N_LABELED))))
        for method in METHODS:
            for seed in SEEDS:
                for cycle in range(len(N_LABELED)):
                    store.add_cycle(make_record(method, seed, cycle))
        for record in extra:
            store.add_cycle(record)
    return run_dir


@pytest.fixture(scope="session")
def synth() -> SimpleNamespace:
    """The synthetic run's constants and functions (``synth.accuracy(method, seed, cycle)``, ...)."""
    names = ["DATASET", "IMBALANCE", "METHODS", "SEEDS", "N_LABELED", "NUM_CLASSES", "accuracy", "tail_selected",
             "class_counts", "make_record", "build_run"]
    return SimpleNamespace(**{name: globals()[name] for name in names})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic run directory, reported once per test module."""
    from tidal.report import write_report

    path = build_run(tmp_path_factory.mktemp("run"))
    write_report(path)
    return path
