"""A report as a list of blocks, rendered to Markdown (figures linked) or to one HTML file (figures inlined).

Paragraphs may use two bits of inline Markdown, ``code`` in backticks and **bold**; the HTML
renderer translates those and escapes everything else.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from tidal.report.tables import Table

__all__ = ["Document"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { color: #111; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
caption { caption-side: top; text-align: left; color: #555; padding-bottom: .4em; max-width: 1000px; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; } tr.best td { background: #fff4d6; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
code, pre { background: #f6f6f6; border-radius: 3px; } code { padding: 0 .2em; }
pre { padding: .8em; overflow-x: auto; font-size: 0.85em; }
"""


def _inline_html(text: str) -> str:
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


@dataclass
class Document:
    """Blocks in reading order: ("heading", level, text), ("paragraph", text), ("table", Table),
    ("figure", path, caption), ("code", text)."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        self.blocks.append(("paragraph", text))

    def table(self, table: Table | None) -> None:
        if table is not None:
            self.blocks.append(("table", table))

    def figure(self, path: Path, caption: str) -> None:
        self.blocks.append(("figure", Path(path), caption))

    def code(self, text: str) -> None:
        self.blocks.append(("code", text))

    def to_markdown(self, base: Path) -> str:
        """Markdown with figures linked by paths relative to ``base`` (the folder of the .md file)."""
        out = [f"# {self.title}", ""]
        for kind, *rest in self.blocks:
            if kind == "heading":
                out += ["#" * rest[0] + " " + rest[1], ""]
            elif kind == "paragraph":
                out += [rest[0], ""]
            elif kind == "table":
                out += [rest[0].to_markdown()]
            elif kind == "figure":
                rel = Path(os.path.relpath(rest[0], base)).as_posix()
                alt = rest[1].replace("[", "(").replace("]", ")")  # brackets (the intervals) would end the alt text
                out += [f"![{alt}]({rel})", "", f"*{rest[1]}*", ""]
            elif kind == "code":
                out += ["```json", rest[0], "```", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        """One self-contained HTML page: simple CSS, tables, figures as base64 PNG data URIs."""
        out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
               f"<title>{html.escape(self.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
               f"<h1>{html.escape(self.title)}</h1>"]
        for kind, *rest in self.blocks:
            if kind == "heading":
                level = min(rest[0], 6)
                out.append(f"<h{level}>{_inline_html(rest[1])}</h{level}>")
            elif kind == "paragraph":
                out.append(f"<p>{_inline_html(rest[0])}</p>")
            elif kind == "table":
                out.append(rest[0].to_html())
            elif kind == "figure":
                data = base64.b64encode(rest[0].read_bytes()).decode("ascii")
                caption = html.escape(rest[1])
                out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                           f"<figcaption>{caption}</figcaption></figure>")
            elif kind == "code":
                out.append(f"<pre><code>{html.escape(rest[0])}</code></pre>")
        out += ["</body>", "</html>", ""]
        return "\n".join(out)
