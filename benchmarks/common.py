"""Shared by the benchmark scripts: print a markdown table and save it under benchmarks/results/
(or print any text and save it under the command that made it); read a run directory's complete
accuracy curves and format paired differences; build what the loop hands the scoring path for a
synthetic pool."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def write_table(caption: str, header: Sequence[str], rows: Sequence[Sequence[object]], out: str | Path,
                left: int = 1) -> None:
    """Print ``caption`` and a markdown table as one block and write them to ``out`` (folders
    created as needed). Cells are written with ``str``, so format numbers before; the first
    ``left`` columns are left-aligned, the others right-aligned."""
    lines = [caption, "", "| " + " | ".join(header) + " |",
             "|" + "".join("---|" if i < left else "---:|" for i in range(len(header)))]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)


def show(text: str, save: str | Path | None, command: str) -> None:
    """Print ``text``; with ``save``, also write it there under ``command`` (the line that made it)."""
    print(text)
    if save:
        Path(save).write_text(f"`{command}`\n\n{text}\n")


def run_curves(run_dir: str | Path, **where) -> tuple[object, dict[tuple, tuple[float, float, float]]]:
    """``(config, {(dataset, method, imbalance, seed): (area pp, cycle-1 %, final %)})`` of the complete runs
    (every cycle of the stored configuration) in ``run_dir``'s store, filtered as
    ``ResultStore.records(**where)``; area: :func:`tidal.report.stats.area_under_curve`."""
    from tidal.report.stats import area_under_curve
    from tidal.results import DB_NAME, ResultStore

    runs: dict[tuple, list] = {}
    with ResultStore(Path(run_dir) / DB_NAME, readonly=True) as store:
        config = store.config()
        for r in store.records(**where):  # ordered by run, then cycle
            runs.setdefault((r.dataset, r.method, r.imbalance, r.seed), []).append(r)
    out = {}
    for key, recs in runs.items():
        if len(recs) == config.al.cycles:
            acc = [100 * r.accuracy for r in recs]
            out[key] = (area_under_curve([r.n_labeled for r in recs], acc), acc[0], acc[-1])
    return config, out


def diff_text(values: Sequence[float], count: bool = True) -> str:
    """Paired differences (pp) as ``mean [95% t-interval] (n)``: no interval from one value
    (:func:`tidal.report.paired.diff_stats`), no ``(n)`` with ``count=False``."""
    import math

    from tidal.report.paired import diff_stats

    d = diff_stats(list(values))
    return (f"{d.mean:+.2f}" + ("" if math.isnan(d.lo) else f" [{d.lo:+.2f}, {d.hi:+.2f}]")
            + (f" ({d.n})" if count else ""))


def scoring_setup(pool, method: str, classes: int, dim: int, hidden: int, mc_samples: int, candidates, labeled,
                  batch: int) -> tuple:
    """``(strategy, model, objective)`` as the loop builds them for :func:`tidal.gather.select`
    on a synthetic feature pool: the strategy ``method`` (``mc_samples`` MC-dropout passes), an
    untrained MLP (``dim`` inputs, one hidden layer of ``hidden``, ``classes`` outputs, the
    strategy's dropout; seeded 0) in eval mode, and the strategy's objective (None or eval mode)."""
    import torch

    from tidal.config import StrategyConfig, TrainConfig
    from tidal.loop import new_objective
    from tidal.models.mlp import MLP
    from tidal.strategies import create_strategy

    strategy = create_strategy(method, StrategyConfig(mc_samples=mc_samples))
    torch.manual_seed(0)
    model = MLP(dim, classes, hidden=(hidden,), dropout=strategy.dropout).eval()
    objective = new_objective(strategy, model, pool, (labeled, candidates), TrainConfig(epochs=1, eval_batch_size=batch),
                              torch.device("cpu"))
    if objective is not None:
        objective.eval()
    return strategy, model, objective
