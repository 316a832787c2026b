"""Write ``report.md``, ``results.csv`` and ``results.json`` for a run directory."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from tidal.errors import RunDirectoryError
from tidal.report.summary import format_markdown, summarize
from tidal.results import DB_NAME, ResultStore

__all__ = ["write_report"]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_report(run_dir: str | Path) -> str:
    """Regenerate the report files of ``run_dir`` from its database; returns the summary markdown."""
    run_dir = Path(run_dir)
    if not (run_dir / DB_NAME).is_file():
        raise RunDirectoryError(f"{run_dir} holds no {DB_NAME}; pass the --out directory of a `tidal run`")
    with ResultStore(run_dir / DB_NAME) as store:
        records = store.records()
        config = store.config()
    if not records:
        raise RunDirectoryError(f"{run_dir} has no finished cycle yet; run `tidal run` first")
    summary = format_markdown(summarize(records))
    cfg = config.to_dict() if config else {}
    md = ["# TiDAL active-learning report", "", f"Run directory: `{run_dir}`", "", summary,
          "## Configuration", "", "```json", json.dumps(cfg, indent=2), "```", ""]
    _atomic_write(run_dir / "report.md", "\n".join(md))
    rows = [r.summary_dict() for r in records]
    tmp = run_dir / "results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, run_dir / "results.csv")
    _atomic_write(run_dir / "results.json",
                  json.dumps({"config": cfg, "cycles": [r.__dict__ for r in records]}))
    return summary
