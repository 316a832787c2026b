"""Does today's code reproduce the stored FashionMNIST grid bit for bit?

    python benchmarks/grid_regression.py [--grid benchmarks/results/grid] [--imbalances 1 100]
                                         [--seed 0] [--cycles 2] [--jobs 2] [--methods ...]

For every method of the stored grid, retrains the first ``--cycles`` cycles of seed ``--seed``
at each imbalance ratio with the grid's own configuration (read from its results.sqlite), on
one torch thread per process as the grid was (``--jobs 2`` of one thread each), and compares
the accuracy, the labeled set, the selected ids and their scores with the stored rows, exactly.
Prints and saves a table to benchmarks/results/grid_regression.md.

A mismatch is told apart as in tests/test_regression.py: the first cycle's labeled set and every
number of ``random`` come from the seeded generators alone, so a difference there is changed code
(exit 1) on any machine; a difference in accuracies, scores and the selections that follow from
them is changed code on the grid's platform (``--platform``, ``tidal.runs.cpu_platform``) and
"different CPU" on any other (exit 3: not a verdict on the code).
The CI-sized version of this check is tests/test_regression.py.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import subprocess
import time
from pathlib import Path

from common import write_table

ROOT = Path(__file__).resolve().parents[1]


def check(args: tuple[str, str, float, int, int]) -> tuple[str, float, list[str], float]:
    """Retrain (method, imbalance) and compare its first cycles; returns (method, ir, problems, seconds)."""
    grid, method, ir, seed, cycles = args
    import torch

    torch.set_num_threads(1)
    from tidal.data import load_dataset
    from tidal.experiment import load_splits, make_pool
    from tidal.loop import CycleEnv, active_learning, configured_model
    from tidal.results import DB_NAME, ResultStore
    from tidal.strategies import create_strategy

    store = ResultStore(Path(grid) / DB_NAME)
    try:
        config = store.config()
        stored = store.records(dataset="fashion-mnist", imbalance=ir, method=method, seed=seed)[:cycles]
    finally:
        store.close()
    assert config is not None
    split = load_splits(config, torch.device("cpu"), {"fashion-mnist": load_dataset("fashion-mnist")})["fashion-mnist"]
    pool = make_pool(split.train, ir, config.data.pool_limit, seed)
    problems: list[str] = []  # "code: ..." (no arithmetic involved) or "arithmetic: ..."
    if len(stored) < cycles:
        problems.append(f"code: only {len(stored)} stored cycles")
    t0 = time.perf_counter()
    for r, want in zip(active_learning(split.train, split.test, pool, create_strategy(method, config.strategy), seed,
                                       CycleEnv(config.train, config.al, torch.device("cpu"),
                                                configured_model(config.train))), stored):
        c = want.cycle + 1
        free = "code" if method == "random" else "arithmetic"  # random's draws use no model output
        if r.accuracy != want.accuracy:
            problems.append(f"arithmetic: cycle {c} accuracy {r.accuracy!r} != stored {want.accuracy!r}")
        if r.labeled.tolist() != want.labeled:
            problems.append(f"{'code' if c == 1 else free}: cycle {c} labeled set differs")
        if r.selected.tolist() != want.selected:
            problems.append(f"{free}: cycle {c} selection differs")
        if [float(s) for s in r.scores.tolist()] != [float(s) for s in want.scores]:
            problems.append(f"{free}: cycle {c} scores differ")
        if r.cycle + 1 >= cycles:
            break
    return method, ir, problems, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", default=str(ROOT / "benchmarks" / "results" / "grid"))
    p.add_argument("--imbalances", type=float, nargs="+", default=[1.0, 100.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cycles", type=int, default=2)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=None, help="default: every method stored in the grid")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "grid_regression.md"))
    p.add_argument("--platform", default=str(Path(__file__).parent / "results" / "grid_platform.json"),
                   help="the grid's platform: JSON {\"platform\": tidal.runs.cpu_platform() or null, \"note\": ...}")
    args = p.parse_args()

    from tidal.results import DB_NAME, ResultStore

    store = ResultStore(Path(args.grid) / DB_NAME)
    try:
        config = store.config()
    finally:
        store.close()
    assert config is not None, f"{args.grid} holds no experiment"
    methods = args.methods or list(config.methods)
    work = [(args.grid, m, float(ir), args.seed, args.cycles) for ir in args.imbalances for m in methods]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        results = pool.map(check, work, chunksize=1)
    wall = time.perf_counter() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    import json

    from tidal.runs import cpu_platform, platform_difference

    here = cpu_platform()
    other = platform_difference(json.loads(Path(args.platform).read_text())["platform"], here)
    code = sum(1 for r in results if any(p.startswith("code:") for p in r[2]))
    arith = sum(1 for r in results if r[2] and not any(p.startswith("code:") for p in r[2]))
    if other is None:  # the grid's own platform: every difference is the code's
        code, arith = code + arith, 0

    def verdict(probs: list[str]) -> str:
        if not probs:
            return "identical"
        kind = "changed code" if other is None or any(p.startswith("code:") for p in probs) else "different CPU"
        return f"{kind}: " + "; ".join(p.split(": ", 1)[1] for p in probs)

    rows = [[m, f"{ir:g}", verdict(probs), f"{secs:.0f}"] for m, ir, probs, secs in results]
    bad = code + arith
    caption = (f"Stored grid ({args.grid}) vs code at {commit}: seed {args.seed}, cycles 1-{args.cycles}, "
               f"accuracy + labeled set + selected ids + scores compared exactly; {len(results) - bad} of "
               f"{len(results)} identical; {args.jobs} processes x 1 torch thread, {wall / 60:.1f} min wall "
               f"({platform.machine()}; {here['cpu']}, {here['isa']}, torch {here['torch']}). "
               + ("Same platform as the grid." if other is None else
                  f"Not the grid's platform ({other}): floating-point differences are not a verdict on the code."))
    write_table(caption, ["method", "IR", "result", "seconds"], rows, args.out, left=3)
    raise SystemExit(1 if code else 3 if arith else 0)


if __name__ == "__main__":
    main()
