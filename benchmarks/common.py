"""Shared by the benchmark scripts: print a table and save it under benchmarks/results/."""

from __future__ import annotations

from pathlib import Path


def write_table(lines: list[str], out: str | Path) -> None:
    """Print ``lines`` as one block and write them to ``out`` (folders created as needed)."""
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(text)
