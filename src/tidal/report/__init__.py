"""Reports computed from a run directory's stored results only."""

from tidal.report.summary import SettingSummary, format_markdown, summarize
from tidal.report.writer import write_report

__all__ = ["SettingSummary", "format_markdown", "summarize", "write_report"]
