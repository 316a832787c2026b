"""The report's sections for the paper's Figures 7 and 2, from what a run directory stores.

* Figure 7 (``td_tracking`` rows, written by ``tidal run --track-td``): per (setting, method),
  the per-epoch test-set KLs of the **last tracked cycle**, averaged over the seeds that
  tracked it (one figure each), and a table of the final epoch's KLs of every tracked cycle.
* Figure 2 (``analysis/*.npz``, written by ``tidal analyze-scores``): per file, the head- and
  tail-class densities of the six scores with their AUROCs in the legends, and one AUROC table.

A section is added only when its data exists; figures only when ``fig_dir`` is given
(matplotlib installed).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tidal.report.document import Document
from tidal.report.stats import mean_interval
from tidal.report.tables import Table, ci_caption, format_interval
from tidal.results import CycleRecord, TDTrackingRecord

if TYPE_CHECKING:
    from tidal.analysis import ScoreAnalysis

__all__ = ["add_score_section", "add_td_tracking_section", "auroc_table", "td_tracking_table"]

# Figure 2 panel titles (matplotlib mathtext), each score oriented so that higher = more uncertain.
_PANELS = {
    "H": r"snapshot $H(p)$",
    "M": r"snapshot $-M(p)$",
    "H_td": r"actual TD $\bar{H}(\bar{p})$",
    "M_td": r"actual TD $-\bar{M}(\bar{p})$",
    "H_pred": r"predicted TD $\bar{H}(\tilde{p}_m)$",
    "M_pred": r"predicted TD $-\bar{M}(\tilde{p}_m)$",
    "H_cal": r"calibrated $\bar{H}(\tilde{p}_m/T)$",
    "M_cal": r"calibrated $-\bar{M}(\tilde{p}_m/T)$",
}

_Key = tuple[str, float, str]  # (dataset, imbalance, method)


def _cell(values: list[float], confidence: float) -> str:
    """``mean [low, high]`` with 3 decimals, the interval clipped at 0 (a KL divergence is never
    negative); the mean alone for a single seed."""
    return format_interval(*mean_interval(values, confidence, low=0.0), digits=3)


def _group(rows: list[TDTrackingRecord]) -> dict[_Key, dict[int, dict[int, list[TDTrackingRecord]]]]:
    """(dataset, imbalance, method) -> cycle -> seed -> rows in epoch order."""
    out: dict[_Key, dict[int, dict[int, list[TDTrackingRecord]]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        out[(r.dataset, r.imbalance, r.method)][r.cycle].setdefault(r.seed, []).append(r)
    for cycles in out.values():
        for seeds in cycles.values():
            for seed_rows in seeds.values():
                seed_rows.sort(key=lambda r: r.epoch)
    return out


def _sizes(records: list[CycleRecord]) -> dict[tuple[str, float, int], int]:
    """(dataset, imbalance, cycle) -> labeled-set size."""
    return {(r.dataset, r.imbalance, r.cycle): r.n_labeled for r in records}


def td_tracking_table(rows: list[TDTrackingRecord], records: list[CycleRecord] = (),
                      confidence: float = 0.95) -> Table:
    """Per (setting, method, cycle): the final epoch's test-set KLs, mean ± CI across seeds."""
    sizes = _sizes(list(records))
    body = []
    for (dataset, ir, method), cycles in sorted(_group(rows).items()):
        for cycle, seeds in sorted(cycles.items()):
            last = [seed_rows[-1] for seed_rows in seeds.values()]
            n = sizes.get((dataset, ir, cycle))
            body.append([dataset, f"{ir:g}", method, str(cycle + 1), "–" if n is None else str(n), str(len(last)),
                         str(last[0].epoch), _cell([r.kl_module for r in last], confidence),
                         _cell([r.kl_snapshot for r in last], confidence)])
    caption = (f"Final training epoch T of each tracked cycle: test-set mean KL divergence (nats) of the actual TD "
               f"p̄(T) to the module's predicted TD p̃_m(T) and to the snapshot softmax p(T): "
               f"{ci_caption(confidence, '>= 0 nats')}. Smaller = closer to the actual TD (paper Figure 7).")
    return Table(["dataset", "IR", "method", "cycle", "labeled", "seeds", "epoch T", "KL(p̄ ‖ p̃_m)",
                  "KL(p̄ ‖ p)"], body, caption)


def add_td_tracking_section(doc: Document, rows: list[TDTrackingRecord], records: list[CycleRecord],
                            fig_dir: Path | None) -> Table:
    """The Figure 7 section: one figure per (setting, method), then :func:`td_tracking_table`."""
    doc.heading(2, "How well the TD prediction module predicts the TD (Figure 7)")
    doc.paragraph("Stored by `tidal run --track-td`: after every training epoch t, the test set is run through the "
                  "model; at the end of training the actual TD of each test sample is p̄(T), the mean of its softmax "
                  "over the epochs (Eq. 5), and each epoch gets the test-set mean of KL(p̄(T) ‖ p̃_m(t)) (the TD "
                  "module's prediction) and of KL(p̄(T) ‖ p(t)) (the model snapshot).")
    sizes = _sizes(records)
    if fig_dir is not None:
        from tidal.report.td_figures import plot_td_prediction_kl  # imports matplotlib when drawing

        for (dataset, ir, method), cycles in sorted(_group(rows).items()):
            cycle = max(cycles)
            seeds = cycles[cycle]
            epochs = sorted(set.intersection(*({r.epoch for r in s} for s in seeds.values())))
            per_epoch = {e: [r for s in seeds.values() for r in s if r.epoch == e] for e in epochs}
            kl_module = [float(np.mean([r.kl_module for r in per_epoch[e]])) for e in epochs]
            kl_snapshot = [float(np.mean([r.kl_snapshot for r in per_epoch[e]])) for e in epochs]
            path = fig_dir / f"{dataset}-ir{ir:g}-td-prediction-{method}.png".replace("/", "-").replace(" ", "-")
            n = sizes.get((dataset, ir, cycle))
            labeled = "" if n is None else f", {n} labeled"
            plot_td_prediction_kl(epochs, kl_module, kl_snapshot, path,
                                  title=f"{dataset}, IR {ir:g}, {method}: cycle {cycle + 1}{labeled}")
            doc.figure(path, f"Figure 7, {dataset}, imbalance ratio {ir:g}, {method}: test-set mean KL divergence "
                             f"(nats) of the actual TD to the predicted TD and to the snapshot after each epoch, in "
                             f"the last tracked cycle ({cycle + 1}{labeled}), mean over {len(seeds)} seed(s).")
    table = td_tracking_table(rows, records)
    doc.table(table)
    return table


def auroc_table(analyses: list["ScoreAnalysis"]) -> Table:
    """One row per stored analysis: the AUROC of each score at telling tail from head samples."""
    from tidal.analysis import SCORES

    header = ["dataset", "IR", "seed", "method", "epochs", "samples", "tail samples"]
    header += [("−" if key.startswith("M") else "") + label for key, label in SCORES.items()]
    body = []
    for a in analyses:
        aurocs = a.aurocs()
        body.append([a.dataset, f"{a.imbalance:g}", str(a.seed), a.method, str(a.epochs), str(len(a.labels)),
                     str(int(a.is_tail.sum()))] + [f"{aurocs[key]:.3f}" if key in aurocs else "–" for key in SCORES])
    caption = ("AUROC of each uncertainty score at telling tail-class (the rarer half of the classes) from head-class "
               "samples among the trained samples, in the direction higher = more uncertain: margins enter as −M, "
               "since a smaller margin is more uncertain. 1 = every tail sample rated more uncertain than every "
               "head sample, 0.5 = chance (paper Figure 2, §3.1). Calibrated: the predicted TD at one temperature T "
               "fitted on the trained samples' recorded TD (the tidal-calibrated-* rule); – in a file written before "
               "it was stored.")
    return Table(header, body, caption)


def add_score_section(doc: Document, paths: list[Path], fig_dir: Path | None) -> Table | None:
    """The Figure 2 section: one figure per readable ``analysis/*.npz``, then :func:`auroc_table`."""
    from tidal.analysis import METHOD, load_score_analysis  # imported here: tidal.analysis imports tidal.report

    doc.heading(2, "Score distributions after long-tailed training (Figure 2)")
    doc.paragraph("Stored by `tidal analyze-scores`: a TiDAL model trained on long-tailed samples, then each trained "
                  "sample scored by the snapshot estimators H(p), M(p) of the final model and the TD-based H̄, M̄ of "
                  "its actual TD p̄ and of the module's predicted TD p̃_m (margins at the true label).")
    analyses = []
    for path in paths:
        try:
            analyses.append(load_score_analysis(path))
        except ValueError as exc:
            doc.paragraph(f"Skipped `{path.name}`: {exc}")
    analyses.sort(key=lambda a: (a.dataset, a.imbalance, a.seed, a.method != METHOD, a.method))
    for a in analyses:
        if fig_dir is None:
            break
        from tidal.report.td_figures import plot_score_distributions  # imports matplotlib when drawing

        fig = plot_score_distributions({_PANELS[k]: a.uncertainty(k) for k in a.scores}, a.is_tail,
                                       fig_dir / f"{a.path.stem}.png")
        doc.figure(fig, f"Figure 2, {a.dataset}, imbalance ratio {a.imbalance:g}, seed {a.seed}, {a.method}: densities "
                        f"of each score for head- and tail-class samples among the {len(a.labels)} trained samples "
                        f"({a.epochs} epochs, width {a.width}); every panel reads higher = more uncertain (margins "
                        "as −M), and its title gives the AUROC at telling tail from head.")
    if not analyses:
        return None
    table = auroc_table(analyses)
    doc.table(table)
    return table
