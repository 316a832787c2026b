"""No import circles between the package's modules (the layers depend one way)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def _graph() -> dict[str, set[str]]:
    """Module -> the tidal modules it imports anywhere in its body (function-level imports included)."""
    mods = {}
    for p in SRC.rglob("*.py"):
        name = ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = p

    def resolve(n: str) -> str:
        while n and n not in mods:
            n = n.rpartition(".")[0]
        return n

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tidal"):
                names = [resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names]
            elif isinstance(node, ast.Import):
                names = [resolve(a.name) for a in node.names if a.name.startswith("tidal")]
            edges[m] |= {n for n in names if n and n != m}
    return edges


def test_no_import_cycles_between_modules():
    edges = _graph()

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for n in edges[todo.pop()] - seen:
                seen.add(n)
                todo.append(n)
        return seen

    cycles = []
    for m in edges:
        if m == "tidal" or m.endswith(".__main__"):
            continue
        for other in reach(m) - {m, "tidal"}:
            # a package and its own submodules (the registry importing its members) are one unit
            if m in reach(other) and not (other.startswith(m + ".") or m.startswith(other + ".")):
                cycles.append(tuple(sorted((m, other))))
    assert not sorted(set(cycles)), f"import cycles: {sorted(set(cycles))}"


def test_the_loop_and_the_training_step_name_no_dataset_and_no_backbone():
    for module in ("loop.py", "train.py", "gather.py", "inference.py"):
        text = (SRC / "tidal" / module).read_text()
        for name in ("ResNet", "fashion", "FashionMNIST", "cifar", "ImageDataset", ".images"):
            assert name not in text, f"{module} names {name!r}"


def test_importing_tidal_first_makes_waiting_openmp_threads_sleep():
    """Issue 17 / 21 case 27: spinning OpenMP threads took a busy machine's cores (146 s against 8 s
    for one round); tidal sets OMP_WAIT_POLICY=PASSIVE before torch loads, unless the user chose."""
    import os
    import subprocess
    import sys

    code = "import os, tidal, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip() == "ACTIVE"


def test_every_benchmark_script_compiles():
    """benchmarks/labelling_walk.py once held an f-string only Python 3.12 parses; CI's 3.11 never ran it."""
    from pathlib import Path

    scripts = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))
    assert len(scripts) > 10
    for script in scripts:
        compile(script.read_text(encoding="utf-8"), str(script), "exec")  # a SyntaxError names the script
