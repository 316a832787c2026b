"""The science does not move: every strategy's first two cycles on real FashionMNIST, bit for bit.

``tests/golden/fmnist_tiny.json`` was written by this file (``python tests/test_regression.py
--write``) from the code *before* the data/model redesign. Every registered strategy runs two
cycles at imbalance 1 and 100 with a CI-sized protocol on one torch thread; the accuracy, the
selected ids and their scores must equal the stored ones exactly. A deliberate change of a
method's numbers regenerates its entry with ``--write --methods NAME`` and says so in the commit.

Floating-point results are bit-identical only on the same CPU model (instruction set), torch
version and thread count. ``tests/golden/fmnist_tiny.platform.json`` records the platform the numbers
were written on (``tidal.runs.cpu_platform``), so a mismatch is told apart: what no arithmetic
touches (every initial labeled set, and ``random``'s labeled sets, selections and scores, drawn from
the seeded generators alone) must match anywhere, else the code changed; a difference in the rest
fails on the recorded platform and is a skip, naming both platforms, on any other.
``python tests/test_regression.py --record-platform`` checks every number on this machine and, when
all match, records it as the golden platform (the numbers are not rewritten).

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
PLATFORM = GOLDEN.with_suffix(".platform.json")  # {"platform": tidal.runs.cpu_platform() or null, "note": ...}
# The same numbers as made on other CPUs, one file each: {"platform": ..., "note": ..., "numbers": {...}}.
# On a listed CPU every number must match its file exactly; elsewhere the CPU-independent ones must
# match GOLDEN and floating-point differences skip, naming both CPUs.
PLATFORM_GOLDENS = GOLDEN.parent / "fmnist_tiny.platforms"
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


def compare(golden: dict[str, list[dict]], got: dict[str, list[dict]]) -> tuple[list[str], list[str]]:
    """``(code, arithmetic)`` differences of ``got`` from ``golden``. ``code``: what no floating-point
    arithmetic touches (the keys and cycles, every cycle-0 labeled set, every number of ``random``);
    ``arithmetic``: accuracies, scores, and the selections and labeled sets that follow from them."""
    code: list[str] = []
    arithmetic: list[str] = []
    if sorted(got) != sorted(golden):
        return [f"(method, imbalance) entries {sorted(got)} != stored {sorted(golden)}"], []
    for key, cycles in golden.items():
        if [c["cycle"] for c in got[key]] != [c["cycle"] for c in cycles]:
            code.append(f"{key}: cycles {[c['cycle'] for c in got[key]]} != stored")
            continue
        for want, have in zip(cycles, got[key], strict=True):
            for field in ("accuracy", "labeled", "selected", "scores"):
                if have[field] != want[field]:
                    free = key.startswith("random@") or (field == "labeled" and want["cycle"] == 0)
                    (code if free and field != "accuracy" else arithmetic).append(
                        f"{key} cycle {want['cycle']}: {field} moved")
    return code, arithmetic


@pytest.mark.slow
def test_every_strategy_reproduces_the_stored_numbers(fmnist_dir: Path) -> None:
    from tidal.runs import cpu_platform, platform_difference

    golden = json.loads(GOLDEN.read_text())
    methods = tuple(sorted({key.split("@")[0] for key in golden}))
    got = run_tiny(methods, str(fmnist_dir))
    code, arithmetic = compare(golden, got)
    assert not code, f"changed code (these numbers depend on no CPU): {'; '.join(code[:5])}"
    here = platform_golden(cpu_platform())
    if here is not None:  # numbers made on this very CPU: every one must match
        path, numbers = here
        code, arithmetic = compare(numbers, got)
        assert not code + arithmetic, f"changed code (same CPU as {path.name}): {'; '.join((code + arithmetic)[:5])}"
        return
    if arithmetic:
        other = platform_difference(json.loads(PLATFORM.read_text())["platform"], cpu_platform())
        if other is not None:
            pytest.skip(f"{len(arithmetic)} floating-point result(s) differ on a different CPU than the golden "
                        f"numbers' ({other}), e.g. {arithmetic[0]}; the CPU-independent ones all match. Check on the "
                        f"recorded platform ({PLATFORM.name})")
        raise AssertionError(f"changed code (same CPU as the golden numbers): {'; '.join(arithmetic[:5])}")


def platform_golden(here: dict[str, str]) -> tuple[Path, dict[str, list[dict]]] | None:
    """``(file, numbers)`` of the per-CPU golden file made on the platform ``here``, or None."""
    from tidal.runs import platform_difference

    for path in sorted(PLATFORM_GOLDENS.glob("*.json")):
        data = json.loads(path.read_text())
        if platform_difference(data["platform"], here) is None:
            return path, data["numbers"]
    return None


def test_the_per_cpu_goldens_hold_the_same_runs_as_the_golden() -> None:
    """Each per-CPU file covers the same (method, imbalance) runs and cycles, and agrees with the
    golden on every CPU-independent number (the first labeled sets, random's selections)."""
    from tidal.runs import cpu_platform

    golden = json.loads(GOLDEN.read_text())
    files = sorted(PLATFORM_GOLDENS.glob("*.json"))
    assert files, f"no per-CPU golden numbers in {PLATFORM_GOLDENS}"
    for path in files:
        data = json.loads(path.read_text())
        assert set(data) == {"platform", "note", "numbers"} and set(data["platform"]) == set(cpu_platform())
        code, _ = compare(golden, data["numbers"])
        assert not code, f"{path.name}: {code[:3]}"


def test_compare_tells_changed_code_from_arithmetic() -> None:
    """Issue 21 case 24: a moved random selection or initial set is code; a moved accuracy, score or
    model-driven selection may be the CPU."""
    row = {"cycle": 0, "accuracy": 0.5, "labeled": [1, 2], "selected": [3], "scores": [0.9]}
    golden = {"random@1": [row], "entropy@1": [row]}
    assert compare(golden, golden) == ([], [])
    moved = {"random@1": [dict(row, selected=[4])], "entropy@1": [dict(row, accuracy=0.6, selected=[4])]}
    assert compare(golden, moved) == (["random@1 cycle 0: selected moved"],
                                      ["entropy@1 cycle 0: accuracy moved", "entropy@1 cycle 0: selected moved"])
    assert compare(golden, {"random@1": [row], "entropy@1": [dict(row, labeled=[1, 5])]})[0] == [
        "entropy@1 cycle 0: labeled moved"]
    assert compare(golden, {"random@1": [row]})[0]  # a missing entry is a code change


def test_the_golden_platform_file_is_well_formed() -> None:
    from tidal.runs import cpu_platform, platform_difference

    recorded = json.loads(PLATFORM.read_text())
    assert set(recorded) >= {"platform", "note"}
    here = cpu_platform()
    assert set(here) == {"cpu", "isa", "torch", "machine"} and platform_difference(here, here) is None
    assert recorded["platform"] is None or set(recorded["platform"]) == set(here)
    assert "isa 'AVX2' there, 'AVX512' here" in platform_difference(dict(here, isa="AVX2"), dict(here, isa="AVX512"))


def test_golden_covers_every_registered_strategy() -> None:
    from tidal.strategies import list_strategies

    golden = json.loads(GOLDEN.read_text())
    assert {key.split("@")[0] for key in golden} == set(list_strategies())
    assert {float(key.split("@")[1]) for key in golden} == set(IMBALANCES)


def _write_platform(note: str) -> None:
    from tidal.runs import cpu_platform

    PLATFORM.write_text(json.dumps({"platform": cpu_platform(), "note": note}, indent=1) + "\n")


if __name__ == "__main__":  # python tests/test_regression.py --write [--methods a b] [--data-dir D] | --record-platform
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="regenerate the numbers (and record this platform)")
    mode.add_argument("--record-platform", action="store_true",
                      help="check every number here; when all match, record this machine as their platform")
    mode.add_argument("--add-cpu", metavar="NAME",
                      help="run every strategy here and write the numbers as this CPU's golden file, "
                           f"{PLATFORM_GOLDENS.name}/NAME.json (only with code whose numbers are known not to have moved)")
    parser.add_argument("--methods", nargs="+", default=None, help="regenerate only these (default: all)")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    from tidal.strategies import list_strategies

    if args.add_cpu:
        from tidal.runs import cpu_platform

        golden = json.loads(GOLDEN.read_text())
        got = run_tiny(tuple(sorted({k.split("@")[0] for k in golden})), args.data_dir)
        code, _ = compare(golden, got)
        if code:
            raise SystemExit(f"not written: CPU-independent numbers differ from {GOLDEN.name}, e.g. {code[0]}")
        PLATFORM_GOLDENS.mkdir(exist_ok=True)
        target = PLATFORM_GOLDENS / f"{args.add_cpu}.json"
        target.write_text(json.dumps({"platform": cpu_platform(), "note": "written with --add-cpu",
                                      "numbers": dict(sorted(got.items()))}, separators=(",", ":")) + "\n")
        raise SystemExit(f"wrote {target}")
    if args.record_platform:
        golden = json.loads(GOLDEN.read_text())
        code, arithmetic = compare(golden, run_tiny(tuple(sorted({k.split("@")[0] for k in golden})), args.data_dir))
        if code or arithmetic:
            raise SystemExit(f"not recorded: {len(code + arithmetic)} difference(s) here, e.g. {(code + arithmetic)[0]}")
        _write_platform("every number reproduced on this platform (--record-platform)")
        raise SystemExit(f"wrote {PLATFORM}")
    methods = tuple(args.methods or list_strategies())
    stored = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    stored = {k: v for k, v in stored.items() if k.split("@")[0] not in methods}
    stored.update(run_tiny(methods, args.data_dir))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(dict(sorted(stored.items())), indent=None, separators=(",", ":")) + "\n")
    _write_platform(f"written here with --write (methods {', '.join(methods)})")
    print(f"wrote {GOLDEN}: {len(stored)} (method, imbalance) entries", file=sys.stderr)
