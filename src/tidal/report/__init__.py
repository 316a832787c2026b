"""Reports computed from a run directory's stored results only.

``write_report(run_dir)`` writes report.md, report.html, figures/*.png, results.csv and
results.json (and paired.csv, see ``tidal.report.paired``). The statistics are plain functions in ``tidal.report.stats``; the figures in
``tidal.report.figures`` import matplotlib (the optional ``report`` extra) only when they draw.
"""

from tidal.metrics import auroc
from tidal.report.paired import PairedSetting, paired_comparisons
from tidal.report.stats import area_under_curve, kl_divergence, mean_ci, mean_interval
from tidal.report.summary import SettingSummary, summarize
from tidal.report.tables import format_markdown
from tidal.report.writer import write_report

__all__ = [
    "PairedSetting",
    "SettingSummary",
    "area_under_curve",
    "auroc",
    "format_markdown",
    "kl_divergence",
    "mean_ci",
    "mean_interval",
    "paired_comparisons",
    "summarize",
    "write_report",
]
