"""Shared by the benchmark scripts: print a markdown table and save it under benchmarks/results/."""

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
