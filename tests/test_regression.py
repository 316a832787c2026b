"""The science does not move: every strategy's first two cycles on real FashionMNIST, bit for bit.

``tests/golden/fmnist_tiny.json`` was written by this file (``python tests/test_regression.py
--write``) from the code *before* the data/model redesign. Every registered strategy runs two
cycles at imbalance 1 and 100 with a CI-sized protocol on one torch thread; the accuracy, the
selected ids and their scores must equal the stored ones exactly. A deliberate change of a
method's numbers regenerates its entry with ``--write --methods NAME`` and says so in the commit.

The full-size version of this check (the stored grid's seed-0 cycles 1-2 at IR 1 and 100)
is ``benchmarks/grid_regression.py``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "golden" / "fmnist_tiny.json"
IMBALANCES = (1.0, 100.0)


def tiny_config(methods: tuple[str, ...]):
    from tidal.config import ALConfig, DataConfig, StrategyConfig, TrainConfig, preset

    return preset(
        "quick", datasets=("fashion-mnist",), imbalances=IMBALANCES, methods=methods, seeds=(0,),
        data=DataConfig(pool_limit=600, test_limit=300),
        train=TrainConfig(epochs=2, width=4, batch_size=32, eval_batch_size=256),
        al=ALConfig(initial=40, budget=20, cycles=2, subset=150),
        strategy=StrategyConfig(vaal_epochs=1, mc_samples=4),
    )


def run_tiny(methods: tuple[str, ...], data_dir: str | None) -> dict[str, list[dict]]:
    """Run the tiny grid on one torch thread; ``{"method@ir": [cycle rows]}``."""
    from tidal.config import DataConfig
    from tidal.experiment import run_experiment
    from tidal.results import DB_NAME, ResultStore

    cfg = tiny_config(methods)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=data_dir, download=False))
    assert isinstance(cfg.data, DataConfig)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as out:
            run_experiment(cfg, out, device="cpu", progress=False, log=lambda _: None)
            store = ResultStore(Path(out) / DB_NAME)
            try:
                rows = store.records()
            finally:
                store.close()
    finally:
        torch.set_num_threads(threads)
    result: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r.method, r.imbalance, r.cycle)):
        result.setdefault(f"{r.method}@{r.imbalance:g}", []).append(
            {"cycle": r.cycle, "accuracy": r.accuracy, "labeled": r.labeled, "selected": r.selected,
             "scores": [float(s) for s in r.scores]})
    return result


@pytest.mark.slow
def test_every_strategy_reproduces_the_stored_numbers(fmnist_dir: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    methods = tuple(sorted({key.split("@")[0] for key in golden}))
    got = run_tiny(methods, str(fmnist_dir))
    assert sorted(got) == sorted(golden)
    for key, cycles in golden.items():
        for want, have in zip(cycles, got[key], strict=True):
            assert have["cycle"] == want["cycle"]
            assert have["accuracy"] == want["accuracy"], f"{key} cycle {want['cycle']}: accuracy moved"
            assert have["labeled"] == want["labeled"], f"{key} cycle {want['cycle']}: labeled set moved"
            assert have["selected"] == want["selected"], f"{key} cycle {want['cycle']}: selection moved"
            assert have["scores"] == want["scores"], f"{key} cycle {want['cycle']}: scores moved"


def test_golden_covers_every_registered_strategy() -> None:
    from tidal.strategies import list_strategies

    golden = json.loads(GOLDEN.read_text())
    assert {key.split("@")[0] for key in golden} == set(list_strategies())
    assert {float(key.split("@")[1]) for key in golden} == set(IMBALANCES)


if __name__ == "__main__":  # python tests/test_regression.py --write [--methods a b] [--data-dir D]
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", required=True)
    parser.add_argument("--methods", nargs="+", default=None, help="regenerate only these (default: all)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    from tidal.strategies import list_strategies

    methods = tuple(args.methods or list_strategies())
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    stored = {k: v for k, v in stored.items() if k.split("@")[0] not in methods}
    stored.update(run_tiny(methods, args.data_dir))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(dict(sorted(stored.items())), indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN}: {len(stored)} (method, imbalance) entries", file=sys.stderr)
