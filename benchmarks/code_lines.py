"""Lines of src/tidal at a git revision: all lines (``wc -l``) and code lines (no docstrings,
comments or blank lines), to check a refactor's "lines of src/ do not grow".

    python benchmarks/code_lines.py [REV ...]   (default: HEAD)
"""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize

_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}


def code_lines(source: str) -> int:
    """Lines holding a code token, docstrings (module, class, function) not counted."""
    docs: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            docs.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _SKIP:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(lines)


def count(rev: str) -> tuple[int, int]:
    """(all lines, code lines) of the Python files under src/tidal at ``rev``."""
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "src/tidal"], check=True,
                           capture_output=True, text=True).stdout.split()
    total = code = 0
    for name in (n for n in names if n.endswith(".py")):
        source = subprocess.run(["git", "show", f"{rev}:{name}"], check=True, capture_output=True, text=True).stdout
        total += source.count("\n")
        code += code_lines(source)
    return total, code


if __name__ == "__main__":
    print("| revision | all lines | code lines |\n|---|---:|---:|")
    for rev in sys.argv[1:] or ["HEAD"]:
        total, code = count(rev)
        print(f"| {rev} | {total:,} | {code:,} |")
