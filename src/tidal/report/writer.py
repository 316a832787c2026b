"""Write the report of a run directory from its database.

Files written (each atomically: a temporary file, then ``os.replace``):

* ``report.md``: per (dataset, imbalance) setting, a summary table (mean relative improvement
  over random and area under the accuracy curve, with CIs; the best method in bold), the
  figures, the per-cycle tables, the paired comparisons (``tidal.report.paired``: wins / ties /
  losses against each baseline, every pair's differences, skipped runs, a forest plot against
  the reference method), the class make-up table and the timing table; then, when the
  directory holds them, the Figure 7 section (``td_tracking`` rows) and the Figure 2 section
  (``analysis/*.npz``), see ``tidal.report.analyses``;
* ``report.html``: the same as one self-contained page (figures inlined);
* ``figures/*.png``: the figures (only when matplotlib is installed);
* ``results.csv`` (one row per stored cycle, without index lists) and ``results.json`` (all of
  it, with the ``td_tracking`` rows when there are any);
* ``paired.csv``: one row per (setting, method A, method B) that compares, with every paired
  statistic (written when the database has cycles).

A directory written by ``tidal analyze-scores`` alone (no ``results.sqlite``) gets a report
of its analyses only.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from tidal.io import atomic_path, atomic_write_text
from tidal.errors import RunDirectoryError, did_you_mean
from tidal.report.analyses import add_score_section, add_td_tracking_section
from tidal.report.document import Document
from tidal.report.paired import MIN_WILCOXON, PairedSetting, paired_comparisons, paired_rows
from tidal.report.paired_tables import add_paired_section
from tidal.report.style import figures_available
from tidal.report.summary import SettingSummary, summarize
from tidal.report.tables import (
    Table,
    accuracy_table,
    classes_table,
    format_markdown,
    overview_table,
    relative_table,
    timing_table,
)
from tidal.results import ANALYSIS_DIR, DB_NAME, CycleRecord, ResultStore, TDTrackingRecord

__all__ = ["FIGURES_DIR", "write_report"]

FIGURES_DIR = "figures"  # folder of the PNGs, inside the run directory


def _atomic_write(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _setting_section(doc: Document, s: SettingSummary, figs: dict[str, tuple[Path, str]], ps: PairedSetting,
                     reference: str) -> Table:
    """One setting's section; returns its wins / ties / losses table (for the printed summary)."""
    doc.heading(2, f"{s.dataset}, imbalance ratio {s.imbalance:g}")
    if s.near_chance:
        doc.paragraph(f"**Warning:** {len(s.near_chance)} cycle(s) ended near chance, their model learned (almost) "
                      "nothing, so the training settings may not fit this data (README, \"Presets\"): "
                      + "; ".join(s.near_chance) + ".")
    if s.best is not None:
        doc.paragraph(f"Best method by area under the accuracy curve: **{s.best}**.")
    doc.table(overview_table(s))
    for kind in ("relative", "accuracy", "ablation"):
        if kind in figs:
            doc.figure(*figs[kind])
    if not s.relative:
        doc.paragraph("No `random` runs in this setting, so no relative improvement.")
    doc.table(relative_table(s))
    doc.table(accuracy_table(s))
    versus = add_paired_section(doc, ps, reference, figs.get("paired"), MIN_WILCOXON)
    doc.heading(3, "Class make-up of the selections")
    doc.table(classes_table(s))
    if "classes" in figs:
        doc.figure(*figs["classes"])
    doc.heading(3, "Wall time")
    doc.table(timing_table(s))
    if "timing" in figs:
        doc.figure(*figs["timing"])
    return versus


def _paired_figure(ps: PairedSetting, reference: str, fig_dir: Path) -> dict[str, tuple[Path, str]]:
    from tidal.report.paired_figures import forest_caption, plot_forest  # imports matplotlib when drawing

    path = plot_forest(ps, reference, fig_dir / f"{ps.dataset}-ir{ps.imbalance:g}-paired.png".replace("/", "-")
                       .replace(" ", "-"))
    return {} if path is None else {"paired": (path, forest_caption(ps, reference))}


def _build_document(run_dir: Path, records: list[CycleRecord], summaries: list[SettingSummary], cfg: dict,
                    tracking: list[TDTrackingRecord], score_files: list[Path], paired: list[PairedSetting],
                    reference: str | None) -> tuple[Document, list[Table], list[Table]]:
    """The report, the settings' W/T/L tables and the tables of its analysis sections (for the printed summary)."""
    doc = Document("TiDAL active-learning report")
    sources = " and ".join((["`results.sqlite`"] if records else []) + (["`analysis/*.npz`"] if score_files else []))
    doc.paragraph(f"Run directory: `{run_dir}`. {len(records)} stored cycles in {len(summaries)} setting(s); "
                  f"every number below is computed from {sources}.")
    draw = figures_available()
    if not draw:
        doc.paragraph("Figures need matplotlib: `pip install matplotlib` (or `pip install -e '.[report]'` in the "
                      f"tidal checkout), then `tidal report {run_dir}` again.")
    versus = []
    for s, ps in zip(summaries, paired):
        ref = reference or s.methods[0]  # by default the summary's first method: random where it ran
        figs = {}
        if draw:
            from tidal.report.figures import write_setting_figures  # imports matplotlib when drawing

            figs = write_setting_figures(s, run_dir / FIGURES_DIR)
            figs.update(_paired_figure(ps, ref, run_dir / FIGURES_DIR))
        versus.append(_setting_section(doc, s, figs, ps, ref))
    fig_dir = run_dir / FIGURES_DIR if draw else None
    tables = []
    if tracking:
        tables.append(add_td_tracking_section(doc, tracking, records, fig_dir))
    if score_files:
        tables.append(add_score_section(doc, score_files, fig_dir))
    if records:
        doc.heading(2, "Configuration")
        doc.code(json.dumps(cfg, indent=2))
    return doc, versus, [t for t in tables if t is not None]


def _write_tables(run_dir: Path, records: list[CycleRecord], cfg: dict, tracking: list[TDTrackingRecord],
                  paired: list[PairedSetting]) -> None:
    if records:
        _write_csv(run_dir / "paired.csv", paired_rows(paired))
        _write_csv(run_dir / "results.csv", [r.summary_dict() for r in records])
    data = {"config": cfg, "cycles": [r.__dict__ for r in records]}
    if tracking:
        data["td_tracking"] = [t.__dict__ for t in tracking]
    _atomic_write(run_dir / "results.json", json.dumps(_json_safe(data), allow_nan=False))


def _write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` (dicts with the same keys) as a CSV with a header; a header-less empty file without rows."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def _json_safe(value: object) -> object:
    """``value`` with every NaN or infinite float as ``None`` (JSON ``null``): a database written
    before non-finite cycles were refused may hold them, and bare ``NaN`` is not JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_report(run_dir: str | Path, reference: str | None = None) -> str:
    """Regenerate the report files of ``run_dir`` from its database and ``analysis/*.npz``;
    returns the summary markdown (the per-setting tables and wins / ties / losses tables, then
    those of the analyses).

    ``reference``: the method the paired forest plot compares every other with; None: each
    setting's first method in the report's order (``random`` where it ran).

    Raises:
        ValueError: ``reference`` is not a method stored in ``run_dir``.
        RunDirectoryError: ``run_dir`` holds neither a results database nor an analysis, or
            its database no finished cycle (and there is no analysis).
    """
    run_dir = Path(run_dir)
    score_files = sorted((run_dir / ANALYSIS_DIR).glob("*.npz"))
    has_db = (run_dir / DB_NAME).is_file()
    if not has_db and not score_files:
        raise RunDirectoryError(f"{run_dir} holds no {DB_NAME}; pass the --out directory of a `tidal run` "
                                "(or of `tidal analyze-scores`)")
    records, tracking, config, class_names = [], [], None, {}
    if has_db:
        with ResultStore(run_dir / DB_NAME, readonly=True) as store:  # a report changes no stored byte
            records = store.records()
            tracking = store.td_tracking()
            config = store.config()
            class_names = store.class_names()
    if not records and not score_files:
        raise RunDirectoryError(f"{run_dir} has no finished cycle yet; run `tidal run` first")
    methods = sorted({r.method for r in records})
    if reference is not None and reference not in methods:
        raise ValueError(f"reference={reference!r} is not a method of {run_dir}"
                         f"{did_you_mean(reference, methods, ['random'])}; its methods: {', '.join(methods) or 'none'}")
    cfg = config.to_dict() if config else {}
    cycles = config.al.cycles if config else None
    summaries = summarize(records, cycles=cycles, class_names=class_names)
    paired = paired_comparisons(records, cycles=cycles)
    doc, versus, tables = _build_document(run_dir, records, summaries, cfg, tracking, score_files, paired, reference)
    _atomic_write(run_dir / "report.md", doc.to_markdown(base=run_dir))
    _atomic_write(run_dir / "report.html", doc.to_html())
    _write_tables(run_dir, records, cfg, tracking, paired)
    summary = format_markdown(summaries)
    for s, table in zip(summaries, versus):
        summary += f"\n#### {s.dataset}, imbalance ratio {s.imbalance:g}: paired\n\n" + table.to_markdown()
    for table in tables:
        summary += "\n" + table.to_markdown()
    return summary
